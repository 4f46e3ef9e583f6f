//! `Executor`: binds, serves Flight and task control, and keeps its cluster membership.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::MemoryPool;
use glaux_proto::generated::ExecutorRegistration;
use glaux_proto::generated::executor_control_server::ExecutorControlServer;

use glaux_proto::{ClusterAuth, ClusterChannels, Compute, ExecutorAddr, ExecutorId, LocalOutputs, MAX_MESSAGE_BYTES};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::ExecutorConfig;
use crate::control_service::ControlService;
use crate::error::ExecutorError;
use crate::flight_service::{ExecutorFlight, open_output};
use crate::metrics::Sources;
use crate::registration::{DrainState, Membership};
use crate::session::{ExecutorMemory, executor_session};
use crate::task_key::TokenKey;
use crate::task_table::TaskTable;

/// A running executor. Dropping it (or [`Executor::shutdown`]) stops serving and leaves the cluster.
pub struct Executor {
    id: ExecutorId,
    endpoint: ExecutorAddr,
    http_addr: Option<SocketAddr>,
    tasks: Arc<TaskTable>,
    memory: Arc<ExecutorMemory>,
    membership: Leaving,
    shutdown: CancellationToken,
    running: JoinSet<()>,
}

/// What a draining executor needs to wait for its turn to leave, and to leave.
struct Leaving {
    drain: Arc<DrainState>,
    registered: Arc<AtomicBool>,
    channels: Arc<ClusterChannels>,
    scheduler: String,
}

/// How often a draining executor looks whether it may leave.
const DRAIN_POLL: Duration = Duration::from_millis(50);

impl Executor {
    pub async fn start(config: ExecutorConfig) -> Result<Self, ExecutorError> {
        let listener =
            TcpListener::bind(config.bind).await.map_err(|source| ExecutorError::Bind { addr: config.bind, source })?;
        let addr = listener.local_addr().map_err(|source| ExecutorError::Bind { addr: config.bind, source })?;
        let host = config.advertise_host.clone().unwrap_or_else(|| addr.ip().to_string());
        let endpoint = ExecutorAddr::parse(&format!("{host}:{}", addr.port())).map_err(ExecutorError::Config)?;

        let channels = Arc::new(ClusterChannels::new(config.secret.clone()).with_tls(config.tls.clone()));
        let compute = config.compute.clone().unwrap_or_else(Compute::current);
        let tasks = Arc::new(TaskTable::new(config.task_ttl, compute).with_spool_limit(config.spool_limit_bytes));
        let outputs = Arc::clone(&tasks);
        let local = LocalOutputs::new(
            endpoint.clone(),
            Arc::new(move |ticket| open_output(&outputs, ticket).map_err(|e| DataFusionError::External(Box::new(e)))),
        );
        let (session, memory) = executor_session(&config, Arc::clone(&channels), local)?;
        let runtime = session.runtime_env();
        let registered = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(DrainState::default());
        let task_key = TokenKey::default();
        let flight = ExecutorFlight { tasks: Arc::clone(&tasks), task_key: task_key.clone() };
        let flight = FlightServiceServer::new(flight)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let control = ExecutorControlServer::new(ControlService {
            tasks: Arc::clone(&tasks),
            session,
            task_key: task_key.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let verify = ClusterAuth::verify(config.secret.clone());
        // Flight also serves clients the result endpoints a scheduler gave them (`DoGet` with a
        // client-read token); everything else still needs the cluster credential.
        let mark = ClusterAuth::mark(config.secret.clone());

        let shutdown = CancellationToken::new();
        let mut running = JoinSet::new();
        let stop = shutdown.clone();
        // Pings its callers as they ping it: a reader that vanished is dropped with its stream.
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(glaux_proto::KEEP_ALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(glaux_proto::KEEP_ALIVE_TIMEOUT));
        if let Some(tls) = &config.tls {
            builder =
                builder.tls_config(tls.server()).map_err(|e| ExecutorError::Config(format!("cluster TLS: {e}")))?;
        }
        // The standard gRPC health service, unauthenticated as probes are: "" is SERVING while
        // the process serves (readiness is `/ready`).
        let (_health, health) = tonic_health::server::health_reporter();
        running.spawn(async move {
            let served = builder
                .add_service(health)
                .add_service(InterceptedService::new(flight, mark))
                .add_service(InterceptedService::new(control, verify))
                // Small responses go out at once: without TCP_NODELAY, Nagle and delayed ACKs add
                // ~40 ms to every request/response exchange.
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop.cancelled_owned(),
                )
                .await;
            if let Err(e) = served {
                tracing::error!("executor server failed: {e}");
            }
        });
        let http_addr = match config.http {
            None => None,
            Some(bind) => {
                let sources = Sources {
                    tasks: Arc::clone(&tasks),
                    memory: Arc::clone(&memory),
                    memory_limit: config.memory_limit_bytes,
                    task_slots: config.task_slots,
                    runtime,
                    channels: Arc::clone(&channels),
                    registered: Arc::clone(&registered),
                    drain: Arc::clone(&drain),
                };
                let router =
                    crate::metrics::router(sources).map_err(|e| ExecutorError::Config(format!("metrics: {e}")))?;
                let listener =
                    TcpListener::bind(bind).await.map_err(|source| ExecutorError::Bind { addr: bind, source })?;
                let addr = listener.local_addr().map_err(|source| ExecutorError::Bind { addr: bind, source })?;
                tracing::info!(%addr, "serving metrics and probes over HTTP");
                running.spawn(serve_http(listener, router, shutdown.clone()));
                Some(addr)
            }
        };
        let scheduler = strip_scheme(&config.scheduler).to_string();
        let leaving = Leaving {
            drain: Arc::clone(&drain),
            registered: Arc::clone(&registered),
            channels: Arc::clone(&channels),
            scheduler: scheduler.clone(),
        };
        let membership = Membership {
            channels,
            scheduler,
            registration: ExecutorRegistration {
                executor_id: config.id.to_string(),
                endpoint: endpoint.to_string(),
                task_slots: config.task_slots as u32,
                memory_limit_bytes: config.memory_limit_bytes as u64,
            },
            tasks: Arc::clone(&tasks),
            memory: Arc::clone(&memory),
            task_key,
            registered,
            drain,
        };
        running.spawn(membership.run(shutdown.clone()));
        tracing::info!(executor = %config.id, %endpoint, slots = config.task_slots, "executor serving");
        Ok(Self { id: config.id, endpoint, http_addr, tasks, memory, membership: leaving, shutdown, running })
    }

    pub fn id(&self) -> &ExecutorId {
        &self.id
    }

    /// `host:port` where this executor serves Flight.
    pub fn endpoint(&self) -> &ExecutorAddr {
        &self.endpoint
    }

    /// Where `/metrics`, `/health` and `/ready` are served, if they are.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Tasks installed and not yet finished, cancelled or expired.
    pub fn installed_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Bytes of the memory limit that running tasks hold.
    pub fn memory_reserved(&self) -> usize {
        self.memory.reserved()
    }

    /// The operators holding the most memory, for diagnostics.
    pub fn memory_report(&self) -> String {
        self.memory.report_top(5)
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A graceful stop's first part (SIGTERM): the scheduler is told to plan no new query here;
    /// once it has placed the queries it was planning, and every task installed here has ended
    /// (its query ended), or at `timeout`, the executor leaves the cluster. Returns the tasks
    /// still installed when it left (0 unless the timeout cut them off). It still serves until
    /// [`Self::shutdown`].
    pub async fn drain(&self, timeout: Duration) -> usize {
        let leaving = &self.membership;
        leaving.drain.begin();
        tracing::info!(tasks = self.tasks.len(), ?timeout, "draining: no new query is planned here");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let placed = leaving.drain.placements_done() || !leaving.registered.load(Ordering::Relaxed);
            if placed && self.tasks.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(tasks = self.tasks.len(), "drain timeout: leaving with tasks still installed");
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        Membership::leave(&leaving.channels, &leaving.scheduler, self.id.as_str()).await;
        self.tasks.len()
    }

    /// Waits until the executor stops (after [`Executor::shutdown`], or if its server fails).
    pub async fn stopped(&mut self) {
        while self.running.join_next().await.is_some() {}
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Connections the metrics port holds open at most (scrapers and probes need a few).
const HTTP_CONNECTIONS: usize = 32;
/// How long a client of the metrics port may take to send a request's headers.
const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over plain HTTP/1 until `stop`, refusing connections beyond [`HTTP_CONNECTIONS`].
async fn serve_http(listener: TcpListener, router: axum::Router, stop: CancellationToken) {
    let places = Arc::new(Semaphore::new(HTTP_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = accepted else { continue };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else { continue };
        let router = router.clone();
        connections.spawn(async move {
            let _place = place;
            let service = hyper::service::service_fn(move |request| router.clone().oneshot(request));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HTTP_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn strip_scheme(address: &str) -> &str {
    address.strip_prefix("http://").or_else(|| address.strip_prefix("grpc://")).unwrap_or(address).trim_end_matches('/')
}
