//! `ExecutorControl`: the scheduler installs and cancels tasks. Converts and delegates only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use glaux_storage::CountingStores;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use glaux_proto::generated::executor_control_server::ExecutorControl;
use glaux_proto::generated::{
    CancelQueryRequest, CancelQueryResponse, LaunchTasksRequest, LaunchTasksResponse, QueryProgressRequest,
    QueryProgressResponse,
};
use glaux_proto::{
    EncodedPlan, EndedTasks, QueryId, StageId, TaskId, TaskStats, TokenPurpose, decode_plan, defer_filtered_starts,
};
use tonic::{Request, Response, Status};

use crate::error::ExecutorError;
use crate::page_index::keep_page_indexes;
use crate::task_key::TokenKey;
use crate::task_table::{InstalledTask, TaskKey, TaskTable};

pub struct ControlService {
    pub tasks: Arc<TaskTable>,
    pub session: SessionContext,
    pub task_key: TokenKey,
}

impl ControlService {
    /// A task context whose object stores count the bytes they read, for one task.
    fn counting_context(&self, dynamic_filters: bool) -> Result<(Arc<TaskContext>, Arc<AtomicU64>), ExecutorError> {
        let base = self.session.runtime_env();
        let stores = CountingStores::new(Arc::clone(&base.object_store_registry));
        let bytes_read = stores.bytes_read();
        let runtime = RuntimeEnvBuilder::from_runtime_env(&base)
            .with_object_store_registry(Arc::new(stores))
            .build_arc()
            .map_err(ExecutorError::Session)?;
        // Its readers keep the finished tasks' accounts they receive there (`InstalledTask::ended`).
        let mut config = self.session.copied_config().with_extension(Arc::new(EndedTasks::default()));
        config.options_mut().optimizer.enable_join_dynamic_filter_pushdown = dynamic_filters;
        let context = TaskContext::from(&self.session).with_session_config(config).with_runtime(runtime);
        Ok((Arc::new(context), bytes_read))
    }
}

/// Joins can emit batch after batch from one input batch, and an aggregation above them consumes
/// them in one loop: wrapped as cooperative, they give the runtime back every few batches, so a
/// cancelled or abandoned task stops within a second instead of when the join is done.
fn yielding_joins(plan: Arc<dyn ExecutionPlan>) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let join = node.is::<HashJoinExec>()
            || node.is::<NestedLoopJoinExec>()
            || node.is::<CrossJoinExec>()
            || node.is::<SortMergeJoinExec>()
            || node.is::<SymmetricHashJoinExec>();
        Ok(if join { Transformed::yes(Arc::new(CooperativeExec::new(node)) as _) } else { Transformed::no(node) })
    })
    .map(|t| t.data)
}

#[tonic::async_trait]
impl ExecutorControl for ControlService {
    async fn launch_tasks(
        &self,
        request: Request<LaunchTasksRequest>,
    ) -> Result<Response<LaunchTasksResponse>, Status> {
        // Decode every task before installing any, so a bad request installs nothing.
        let started = std::time::Instant::now();
        let mut decoded = Vec::new();
        for task in request.into_inner().tasks {
            // Only tasks the scheduler signed, each for exactly itself, run here.
            self.task_key.check(&task.run_token, TokenPurpose::Run, &task.query_id, task.stage_id, task.task_id)?;
            // Scans bind their object stores when decoded: decode in the task's counting context.
            let (ctx, bytes_read) = self.counting_context(task.dynamic_filters)?;
            let key = TaskKey {
                query: QueryId::from(task.query_id),
                stage: StageId(task.stage_id),
                task: TaskId(task.task_id),
            };
            let encoded = EncodedPlan { bytes: task.plan, scan_codecs: task.scan_codecs };
            let plan = decode_plan(&encoded, &ctx).map_err(|source| ExecutorError::DecodePlan {
                query: key.query.clone(),
                stage: key.stage,
                task: key.task,
                source,
            })?;
            let cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
            // With its joins' dynamic filters on, a scan under a coalesce in a join's probe side
            // opens once the join built its table (`glaux_proto::defer_filtered_starts`).
            let deferred = |plan| if task.dynamic_filters { defer_filtered_starts(plan) } else { Ok(plan) };
            let plan = yielding_joins(plan)
                .and_then(deferred)
                .and_then(|plan| keep_page_indexes(plan, &cache))
                .map_err(|source| ExecutorError::DecodePlan {
                    query: key.query.clone(),
                    stage: key.stage,
                    task: key.task,
                    source,
                })?;
            let partitions = plan.output_partitioning().partition_count();
            let plan_partitions =
                if task.plan_partitions.is_empty() { task.partitions.clone() } else { task.plan_partitions };
            if task.partitions.is_empty()
                || plan_partitions.len() != task.partitions.len()
                || plan_partitions.iter().any(|p| *p as usize >= partitions)
            {
                return Err(ExecutorError::MalformedRequest(format!(
                    "task {}/{}/{} asks for partitions {:?} (plan partitions {plan_partitions:?}) of a plan with {partitions}",
                    key.query, key.stage, key.task, task.partitions
                ))
                .into());
            }
            let served = task.partitions.into_iter().zip(plan_partitions).collect();
            let mut installed = InstalledTask::new(plan, served, task.reads_per_partition, ctx, bytes_read);
            if task.spool {
                installed = installed.spooled(self.tasks.spool_budget(&key.query));
            }
            decoded.push((key, installed.with_analyze(task.analyze)));
        }
        // Decoding is most of a launch's cost on the executor (about 0.2 ms a task, 1-2 ms for a
        // small query's one task of a whole plan).
        let decoding = started.elapsed();
        for (key, task) in decoded {
            tracing::debug!(query = %key.query, stage = %key.stage, task = %key.task, ?decoding, "task installed");
            self.tasks.install(key, task);
        }
        Ok(Response::new(LaunchTasksResponse {}))
    }

    async fn cancel_query(
        &self,
        request: Request<CancelQueryRequest>,
    ) -> Result<Response<CancelQueryResponse>, Status> {
        let query = QueryId::from(request.into_inner().query_id);
        let cancelled = self.tasks.cancel_query(&query);
        // Every task of the query reports here, once, for itself (finished or not).
        let mut stats = TaskStats::default();
        let mut task_progress = Vec::with_capacity(cancelled.len());
        for (key, task) in &cancelled {
            let account = task.account(key);
            stats.merge(&account.stats);
            task_progress.push(account.progress);
        }
        if !cancelled.is_empty() {
            tracing::debug!(%query, cancelled = cancelled.len(), "query cancelled");
        }
        Ok(Response::new(CancelQueryResponse {
            cancelled_tasks: cancelled.len() as u32,
            stats: stats.to_json(),
            task_progress,
        }))
    }

    async fn query_progress(
        &self,
        request: Request<QueryProgressRequest>,
    ) -> Result<Response<QueryProgressResponse>, Status> {
        let request = request.into_inner();
        let query = QueryId::from(request.query_id);
        let mut progress = QueryProgressResponse::default();
        for (key, task) in self.tasks.tasks_of(&query) {
            let (done, rows) = (u32::from(task.finished()), task.rows_out.load(Ordering::Relaxed));
            progress.tasks += 1;
            progress.tasks_done += done;
            progress.rows_out += rows;
            progress.bytes_scanned += task.bytes_read.load(Ordering::Relaxed);
            if request.stage_id == Some(key.stage.0) {
                progress.stage_tasks += 1;
                progress.stage_tasks_done += done;
                progress.stage_rows_out += rows;
            }
            if request.tasks {
                progress.task_progress.push(task.progress(&key));
            }
        }
        Ok(Response::new(progress))
    }
}
