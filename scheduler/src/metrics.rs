//! The scheduler's metrics, in Prometheus' text format at `/metrics` on its HTTP port.
//!
//! Statements are counted when their history record ends (every door's statements pass there,
//! so the counts and the history agree); tasks when they are launched; the cluster, the doors'
//! connections, the listing cache and the bytes read from executors are sampled when scraped.
//! Labels carry only doors, workgroups and states: never a user, a statement or an address.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use glaux_catalog::history::QueryRecord;
use glaux_proto::ClusterChannels;
use glaux_storage::ListingCache;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::cluster::ClusterState;
use crate::limits::ConnectionGate;

/// Workgroups named in labels at most; statements of any other go under [`OTHER_WORKGROUPS`].
/// (A client may name workgroups that do not exist: each would otherwise be a series forever.)
const MAX_WORKGROUP_LABELS: usize = 200;
const OTHER_WORKGROUPS: &str = "_other";

/// Statement latency buckets, in seconds: from a point lookup to a long batch statement.
const LATENCY_BUCKETS: [f64; 15] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

pub struct SchedulerMetrics {
    registry: Registry,
    statements: IntCounterVec,
    latency: HistogramVec,
    queued: HistogramVec,
    scanned: IntCounterVec,
    rows: IntCounterVec,
    reused: IntCounterVec,
    tasks_launched: IntCounter,
    task_launches_failed: IntCounter,
    tasks_rerun: IntCounter,
    query_endings: IntCounterVec,
    executors_lost: IntCounter,
    executor_losses: IntCounterVec,
    failed_logins: IntCounterVec,
    executors: IntGauge,
    executors_draining: IntGauge,
    task_slots: IntGauge,
    connections: IntGaugeVec,
    listing_hits: IntCounter,
    listing_misses: IntCounter,
    bytes_received: IntCounter,
    workgroups: Mutex<HashSet<String>>,
}

/// What `/metrics` samples when scraped.
pub(crate) struct Sampled {
    pub cluster: Arc<ClusterState>,
    /// Each door's connection gate, by door name.
    pub gates: Vec<(&'static str, ConnectionGate)>,
    pub listings: Option<Arc<ListingCache>>,
    pub channels: Arc<ClusterChannels>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("a valid metric name");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn counters(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("a valid metric name");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

fn histograms(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("a valid metric name");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

/// Sets a counter that mirrors a monotonic count kept elsewhere.
fn mirror(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SchedulerMetrics {
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("glaux".into()), None).expect("a valid prefix");
        Self {
            statements: counters(
                &r,
                "statements_total",
                "Statements that ended, by door, workgroup and final state",
                &["door", "workgroup", "state"],
            ),
            latency: histograms(
                &r,
                "statement_duration_seconds",
                "Time from a statement's submission to its end (queue, planning and execution)",
                &["door"],
            ),
            queued: histograms(
                &r,
                "statement_queue_seconds",
                "Time statements waited in their workgroup's queue",
                &["workgroup"],
            ),
            scanned: counters(&r, "data_scanned_bytes_total", "Bytes statements read from storage", &["workgroup"]),
            rows: counters(&r, "rows_returned_total", "Rows statements returned to their clients", &["door"]),
            reused: counters(&r, "results_reused_total", "Statements answered with an earlier result", &["workgroup"]),
            tasks_launched: counter(&r, "tasks_launched_total", "Tasks installed on executors"),
            task_launches_failed: counter(
                &r,
                "task_launches_failed_total",
                "Calls installing tasks that an executor refused or did not answer",
            ),
            tasks_rerun: counter(&r, "tasks_rerun_total", "Tasks run again after their executor was lost"),
            query_endings: counters(
                &r,
                "query_endings_total",
                "Cluster queries read to their end, by where their tasks' accounts came from: `trailers` (with \
                 the results) or `executors` (asked once the results ended)",
                &["accounts"],
            ),
            executors_lost: counter(&r, "executors_lost_total", "Executors dropped after missing their heartbeats"),
            executor_losses: counters(
                &r,
                "executors_unreachable_total",
                "Executors a query found unreachable, by what the scheduler's own call to each found then: \
                 `dropped` (unreachable too) or `kept` (it answered: only a link between members broke)",
                &["outcome"],
            ),
            failed_logins: counters(
                &r,
                "failed_logins_total",
                "Logins refused (wrong credentials), by door",
                &["door"],
            ),
            executors: gauge(&r, "executors", "Executors alive"),
            executors_draining: gauge(&r, "executors_draining", "Executors alive that take no new query (stopping)"),
            task_slots: gauge(&r, "executor_task_slots", "Task slots of the executors alive"),
            connections: {
                let metric =
                    IntGaugeVec::new(Opts::new("connections_open", "Open client connections, by door"), &["door"])
                        .expect("a valid metric name");
                r.register(Box::new(metric.clone())).expect("registered once");
                metric
            },
            listing_hits: counter(&r, "listing_cache_hits_total", "Object listings answered from the listing cache"),
            listing_misses: counter(&r, "listing_cache_misses_total", "Object listings that went to the store"),
            bytes_received: counter(
                &r,
                "member_bytes_received_total",
                "Bytes of Arrow data the scheduler read from executors",
            ),
            registry: r,
            workgroups: Mutex::default(),
        }
    }

    /// A workgroup as a label: its name while few are named, then [`OTHER_WORKGROUPS`].
    fn workgroup<'a>(&self, name: &'a str) -> &'a str {
        let mut seen = self.workgroups.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(name) {
            return name;
        }
        if seen.len() < MAX_WORKGROUP_LABELS {
            seen.insert(name.to_string());
            return name;
        }
        OTHER_WORKGROUPS
    }

    /// Counts a statement whose record just ended.
    pub fn ended(&self, record: &QueryRecord) {
        let workgroup = self.workgroup(&record.workgroup);
        self.statements.with_label_values(&[record.door.as_str(), workgroup, record.state.as_str()]).inc();
        if let Some(ended) = record.ended_ms {
            let seconds = (ended - record.submitted_ms).max(0) as f64 / 1000.0;
            self.latency.with_label_values(&[record.door.as_str()]).observe(seconds);
        }
        if record.started_ms.is_some() {
            self.queued.with_label_values(&[workgroup]).observe(record.queue_ms as f64 / 1000.0);
        }
        self.scanned.with_label_values(&[workgroup]).inc_by(record.bytes_scanned);
        self.rows.with_label_values(&[record.door.as_str()]).inc_by(record.rows);
        if record.reused {
            self.reused.with_label_values(&[workgroup]).inc();
        }
        self.tasks_rerun.inc_by(record.tasks_rerun);
    }

    pub fn tasks_launched(&self, tasks: usize) {
        self.tasks_launched.inc_by(tasks as u64);
    }

    pub fn task_launch_failed(&self) {
        self.task_launches_failed.inc();
    }

    /// A cluster query read to its end, its tasks' accounts `from_trailers` or asked of its executors.
    pub fn query_ended(&self, from_trailers: bool) {
        let accounts = if from_trailers { "trailers" } else { "executors" };
        self.query_endings.with_label_values(&[accounts]).inc();
    }

    pub fn executors_lost(&self, executors: usize) {
        self.executors_lost.inc_by(executors as u64);
    }

    /// A login refused at `door` (`flight_sql`, `postgres`, `athena`, ...).
    pub fn failed_login(&self, door: &'static str) {
        self.failed_logins.with_label_values(&[door]).inc();
    }

    /// The text format of every metric, with the sampled ones read now.
    pub(crate) fn render(&self, sampled: &Sampled) -> String {
        let alive = sampled.cluster.alive();
        self.executors.set(alive.len() as i64);
        self.executors_draining.set(sampled.cluster.draining() as i64);
        self.task_slots.set(alive.iter().map(|e| i64::from(e.task_slots)).sum());
        for (door, gate) in &sampled.gates {
            self.connections.with_label_values(&[*door]).set(gate.open() as i64);
        }
        if let Some(listings) = &sampled.listings {
            let (hits, misses) = listings.hits_and_misses();
            mirror(&self.listing_hits, hits);
            mirror(&self.listing_misses, misses);
        }
        mirror(&self.bytes_received, sampled.channels.bytes_received());
        let (dropped, kept) = sampled.cluster.losses();
        mirror(&self.executor_losses.with_label_values(&["dropped"]), dropped);
        mirror(&self.executor_losses.with_label_values(&["kept"]), kept);
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_else(|e| format!("# {e}\n"))
    }
}
