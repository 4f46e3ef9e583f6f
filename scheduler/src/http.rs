//! The scheduler's HTTP port (`--http-addr`): Athena's API (`athena/`) and the operators' routes
//! (`ops.rs`: `/metrics`, `/health`, `/ready`) on one router, served plain or over TLS with the
//! certificate of the other doors.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::ConnectionGate;

/// How long a client may take to send a request's headers (or finish a TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's address, put on each request by the connection that read it.
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// Serves `router` on `listener` until `stop`; over TLS when `tls` is set. Connections beyond
/// the gate's limit are closed at once.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    gate: ConnectionGate,
    stop: CancellationToken,
) {
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
