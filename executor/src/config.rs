//! Executor settings, validated.

use std::net::SocketAddr;
use std::time::Duration;

use glaux_proto::{ClusterSecret, ClusterTls, Compute, ExecutorId};
use glaux_storage::StorageConfig;

#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    pub id: ExecutorId,
    /// Where to serve Flight and task control. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// The host name other cluster members use to reach this executor; defaults to the bind IP.
    pub advertise_host: Option<String>,
    /// `host:port` of the scheduler.
    pub scheduler: String,
    pub secret: ClusterSecret,
    /// Task output partitions that may run at once.
    pub task_slots: usize,
    /// Memory all running tasks share; operators that can spill do so beyond it.
    pub memory_limit_bytes: usize,
    pub storage: StorageConfig,
    /// Disk one query's spooled task outputs may take here (retry policy `task`).
    pub spool_limit_bytes: u64,
    /// Installed tasks whose output nobody read within this time are dropped.
    pub task_ttl: Duration,
    /// Mutual TLS with the other members (`None`: in the clear, guarded by the secret alone).
    pub tls: Option<ClusterTls>,
    /// Where to serve `/metrics`, `/health` and `/ready` over plain HTTP (`None`: not served).
    pub http: Option<SocketAddr>,
    /// The runtime tasks run on (`None`: the one the executor starts on, which then also answers
    /// the network; the binary gives one of its own, see `glaux_proto::Compute`).
    pub compute: Option<Compute>,
}

impl ExecutorConfig {
    pub fn new(scheduler: impl Into<String>, secret: ClusterSecret) -> Self {
        Self {
            id: ExecutorId::random(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_host: None,
            scheduler: scheduler.into(),
            secret,
            task_slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_limit_bytes: 2 << 30,
            spool_limit_bytes: 16 << 30,
            storage: StorageConfig::default(),
            task_ttl: Duration::from_secs(600),
            tls: None,
            http: None,
            compute: None,
        }
    }

    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    pub fn with_task_slots(mut self, slots: usize) -> Self {
        self.task_slots = slots.max(1);
        self
    }

    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit_bytes = bytes;
        self
    }

    pub fn with_spool_limit(mut self, bytes: u64) -> Self {
        self.spool_limit_bytes = bytes;
        self
    }

    pub fn with_storage(mut self, storage: StorageConfig) -> Self {
        self.storage = storage;
        self
    }

    pub fn with_tls(mut self, tls: Option<ClusterTls>) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_http(mut self, http: Option<SocketAddr>) -> Self {
        self.http = http;
        self
    }

    pub fn with_advertise_host(mut self, host: Option<String>) -> Self {
        self.advertise_host = host;
        self
    }

    pub fn with_compute(mut self, compute: Compute) -> Self {
        self.compute = Some(compute);
        self
    }
}
