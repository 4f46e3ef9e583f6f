//! Who may use the Flight SQL front door.
//!
//! Users are configured with Argon2id password hashes (PHC strings, `glaux hash-password`). A
//! client sends `authorization: Basic ...` with `Handshake` and gets a bearer token back (in the
//! `authorization` response header and as the payload), which it sends with every later call;
//! Basic credentials are also accepted on any call. With no users configured the scheduler serves
//! without authentication, which it only does on loopback (`Scheduler::start` refuses otherwise).
//! The cluster port's executor service is guarded by the cluster secret, not by this.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use tokio::sync::Semaphore;

use crate::limits::RateLimiter;

/// How long a token from `Handshake` stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Tokens outstanding at most; the oldest are dropped beyond (their clients hand-shake again).
const MAX_TOKENS: usize = 100_000;

/// Failed logins a client address may make within [`FAILURE_WINDOW`] before it is refused
/// without a check until the window ends.
pub const MAX_FAILED_LOGINS: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Client addresses remembered for failed logins at most (the oldest are forgotten beyond).
const MAX_FAILING_ADDRESSES: usize = 100_000;

/// Basic credentials already verified are remembered (as a digest) this long, so that clients
/// that send them on every call do not pay for a password hash on every call.
const VERIFIED_LIFETIME: Duration = Duration::from_secs(300);

/// How long a login waits for a hashing slot before it is refused as "busy".
const HASHING_WAIT: Duration = Duration::from_secs(10);

/// What a login is checked against when its user does not exist, so that the answer takes as
/// long as for a user who does (user names cannot be probed by timing). Argon2id with the
/// parameters `glaux hash-password` uses, of a random password nobody knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$AgS6NXnoZejn1AwjpQaEOw$PeRSFijKahNP9sQQWvHHlrr6sxqigsyLSHcuvGsRDUo";

/// Why a client was not let in. The message never says whether the user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: hand-shake with a user name and password")]
    Missing,
    #[error("wrong user name or password")]
    Wrong,
    #[error("the token is unknown or expired: hand-shake again")]
    UnknownToken,
    #[error("unsupported authorization scheme (use Basic or Bearer)")]
    Scheme,
    #[error("too many failed logins from this address: try again in {retry_after_secs} s")]
    TooManyFailures { retry_after_secs: u64 },
    #[error("the server is busy checking passwords: try again")]
    Busy,
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::TooManyFailures { .. } | AuthError::Busy => tonic::Status::resource_exhausted(error.to_string()),
            _ => tonic::Status::unauthenticated(error.to_string()),
        }
    }
}

/// Failed logins from one address in the current window.
struct Failures {
    count: u32,
    since: Instant,
}

/// Configured users, the tokens they were given, and who has been failing to log in.
pub struct Users {
    /// User name to its PHC hash string.
    hashes: BTreeMap<String, String>,
    /// Users the users file names as administrators (`name:hash:admin`).
    admins: BTreeSet<String>,
    /// Users' default workgroups (`name:hash:workgroup=NAME`).
    workgroups: BTreeMap<String, String>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Digests of Basic credentials verified recently, to their user.
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Password hashes run on blocking threads, this many at a time.
    hashing: Arc<Semaphore>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: never a hash, a token or a credential digest.
        let tokens = self.tokens.lock().map_or(0, |t| t.len());
        f.debug_struct("Users")
            .field("names", &self.hashes.keys().collect::<Vec<_>>())
            .field("admins", &self.admins)
            .field("tokens_outstanding", &tokens)
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Reads `name:hash[:admin][:workgroup=NAME]` lines (`#` starts a comment). Every hash must
    /// be a valid PHC string; `:admin` makes the user an administrator; `:workgroup=NAME` is the
    /// workgroup the user's statements run in unless their client names another.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut hashes = BTreeMap::new();
        let mut admins = BTreeSet::new();
        let mut workgroups = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, rest)) = line.split_once(':') else {
                return Err(format!("line {}: expected `user:password-hash`", number + 1));
            };
            let mut fields = rest.split(':');
            let hash = fields.next().unwrap_or_default().trim();
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("line {}: empty user name", number + 1));
            }
            PasswordHash::new(hash).map_err(|e| {
                format!(
                    "line {}: the hash of {name} is not a PHC string ({e}); make one with `glaux hash-password`",
                    number + 1
                )
            })?;
            for field in fields.map(str::trim) {
                if field == "admin" {
                    admins.insert(name.to_string());
                } else if let Some(workgroup) = field.strip_prefix("workgroup=").filter(|w| !w.is_empty()) {
                    workgroups.insert(name.to_string(), workgroup.to_string());
                } else {
                    return Err(format!(
                        "line {}: unknown attribute '{field}' for {name} (`admin` or `workgroup=NAME`)",
                        number + 1
                    ));
                }
            }
            hashes.insert(name.to_string(), hash.to_string());
        }
        if hashes.is_empty() {
            return Err("no users in the file".into());
        }
        let slots = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Self {
            hashes,
            admins,
            workgroups,
            tokens: Mutex::default(),
            verified: Mutex::default(),
            failures: Mutex::default(),
            hashing: Arc::new(Semaphore::new(slots)),
        })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.hashes.keys().map(String::as_str)
    }

    /// The users the users file names administrators.
    pub fn admins(&self) -> &BTreeSet<String> {
        &self.admins
    }

    /// The users the users file gives a default workgroup, and theirs.
    pub fn default_workgroups(&self) -> &BTreeMap<String, String> {
        &self.workgroups
    }

    /// True if the users file names `user` an administrator.
    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.contains(user)
    }

    /// Checks a password, off the async workers, a bounded number at a time; an unknown user
    /// costs the same as a known one. Failures are counted per client address, and an address
    /// with too many is refused without a check until its window ends.
    pub async fn verify(&self, user: &str, password: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        if let Some(address) = client {
            self.refuse_if_failing(address)?;
        }
        let permit = tokio::time::timeout(HASHING_WAIT, Arc::clone(&self.hashing).acquire_owned())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        let known = self.hashes.get(user).cloned();
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let hash = known.as_deref().unwrap_or(DUMMY_HASH);
            let verified = PasswordHash::new(hash)
                .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok());
            verified && known.is_some()
        })
        .await
        .unwrap_or(false);
        if matches {
            if let Some(address) = client {
                lock(&self.failures).remove(&address);
            }
            Ok(())
        } else {
            if let Some(address) = client {
                self.count_failure(address);
            }
            Err(AuthError::Wrong)
        }
    }

    fn refuse_if_failing(&self, address: IpAddr) -> Result<(), AuthError> {
        let failures = lock(&self.failures);
        match failures.get(&address) {
            Some(f) if f.count >= MAX_FAILED_LOGINS && f.since.elapsed() < FAILURE_WINDOW => {
                Err(AuthError::TooManyFailures { retry_after_secs: (FAILURE_WINDOW - f.since.elapsed()).as_secs() + 1 })
            }
            _ => Ok(()),
        }
    }

    fn count_failure(&self, address: IpAddr) {
        let mut failures = lock(&self.failures);
        let now = Instant::now();
        if failures.len() >= MAX_FAILING_ADDRESSES {
            failures.retain(|_, f| now.duration_since(f.since) < FAILURE_WINDOW);
            if failures.len() >= MAX_FAILING_ADDRESSES
                && let Some(oldest) = failures.iter().min_by_key(|(_, f)| f.since).map(|(a, _)| *a)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(address).or_insert(Failures { count: 0, since: now });
        if now.duration_since(entry.since) >= FAILURE_WINDOW {
            *entry = Failures { count: 0, since: now };
        }
        entry.count += 1;
        if entry.count == MAX_FAILED_LOGINS {
            tracing::warn!(target: "glaux::audit", client = %address, "too many failed logins: refusing this address for a while");
        }
    }

    /// Checks Basic credentials and issues a token for them.
    pub async fn handshake(
        &self,
        authorization: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(String, String), AuthError> {
        let (user, password) = authorization.and_then(basic_credentials).ok_or(AuthError::Missing)?;
        self.verify(&user, &password, client).await?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut tokens = lock(&self.tokens);
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
    pub async fn authorize(&self, authorization: Option<&str>, client: Option<IpAddr>) -> Result<String, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        if let Some(token) = strip_scheme(value, "Bearer") {
            let tokens = lock(&self.tokens);
            return match tokens.get(token.trim()) {
                Some((user, issued)) if issued.elapsed() < TOKEN_LIFETIME => Ok(user.clone()),
                _ => Err(AuthError::UnknownToken),
            };
        }
        let (user, password) = basic_credentials(value).ok_or(AuthError::Scheme)?;
        let digest = credential_digest(&user, &password);
        if let Some((known, verified)) = lock(&self.verified).get(&digest)
            && verified.elapsed() < VERIFIED_LIFETIME
        {
            return Ok(known.clone());
        }
        self.verify(&user, &password, client).await?;
        let mut verified = lock(&self.verified);
        let now = Instant::now();
        verified.retain(|_, (_, at)| now.duration_since(*at) < VERIFIED_LIFETIME);
        if verified.len() < MAX_TOKENS {
            verified.insert(digest, (user.clone(), now));
        }
        Ok(user)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// SHA-256 of the user and password, so the verified-credentials cache holds no password.
fn credential_digest(user: &str, password: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(user.as_bytes());
    context.update(&[0]);
    context.update(password.as_bytes());
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// `(user, password)` from `Basic base64(user:password)`, padded or not: Go's Flight client
/// (under ADBC's driver) sends it without padding.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const EITHER: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let encoded = strip_scheme(value, "Basic")?;
    let decoded = EITHER.decode(encoded.trim()).ok()?;
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

/// The user a call proved (in the request's extensions once [`RequireClientAuth`] let it in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser(pub String);

/// The client's IP address, from what tonic records of the connection (plain or TLS).
pub fn client_address(extensions: &http::Extensions) -> Option<IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let tcp = extensions
        .get::<TcpConnectInfo>()
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref));
    tcp.and_then(TcpConnectInfo::remote_addr).map(|a| a.ip())
}

/// Wraps the Flight SQL service: every call is counted against its client address's rate, and
/// with users configured every call but `Handshake` must carry a valid `authorization`; the user
/// it proves goes into the request's extensions ([`AuthenticatedUser`]).
#[derive(Clone)]
pub struct ClientGuard<S> {
    pub inner: S,
    pub users: Option<Arc<Users>>,
    pub rates: Arc<RateLimiter>,
    pub metrics: Arc<crate::metrics::SchedulerMetrics>,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for ClientGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for ClientGuard<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let handshake = request.uri().path().ends_with("/Handshake");
        let authorization =
            request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let client = client_address(request.extensions());
        if let Some(address) = client
            && let Err(error) = self.rates.admit(address)
        {
            let response = tonic::Status::from(error).into_http();
            return Box::pin(async move { Ok(response) });
        }
        let (users, metrics) = (self.users.clone(), Arc::clone(&self.metrics));
        // The inner service is ready now; the clone takes its place for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if let Some(users) = users.filter(|_| !handshake) {
                match users.authorize(authorization.as_deref(), client).await {
                    Ok(user) => {
                        request.extensions_mut().insert(AuthenticatedUser(user));
                    }
                    Err(error) => {
                        if error == AuthError::Wrong {
                            metrics.failed_login("flight_sql");
                        }
                        return Ok(tonic::Status::from(error).into_http());
                    }
                }
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[tokio::test]
    async fn passwords_are_checked_against_their_hashes_and_tokens_stand_for_them() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let users = Users::parse(&format!("# analysts\nana:{hash}\nroot:{hash}:admin\n")).expect("parse");
        assert!(users.is_admin("root") && !users.is_admin("ana"));
        assert_eq!(users.handshake(Some(&basic("ana", "wrong")), None).await.unwrap_err(), AuthError::Wrong);
        assert_eq!(users.handshake(Some(&basic("bob", "s3cret")), None).await.unwrap_err(), AuthError::Wrong);
        assert_eq!(users.handshake(None, None).await.unwrap_err(), AuthError::Missing);
        let (user, token) = users.handshake(Some(&basic("ana", "s3cret")), None).await.expect("handshake");
        assert_eq!(user, "ana");
        assert_eq!(users.authorize(Some(&format!("Bearer {token}")), None).await.expect("token"), "ana");
        assert_eq!(users.authorize(Some(&basic("ana", "s3cret")), None).await.expect("basic"), "ana");
        // Unpadded base64, as Go's Flight client (ADBC's driver) sends it: "ana:s3cret!" is 11 bytes.
        let unpadded = format!("Basic {}", base64::engine::general_purpose::STANDARD_NO_PAD.encode("ana:s3cret!"));
        assert_eq!(users.handshake(Some(&unpadded), None).await.unwrap_err(), AuthError::Wrong);
        let unpadded = format!("Basic {}", base64::engine::general_purpose::STANDARD_NO_PAD.encode("ana:s3cret"));
        assert_eq!(users.handshake(Some(&unpadded), None).await.expect("unpadded").0, "ana");
        assert_eq!(users.authorize(Some("Bearer 00"), None).await.unwrap_err(), AuthError::UnknownToken);
        assert!(users.authorize(None, None).await.is_err());
        assert!(Users::parse("ana:plaintext").is_err(), "a password in clear is refused");
        assert!(Users::parse(&format!("ana:{hash}:owner")).is_err(), "an unknown role is refused");
        let defaults =
            Users::parse(&format!("ana:{hash}:workgroup=bi\nroot:{hash}:admin:workgroup=ops")).expect("parse");
        assert_eq!(defaults.default_workgroups().get("ana").map(String::as_str), Some("bi"));
        assert!(defaults.is_admin("root") && defaults.default_workgroups()["root"] == "ops");
        assert!(Users::parse(&format!("ana:{hash}:workgroup=")).is_err(), "a workgroup needs a name");
        assert!(Users::parse("# nobody\n").is_err());

        // Debug shows names, never hashes, tokens or digests.
        let debug = format!("{users:?}");
        assert!(debug.contains("ana") && !debug.contains(&hash) && !debug.contains(&token), "{debug}");
        assert!(!debug.contains("argon2"), "{debug}");
    }

    #[tokio::test]
    async fn an_address_with_too_many_failed_logins_is_refused_for_a_while() {
        let users = Users::parse(&format!("ana:{}\n", hash_password("s3cret").expect("hash"))).expect("parse");
        let attacker: IpAddr = "192.0.2.7".parse().expect("address");
        let other: IpAddr = "192.0.2.8".parse().expect("address");
        for _ in 0..MAX_FAILED_LOGINS {
            assert_eq!(users.verify("ana", "guess", Some(attacker)).await.unwrap_err(), AuthError::Wrong);
        }
        // Now even the right password is refused from that address, without hashing anything ...
        let started = Instant::now();
        let error = users.verify("ana", "s3cret", Some(attacker)).await.unwrap_err();
        assert!(matches!(error, AuthError::TooManyFailures { retry_after_secs } if retry_after_secs > 0), "{error}");
        assert!(started.elapsed() < Duration::from_millis(50), "{:?}", started.elapsed());
        // ... while other addresses log in.
        users.verify("ana", "s3cret", Some(other)).await.expect("another address");
    }
}
