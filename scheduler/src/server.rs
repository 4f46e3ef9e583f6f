//! `Scheduler`: binds one port for Flight SQL clients and for executors (or, with TLS, a TLS port
//! for clients and a port of their own for executors), and runs the background work (dropping
//! silent executors, cancelling finished queries' tasks).

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use glaux_proto::generated::scheduler_cluster_server::SchedulerClusterServer;
use glaux_proto::{ClusterAuth, ClusterChannels, MAX_MESSAGE_BYTES, TaskSigner};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::background::Background;
use crate::client_auth::ClientGuard;
use crate::cluster::{ClusterService, ClusterState};
use crate::config::SchedulerConfig;
use crate::engine::{Admins, QueryEngine};
use crate::error::SchedulerError;
use crate::flight_sql::FlightSqlFrontDoor;
use crate::history::History;
use crate::limits::{ConnectionGate, RateLimiter, StatementGate, gated};
use crate::metrics::{Sampled, SchedulerMetrics};
use crate::ops::Ops;
use crate::query::{QueryRunner, cancel_abandoned};
use crate::session::{open_lake, scheduler_session};

/// HTTP/2 pings on client connections (Flight SQL): gentler than between members, as a client may
/// sit across a slow link.
const CLIENT_KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(20);
const CLIENT_KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A running scheduler. Dropping it (or [`Scheduler::shutdown`]) stops serving.
pub struct Scheduler {
    addr: SocketAddr,
    cluster_addr: SocketAddr,
    postgres_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    cluster: Arc<ClusterState>,
    signer: Arc<TaskSigner>,
    engine: Arc<QueryEngine>,
    shutdown: CancellationToken,
    running: JoinSet<()>,
}

impl Scheduler {
    pub async fn start(config: SchedulerConfig) -> Result<Self, SchedulerError> {
        if let Some(postgres) = config.postgres
            && config.users.is_none()
            && !postgres.ip().is_loopback()
        {
            return Err(SchedulerError::Config(format!(
                "refusing to serve PostgreSQL clients on {postgres} without authentication: configure users \
                 (--users FILE) or bind a loopback address"
            )));
        }
        if let Some(http) = config.http
            && config.users.is_none()
            && !http.ip().is_loopback()
        {
            return Err(SchedulerError::Config(format!(
                "refusing to serve Athena's API on {http} without authentication: configure users (--users FILE) \
                 and their access keys (glaux access-key create USER) or bind a loopback address"
            )));
        }
        if config.users.is_none() && !config.bind.ip().is_loopback() {
            return Err(SchedulerError::Config(format!(
                "refusing to serve Flight SQL on {} without client authentication: configure users (--users FILE) \
                 or bind a loopback address",
                config.bind
            )));
        }
        let clients_on_network =
            [Some(config.bind), config.postgres, config.http].iter().flatten().any(|a| !a.ip().is_loopback());
        if config.users.is_some() && config.tls.is_none() && clients_on_network && !config.allow_insecure_auth {
            return Err(SchedulerError::Config(
                "refusing to take passwords in the clear on a non-loopback address: configure TLS (--tls-cert and \
                 --tls-key), bind loopback addresses, or pass --allow-insecure-auth"
                    .into(),
            ));
        }
        let (listener, addr) = bind(config.bind).await?;
        // Executors join on the clients' port, unless either side speaks TLS (the clients' with the
        // clients' certificate, the cluster's with mutual TLS) or they are told otherwise.
        let own_port = config.tls.is_some() || config.cluster_tls.is_some();
        let cluster_listener = match (config.cluster_bind, own_port) {
            (Some(cluster_bind), _) => Some(bind(cluster_bind).await?),
            (None, true) => Some(bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?),
            (None, false) => None,
        };
        let cluster_addr = cluster_listener.as_ref().map_or(addr, |(_, addr)| *addr);
        let postgres_tls = config.tls.as_ref().map(crate::tls::TlsIdentity::acceptor).transpose()?;
        let channels = Arc::new(ClusterChannels::new(config.secret.clone()).with_tls(config.cluster_tls.clone()));
        let cluster = Arc::new(ClusterState::new(config.executor_timeout));
        let (abandoned, cancelled) = mpsc::unbounded_channel();
        let lake = open_lake(&config)?;
        let ctx = scheduler_session(&config, Arc::clone(&channels), Arc::clone(lake.catalog()))?;
        // What writes left when the last scheduler on this catalog died: taken before any new
        // write begins, removed in the background.
        let unfinished = lake.catalog().pending_writes()?;
        crate::write::hide_unfinished(&ctx.state(), &unfinished);
        let recovery = {
            let (state, catalog) = (ctx.state(), Arc::clone(lake.catalog()));
            async move { crate::write::recover(&state, &catalog, unfinished).await }
        };
        let signer = Arc::new(TaskSigner::generate().map_err(|e| SchedulerError::Config(format!("task key: {e}")))?);
        let metrics = Arc::new(SchedulerMetrics::new());
        let listings = ctx.state().config().get_extension::<glaux_storage::ListingCache>();
        let queries = QueryRunner::new(
            Arc::clone(&cluster),
            Arc::clone(&channels),
            abandoned,
            Arc::clone(&signer),
            Arc::clone(&metrics),
            config.compute.clone().unwrap_or_else(glaux_proto::Compute::current),
        );
        let admins = match &config.users {
            Some(users) => Admins::Named(users.admins().clone()),
            None => Admins::Everyone,
        };
        let (history, history_writer) =
            History::open(Arc::clone(lake.catalog()), config.history, Arc::clone(&metrics))?;
        let default_workgroups = config.users.as_ref().map(|u| u.default_workgroups().clone()).unwrap_or_default();
        let gate = StatementGate::new(&config.limits);
        let stopping = gate.stopping().clone();
        let catalog = Arc::clone(lake.catalog());
        let engine = Arc::new(QueryEngine::new(ctx, lake, queries, gate, admins, history, default_workgroups)?);
        let drain_engine = Arc::clone(&engine);
        let postgres = match config.postgres {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let postgres_addr = postgres.as_ref().map(|(_, addr)| *addr);
        let postgres_engine = Arc::clone(&engine);
        let http = match config.http {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let http_addr = http.as_ref().map(|(_, addr)| *addr);
        let executions = Arc::new(crate::athena::Executions::new(Arc::clone(&engine)));
        let http_engine = Arc::clone(&engine);
        let console_engine = Arc::clone(&engine);
        let (background, background_work) = Background::new();
        // Executors serve clients in plain gRPC: a client that connects over TLS reads through here.
        let front_door =
            FlightSqlFrontDoor::new(engine, config.users.clone(), config.tls.is_none().then_some(background));
        let flight_sql = FlightServiceServer::new(front_door)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        match &config.users {
            Some(users) => {
                let names: Vec<&str> = users.names().collect();
                tracing::info!(users = %names.join(", "), "Flight SQL clients must authenticate");
            }
            None => tracing::warn!("no users configured: Flight SQL serves without authentication (loopback only)"),
        }
        let cluster_service = SchedulerClusterServer::new(ClusterService {
            state: Arc::clone(&cluster),
            heartbeat_interval: config.heartbeat_interval,
            task_key: signer.public_key(),
        });

        let shutdown = CancellationToken::new();
        let mut running = JoinSet::new();
        let stop = shutdown.clone();
        let cluster_service = InterceptedService::new(cluster_service, ClusterAuth::verify(config.secret.clone()));
        // A client that vanished without closing its connection (a sleeping laptop, a cut link)
        // is dropped within 40 s, and with it the result stream it was reading.
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(CLIENT_KEEP_ALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(CLIENT_KEEP_ALIVE_TIMEOUT));
        if let Some(tls) = &config.tls {
            builder = builder.tls_config(tls.tonic()).map_err(|e| SchedulerError::Config(format!("TLS: {e}")))?;
        }
        let rates = Arc::new(RateLimiter::new(config.limits.requests_per_second));
        let guarded = ClientGuard {
            inner: flight_sql,
            users: config.users.clone(),
            rates: Arc::clone(&rates),
            metrics: Arc::clone(&metrics),
        };
        // The standard gRPC health service on each gRPC port, unauthenticated as probes are: ""
        // is SERVING while the process serves (readiness, with executors, is `/ready`).
        let (_health, health) = tonic_health::server::health_reporter();
        let router = builder.add_service(health.clone()).add_service(guarded);
        let flight_gate = ConnectionGate::new(config.limits.max_connections);
        let mut gates = vec![("flight_sql", flight_gate.clone())];
        match cluster_listener {
            None => running.spawn(serve(router.add_service(cluster_service), listener, flight_gate, stop)),
            Some((cluster_listener, cluster_addr)) => {
                tracing::info!(%cluster_addr, "executors join on their own port");
                running.spawn(serve(router, listener, flight_gate, stop.clone()));
                let cluster_gate = ConnectionGate::new(config.limits.max_connections);
                let mut cluster_builder = Server::builder()
                    .http2_keepalive_interval(Some(glaux_proto::KEEP_ALIVE_INTERVAL))
                    .http2_keepalive_timeout(Some(glaux_proto::KEEP_ALIVE_TIMEOUT));
                if let Some(tls) = &config.cluster_tls {
                    cluster_builder = cluster_builder
                        .tls_config(tls.server())
                        .map_err(|e| SchedulerError::Config(format!("cluster TLS: {e}")))?;
                }
                let cluster_router = cluster_builder.add_service(health).add_service(cluster_service);
                running.spawn(serve(cluster_router, cluster_listener, cluster_gate, stop))
            }
        };
        if let Some((listener, addr)) = postgres {
            tracing::info!(%addr, tls = postgres_tls.is_some(), "serving PostgreSQL clients");
            let connections = ConnectionGate::new(config.limits.max_connections);
            gates.push(("postgres", connections.clone()));
            let door = crate::postgres::PostgresDoor {
                engine: postgres_engine,
                users: config.users.clone(),
                tls: postgres_tls,
                connections,
                rates,
            };
            running.spawn(crate::postgres::serve(listener, door));
        }
        if let Some((listener, addr)) = http {
            tracing::info!(%addr, tls = config.tls.is_some(), "serving Athena's API over HTTP");
            let tls = config.tls.as_ref().map(crate::tls::TlsIdentity::http_acceptor).transpose()?;
            let door = crate::athena::AthenaDoor { executions, engine: http_engine, users: config.users.clone() };
            let gate = ConnectionGate::new(config.limits.max_connections);
            gates.push(("http", gate.clone()));
            let sampled = Sampled { cluster: Arc::clone(&cluster), gates, listings, channels: Arc::clone(&channels) };
            let ops = Ops { metrics: Arc::clone(&metrics), sampled, catalog, closing: stopping };
            let console = crate::console::Console::new(
                Arc::clone(&console_engine),
                config.users.clone(),
                Arc::clone(&cluster),
                config.tls.is_some(),
            );
            let router =
                crate::athena::router(door).merge(crate::ops::router(ops)).merge(crate::console::router(console));
            running.spawn(crate::http::serve(listener, router, tls, gate, shutdown.clone()));
        }
        running.spawn(cancel_abandoned(cancelled, Arc::clone(&channels)));
        running.spawn(background_work);
        running.spawn(history_writer);
        running.spawn(recovery);
        running.spawn(expire_executors(Arc::clone(&cluster), channels, config.heartbeat_interval, metrics));
        tracing::info!(%addr, tls = config.tls.is_some(), "scheduler serving Flight SQL");
        Ok(Self {
            addr,
            cluster_addr,
            postgres_addr,
            http_addr,
            cluster,
            signer,
            engine: drain_engine,
            shutdown,
            running,
        })
    }

    /// Where executors join: the Flight SQL port, or with TLS a port of their own.
    pub fn cluster_addr(&self) -> SocketAddr {
        self.cluster_addr
    }

    /// Where PostgreSQL clients connect, if the scheduler serves them.
    pub fn postgres_addr(&self) -> Option<SocketAddr> {
        self.postgres_addr
    }

    /// Where Athena's API is served, if it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where Flight SQL clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cluster(&self) -> &Arc<ClusterState> {
        &self.cluster
    }

    /// The key this scheduler signs its task tokens with (for tools and tests that act as it).
    pub fn task_signer(&self) -> &Arc<TaskSigner> {
        &self.signer
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A graceful stop's first part (SIGTERM): no new statement starts, running ones get up to
    /// `timeout` to end, then the rest are cancelled and recorded CANCELLED. The scheduler still
    /// serves (results of running statements stream on); [`Self::shutdown`] stops it.
    pub async fn drain(&self, timeout: std::time::Duration) -> crate::stopping::Drained {
        crate::stopping::drain(self.engine.statements(), self.engine.history(), timeout).await
    }

    /// Waits until the scheduler stops serving.
    pub async fn stopped(&mut self) {
        self.shutdown.cancelled().await;
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), SchedulerError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| SchedulerError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| SchedulerError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Serves gRPC on `listener` until `stop`.
async fn serve<L>(
    router: tonic::transport::server::Router<L>,
    listener: TcpListener,
    gate: ConnectionGate,
    stop: CancellationToken,
) where
    L: tower::Layer<tonic::service::Routes> + Send + 'static,
    L::Service: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Future: Send + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    // Small responses go out at once: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to
    // every request/response exchange.
    let incoming = gated(TcpIncoming::from(listener).with_nodelay(Some(true)), gate, "Flight SQL");
    if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await {
        tracing::error!("scheduler server failed: {e}");
    }
}

async fn expire_executors(
    cluster: Arc<ClusterState>,
    channels: Arc<ClusterChannels>,
    interval: std::time::Duration,
    metrics: Arc<SchedulerMetrics>,
) {
    loop {
        tokio::time::sleep(interval).await;
        let expired = cluster.expire();
        metrics.executors_lost(expired.len());
        for executor in expired {
            channels.forget(&executor.addr);
        }
    }
}
