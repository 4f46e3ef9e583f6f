//! Athena's API over HTTP (`--http-addr`): the AWS JSON 1.1 protocol (`POST /`,
//! `X-Amz-Target: AmazonAthena.<Action>`, Athena's request and response shapes and error JSON), so
//! boto3, PyAthena and the tools built on them run statements on Glaux by setting an endpoint URL.
//!
//! Served so far: the query executions (`executions.rs`: `StartQueryExecution` runs the
//! statement in the background and writes its result as CSV to the output location the request
//! names, `results.rs`; `GetQueryExecution`, `BatchGetQueryExecution`, `GetQueryResults` paging
//! that file, `StopQueryExecution`, `ListQueryExecutions`). Every other action of Athena's API is
//! refused by name, and anything else is `UnknownOperationException`.
//!
//! Requests must be signed (AWS Signature Version 4); without `--users` the door serves loopback
//! only and takes any access key as the implicit admin, as the other doors take any user name.
//! With users the door does not start yet: it will verify signatures against access keys Glaux
//! issues to them.

mod actions;
mod executions;
mod results;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub(crate) use executions::Executions;

use crate::limits::ConnectionGate;

/// Statement kinds whose one-row result is the rows they wrote (Athena's `UpdateCount`).
const WRITES: [&str; 6] = ["insert", "create_table_as", "update", "delete", "merge", "unload"];

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP door serves with.
pub(crate) struct AthenaDoor {
    pub executions: Arc<Executions>,
}

/// The client's address, put on each request by the connection that read it.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

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

    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }
}

impl From<crate::error::SchedulerError> for ApiError {
    fn from(error: crate::error::SchedulerError) -> Self {
        Self::invalid(error.to_string())
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

fn router(door: Arc<AthenaDoor>) -> Router {
    Router::new().route("/", post(handle)).with_state(door)
}

/// Serves the door on `listener` until `stop`; over TLS when `tls` is set. Connections beyond
/// the gate's limit are closed at once.
pub(crate) async fn serve(
    listener: TcpListener,
    door: AthenaDoor,
    tls: Option<tokio_rustls::TlsAcceptor>,
    gate: ConnectionGate,
    stop: CancellationToken,
) {
    let router = router(Arc::new(door));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        while connections.try_join_next().is_some() {}
        let Ok((stream, peer)) = accepted else { continue };
        let Some(permit) = gate.admit() else { continue };
        let (router, tls) = (router.clone(), tls.clone());
        connections.spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(stream, router, peer).await,
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        connection(stream, router, peer).await;
                    }
                }
            }
        });
    }
}

async fn connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: I, router: Router, peer: SocketAddr) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(Peer(peer));
        router.clone().oneshot(request)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn handle(
    State(door): State<Arc<AthenaDoor>>,
    peer: Option<axum::Extension<Peer>>,
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
    let key = access_key(headers)?;
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "SerializationException", e.to_string()))?
    };
    if !request.is_object() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "SerializationException", "the request is not an object"));
    }
    tracing::debug!(action, access_key = key, "Athena API request");
    actions::dispatch(door, peer, action, &request).await
}

/// The access key id a request is signed with (`Authorization: AWS4-HMAC-SHA256
/// Credential=<key>/<date>/<region>/athena/aws4_request, ...`).
fn access_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing =
        || ApiError::new(StatusCode::FORBIDDEN, "MissingAuthenticationTokenException", "Missing Authentication Token");
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(missing)?;
    let credential = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .and_then(|rest| rest.split(',').map(str::trim).find_map(|part| part.strip_prefix("Credential=")))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential' (AWS Signature Version 4)",
            )
        })?;
    Ok(credential.split('/').next().unwrap_or_default())
}
