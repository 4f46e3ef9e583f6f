//! Installing a query's tasks on its executors: each task's plan restricted to its share,
//! encoded, and sent with the rest of that executor's tasks in one `LaunchTasks` call.

use std::collections::BTreeMap;
use std::time::Instant;

use datafusion::common::Result;
use glaux_proto::generated::{LaunchTasksRequest, TaskDefinition};
use glaux_proto::{ClusterChannels, ExecutorAddr, QueryId, TaskError, TokenPurpose, encode_plan};

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
