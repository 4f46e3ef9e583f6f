//! Installing a query's tasks on its executors: each task's plan restricted to its share,
//! encoded, and sent with the rest of that executor's tasks in one `LaunchTasks` call. And what
//! the membership does with an executor a query found unreachable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datafusion::common::Result;
use glaux_proto::generated::{LaunchTasksRequest, QueryProgressRequest, TaskDefinition};
use glaux_proto::{ClusterChannels, ExecutorAddr, QueryId, TaskError, TokenPurpose, encode_plan};

use crate::cluster::ClusterState;
use crate::error::SchedulerError;
use crate::planner::{DistributedPlan, Stage, Task, TaskPlan, task_plan};

/// What an executor needs to run one task of a stage.
pub(super) fn task_definition(
    distributed: &DistributedPlan,
    stage: &Stage,
    task: &Task,
    analyze: bool,
) -> Result<TaskDefinition> {
    let query = &distributed.query;
    let TaskPlan { plan, plan_partitions, dynamic_filters } = task_plan(stage, task)?;
    let encoded = encode_plan(plan)?;
    let (partitions, reads_per_partition) = stage.served_partitions(task);
    Ok(TaskDefinition {
        query_id: query.to_string(),
        stage_id: stage.id.0,
        task_id: task.id.0,
        partitions,
        plan: encoded.bytes,
        scan_codecs: encoded.scan_codecs,
        reads_per_partition,
        plan_partitions,
        dynamic_filters,
        analyze,
        run_token: distributed.signer.sign(TokenPurpose::Run, query, stage.id, task.id),
        spool: distributed.spool,
    })
}

/// Installs every task of the plan; each executor gets one request with all of its tasks.
pub(super) async fn launch(
    channels: &ClusterChannels,
    plan: &DistributedPlan,
    analyze: bool,
) -> Result<(), SchedulerError> {
    let started = Instant::now();
    let mut requests: BTreeMap<ExecutorAddr, Vec<TaskDefinition>> = BTreeMap::new();
    for stage in &plan.stages {
        for task in &stage.tasks {
            let definition = task_definition(plan, stage, task, analyze).map_err(SchedulerError::plan)?;
            requests.entry(task.executor.clone()).or_default().push(definition);
        }
    }
    let defined = started.elapsed();
    let launches = requests.into_iter().map(|(executor, tasks)| launch_on(channels, &plan.query, executor, tasks));
    futures::future::try_join_all(launches).await?;
    // Defining (restricting and encoding each task's plan) and installing (the executors decode
    // them) are most of a distributed query's fixed cost after planning.
    tracing::debug!(query = %plan.query, ?defined, installed = ?started.elapsed(), "tasks launched");
    Ok(())
}

/// Installs `tasks` on `executor`.
pub(super) async fn launch_on(
    channels: &ClusterChannels,
    query: &QueryId,
    executor: ExecutorAddr,
    tasks: Vec<TaskDefinition>,
) -> Result<(), SchedulerError> {
    let mut client = match channels.executor_control(&executor) {
        Ok(client) => client,
        Err(e) => {
            let message = e.to_string();
            return Err(SchedulerError::LaunchTasks { query: query.clone(), executor, lost: true, message });
        }
    };
    if let Err(status) = client.launch_tasks(LaunchTasksRequest { tasks }).await {
        // Unreachable, or the connection broke: the executor is lost; otherwise it refused.
        let lost = TaskError::from_status(&executor, &status).lost_executor() == Some(&executor);
        let message = status.message().to_string();
        return Err(SchedulerError::LaunchTasks { query: query.clone(), executor, lost, message });
    }
    Ok(())
}

/// How long an executor a query found unreachable has to answer the scheduler to stay a member.
/// A live one answers in milliseconds; a dead process refuses at once; this is the wait for a
/// host that is gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Drops `lost` from the membership unless it answers the scheduler now. A member reports
/// another lost when the link between the two broke, which says nothing of either's link to the
/// scheduler: dropping a live executor on that word would end every other query's reads from it.
/// The query that met the loss leaves `lost` out either way (a re-plan or a re-run excludes it).
pub(super) async fn drop_unless_it_answers(cluster: &ClusterState, channels: &ClusterChannels, lost: &ExecutorAddr) {
    // A new connection: the one the loss came through may be the broken one.
    channels.forget(lost);
    let probe = async {
        let mut client = channels.executor_control(lost).ok()?;
        let request = QueryProgressRequest { query_id: QueryId::random().to_string(), stage_id: None, tasks: false };
        match client.query_progress(request).await {
            Ok(_) => Some(()),
            // Any status the executor itself sent is an answer; a broken call is not.
            Err(status) => (TaskError::from_status(lost, &status).lost_executor() != Some(lost)).then_some(()),
        }
    };
    let answered = tokio::time::timeout(PROBE_TIMEOUT, probe).await.ok().flatten().is_some();
    cluster.found_lost(lost, answered);
}
