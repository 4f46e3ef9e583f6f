//! Re-running a storage-only task whose executor was lost while the query streamed.
//!
//! The final gather on the scheduler reads the last executor stage; when that stage only reads
//! storage (a scan with filters and projections, nothing from another stage), losing one of its
//! executors loses nothing that cannot be read again: the task is installed on a surviving executor
//! and the reader resumes there, skipping the rows it already returned (`StageReaderExec`). A task
//! that had returned rows is re-run only if it yields them in the same order every run (no
//! operator that reorders, merges or aggregates); tasks that read other stages are never re-run
//! here, because the streamed shuffle output they read is gone with its executor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use glaux_proto::{ClusterChannels, ExecutorAddr, Rerun, RerunResult, StageId, StageReaderExec, TaskId, TaskRerun};

use super::launch::{drop_unless_it_answers, launch_on, task_definition};
use crate::cluster::ClusterState;
use crate::planner::DistributedPlan;

/// How long installing a re-run task may take before the reader gives up on it.
const RELAUNCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often one reader source may be re-run before its reader gives up.
pub(super) const MAX_RERUNS_PER_SOURCE: usize = 3;

/// A re-run in progress or done, shared by every reader of the task.
type Relaunch = Shared<BoxFuture<'static, RerunResult>>;

/// One task of one query lost on one executor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LostTask {
    stage: StageId,
    task: TaskId,
    lost: ExecutorAddr,
}

/// The re-runs of one query.
#[derive(Debug)]
pub(super) struct Reruns {
    plan: Arc<DistributedPlan>,
    analyze: bool,
    cluster: Arc<ClusterState>,
    channels: Arc<ClusterChannels>,
    /// Executors the query has tasks on (shared with the query's guard, which ends them).
    executors: Arc<Mutex<Vec<ExecutorAddr>>>,
    /// Tasks re-run so far.
    pub count: Arc<AtomicU64>,
    /// One re-run per task and lost executor, whichever of the task's partitions asks first.
    started: Mutex<HashMap<LostTask, Relaunch>>,
}

impl Reruns {
    pub fn new(
        plan: Arc<DistributedPlan>,
        analyze: bool,
        cluster: Arc<ClusterState>,
        channels: Arc<ClusterChannels>,
        executors: Arc<Mutex<Vec<ExecutorAddr>>>,
    ) -> Self {
        Self { plan, analyze, cluster, channels, executors, count: Arc::default(), started: Mutex::default() }
    }

    /// Whether the task may run again, given that `delivered` of its rows were passed on.
    fn check(&self, stage: StageId, delivered: u64) -> Result<(), String> {
        let Some(stage) = self.plan.stages.iter().find(|s| s.id == stage) else {
            return Err(format!("stage {stage} is not part of the query"));
        };
        if !reads_only_storage(&stage.plan) {
            return Err("the task reads other stages' streamed output, which was not kept".into());
        }
        if delivered > 0 && !same_order_every_run(&stage.plan) {
            return Err(format!(
                "{delivered} of its rows were already returned and a second run may yield them in another order"
            ));
        }
        Ok(())
    }
}

impl TaskRerun for Reruns {
    fn rerun(
        &self,
        stage: StageId,
        task: TaskId,
        _attempt: u32,
        lost: &ExecutorAddr,
        delivered: u64,
    ) -> BoxFuture<'static, RerunResult> {
        if let Err(why) = self.check(stage, delivered) {
            return futures::future::ready(Err(why)).boxed();
        }
        let key = LostTask { stage, task, lost: lost.clone() };
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        let run = started.entry(key).or_insert_with(|| relaunch(self, stage, task, lost.clone()).boxed().shared());
        run.clone().boxed()
    }
}

/// Installs the task on the surviving executor with the fewest of the query's tasks.
fn relaunch(
    reruns: &Reruns,
    stage_id: StageId,
    task_id: TaskId,
    lost: ExecutorAddr,
) -> impl Future<Output = RerunResult> + use<> {
    let (plan, analyze) = (Arc::clone(&reruns.plan), reruns.analyze);
    let (cluster, channels) = (Arc::clone(&reruns.cluster), Arc::clone(&reruns.channels));
    let (executors, count) = (Arc::clone(&reruns.executors), Arc::clone(&reruns.count));
    async move {
        drop_unless_it_answers(&cluster, &channels, &lost).await;
        let stage = plan.stages.iter().find(|s| s.id == stage_id).ok_or("unknown stage")?;
        let task = stage.tasks.iter().find(|t| t.id == task_id).ok_or("unknown task")?;
        let load = |executor: &ExecutorAddr| {
            plan.stages.iter().flat_map(|s| &s.tasks).filter(|t| t.executor == *executor).count()
        };
        // Held until the task is installed, as a query's first placement is.
        let placement = cluster.place(std::slice::from_ref(&lost));
        let target = placement
            .executors
            .iter()
            .min_by_key(|e| load(&e.addr))
            .ok_or("no executor is left to run it")?
            .addr
            .clone();
        let definition = task_definition(&plan, stage, task, analyze).map_err(|e| e.to_string())?;
        executors.lock().unwrap_or_else(|e| e.into_inner()).push(target.clone());
        let launch = launch_on(&channels, &plan.query, target.clone(), vec![definition]);
        match tokio::time::timeout(RELAUNCH_TIMEOUT, launch).await {
            Ok(Ok(())) => {
                count.fetch_add(1, Ordering::Relaxed);
                Ok(Rerun { executor: target, attempt: 1 })
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("executor {target} did not accept it within {RELAUNCH_TIMEOUT:?}")),
        }
    }
}

/// The fragment reads no other stage.
fn reads_only_storage(plan: &Arc<dyn ExecutionPlan>) -> bool {
    !any_node(plan, |node| node.downcast_ref::<StageReaderExec>().is_some())
}

/// Every operator of the fragment passes rows on in the order its scans read them, so a second
/// run of a partition yields the same rows in the same order.
fn same_order_every_run(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const IN_ORDER: [&str; 9] = [
        "DataSourceExec",
        "FilterExec",
        "ProjectionExec",
        "CoalesceBatchesExec",
        "CooperativeExec",
        "PartitionSubsetExec",
        "LocalLimitExec",
        "GlobalLimitExec",
        "EmptyExec",
    ];
    !any_node(plan, |node| !IN_ORDER.contains(&node.name()))
}

fn any_node(plan: &Arc<dyn ExecutionPlan>, test: impl Fn(&dyn ExecutionPlan) -> bool) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found = test(node.as_ref());
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}
