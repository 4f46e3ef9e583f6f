//! `TaskTable`: the tasks installed on this executor, until their output has been read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::physical_plan::ExecutionPlan;
use glaux_proto::generated::TaskProgress;
use glaux_proto::{Compute, EndedTask, EndedTasks, QueryId, StageId, TaskId, collect_task_stats, task_report};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::spool::{Spool, SpoolBudget};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub query: QueryId,
    pub stage: StageId,
    pub task: TaskId,
}

/// A broadcast partition's batches, computed by its first reader and replayed to the others, with
/// the memory they hold reserved in the executor's pool.
#[derive(Debug)]
pub struct Buffered {
    pub batches: Vec<RecordBatch>,
    _reservation: MemoryReservation,
}

impl Buffered {
    pub fn new(batches: Vec<RecordBatch>, reservation: MemoryReservation) -> Self {
        Self { batches, _reservation: reservation }
    }
}

pub type BufferCell = Arc<OnceCell<Arc<Buffered>>>;

#[derive(Debug)]
pub struct InstalledTask {
    pub plan: Arc<dyn ExecutionPlan>,
    /// The partitions it serves, each with the partition of `plan` that produces it.
    partitions: HashMap<u32, usize>,
    /// The context the plan was decoded in and runs in: its object stores count into `bytes_read`.
    pub context: Arc<TaskContext>,
    pub bytes_read: Arc<AtomicU64>,
    /// Fires when the query is cancelled; running output streams stop at their next batch.
    pub cancel: CancellationToken,
    /// Reads still expected, per partition.
    unread: Mutex<HashMap<u32, u32>>,
    /// Broadcast partitions' batches (only when read more than once).
    buffers: HashMap<u32, BufferCell>,
    /// `EXPLAIN ANALYZE`: the last read's trailer carries the task's report.
    pub analyze: bool,
    /// Rows sent by all reads so far, and their Arrow bytes.
    pub rows_out: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
    /// Why a read failed first (for a query's page).
    pub failure: Arc<std::sync::OnceLock<String>>,
    installed_at: Instant,
    /// When its last expected read ended.
    finished_at: std::sync::OnceLock<Instant>,
    /// Retry policy `task`: its output is written to files and read from there (`spool.rs`), within
    /// its query's budget on this executor.
    pub spool: Option<Spool>,
    /// The accounts of finished tasks its readers received (its context's [`EndedTasks`]): the
    /// read that finishes it passes them on with its own.
    pub ended: Arc<EndedTasks>,
}

impl InstalledTask {
    /// A task serving `partitions`: (partition, the partition of `plan` that produces it).
    pub fn new(
        plan: Arc<dyn ExecutionPlan>,
        partitions: Vec<(u32, u32)>,
        reads_per_partition: u32,
        context: Arc<TaskContext>,
        bytes_read: Arc<AtomicU64>,
    ) -> Self {
        let reads = reads_per_partition.max(1);
        let buffers = if reads > 1 {
            partitions.iter().map(|&(p, _)| (p, BufferCell::default())).collect()
        } else {
            HashMap::new()
        };
        Self {
            unread: Mutex::new(partitions.iter().map(|&(p, _)| (p, reads)).collect()),
            plan,
            partitions: partitions.into_iter().map(|(p, index)| (p, index as usize)).collect(),
            bytes_read,
            cancel: CancellationToken::new(),
            buffers,
            analyze: false,
            rows_out: Arc::default(),
            bytes_out: Arc::default(),
            failure: Arc::default(),
            installed_at: Instant::now(),
            finished_at: std::sync::OnceLock::new(),
            spool: None,
            ended: context.session_config().get_extension::<EndedTasks>().unwrap_or_default(),
            context,
        }
    }

    /// This task, spooling its output within `budget`.
    pub fn spooled(mut self, budget: Arc<SpoolBudget>) -> Self {
        self.spool = Some(Spool::new(budget));
        self
    }

    /// Every served partition with the partition of the plan that makes it.
    pub fn served(&self) -> Vec<(u32, usize)> {
        let mut served: Vec<(u32, usize)> = self.partitions.iter().map(|(&p, &i)| (p, i)).collect();
        served.sort_unstable();
        served
    }

    pub fn with_analyze(mut self, analyze: bool) -> Self {
        self.analyze = analyze;
        self
    }

    /// The partition of the plan that produces `partition`, if the task serves it.
    pub fn plan_partition(&self, partition: u32) -> Option<usize> {
        self.partitions.get(&partition).copied()
    }

    /// Every output partition has been read as often as it is consumed.
    pub fn finished(&self) -> bool {
        self.unread.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Its own account of its work and of how it ran, as it stands now (its executor is named by
    /// whoever receives it).
    pub fn account(&self, key: &TaskKey) -> EndedTask {
        let bytes = self.bytes_read.load(Ordering::Relaxed);
        let mut stats = collect_task_stats(&self.plan);
        stats.bytes_scanned += bytes;
        stats.output_rows = self.rows_out.load(Ordering::Relaxed);
        if self.analyze {
            stats.reports.push(task_report(&self.plan, key.stage.0, key.task.0, stats.output_rows, bytes));
        }
        EndedTask { executor: String::new(), progress: self.progress(key), stats }
    }

    /// The task as it stands now, for a query's page.
    pub fn progress(&self, key: &TaskKey) -> TaskProgress {
        let work = glaux_proto::operator_work(&self.plan);
        let until = self.finished_at.get().copied().unwrap_or_else(Instant::now);
        TaskProgress {
            stage_id: key.stage.0,
            task_id: key.task.0,
            rows_out: self.rows_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            bytes_scanned: self.bytes_read.load(Ordering::Relaxed),
            compute_ms: work.compute_ms,
            spill_count: work.spill_count,
            spilled_bytes: work.spilled_bytes,
            elapsed_ms: until.saturating_duration_since(self.installed_at).as_millis() as u64,
            done: self.finished(),
            error: self.failure.get().cloned().unwrap_or_default(),
            spooled: self.spool.as_ref().is_some_and(Spool::written),
        }
    }

    /// Where a broadcast partition's batches are kept; `None` for a partition read once.
    pub fn buffer(&self, partition: u32) -> Option<BufferCell> {
        self.buffers.get(&partition).cloned()
    }
}

/// What this executor's tasks did since it started (read by `/metrics`).
#[derive(Debug, Default)]
pub struct TaskCounters {
    pub installed: AtomicU64,
    /// Task output streams that ended in an error (not a cancellation).
    pub failed_outputs: AtomicU64,
    /// Tasks whose every output was read to its end.
    pub finished: AtomicU64,
    pub bytes_scanned: AtomicU64,
    pub spilled_bytes: AtomicU64,
    pub rows_sent: AtomicU64,
    /// Bytes of Arrow data (IPC headers and bodies) sent to other members, and to clients
    /// reading result endpoints.
    pub bytes_sent_members: AtomicU64,
    pub bytes_sent_clients: AtomicU64,
}

impl TaskCounters {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct TaskTable {
    tasks: Mutex<HashMap<TaskKey, Arc<InstalledTask>>>,
    ttl: Duration,
    pub counters: TaskCounters,
    /// What each query may keep in spools here, and what it keeps.
    spool_budgets: Mutex<HashMap<QueryId, Arc<SpoolBudget>>>,
    spool_limit: u64,
    /// Where tasks run (`glaux_proto::Compute`).
    pub compute: Compute,
}

impl TaskTable {
    pub fn new(ttl: Duration, compute: Compute) -> Self {
        Self {
            compute,
            tasks: Mutex::new(HashMap::new()),
            ttl,
            counters: TaskCounters::default(),
            spool_budgets: Mutex::default(),
            spool_limit: u64::MAX,
        }
    }

    /// This table, with each query's spooled outputs bounded to `bytes`.
    pub fn with_spool_limit(self, bytes: u64) -> Self {
        Self { spool_limit: bytes, ..self }
    }

    /// The spool budget of `query` on this executor.
    pub fn spool_budget(&self, query: &QueryId) -> Arc<SpoolBudget> {
        let mut budgets = self.spool_budgets.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(budgets.entry(query.clone()).or_insert_with(|| Arc::new(SpoolBudget::new(self.spool_limit))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskKey, Arc<InstalledTask>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs `task`; a task installed again (a retry on this executor) replaces the earlier
    /// attempt, which is cancelled.
    pub fn install(&self, key: TaskKey, task: InstalledTask) {
        TaskCounters::add(&self.counters.installed, 1);
        if let Some(earlier) = self.lock().insert(key, Arc::new(task)) {
            earlier.cancel.cancel();
        }
    }

    pub fn get(&self, key: &TaskKey) -> Option<Arc<InstalledTask>> {
        self.lock().get(key).cloned()
    }

    /// Records that one read of an output partition reached its end; returns true for the read
    /// that finished the task (every partition read as often as it is consumed). The task stays
    /// installed until the scheduler ends the query (`CancelQuery`), which collects its
    /// statistics, or until the TTL.
    pub fn finish_partition(&self, key: &TaskKey, partition: u32) -> bool {
        let tasks = self.lock();
        tasks.get(key).is_some_and(|task| {
            let mut unread = task.unread.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(left) = unread.get_mut(&partition) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    unread.remove(&partition);
                }
            }
            if unread.is_empty() {
                let _ = task.finished_at.set(Instant::now());
            }
            unread.is_empty()
        })
    }

    /// The installed tasks of `query`.
    pub fn tasks_of(&self, query: &QueryId) -> Vec<(TaskKey, Arc<InstalledTask>)> {
        self.lock()
            .iter()
            .filter(|(key, _)| &key.query == query)
            .map(|(key, task)| (key.clone(), Arc::clone(task)))
            .collect()
    }

    /// Cancels (if still running) and forgets every task of `query`; returns them.
    pub fn cancel_query(&self, query: &QueryId) -> Vec<(TaskKey, Arc<InstalledTask>)> {
        self.spool_budgets.lock().unwrap_or_else(|e| e.into_inner()).remove(query);
        let mut tasks = self.lock();
        let keys: Vec<TaskKey> = tasks.keys().filter(|key| &key.query == query).cloned().collect();
        keys.into_iter()
            .filter_map(|key| tasks.remove(&key).map(|task| (key, task)))
            .inspect(|(_, task)| task.cancel.cancel())
            .collect()
    }

    /// Forgets tasks installed longer than the TTL ago (their consumer is gone).
    pub fn expire(&self) -> usize {
        let mut tasks = self.lock();
        let before = tasks.len();
        tasks.retain(|_, task| task.installed_at.elapsed() < self.ttl);
        let mut budgets = self.spool_budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets.retain(|query, _| tasks.keys().any(|key| &key.query == query));
        before - tasks.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::physical_plan::empty::EmptyExec;

    fn task(partitions: Vec<u32>) -> InstalledTask {
        let plan = Arc::new(EmptyExec::new(Arc::new(Schema::empty())));
        let partitions = partitions.into_iter().map(|p| (p, p)).collect();
        InstalledTask::new(plan, partitions, 1, Arc::new(TaskContext::default()), Arc::default())
    }

    #[test]
    fn tasks_count_their_reads_and_are_forgotten_when_their_query_ends() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let table = TaskTable::new(Duration::from_secs(60), Compute::new(runtime.handle().clone()));
        let key = |q: &str, t| TaskKey { query: QueryId::from(q.to_string()), stage: StageId(1), task: TaskId(t) };
        table.install(key("q1", 0), task(vec![0, 1]));
        table.install(key("q2", 0), task(vec![0]));
        let mut broadcast = task(vec![0]);
        broadcast = InstalledTask::new(broadcast.plan, vec![(0, 0)], 2, broadcast.context, broadcast.bytes_read);
        assert!(broadcast.buffer(0).is_some());
        table.install(key("q3", 0), broadcast);
        assert!(!table.finish_partition(&key("q3", 0), 0));
        assert!(table.finish_partition(&key("q3", 0), 0));
        assert!(!table.finish_partition(&key("q1", 0), 0));
        assert!(table.get(&key("q1", 0)).is_some());
        assert!(table.finish_partition(&key("q1", 0), 1));
        assert_eq!(table.cancel_query(&QueryId::from("q1".to_string())).len(), 1);
        assert!(table.get(&key("q1", 0)).is_none());
        let cancel = table.get(&key("q2", 0)).unwrap().cancel.clone();
        assert_eq!(table.cancel_query(&QueryId::from("q2".to_string())).len(), 1);
        assert!(cancel.is_cancelled());
        assert_eq!(table.cancel_query(&QueryId::from("q3".to_string())).len(), 1);
        assert_eq!(table.len(), 0);
    }
}
