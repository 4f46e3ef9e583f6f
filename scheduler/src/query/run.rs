//! [`QueryRunner`]: a logical plan run across the cluster.
//!
//! The plan is made physical for the executors alive (`target_partitions` = their task slots),
//! cut into stages (`planner`), its executor stages' tasks are installed, and the final stage runs
//! here, reading the others over Flight. An executor found lost before the first row reached the
//! client makes the query run again without it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use futures::{StreamExt, TryStreamExt, stream};
use glaux_catalog::TableScanReport;
use glaux_proto::{
    ClusterChannels, Compute, EndedTasks, ExecutorAddr, QueryId, RerunHandle, TableWriteExec, TaskRerun, TaskSigner,
    WriteSpec,
};
use glaux_storage::InUse;
use tokio::sync::mpsc;

use super::guard::{Abandoned, Accounts, QueryGuard, guarded};
use super::launch::{drop_unless_it_answers, launch};
use super::physical::{Planned, physical_plan};
use super::recovery::{MAX_ATTEMPTS as MAX_TASK_ATTEMPTS, Recoveries, Recovery};
use super::rerun::{MAX_RERUNS_PER_SOURCE, Reruns};
use super::stats::{ProgressProbe, ProgressSlot, QueryStatsHandle};
use super::{QueryResult, RetryPolicy};
use crate::cluster::{ClusterState, ExecutorInfo};
use crate::error::{ErrorKind, SchedulerError};
use crate::planner::{CutError, DistributedPlan};

/// How often a query is planned and started when executors turn out to be lost.
const MAX_ATTEMPTS: usize = 3;

/// How one attempt at a query runs.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    /// Where its result is written, if it is.
    write: Option<&'a WriteSpec>,
    /// Executors earlier attempts lost, left out whether or not the scheduler still reaches them.
    excluded: &'a [ExecutorAddr],
    /// Every task reports its plan with metrics (`EXPLAIN ANALYZE`).
    analyze: bool,
}

/// Runs queries on the cluster.
pub struct QueryRunner {
    pub(super) cluster: Arc<ClusterState>,
    pub(super) channels: Arc<ClusterChannels>,
    pub(super) abandoned: mpsc::UnboundedSender<Abandoned>,
    /// The scheduler's key for task tokens.
    pub(super) signer: Arc<TaskSigner>,
    pub(super) metrics: Arc<crate::metrics::SchedulerMetrics>,
    /// Where final stages run (`glaux_proto::Compute`).
    pub(super) compute: Compute,
}

impl QueryRunner {
    pub fn new(
        cluster: Arc<ClusterState>,
        channels: Arc<ClusterChannels>,
        abandoned: mpsc::UnboundedSender<Abandoned>,
        signer: Arc<TaskSigner>,
        metrics: Arc<crate::metrics::SchedulerMetrics>,
        compute: Compute,
    ) -> Self {
        Self { cluster, channels, abandoned, signer, metrics, compute }
    }

    /// The scheduler's metrics, which this counts launched tasks into.
    pub fn metrics(&self) -> &Arc<crate::metrics::SchedulerMetrics> {
        &self.metrics
    }

    /// Installs every task of `plan` on its executor (counted in the metrics).
    pub(super) async fn launch(&self, plan: &DistributedPlan, analyze: bool) -> Result<(), SchedulerError> {
        let launched = launch(&self.channels, plan, analyze).await;
        match &launched {
            Ok(()) => self.metrics.tasks_launched(plan.stages.iter().map(|s| s.tasks.len()).sum()),
            Err(_) => self.metrics.task_launch_failed(),
        }
        launched
    }

    /// Runs `plan` across the cluster. If an executor turns out to be unreachable before the
    /// first row reaches the client (its tasks cannot be installed, or a stage loses it), the
    /// query is planned again without it and re-run on the others, up to [`MAX_ATTEMPTS`] times;
    /// once rows have gone out, the error names the lost executor.
    pub async fn run(
        &self,
        state: &SessionState,
        query: QueryId,
        plan: &LogicalPlan,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        self.run_as(state, query, plan, None, progress).await
    }

    /// Runs `plan` with its result written as `write` says, by the tasks of its last executor
    /// stage (`TableWriteExec`); the result is one row per written partition of the plan: the
    /// directory it wrote under the staging location, and its rows. Re-runs as [`Self::run`].
    pub async fn run_write(
        &self,
        state: &SessionState,
        query: QueryId,
        plan: &LogicalPlan,
        write: &WriteSpec,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        self.run_as(state, query, plan, Some(write), progress).await
    }

    async fn run_as(
        &self,
        state: &SessionState,
        query: QueryId,
        plan: &LogicalPlan,
        write: Option<&WriteSpec>,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let (mut query, mut attempt) = (query, 1);
        // The loss that made this attempt: what to say if no executor is left for it.
        let mut last_loss: Option<SchedulerError> = None;
        // Executors an attempt lost: the next attempts leave them out, whether or not the
        // scheduler still reaches them (a member may have lost only its link to another).
        let mut excluded: Vec<ExecutorAddr> = Vec::new();
        loop {
            let retry = attempt < MAX_ATTEMPTS;
            let attempt_as = Attempt { write, excluded: &excluded, analyze: false };
            let (lost, error) = match self.start(state, query.clone(), plan, attempt_as, progress).await {
                Err(SchedulerError::NoExecutors { query }) => {
                    return Err(last_loss.unwrap_or(SchedulerError::NoExecutors { query }));
                }
                Err(error) => match error.kind() {
                    ErrorKind::LostExecutor { executor } if retry => (executor, error),
                    _ => return Err(error),
                },
                Ok(mut result) => match result.batches.next().await {
                    Some(Err(source)) => {
                        let error = SchedulerError::Execute { query: query.clone(), source };
                        match error.kind() {
                            ErrorKind::LostExecutor { executor } if retry => (executor, error),
                            _ => return Err(error),
                        }
                    }
                    Some(first) => {
                        result.batches = Box::pin(stream::once(std::future::ready(first)).chain(result.batches));
                        return Ok(result);
                    }
                    // No rows: the stream has ended and must not be polled again.
                    None => {
                        result.batches = Box::pin(stream::empty());
                        return Ok(result);
                    }
                },
            };
            drop_unless_it_answers(&self.cluster, &self.channels, &lost).await;
            tracing::warn!(%query, executor = %lost, attempt, %error, "executor lost before any row was returned; planning again without it");
            // A new id: the failed attempt's tasks are cancelled by id, in the background, and
            // that must not reach the new attempt's tasks on the surviving executors.
            query = QueryId::random();
            attempt += 1;
            last_loss = Some(error);
            excluded.push(lost);
        }
    }

    /// Runs `plan` once with every task reporting its plan with metrics (`EXPLAIN ANALYZE`):
    /// the result's statistics hold the plan that ran.
    pub async fn analyze(
        &self,
        state: &SessionState,
        query: QueryId,
        plan: &LogicalPlan,
    ) -> Result<QueryResult, SchedulerError> {
        let attempt = Attempt { write: None, excluded: &[], analyze: true };
        self.start(state, query, plan, attempt, &ProgressSlot::default()).await
    }

    /// The stages `plan` would run as, without running it (`EXPLAIN`).
    pub async fn explain(
        &self,
        state: &SessionState,
        query: QueryId,
        plan: &LogicalPlan,
    ) -> Result<DistributedPlan, SchedulerError> {
        let executors = self.cluster.schedulable();
        let planned = physical_plan(state, plan, &executors, true).await?;
        distributed_plan(query, planned.physical, &executors, planned.scans, &self.signer, planned.small)
    }

    async fn start(
        &self,
        state: &SessionState,
        query: QueryId,
        plan: &LogicalPlan,
        Attempt { write, excluded, analyze }: Attempt<'_>,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let started = Instant::now();
        // Held until the tasks are installed: an executor draining meanwhile waits for them.
        let placement = self.cluster.place(excluded);
        let executors = placement.executors.clone();
        // Writes always spread: each executor's writers write their share of the files.
        let Planned { mut physical, scans, in_use, small } =
            physical_plan(state, plan, &executors, write.is_none()).await?;
        if let Some(write) = write {
            if let Some(bucket) = crate::write::bucket_column(write) {
                // One writer holds each bucket: the rows are shuffled by it.
                let bucket = datafusion::physical_expr::expressions::col(bucket, &physical.schema())
                    .map_err(SchedulerError::plan)?;
                let writers = executors.iter().map(|e| e.task_slots as usize).sum::<usize>().max(1);
                let shuffle = datafusion::physical_plan::Partitioning::Hash(vec![bucket], writers);
                let shuffled = datafusion::physical_plan::repartition::RepartitionExec::try_new(physical, shuffle)
                    .map_err(SchedulerError::plan)?;
                physical = Arc::new(shuffled);
            }
            // Each partition writes its own files; the reports are gathered here.
            let writer = TableWriteExec::try_new(physical, write.clone()).map_err(SchedulerError::plan)?;
            physical = Arc::new(CoalescePartitionsExec::new(Arc::new(writer)));
        }
        let planned = started.elapsed();
        let policy = state.config().get_extension::<RetryPolicy>().map(|p| *p).unwrap_or_default();
        let mut distributed = distributed_plan(query.clone(), physical, &executors, scans, &self.signer, small)?;
        distributed.spool = policy == RetryPolicy::Task;
        let cut = started.elapsed();
        if !distributed.stages.is_empty() && executors.is_empty() {
            return Err(SchedulerError::NoExecutors { query });
        }
        let (members, mut guard) = self.guard(&distributed, in_use);
        self.launch(&distributed, analyze).await?;
        drop(placement);
        tracing::debug!(%query, stages = distributed.stages.len(), retry_policy = policy.name(), ?planned, ?cut,
            launched = ?started.elapsed(), "query launched");

        let distributed = Arc::new(distributed);
        let (cluster, channels) = (Arc::clone(&self.cluster), Arc::clone(&self.channels));
        // The final gather's readers may ask for lost tasks to run again.
        let (rerun, count): (Arc<dyn TaskRerun>, _) = match policy {
            RetryPolicy::Query => {
                let reruns = Reruns::new(Arc::clone(&distributed), analyze, cluster, channels, Arc::clone(&members));
                let count = Arc::clone(&reruns.count);
                (Arc::new(reruns), count)
            }
            RetryPolicy::Task => {
                let recovery =
                    Recovery::new(Arc::clone(&distributed), analyze, cluster, channels, Arc::clone(&members));
                let count = Arc::clone(&recovery.count);
                (Arc::new(Recoveries(Arc::new(recovery))), count)
            }
        };
        let rerun = RerunHandle {
            rerun,
            max_per_source: match policy {
                RetryPolicy::Query => MAX_RERUNS_PER_SOURCE,
                RetryPolicy::Task => 2 * MAX_TASK_ATTEMPTS as usize,
            },
            keep_sources: policy == RetryPolicy::Task,
            kept: Default::default(),
        };
        let received = Arc::new(EndedTasks::default());
        let mut expected: Vec<(u32, u32)> =
            distributed.stages.iter().flat_map(|s| s.tasks.iter().map(|t| (s.id.0, t.id.0))).collect();
        expected.sort_unstable();
        guard.accounts = Some(Accounts { received: Arc::clone(&received), expected, reruns: Arc::clone(&count) });
        let stats = QueryStatsHandle {
            query: query.clone(),
            started,
            rows: Arc::new(AtomicU64::new(0)),
            plan: Some(Arc::clone(&distributed)),
            scans: distributed.scans.clone(),
            late: Arc::default(),
            reruns: count,
        };
        progress.set(ProgressProbe::new(&distributed, &stats, members, &self.channels));
        let schema = distributed.root.schema();
        let mut state = state.clone();
        state.config_mut().set_extension(Arc::new(rerun));
        // The final stage's readers keep there the tasks' accounts their trailers carry.
        state.config_mut().set_extension(received);
        let root = Arc::clone(&distributed.root);
        let batches = self
            .compute
            .stream(|| execute_stream(root, state.task_ctx()))
            .map_err(|source| SchedulerError::Execute { query: query.clone(), source })?;
        let rows = Arc::clone(&stats.rows);
        let batches = guarded(batches, guard, Arc::clone(&stats.late)).inspect_ok(move |batch| {
            rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        });
        Ok(QueryResult { query, schema, batches: Box::pin(batches), stats })
    }
}

impl QueryRunner {
    /// The executors with tasks of `distributed` (a re-run may add one), and the guard that ends
    /// the query on them.
    pub(super) fn guard(
        &self,
        distributed: &DistributedPlan,
        in_use: Option<InUse>,
    ) -> (Arc<Mutex<Vec<ExecutorAddr>>>, QueryGuard) {
        let members = Arc::new(Mutex::new(distributed.executors()));
        let guard = QueryGuard {
            query: distributed.query.clone(),
            _in_use: in_use,
            executors: Arc::clone(&members),
            abandoned: self.abandoned.clone(),
            channels: Arc::clone(&self.channels),
            accounts: None,
            metrics: Arc::clone(&self.metrics),
        };
        (members, guard)
    }
}

pub(super) fn distributed_plan(
    query: QueryId,
    physical: Arc<dyn ExecutionPlan>,
    executors: &[ExecutorInfo],
    scans: Vec<TableScanReport>,
    signer: &Arc<TaskSigner>,
    small: Option<u64>,
) -> Result<DistributedPlan, SchedulerError> {
    DistributedPlan::cut(query, physical, executors, scans, signer, small).map_err(|e| match e {
        CutError::Plan(e) => SchedulerError::plan(e),
        CutError::Broken(broken) => SchedulerError::Internal(broken),
    })
}
