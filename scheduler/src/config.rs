//! Scheduler settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use glaux_proto::{ClusterSecret, ClusterTls, Compute};
use glaux_storage::StorageConfig;

use crate::client_auth::Users;
use crate::limits::DoorLimits;
use crate::tls::TlsIdentity;

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Where Flight SQL clients and executors connect. Port 0 picks a free port.
    pub bind: SocketAddr,
    pub secret: ClusterSecret,
    pub storage: StorageConfig,
    /// How often executors heartbeat.
    pub heartbeat_interval: Duration,
    /// An executor silent for this long is dropped from the cluster.
    pub executor_timeout: Duration,
    /// Batch size of the scheduler's part of each query.
    pub batch_size: usize,
    /// Memory the final stages of all running queries share on the scheduler; sorts and
    /// aggregations there spill beyond it.
    pub memory_limit_bytes: usize,
    /// The SQLite file holding the catalog; `None` keeps it in memory (lost at exit).
    pub catalog_path: Option<std::path::PathBuf>,
    /// Flight SQL (and PostgreSQL) users; `None` serves without client authentication, on
    /// loopback only.
    pub users: Option<Arc<Users>>,
    /// Where PostgreSQL clients connect (`None`: no PostgreSQL port).
    pub postgres: Option<SocketAddr>,
    /// Where HTTP clients (Athena's API) connect (`None`: no HTTP port).
    pub http: Option<SocketAddr>,
    /// TLS for the client doors (Flight SQL and PostgreSQL); `None` serves them in the clear.
    pub tls: Option<TlsIdentity>,
    /// Where executors join, when not on the Flight SQL port. With TLS, executors always join on
    /// a port of their own (cluster calls are guarded by the cluster secret, not by TLS); it is
    /// this address, or a free loopback port.
    pub cluster_bind: Option<SocketAddr>,
    /// Take passwords without TLS on a non-loopback address (`--allow-insecure-auth`): off, so
    /// that passwords never cross a network in the clear unless someone says so.
    pub allow_insecure_auth: bool,
    /// Mutual TLS with the executors: with it, executors join on a port of their own that
    /// requires a certificate from the cluster's CA.
    pub cluster_tls: Option<ClusterTls>,
    /// Connections, request rates and statements at once.
    pub limits: DoorLimits,
    /// How long the scheduler answers a prefix's listing from the last one (zero: every query
    /// lists). Statements that change the catalog, and Glaux's own writes, forget every listing.
    pub listing_cache_ttl: Duration,
    /// How long the query history keeps statements' records.
    pub history: crate::history::Retention,
    /// The size written files aim at (`CREATE TABLE AS`, `INSERT`, `UNLOAD`, `OPTIMIZE`): each
    /// writer starts a new file once its files hold about this much (0: one file per partition
    /// and writer).
    pub target_file_size: u64,
    /// A query whose scans are estimated to produce at most this many bytes (Arrow bytes of the
    /// columns they read) runs whole as one task on one executor (0: every query is spread over
    /// the executors). See [`DEFAULT_SMALL_QUERY_BYTES`].
    pub small_query_bytes: u64,
    /// What queries do when they lose an executor, unless their workgroup says otherwise.
    pub retry_policy: crate::query::RetryPolicy,
    /// The runtime queries' final stages run on (`None`: the one the scheduler starts on, which
    /// then also answers the network; the binary gives one of its own, see `glaux_proto::Compute`).
    pub compute: Option<Compute>,
}

/// The default [`SchedulerConfig::target_file_size`]: 128 MiB, the size Athena's and Trino's
/// advice aims Parquet files at (large enough to read quickly, small enough to spread).
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 << 20;

/// The default [`SchedulerConfig::small_query_bytes`]: 128 MiB. Spreading a query costs a fixed
/// 10-20 ms (a plan per task to launch, rows moved between executors, stages waiting on each
/// other) that pays only when the work is large; a query reading this much runs in tens of
/// milliseconds in one process (measured on TPC-H and TPC-DS at SF 1, `benchmarks/README.md`).
pub const DEFAULT_SMALL_QUERY_BYTES: u64 = 128 << 20;

/// The default [`SchedulerConfig::listing_cache_ttl`]: long enough for a dashboard's burst of
/// queries over the same tables, short enough that files written by other programs show up
/// within seconds.
pub const DEFAULT_LISTING_CACHE_TTL: Duration = Duration::from_secs(5);

impl SchedulerConfig {
    pub fn new(secret: ClusterSecret) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret,
            storage: StorageConfig::default(),
            heartbeat_interval: Duration::from_secs(1),
            executor_timeout: Duration::from_secs(10),
            batch_size: 8192,
            memory_limit_bytes: 2 << 30,
            catalog_path: None,
            users: None,
            postgres: None,
            http: None,
            tls: None,
            cluster_bind: None,
            allow_insecure_auth: false,
            cluster_tls: None,
            limits: DoorLimits::default(),
            listing_cache_ttl: DEFAULT_LISTING_CACHE_TTL,
            history: crate::history::Retention::default(),
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            small_query_bytes: DEFAULT_SMALL_QUERY_BYTES,
            retry_policy: crate::query::RetryPolicy::Query,
            compute: None,
        }
    }

    /// Queries' final stages run on `compute`.
    pub fn with_compute(mut self, compute: Compute) -> Self {
        self.compute = Some(compute);
        self
    }

    /// Queries lose an executor as `policy` says, unless their workgroup says otherwise.
    pub fn with_retry_policy(mut self, policy: crate::query::RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Written files aim at `bytes` each (0: one file per partition and writer).
    pub fn with_target_file_size(mut self, bytes: u64) -> Self {
        self.target_file_size = bytes;
        self
    }

    /// Queries whose scans produce at most `bytes` run as one task on one executor (0: never).
    pub fn with_small_query_bytes(mut self, bytes: u64) -> Self {
        self.small_query_bytes = bytes;
        self
    }

    /// Answers listings from the last one of the same prefix for `ttl` (zero: never).
    pub fn with_history(mut self, retention: crate::history::Retention) -> Self {
        self.history = retention;
        self
    }

    pub fn with_listing_cache_ttl(mut self, ttl: Duration) -> Self {
        self.listing_cache_ttl = ttl;
        self
    }

    /// Serves Flight SQL and PostgreSQL clients over TLS with this identity.
    pub fn with_tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Executors join at `addr` instead of on the Flight SQL port.
    pub fn with_cluster_bind(mut self, addr: SocketAddr) -> Self {
        self.cluster_bind = Some(addr);
        self
    }

    /// Also serves the PostgreSQL wire protocol at `addr`.
    pub fn with_postgres(mut self, addr: SocketAddr) -> Self {
        self.postgres = Some(addr);
        self
    }

    /// Also serves HTTP (Athena's API) at `addr`.
    pub fn with_http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Requires Flight SQL clients to authenticate as one of `users`.
    /// Let passwords cross a non-loopback address without TLS.
    pub fn with_insecure_auth(mut self, allow: bool) -> Self {
        self.allow_insecure_auth = allow;
        self
    }

    pub fn with_cluster_tls(mut self, tls: Option<ClusterTls>) -> Self {
        self.cluster_tls = tls;
        self
    }

    pub fn with_limits(mut self, limits: DoorLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_users(mut self, users: Arc<Users>) -> Self {
        self.users = Some(users);
        self
    }

    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    pub fn with_catalog_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.catalog_path = Some(path.into());
        self
    }

    pub fn with_storage(mut self, storage: StorageConfig) -> Self {
        self.storage = storage;
        self
    }

    /// Heartbeat interval; executors are dropped after missing about five in a row.
    pub fn with_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.executor_timeout = interval * 5;
        self
    }
}
