//! The executor's metrics (Prometheus' text format at `/metrics` on its `--http-addr`) and its
//! probes: `/health` (the process serves) and `/ready` (registered with the scheduler).
//!
//! Everything is sampled when scraped from counts the executor keeps anyway ([`TaskCounters`],
//! the memory pool, the spill directory, the Parquet metadata cache, the bytes read from other
//! members), so tasks pay nothing for being measured. No label carries a query, a user or a path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnv;
use glaux_proto::ClusterChannels;
use http::StatusCode;
use prometheus::{IntCounter, IntGauge, Registry, TextEncoder};

use crate::session::ExecutorMemory;
use crate::task_table::TaskTable;

/// What the executor's HTTP port reads from.
pub(crate) struct Sources {
    pub tasks: Arc<TaskTable>,
    pub memory: Arc<ExecutorMemory>,
    pub memory_limit: usize,
    pub task_slots: usize,
    pub runtime: Arc<RuntimeEnv>,
    pub channels: Arc<ClusterChannels>,
    /// Set once the scheduler accepted its registration.
    pub registered: Arc<AtomicBool>,
    pub drain: Arc<crate::registration::DrainState>,
}

/// How a counter or a gauge is read from the sources.
type ReadCount = fn(&Sources) -> u64;
type ReadLevel = fn(&Sources) -> i64;

struct Metrics {
    registry: Registry,
    counters: Vec<(IntCounter, ReadCount)>,
    gauges: Vec<(IntGauge, ReadLevel)>,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("glaux_executor".into()), None)?;
        let counted: [(&str, &str, ReadCount); 9] = [
            ("tasks_installed_total", "Tasks the scheduler installed here", |s| load(&s.tasks.counters.installed)),
            ("tasks_finished_total", "Tasks whose every output was read to its end", |s| {
                load(&s.tasks.counters.finished)
            }),
            ("task_outputs_failed_total", "Task output streams that ended in an error", |s| {
                load(&s.tasks.counters.failed_outputs)
            }),
            ("data_scanned_bytes_total", "Bytes tasks read from storage", |s| load(&s.tasks.counters.bytes_scanned)),
            ("spilled_bytes_total", "Bytes finished tasks spilled to disk", |s| load(&s.tasks.counters.spilled_bytes)),
            ("rows_sent_total", "Rows tasks sent to their readers", |s| load(&s.tasks.counters.rows_sent)),
            ("member_bytes_sent_total", "Bytes of Arrow data sent to other cluster members", |s| {
                load(&s.tasks.counters.bytes_sent_members)
            }),
            ("client_bytes_sent_total", "Bytes of Arrow data sent to clients reading result endpoints", |s| {
                load(&s.tasks.counters.bytes_sent_clients)
            }),
            ("member_bytes_received_total", "Bytes of Arrow data read from other cluster members", |s| {
                s.channels.bytes_received()
            }),
        ];
        let sampled: [(&str, &str, ReadLevel); 9] = [
            ("tasks_installed", "Tasks installed and not yet ended", |s| s.tasks.len() as i64),
            ("task_slots", "Task output partitions that may run at once", |s| s.task_slots as i64),
            ("memory_reserved_bytes", "Bytes of the memory pool running tasks hold", |s| s.memory.reserved() as i64),
            ("memory_limit_bytes", "The memory pool's limit", |s| s.memory_limit as i64),
            ("spill_files_bytes", "Bytes in spill files now", |s| s.runtime.disk_manager.used_disk_space() as i64),
            ("registered", "1 once registered with the scheduler", |s| i64::from(s.registered.load(Ordering::Relaxed))),
            ("draining", "1 once stopping (SIGTERM): no new query is planned here", |s| {
                i64::from(s.drain.is_draining())
            }),
            ("file_metadata_cache_entries", "Parquet footers and page indexes kept", |s| {
                s.runtime.cache_manager.get_file_metadata_cache().len() as i64
            }),
            ("file_metadata_cache_limit_bytes", "The Parquet metadata cache's limit", |s| {
                s.runtime.cache_manager.get_metadata_cache_limit() as i64
            }),
        ];
        let mut counters = Vec::new();
        for (name, help, read) in counted {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            counters.push((counter, read));
        }
        let mut gauges = Vec::new();
        for (name, help, read) in sampled {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            gauges.push((gauge, read));
        }
        Ok(Self { registry, counters, gauges })
    }

    fn render(&self, sources: &Sources) -> String {
        for (counter, read) in &self.counters {
            counter.inc_by(read(sources).saturating_sub(counter.get()));
        }
        for (gauge, read) in &self.gauges {
            gauge.set(read(sources));
        }
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_else(|e| format!("# {e}\n"))
    }
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

struct Served {
    metrics: Metrics,
    sources: Sources,
}

/// `/metrics`, `/health` and `/ready`.
pub(crate) fn router(sources: Sources) -> Result<Router, prometheus::Error> {
    let served = Arc::new(Served { metrics: Metrics::new()?, sources });
    Ok(Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(served))
}

async fn metrics(State(served): State<Arc<Served>>) -> Response {
    let text = served.metrics.render(&served.sources);
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn ready(State(served): State<Arc<Served>>) -> Response {
    if served.sources.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n").into_response()
    } else if served.sources.registered.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: not registered with the scheduler\n").into_response()
    }
}
