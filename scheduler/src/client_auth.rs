//! Who may use the Flight SQL front door.
//!
//! Users are configured with Argon2id password hashes (PHC strings, `glaux hash-password`). A
//! client sends `authorization: Basic ...` with `Handshake` and gets a bearer token back (in the
//! `authorization` response header and as the payload), which it sends with every later call;
//! Basic credentials are also accepted on any call. With no users configured the scheduler serves
//! without authentication, which it only does on loopback (`Scheduler::start` refuses otherwise).
//! The cluster port's executor service is guarded by the cluster secret, not by this.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;

/// How long a token from `Handshake` stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Tokens outstanding at most; the oldest are dropped beyond (their clients hand-shake again).
const MAX_TOKENS: usize = 100_000;

/// Configured users and the tokens they were given.
#[derive(Debug, Default)]
pub struct Users {
    /// User name to its PHC hash string.
    hashes: BTreeMap<String, String>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Users {
    /// Reads `name:hash` lines (`#` starts a comment). Every hash must be a valid PHC string.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut hashes = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                return Err(format!("line {}: expected `user:password-hash`", number + 1));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("line {}: empty user name", number + 1));
            }
            PasswordHash::new(hash.trim()).map_err(|e| {
                format!(
                    "line {}: the hash of {name} is not a PHC string ({e}); make one with `glaux hash-password`",
                    number + 1
                )
            })?;
            hashes.insert(name.to_string(), hash.trim().to_string());
        }
        if hashes.is_empty() {
            return Err("no users in the file".into());
        }
        Ok(Self { hashes, tokens: Mutex::default() })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.hashes.keys().map(String::as_str)
    }

    pub(crate) fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.hashes.get(user).and_then(|h| PasswordHash::new(h).ok()) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
    }

    /// Checks Basic credentials and issues a token for them.
    pub fn handshake(&self, authorization: Option<&str>) -> Result<(String, String), tonic::Status> {
        let (user, password) = authorization
            .and_then(basic_credentials)
            .ok_or_else(|| tonic::Status::unauthenticated("send a user name and password (Basic authorization)"))?;
        if !self.verify(&user, &password) {
            return Err(tonic::Status::unauthenticated("wrong user name or password"));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, (_, issued)| now.duration_since(*issued) < TOKEN_LIFETIME);
        if tokens.len() >= MAX_TOKENS
            && let Some(oldest) = tokens.iter().min_by_key(|(_, (_, issued))| *issued).map(|(t, _)| t.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(token.clone(), (user.clone(), now));
        Ok((user, token))
    }

    /// The user an `authorization` header proves, if it proves one.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<String, tonic::Status> {
        let Some(value) = authorization else {
            return Err(tonic::Status::unauthenticated(
                "authentication required: hand-shake with a user name and password",
            ));
        };
        if let Some(token) = strip_scheme(value, "Bearer") {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            return match tokens.get(token.trim()) {
                Some((user, issued)) if issued.elapsed() < TOKEN_LIFETIME => Ok(user.clone()),
                _ => Err(tonic::Status::unauthenticated("the token is unknown or expired: hand-shake again")),
            };
        }
        match basic_credentials(value) {
            Some((user, password)) if self.verify(&user, &password) => Ok(user),
            Some(_) => Err(tonic::Status::unauthenticated("wrong user name or password")),
            None => Err(tonic::Status::unauthenticated("unsupported authorization scheme (use Basic or Bearer)")),
        }
    }
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// `(user, password)` from `Basic base64(user:password)`.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = strip_scheme(value, "Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// An Argon2id PHC string for `password`, for a users file.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Wraps the Flight service: every call but `Handshake` must carry a valid `authorization`.
#[derive(Clone)]
pub struct RequireClientAuth<S> {
    pub inner: S,
    pub users: Arc<Users>,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for RequireClientAuth<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for RequireClientAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let handshake = request.uri().path().ends_with("/Handshake");
        let authorization = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let verdict = if handshake { Ok(()) } else { self.users.authorize(authorization).map(|_| ()) };
        match verdict {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn passwords_are_checked_against_their_hashes_and_tokens_stand_for_them() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let users = Users::parse(&format!("# analysts\nana:{hash}\n")).expect("parse");
        assert!(users.handshake(Some(&basic("ana", "wrong"))).is_err());
        assert!(users.handshake(Some(&basic("bob", "s3cret"))).is_err());
        assert!(users.handshake(None).is_err());
        let (user, token) = users.handshake(Some(&basic("ana", "s3cret"))).expect("handshake");
        assert_eq!(user, "ana");
        assert_eq!(users.authorize(Some(&format!("Bearer {token}"))).expect("token"), "ana");
        assert_eq!(users.authorize(Some(&basic("ana", "s3cret"))).expect("basic"), "ana");
        assert!(users.authorize(Some("Bearer 00")).is_err());
        assert!(users.authorize(None).is_err());
        assert!(Users::parse("ana:plaintext").is_err(), "a password in clear is refused");
        assert!(Users::parse("# nobody\n").is_err());
    }
}
