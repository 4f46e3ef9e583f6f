//! What a query reports: its statistics once its stream has ended ([`QueryStatsHandle`]), and
//! its progress while it runs ([`ProgressProbe`], found through a [`ProgressSlot`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glaux_catalog::TableScanReport;
use glaux_proto::generated::{QueryProgressRequest, QueryProgressResponse};
use glaux_proto::{ClusterChannels, ExecutorAddr, QueryId, QueryProgress, QueryStats};

use super::guard::Late;
use super::stage_progress::ExecutorTask;
use crate::planner::DistributedPlan;

/// How long a progress probe waits for each executor's answer.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Computes the statistics of a query once its stream has ended.
#[derive(Clone)]
pub struct QueryStatsHandle {
    pub(super) query: QueryId,
    pub(super) started: Instant,
    pub(super) rows: Arc<AtomicU64>,
    /// The plan that ran (for `EXPLAIN ANALYZE`); its readers hold the tasks' statistics.
    pub(super) plan: Option<Arc<DistributedPlan>>,
    pub(super) scans: Vec<TableScanReport>,
    /// What the query's tasks reported when it ended.
    pub(super) late: Arc<Mutex<Late>>,
    /// Tasks run again after their executor was lost.
    pub(super) reruns: Arc<AtomicU64>,
}

impl QueryStatsHandle {
    /// The statistics of a statement that ran here whole and returned `rows`.
    pub(super) fn local(query: QueryId, rows: u64) -> Self {
        Self {
            query,
            started: Instant::now(),
            rows: Arc::new(AtomicU64::new(rows)),
            plan: None,
            scans: Vec::new(),
            late: Arc::default(),
            reruns: Arc::default(),
        }
    }

    /// The plan that ran, for a query that ran on the cluster.
    pub fn plan(&self) -> Option<&Arc<DistributedPlan>> {
        self.plan.as_ref()
    }

    /// Each task as it ended (empty until the query's stream has ended, and for a query that
    /// failed or was dropped: its tasks were cancelled in the background).
    pub fn ended_tasks(&self) -> Vec<ExecutorTask> {
        self.late.lock().unwrap_or_else(|e| e.into_inner()).tasks.clone()
    }

    pub fn snapshot(&self) -> QueryStats {
        // Every task reported its own work when the query ended (`QueryGuard::finish`).
        let scan = self.late.lock().unwrap_or_else(|e| e.into_inner()).stats.clone();
        let stages = self.plan.as_ref().map_or(&[][..], |p| &p.stages[..]);
        QueryStats {
            query_id: self.query.to_string(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            rows: self.rows.load(Ordering::Relaxed),
            stages: stages.len() as u64,
            tasks: stages.iter().map(|s| s.tasks.len() as u64).sum(),
            files_planned: stages.iter().map(|s| s.files as u64).sum(),
            bytes_planned: stages.iter().map(|s| s.bytes).sum(),
            partitions_read: self.scans.iter().map(|s| s.partitions as u64).sum(),
            partitions_total: self.scans.iter().map(|s| s.partitions_total.unwrap_or(s.partitions) as u64).sum(),
            tasks_rerun: self.reruns.load(Ordering::Relaxed),
            scan,
        }
    }
}

/// Where a running statement's progress probe appears once its query is launched, and whether
/// its workgroup admitted it (it no longer waits for a place).
#[derive(Clone, Default)]
pub struct ProgressSlot {
    probe: Arc<Mutex<Option<ProgressProbe>>>,
    admitted: Arc<std::sync::atomic::AtomicBool>,
}

impl ProgressSlot {
    pub(super) fn set(&self, probe: ProgressProbe) {
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    pub fn get(&self) -> Option<ProgressProbe> {
        self.probe.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn admit(&self) {
        self.admitted.store(true, Ordering::Relaxed);
    }

    /// Whether the statement runs (its workgroup admitted it).
    pub fn admitted(&self) -> bool {
        self.admitted.load(Ordering::Relaxed)
    }
}

/// Collects a running query's progress from its executors.
#[derive(Clone)]
pub struct ProgressProbe {
    pub(super) query: QueryId,
    pub(super) started: Instant,
    pub(super) stages: u64,
    pub(super) tasks: u64,
    pub(super) rows: Arc<AtomicU64>,
    pub(super) executors: Arc<Mutex<Vec<ExecutorAddr>>>,
    pub(super) channels: Arc<ClusterChannels>,
    pub(super) plan: Arc<DistributedPlan>,
    /// Where the tasks' last descriptions are kept (with the query's statistics).
    late: Arc<Mutex<Late>>,
}

impl ProgressProbe {
    /// The probe of query `plan` (whose statistics are `stats`) running on `executors`.
    pub(super) fn new(
        plan: &Arc<DistributedPlan>,
        stats: &QueryStatsHandle,
        executors: Arc<Mutex<Vec<ExecutorAddr>>>,
        channels: &Arc<ClusterChannels>,
    ) -> Self {
        Self {
            query: plan.query.clone(),
            started: stats.started,
            stages: plan.stages.len() as u64,
            tasks: plan.stages.iter().map(|s| s.tasks.len() as u64).sum(),
            rows: Arc::clone(&stats.rows),
            executors,
            channels: Arc::clone(channels),
            plan: Arc::clone(plan),
            late: Arc::clone(&stats.late),
        }
    }

    /// How the query ran, for its history record: its stages and what their tasks reported as
    /// they ended. A query that did not run to its end (failed, cancelled, its client gone) has
    /// its tasks as last described while it ran, if someone watched its progress.
    pub fn how_it_ran(&self) -> String {
        let late = self.late.lock().unwrap_or_else(|e| e.into_inner());
        let (tasks, ended) = if late.tasks.is_empty() { (&late.seen, false) } else { (&late.tasks, true) };
        super::stage_progress::how_it_ran(&self.plan, &super::stage_progress::by_stage(tasks), ended)
    }

    /// The stages it runs as.
    pub fn plan(&self) -> &Arc<DistributedPlan> {
        &self.plan
    }

    /// Asks every executor of the query, each task described or not (those that do not answer
    /// within [`PROGRESS_TIMEOUT`] count as no progress).
    async fn ask(&self, tasks: bool) -> Vec<(ExecutorAddr, QueryProgressResponse)> {
        let executors = self.executors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let calls = executors.into_iter().map(|executor| async move {
            let mut client = self.channels.executor_control(&executor).ok()?;
            let request = QueryProgressRequest { query_id: self.query.to_string(), stage_id: None, tasks };
            let answer = tokio::time::timeout(PROGRESS_TIMEOUT, client.query_progress(request)).await.ok()?.ok()?;
            Some((executor, answer.into_inner()))
        });
        futures::future::join_all(calls).await.into_iter().flatten().collect()
    }

    /// Its stages and tasks as planned.
    pub fn planned(&self) -> (u64, u64) {
        (self.stages, self.tasks)
    }

    /// Every task of the query now, as its executor describes it.
    pub async fn tasks(&self) -> Vec<ExecutorTask> {
        let mut tasks = Vec::new();
        for (executor, answer) in self.ask(true).await {
            let executor = executor.to_string();
            tasks
                .extend(answer.task_progress.into_iter().map(|task| ExecutorTask { executor: executor.clone(), task }));
        }
        self.late.lock().unwrap_or_else(|e| e.into_inner()).seen.clone_from(&tasks);
        tasks
    }

    pub async fn progress(&self) -> QueryProgress {
        let mut progress = QueryProgress {
            stages: self.stages,
            tasks: self.tasks,
            rows: self.rows.load(Ordering::Relaxed),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        for (_, answer) in self.ask(false).await {
            progress.tasks_done += u64::from(answer.tasks_done);
            progress.task_rows += answer.rows_out;
            progress.bytes_scanned += answer.bytes_scanned;
        }
        progress.tasks_done = progress.tasks_done.min(progress.tasks);
        progress
    }
}
