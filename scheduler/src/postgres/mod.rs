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
use queries::Queries;
use startup::Startup;

/// The version clients see: a PostgreSQL they know how to talk to, and what really answers.
const SERVER_VERSION: &str = "14.0 (Glaux)";
const SERVER_VERSION_NUMBER: &str = "14.0";

/// Where a connection keeps the database its statements resolve against (`USE` changes it).
const DATABASE_KEY: &str = "glaux.database";

/// Serves PostgreSQL clients on `listener` until the task is dropped; with `tls`, only over TLS.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    users: Option<Arc<Users>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let handlers = Arc::new(Handlers { engine, users, tls_required: tls.is_some() });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("PostgreSQL port: accept failed: {e}");
                continue;
            }
        };
        // Finished connections leave the set as new ones arrive.
        while connections.try_join_next().is_some() {}
        let handlers = Arc::clone(&handlers);
        let tls = tls.clone();
        connections.spawn(async move {
            // Garbage, a vanished client or a protocol error ends this connection only.
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, "PostgreSQL connection ended: {e}");
            }
        });
    }
}

struct Handlers {
    engine: Arc<QueryEngine>,
    users: Option<Arc<Users>>,
    tls_required: bool,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Queries::new(Arc::clone(&self.engine)))
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Queries::new(Arc::clone(&self.engine)))
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
    ClientSession::new(client.metadata().get(DATABASE_KEY).map(String::as_str), values)
}
