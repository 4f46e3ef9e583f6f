//! Athena's API over HTTP (`--http-addr`): the AWS JSON 1.1 protocol (`POST /`,
//! `X-Amz-Target: AmazonAthena.<Action>`, Athena's request and response shapes and error JSON),
//! and the REST-JSON protocol botocore uses for Athena from 1.44.18 (`rest.rs`: the same operations
//! as methods on paths), so boto3, PyAthena and the tools built on them run statements on Glaux by
//! setting an endpoint URL.
//!
//! Served so far: the query executions (`executions.rs`: `StartQueryExecution` runs the
//! statement in the background and writes its result as CSV to the output location the request
//! names, `results.rs`; `GetQueryExecution`, `BatchGetQueryExecution`, `GetQueryResults` paging
//! that file, `StopQueryExecution`, `ListQueryExecutions`) and the catalog's metadata
//! (`metadata.rs`). Every other action of Athena's API is refused by name, and anything else is
//! `UnknownOperationException`.
//!
//! Requests must be signed (AWS Signature Version 4, `sigv4.rs`): with `--users`, by an access key
//! Glaux issued to one of them (`glaux access-key create USER`), checked against its secret in
//! the catalog, and the statement runs as that user under their grants; without users the door
//! serves loopback only and takes any access key as the implicit admin, as the other doors take
//! any user name.

mod actions;
mod described;
mod executions;
mod metadata;
mod rest;
mod results;
mod saved;
mod sigv4;
mod workgroups;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

pub(crate) use executions::Executions;

use glaux_catalog::Catalog;

use crate::error::SchedulerError;

/// Statement kinds whose one-row result is the rows they wrote (Athena's `UpdateCount`).
const WRITES: [&str; 6] = ["insert", "create_table_as", "update", "delete", "merge", "unload"];

/// What the HTTP door serves with.
pub(crate) struct AthenaDoor {
    pub executions: Arc<Executions>,
    pub engine: Arc<crate::engine::QueryEngine>,
    /// With users, every request must be signed with one of their access keys.
    pub users: Option<Arc<crate::client_auth::Users>>,
}

/// An Athena error: its type (`InvalidRequestException`, ...), HTTP status and message.
pub(super) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind: "InvalidRequestException", message: message.into() }
    }

    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }
}

impl From<crate::error::SchedulerError> for ApiError {
    fn from(error: crate::error::SchedulerError) -> Self {
        Self::invalid(error.to_string())
    }
}

impl From<glaux_catalog::CatalogError> for ApiError {
    fn from(error: glaux_catalog::CatalogError) -> Self {
        crate::error::SchedulerError::from(error).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "__type": self.kind, "Message": self.message });
        if self.kind == "InvalidRequestException" {
            body["AthenaErrorCode"] = json!("INVALID_INPUT");
        }
        reply(self.status, &body)
    }
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let id = format!("{:032x}", rand::random::<u128>());
    (status, [("content-type", "application/x-amz-json-1.1"), ("x-amzn-requestid", id.as_str())], body.to_string())
        .into_response()
}

/// Athena's API: `POST /` (JSON 1.1), and each REST-JSON operation's path.
pub(crate) fn router(door: AthenaDoor) -> Router {
    let mut router = Router::new().route("/", post(handle));
    let routed: std::collections::BTreeSet<String> =
        rest::ROUTES.iter().map(|(_, path, _)| rest::routed(path)).collect();
    for path in routed {
        router = router.route(&path, any(handle_rest));
    }
    router.with_state(Arc::new(door))
}

async fn handle_rest(
    State(door): State<Arc<AthenaDoor>>,
    peer: Option<axum::Extension<crate::http::Peer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer.map(|p| p.0.0);
    let signed = uri.path_and_query().map_or("/", |p| p.as_str());
    let answered = async {
        let auth = sigv4::authorization(&headers)?;
        let user = authenticated(&door, &auth, &headers, method.as_str(), signed, &body)?;
        let (action, request) = rest::request(method.as_str(), uri.path(), uri.query(), &body)?;
        tracing::debug!(action, access_key = auth.key, "Athena API request (REST)");
        actions::dispatch(&door, peer, user, action, &request).await
    };
    match answered.await {
        Ok(value) => reply(StatusCode::OK, &value),
        Err(error) => error.into_response(),
    }
}

async fn handle(
    State(door): State<Arc<AthenaDoor>>,
    peer: Option<axum::Extension<crate::http::Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer.map(|p| p.0.0);
    match answer(&door, peer, &headers, &body).await {
        Ok(value) => reply(StatusCode::OK, &value),
        Err(error) => error.into_response(),
    }
}

async fn answer(
    door: &AthenaDoor,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(action) = target.strip_prefix("AmazonAthena.") else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "UnknownOperationException", "unknown operation"));
    };
    let auth = sigv4::authorization(headers)?;
    let user = authenticated(door, &auth, headers, "POST", "/", body)?;
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "SerializationException", e.to_string()))?
    };
    if !request.is_object() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "SerializationException", "the request is not an object"));
    }
    tracing::debug!(action, access_key = auth.key, "Athena API request");
    actions::dispatch(door, peer, user, action, &request).await
}

/// With users, the one whose access key signed the request (`method` on `path_and_query`);
/// without, none.
fn authenticated(
    door: &AthenaDoor,
    auth: &sigv4::Authorization<'_>,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<Option<String>, ApiError> {
    let Some(users) = &door.users else { return Ok(None) };
    let user = signer(door, users, auth, headers, method, path_and_query, body).inspect_err(|_| {
        door.engine.metrics().failed_login("athena");
    })?;
    Ok(Some(user))
}

/// The user whose access key signed the request, once its signature is checked.
fn signer(
    door: &AthenaDoor,
    users: &crate::client_auth::Users,
    auth: &sigv4::Authorization<'_>,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<String, ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    let key = door.engine.access_key(auth.key).map_err(ApiError::from)?.ok_or_else(unknown)?;
    if !users.names().any(|name| name == key.user) {
        return Err(unknown());
    }
    sigv4::verify(auth, &key.secret, headers, method, path_and_query, body)?;
    Ok(key.user)
}

/// Issues an access key for `user` in the catalog at `catalog` (`glaux access-key create`).
pub fn issue_access_key(catalog: &std::path::Path, user: &str) -> Result<glaux_catalog::AccessKey, SchedulerError> {
    if user.is_empty() {
        return Err(SchedulerError::Config("an access key needs a user".into()));
    }
    const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pick = |chars: &[u8], n: usize| -> String {
        (0..n).map(|_| char::from(chars[rand::random_range(0..chars.len())])).collect()
    };
    let key = glaux_catalog::AccessKey {
        id: format!("GLAK{}", pick(ID_CHARS, 16)),
        user: user.to_string(),
        secret: pick(SECRET_CHARS, 40),
    };
    glaux_catalog::SqliteCatalog::open(catalog)?.create_access_key(&key)?;
    Ok(key)
}

/// Revokes an access key (`glaux access-key delete`); whether there was one.
pub fn revoke_access_key(catalog: &std::path::Path, id: &str) -> Result<bool, SchedulerError> {
    Ok(glaux_catalog::SqliteCatalog::open(catalog)?.delete_access_key(id)?)
}
