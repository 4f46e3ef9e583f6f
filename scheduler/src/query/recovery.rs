//! Retry policy `task`: a lost executor costs the query the tasks that need running again, not
//! the query.
//!
//! Every task keeps its output in a spool on its executor (`executor/src/spool.rs`) and serves it
//! only once all of it is written; the final stage's readers read each task whole (every partition
//! from one attempt) before passing its rows on (`glaux_proto::kept_source`). So a task's output is
//! never half read by a consumer that cannot read it again, and when an executor is lost the damage
//! is bounded by the stage tree:
//!
//! - a task that ran on the lost executor lost its output, and runs again elsewhere if anything
//!   still needs to read it;
//! - a task that has not written its whole output and reads one that runs again (it was reading,
//!   or will read, the lost copy) runs again too, where it was unless that is the lost executor;
//! - a task whose whole output is written on a survivor is kept: its consumers read it again;
//! - a reader of a task that runs again, that has not written its whole output, runs again too
//!   (found upwards from the asked task): its attempt fails, and its reader finds the next one.
//!
//! A final-stage reader whose source failed because an executor was lost asks [`Recovery`] (as a
//! `TaskRerun`) to run its task again; the first to ask about a loss repairs the plan: it finds
//! the tasks above, installs them with plans reading the new places, and says where its task now
//! runs. Repairs happen one at a time, and a reader that asks about an attempt already replaced is
//! simply told the current one. Each task runs at most [`MAX_ATTEMPTS`] times; a query with no
//! executor left, or with a task out of attempts, fails naming the executors it lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use glaux_proto::generated::{QueryProgressRequest, TaskDefinition};
use glaux_proto::{ClusterChannels, ExecutorAddr, Rerun, RerunResult, StageId, TaskId, TaskRerun};

use super::launch::{drop_unless_it_answers, launch_on, task_definition};
use crate::cluster::ClusterState;
use crate::error::SchedulerError;
use crate::planner::DistributedPlan;

/// How often one task may run in all (its first run included).
pub(super) const MAX_ATTEMPTS: u32 = 4;

/// How long installing the re-run tasks may take, and how long a survivor may take to say which
/// outputs it has written.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

type TaskRef = (StageId, TaskId);

/// How a round of a repair ended.
enum Round {
    /// Every task that runs again is installed.
    Installed,
    /// These survivors were lost while the tasks were installed.
    Lost(Vec<ExecutorAddr>),
}

/// The re-runs of one query under retry policy `task`.
#[derive(Debug)]
pub(super) struct Recovery {
    analyze: bool,
    cluster: Arc<ClusterState>,
    channels: Arc<ClusterChannels>,
    /// Executors the query has tasks on (shared with the query's guard, which ends them).
    executors: Arc<Mutex<Vec<ExecutorAddr>>>,
    /// Tasks run again so far.
    pub count: Arc<AtomicU64>,
    /// Where every task runs now, and its attempt; held by one repair at a time.
    placed: tokio::sync::Mutex<Placed>,
}

#[derive(Debug)]
struct Placed {
    plan: Arc<DistributedPlan>,
    attempts: HashMap<TaskRef, u32>,
    lost: Vec<ExecutorAddr>,
}

impl Placed {
    fn attempt(&self, task: TaskRef) -> u32 {
        self.attempts.get(&task).copied().unwrap_or(0)
    }

    fn executor(&self, (stage, task): TaskRef) -> Option<&ExecutorAddr> {
        let stage = self.plan.stages.iter().find(|s| s.id == stage)?;
        Some(&stage.tasks.iter().find(|t| t.id == task)?.executor)
    }

    fn current(&self, task: TaskRef) -> Result<Rerun, String> {
        let executor = self.executor(task).ok_or_else(|| format!("stage {} has no task {}", task.0, task.1))?;
        Ok(Rerun { executor: executor.clone(), attempt: self.attempt(task) })
    }

    fn lost_words(&self) -> String {
        self.lost.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl Recovery {
    pub fn new(
        plan: Arc<DistributedPlan>,
        analyze: bool,
        cluster: Arc<ClusterState>,
        channels: Arc<ClusterChannels>,
        executors: Arc<Mutex<Vec<ExecutorAddr>>>,
    ) -> Self {
        let placed = Placed { plan, attempts: HashMap::new(), lost: Vec::new() };
        Self { analyze, cluster, channels, executors, count: Arc::default(), placed: tokio::sync::Mutex::new(placed) }
    }

    /// Runs `wanted` again, with every task it needs that cannot be read any more, after `lost`.
    async fn repair(&self, wanted: TaskRef, attempt: u32, lost: ExecutorAddr) -> RerunResult {
        let mut placed = self.placed.lock().await;
        if placed.attempt(wanted) > attempt {
            // Another reader's repair already ran it again.
            return placed.current(wanted);
        }
        let mut newly_lost = vec![lost];
        // A survivor lost while the re-runs are installed is one more loss: the repair starts
        // over without it. Every round loses an executor the round before still had, so this ends.
        loop {
            for lost in newly_lost.drain(..) {
                if !placed.lost.contains(&lost) {
                    tracing::warn!(query = %placed.plan.query, executor = %lost, "executor lost; running its tasks again");
                    drop_unless_it_answers(&self.cluster, &self.channels, &lost).await;
                    placed.lost.push(lost);
                }
            }
            match self.run_again(&mut placed, wanted).await? {
                Round::Installed => return placed.current(wanted),
                Round::Lost(lost) => newly_lost = lost,
            }
        }
    }

    /// One round of a repair: decides what runs again where, and installs it.
    async fn run_again(&self, placed: &mut Placed, wanted: TaskRef) -> Result<Round, String> {
        let written = self.written_outputs(placed).await;
        let again = tasks_to_run_again(placed, wanted, &written).map_err(|e| e.to_string())?;
        if let Some(&spent) = again.iter().find(|task| placed.attempt(**task) + 1 >= MAX_ATTEMPTS) {
            return Err(format!(
                "stage {} task {} ran {MAX_ATTEMPTS} times; executors lost: {}",
                spent.0,
                spent.1,
                placed.lost_words()
            ));
        }
        // Held until the tasks are installed, as a query's first placement is.
        let placement = self.cluster.place(&placed.lost);
        let survivors: Vec<ExecutorAddr> = placement.executors.iter().map(|e| e.addr.clone()).collect();
        if survivors.is_empty() {
            return Err(format!("no executor is left to run it; executors lost: {}", placed.lost_words()));
        }
        let mut load: HashMap<ExecutorAddr, usize> = survivors.iter().map(|e| (e.clone(), 0)).collect();
        for task in placed.plan.stages.iter().flat_map(|s| &s.tasks) {
            if let Some(count) = load.get_mut(&task.executor) {
                *count += 1;
            }
        }
        let mut moved = HashMap::new();
        for &task in &again {
            let here = placed.executor(task).cloned();
            // A task whose executor survives runs again there; a lost one's on the least busy survivor.
            let target = match here.filter(|e| survivors.contains(e)) {
                Some(here) => here,
                None => {
                    let least = load.iter().min_by_key(|(e, n)| (**n, (*e).clone())).map(|(e, _)| e.clone());
                    let target = least.ok_or("no executor is left to run it")?;
                    *load.entry(target.clone()).or_default() += 1;
                    target
                }
            };
            moved.insert(task, target);
        }
        let plan = placed.plan.relocated(&moved).map_err(|e| e.to_string())?;
        let mut requests: BTreeMap<ExecutorAddr, Vec<TaskDefinition>> = BTreeMap::new();
        for stage in &plan.stages {
            for task in stage.tasks.iter().filter(|t| moved.contains_key(&(stage.id, t.id))) {
                let definition = task_definition(&plan, stage, task, self.analyze).map_err(|e| e.to_string())?;
                requests.entry(task.executor.clone()).or_default().push(definition);
            }
        }
        {
            let mut members = self.executors.lock().unwrap_or_else(|e| e.into_inner());
            let new: Vec<ExecutorAddr> = requests.keys().filter(|e| !members.contains(e)).cloned().collect();
            members.extend(new);
        }
        let (channels, query) = (&self.channels, &plan.query);
        let launches = requests.into_iter().map(|(executor, tasks)| async move {
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, launch_on(channels, query, executor.clone(), tasks));
            match answer.await {
                Ok(Ok(())) => Ok(()),
                // Unreachable, its connection broken, or silent for the whole timeout: lost too.
                Ok(Err(SchedulerError::LaunchTasks { lost: true, .. })) | Err(_) => Err(Ok(executor)),
                Ok(Err(refused)) => Err(Err(refused.to_string())),
            }
        });
        let mut lost = Vec::new();
        for answer in futures::future::join_all(launches).await {
            match answer {
                Ok(()) => {}
                Err(Ok(executor)) => lost.push(executor),
                Err(Err(refused)) => return Err(refused),
            }
        }
        drop(placement);
        if !lost.is_empty() {
            tracing::warn!(query = %plan.query, executors = ?lost, "executors lost while tasks were run again; repairing again");
            return Ok(Round::Lost(lost));
        }
        for &task in &again {
            *placed.attempts.entry(task).or_default() += 1;
        }
        self.count.fetch_add(again.len() as u64, Ordering::Relaxed);
        tracing::warn!(query = %plan.query, tasks = ?again, "tasks run again");
        placed.plan = Arc::new(plan);
        Ok(Round::Installed)
    }

    /// The tasks whose whole output is written on the survivor that runs them.
    async fn written_outputs(&self, placed: &Placed) -> HashSet<TaskRef> {
        let plan = &placed.plan;
        let survivors: HashSet<&ExecutorAddr> = plan
            .stages
            .iter()
            .flat_map(|s| &s.tasks)
            .map(|t| &t.executor)
            .filter(|e| !placed.lost.contains(e))
            .collect();
        let asks = survivors.into_iter().map(|executor| async move {
            let mut client = self.channels.executor_control(executor).ok()?;
            let request = QueryProgressRequest { query_id: plan.query.to_string(), stage_id: None, tasks: true };
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, client.query_progress(request)).await.ok()?.ok()?;
            let written = answer.into_inner().task_progress.into_iter().filter(|t| t.spooled);
            Some(written.map(|t| ((StageId(t.stage_id), TaskId(t.task_id)), executor.clone())).collect::<Vec<_>>())
        });
        let answers = futures::future::join_all(asks).await;
        // Only the attempt that runs where the plan says counts (an earlier one elsewhere is stale).
        answers
            .into_iter()
            .flatten()
            .flatten()
            .filter(|(task, at)| placed.executor(*task) == Some(at))
            .map(|(t, _)| t)
            .collect()
    }
}

/// `wanted`, and every task it needs that must run again: a task on a lost executor, and a task
/// that has not written its whole output and reads one that runs again.
fn tasks_to_run_again(
    placed: &Placed,
    wanted: TaskRef,
    written: &HashSet<TaskRef>,
) -> datafusion::common::Result<Vec<TaskRef>> {
    let plan = &placed.plan;
    let mut inputs: HashMap<TaskRef, Vec<TaskRef>> = HashMap::new();
    for stage in &plan.stages {
        for task in &stage.tasks {
            inputs.insert((stage.id, task.id), plan.inputs_of(stage, task)?);
        }
    }
    // Inputs come before their readers in `plan.stages`, so one pass in that order decides each
    // task after everything it reads.
    let mut needs_run: HashMap<TaskRef, bool> = HashMap::new();
    for stage in &plan.stages {
        for task in &stage.tasks {
            let key = (stage.id, task.id);
            let lost = placed.lost.contains(&task.executor);
            let reads_rerun = inputs[&key].iter().any(|input| needs_run.get(input).copied().unwrap_or(false));
            needs_run.insert(key, lost || (!written.contains(&key) && reads_rerun));
        }
    }
    // From `wanted`: down to the inputs that must run again, and up to the readers that have
    // not written their whole output and read a task that runs again: their attempt fails (it
    // read the lost copy, or one the re-run replaces and cancels), so they run again in the same
    // repair and their own readers find a later attempt. A lost task whose output nobody needs
    // any more stays as it is.
    let mut again = vec![wanted];
    let mut seen: HashSet<TaskRef> = HashSet::from([wanted]);
    let mut next = 0;
    while let Some(&task) = again.get(next) {
        next += 1;
        let must = |other: &TaskRef| needs_run.get(other).copied().unwrap_or(false);
        let below = inputs.get(&task).into_iter().flatten().copied().filter(must);
        let above = (inputs.iter())
            .filter(|(reader, reads)| reads.contains(&task) && (must(reader) || !written.contains(reader)))
            .map(|(reader, _)| *reader);
        for other in below.chain(above).collect::<Vec<_>>() {
            if seen.insert(other) {
                again.push(other);
            }
        }
    }
    Ok(again)
}

/// The `TaskRerun` the final stage's readers ask.
#[derive(Debug)]
pub(super) struct Recoveries(pub Arc<Recovery>);

impl TaskRerun for Recoveries {
    fn rerun(
        &self,
        stage: StageId,
        task: TaskId,
        attempt: u32,
        lost: &ExecutorAddr,
        _delivered: u64,
    ) -> BoxFuture<'static, RerunResult> {
        let (recovery, lost) = (Arc::clone(&self.0), lost.clone());
        async move { recovery.repair((stage, task), attempt, lost).await }.boxed()
    }

    fn later_attempt(&self, stage: StageId, task: TaskId, attempt: u32) -> BoxFuture<'static, Option<Rerun>> {
        let recovery = Arc::clone(&self.0);
        async move {
            // Waits for a repair in progress: it may be replacing this very attempt.
            let placed = recovery.placed.lock().await;
            (placed.attempt((stage, task)) > attempt).then(|| placed.current((stage, task)).ok()).flatten()
        }
        .boxed()
    }
}
