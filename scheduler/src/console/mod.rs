//! The web console at `/ui` on the scheduler's HTTP port: a page and its script served from the
//! binary (`console.html`, `console.js`, `console.css`; nothing from elsewhere) and the JSON API
//! they call under `/ui/api/`.
//!
//! Users log in with their Glaux password (checked as the other doors check it, failed logins
//! counted); a login makes a session whose random id travels in a cookie that is `HttpOnly`,
//! `SameSite=Strict`, scoped to `/ui` (and `Secure` over TLS). Every API call but the login also
//! needs the session's CSRF token in `x-glaux-csrf`, which only the page (same origin) can read,
//! so no other site can act in a user's name. Statements run as the session's user through the
//! engine, so grants, workgroups, limits, the history and the audit log apply as on every door
//! (the door is `console`); the history and catalog pages are statements too.

mod api;
mod runs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};

use crate::client_auth::Users;
use crate::cluster::ClusterState;
use crate::engine::QueryEngine;

pub(crate) use runs::Runs;

/// How long a session lasts after its login.
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most (logins beyond it are refused until some expire).
const MAX_SESSIONS: usize = 10_000;
const COOKIE: &str = "glaux_console";

/// A logged-in user.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// `None`: the implicit administrator of a scheduler without users.
    pub user: Option<String>,
    pub csrf: String,
    expires: Instant,
}

/// What the console serves with.
pub(crate) struct Console {
    pub engine: Arc<QueryEngine>,
    pub users: Option<Arc<Users>>,
    pub cluster: Arc<ClusterState>,
    /// Cookies are `Secure` when the port speaks TLS.
    pub tls: bool,
    sessions: Mutex<HashMap<String, Session>>,
    pub runs: Runs,
}

impl Console {
    pub(crate) fn new(
        engine: Arc<QueryEngine>,
        users: Option<Arc<Users>>,
        cluster: Arc<ClusterState>,
        tls: bool,
    ) -> Self {
        Self { engine, users, cluster, tls, sessions: Mutex::default(), runs: Runs::default() }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `user`: (its cookie's value, the session), or `None` when full.
    fn open(&self, user: Option<String>) -> Option<(String, Session)> {
        let mut sessions = self.sessions();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            return None;
        }
        let session = Session { user, csrf: random_token(), expires: now + SESSION_LIFETIME };
        let id = random_token();
        sessions.insert(id.clone(), session.clone());
        Some((id, session))
    }

    fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.sessions().remove(&id);
        }
    }

    /// The session a request's cookie names, if it lives.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let sessions = self.sessions();
        sessions.get(&id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// The session of a request that carries its cookie and its CSRF token, or the refusal.
    fn authorized(&self, headers: &HeaderMap) -> Result<Session, Refused> {
        let session = self.session(headers).ok_or_else(|| refusal(StatusCode::UNAUTHORIZED, "log in first"))?;
        let sent = headers.get("x-glaux-csrf").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !same(sent.as_bytes(), session.csrf.as_bytes()) {
            return Err(refusal(StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
        }
        Ok(session)
    }

    fn set_cookie(&self, id: &str) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_LIFETIME.as_secs())
    }
}

/// 32 random bytes, hex.
fn random_token() -> String {
    rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal bytes, compared in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The console cookie's value.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(String::from))
}

/// A request the API refuses: its status and why.
pub(crate) struct Refused {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        json_reply(self.status, &serde_json::json!({ "error": self.message }))
    }
}

pub(crate) fn refusal(status: StatusCode, message: &str) -> Refused {
    Refused { status, message: message.to_string() }
}

pub(crate) fn json_reply(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, [("content-type", "application/json"), ("cache-control", "no-store")], body.to_string()).into_response()
}

/// The page's files: served from the binary with a policy that lets them load nothing else.
fn file(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        ("content-type", content_type),
        ("content-security-policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ];
    (headers, body).into_response()
}

pub(crate) fn router(console: Console) -> Router {
    Router::new()
        .route("/ui", get(|| async { file("text/html; charset=utf-8", include_str!("console.html")) }))
        .route("/ui/", get(|| async { file("text/html; charset=utf-8", include_str!("console.html")) }))
        .route("/ui/console.js", get(|| async { file("text/javascript; charset=utf-8", include_str!("console.js")) }))
        .route("/ui/console.css", get(|| async { file("text/css; charset=utf-8", include_str!("console.css")) }))
        .route("/ui/api/login", post(api::login))
        .route("/ui/api/logout", post(api::logout))
        .route("/ui/api/session", get(api::session))
        .route("/ui/api/statements", post(api::start))
        .route("/ui/api/statements/{id}", get(api::statement))
        .route("/ui/api/statements/{id}/cancel", post(api::cancel))
        .route("/ui/api/history", get(api::history))
        .route("/ui/api/queries/{id}", get(api::query))
        .route("/ui/api/executors", get(api::executors))
        .route("/ui/api/catalog", get(api::databases))
        .route("/ui/api/catalog/{database}", get(api::tables))
        .route("/ui/api/catalog/{database}/{table}", get(api::table))
        .with_state(Arc::new(console))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_tokens_compare_whole() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, "a=1; glaux_console=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers).as_deref(), Some("abc"));
        headers.insert(http::header::COOKIE, "glaux_consoleX=abc".parse().unwrap());
        assert_eq!(cookie(&headers), None);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert_eq!(random_token().len(), 64);
        assert_ne!(random_token(), random_token());
    }
}
