//! The PostgreSQL wire protocol front door: the bridge for JDBC, ODBC and `psql`.
//!
//! `pgwire` speaks the protocol (startup, simple and extended queries); every statement runs
//! through the same `QueryEngine` as Flight SQL, so the catalog, Athena DDL, distributed execution
//! and panic containment are the same. What PostgreSQL clients send that is not SQL for a lake is
//! answered here (`queries.rs`): `SET`, `SHOW <setting>`, `BEGIN`/`COMMIT`/`ROLLBACK` (Glaux has
//! no transactions; they are accepted so drivers that wrap statements in them work), and catalog
//! queries, rewritten (`rewrite.rs`) and answered from `datafusion-pg-catalog`'s `pg_catalog`
//! tables. Results are streamed and encoded by `arrow-pg` (text or binary, as the client asks).
//! `startup.rs` authenticates (a cleartext password checked against the Argon2id hash, over TLS
//! when it is configured, and then only over TLS; without users, anyone on the loopback port) and
//! chooses the connection's database, which lives in pgwire's per-connection metadata (`USE`
//! changes it).

mod queries;
mod rewrite;
mod startup;

use std::sync::Arc;

use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use tokio::net::TcpListener;

use crate::client_auth::Users;
use crate::client_session::ClientSession;
use crate::engine::QueryEngine;
use crate::error::SchedulerError;
use crate::limits::{ConnectionGate, RateLimiter};
use queries::Queries;
use startup::Startup;

/// The version clients see: a PostgreSQL they know how to talk to, and what really answers.
const SERVER_VERSION: &str = "14.0 (Glaux)";
const SERVER_VERSION_NUMBER: &str = "14.0";

/// Where a connection keeps the database its statements resolve against (`USE` changes it).
const DATABASE_KEY: &str = "glaux.database";
/// Where a connection keeps the user its password proved (absent without configured users:
/// the `user` a client names is then only a name, not an identity).
const USER_KEY: &str = "glaux.user";
/// The database the connection started in (`RESET ALL` and `DISCARD ALL` return to it).
const STARTUP_DATABASE_KEY: &str = "glaux.startup_database";

/// What the PostgreSQL door needs: the engine, the users (if any), TLS (if configured), and its
/// limits.
pub struct PostgresDoor {
    pub engine: Arc<QueryEngine>,
    pub users: Option<Arc<Users>>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub connections: ConnectionGate,
    pub rates: Arc<RateLimiter>,
}

/// Serves PostgreSQL clients on `listener` until the task is dropped; with TLS, only over TLS.
/// A connection beyond the door's limit, or from an address over its rate, is told so
/// (SQLSTATE 53300) and closed.
pub async fn serve(listener: TcpListener, door: PostgresDoor) {
    let PostgresDoor { engine, users, tls, connections: gate, rates } = door;
    let handlers = Arc::new(Handlers { engine, users, tls_required: tls.is_some(), rates: Arc::clone(&rates) });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (mut socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("PostgreSQL port: accept failed: {e}");
                continue;
            }
        };
        // Finished connections leave the set as new ones arrive.
        while connections.try_join_next().is_some() {}
        let refusal = match (gate.admit(), rates.admit(peer.ip())) {
            (Some(permit), Ok(())) => Ok(permit),
            (None, _) => Err(format!("sorry, too many clients already (at most {})", gate.max())),
            (Some(_), Err(error)) => Err(error.to_string()),
        };
        let handlers = Arc::clone(&handlers);
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = match refusal {
                Ok(permit) => permit,
                Err(message) => {
                    tracing::warn!(%peer, "PostgreSQL connection refused: {message}");
                    refuse(&mut socket, &message).await;
                    return;
                }
            };
            // Garbage, a vanished client or a protocol error ends this connection only.
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, "PostgreSQL connection ended: {e}");
            }
        });
    }
}

/// Tells a client it may not connect now (an ErrorResponse, SQLSTATE 53300, as PostgreSQL sends
/// when it has too many clients) and closes the connection. A client that asks for TLS first is
/// told "no" so that it sends its startup message in the clear and reads the error.
async fn refuse(socket: &mut tokio::net::TcpStream, message: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// SSLRequest and GSSENCRequest: a length of 8 and these codes.
    const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];
    let exchange = async {
        let mut first = [0u8; 8];
        socket.read_exact(&mut first).await?;
        let code = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
        if first[..4] == 8u32.to_be_bytes() && ENCRYPTION_REQUESTS.contains(&code) {
            socket.write_all(b"N").await?;
            // The startup message that follows; its content does not matter.
            let mut length = [0u8; 4];
            socket.read_exact(&mut length).await?;
            let length = u32::from_be_bytes(length).clamp(4, 10_000) as usize - 4;
            socket.read_exact(&mut vec![0u8; length]).await?;
        }
        let mut fields = Vec::new();
        for (code, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "53300"), (b'M', message)] {
            fields.push(code);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut frame = vec![b'E'];
        frame.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        frame.extend_from_slice(&fields);
        socket.write_all(&frame).await?;
        socket.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), exchange).await;
}

struct Handlers {
    engine: Arc<QueryEngine>,
    users: Option<Arc<Users>>,
    tls_required: bool,
    rates: Arc<RateLimiter>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Queries::new(Arc::clone(&self.engine), Arc::clone(&self.rates)))
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Queries::new(Arc::clone(&self.engine), Arc::clone(&self.rates)))
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup {
            users: self.users.clone(),
            engine: Arc::clone(&self.engine),
            tls_required: self.tls_required,
        })
    }
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = SERVER_VERSION.to_string();
    parameters.search_path = glaux_catalog::DEFAULT_DATABASE.to_string();
    parameters
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

/// An engine error as PostgreSQL clients get it: the SQLSTATE of its kind, and its message.
fn engine_error(error: SchedulerError) -> PgWireError {
    user_error(error.kind().sqlstate(), error.to_string())
}

/// The session a connection's statements run in: its database (see `startup.rs`) and `values`
/// bound to its placeholders.
fn session_of<C: ClientInfo>(client: &C, values: Vec<datafusion::common::ScalarValue>) -> ClientSession {
    let session = ClientSession::new(client.metadata().get(DATABASE_KEY).map(String::as_str), values)
        .for_user(client.metadata().get(USER_KEY).cloned())
        .sent_by(crate::audit::Door::Postgres, Some(client.socket_addr().ip()));
    ClientSession {
        workgroup: startup_setting(client.metadata(), "workgroup").unwrap_or_default(),
        retry_policy: startup_setting(client.metadata(), "retry_policy").unwrap_or_default(),
        ..session
    }
}

/// A setting a connection made at startup (`workgroup`, `retry_policy`): a parameter of that
/// name, or in `options` (what libpq's `PGOPTIONS` and JDBC's `options` send) `-c NAME=VALUE`.
fn startup_setting(metadata: &std::collections::HashMap<String, String>, name: &str) -> Option<String> {
    if let Some(value) = metadata.get(name) {
        return Some(value.clone());
    }
    let options = metadata.get("options")?;
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let setting = match word {
            "-c" => words.next()?,
            other => other.strip_prefix("-c").or_else(|| other.strip_prefix("--")).unwrap_or(other),
        };
        if let Some(value) = setting.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')) {
            return Some(value.to_string());
        }
    }
    None
}
