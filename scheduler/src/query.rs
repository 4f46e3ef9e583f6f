//! Running one statement: DDL against the catalog, `EXPLAIN`, or a query across the cluster.
//!
//! A query is planned by DataFusion, cut into stages (`planner`), its executor stages' tasks are
//! installed on the executors, and the final stage runs here, reading the others over Flight.
//! Dropping the result stream (a finished or vanished client) cancels the query's tasks everywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use glaux_proto::generated::{CancelQueryRequest, LaunchTasksRequest, QueryProgressRequest, TaskDefinition};
use glaux_proto::{
    ClusterChannels, QueryId, QueryProgress, QueryStats, RerunHandle, TaskStats, encode_plan, lost_executor,
};
use glaux_storage::StorageConfig;
use tokio::sync::mpsc;

use datafusion::execution::SessionState;

use crate::catalog::{Catalog, PruningReport, TableScanReport, show_create_table};
use crate::cluster::{ClusterState, ExecutorInfo};
use crate::session::DEFAULT_SCHEMA;
use crate::error::SchedulerError;
use crate::planner::{
    DistributedPlan, Stage, Task, TaskPlan, cut_stages, render_analyzed_plan, render_distributed_plan, task_plan,
};
use crate::placeholders::parameter_schema;
use crate::rerun::Reruns;
use crate::statement::Statement;

/// Batches of a running statement, and the statistics to send after them.
pub struct QueryResult {
    pub query: QueryId,
    /// The result schema as plans produce it (dictionaries are hydrated on the way to clients).
    pub schema: SchemaRef,
    pub batches: std::pin::Pin<Box<dyn Stream<Item = DfResult<RecordBatch>> + Send>>,
    pub stats: QueryStatsHandle,
}

/// Computes the statistics of a query once its stream has ended.
pub struct QueryStatsHandle {
    query: QueryId,
    started: Instant,
    rows: Arc<AtomicU64>,
    /// The plan that ran (for `EXPLAIN ANALYZE`); its readers hold the tasks' statistics.
    plan: Option<Arc<DistributedPlan>>,
    stages: usize,
    tasks: usize,
    files_planned: usize,
    bytes_planned: u64,
    scans: Vec<TableScanReport>,
    /// What the query's tasks reported when it ended.
    late: Arc<std::sync::Mutex<TaskStats>>,
    /// Tasks run again after their executor was lost.
    reruns: Arc<AtomicU64>,
    /// Asks the executors how far the query is (`None` for statements that ran here whole).
    pub probe: Option<ProgressProbe>,
}

/// Where a running statement's progress probe appears once its query is launched.
#[derive(Clone, Default)]
pub struct ProgressSlot(Arc<std::sync::Mutex<Option<ProgressProbe>>>);

impl ProgressSlot {
    fn set(&self, probe: Option<ProgressProbe>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = probe;
    }

    pub fn get(&self) -> Option<ProgressProbe> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Collects a running query's progress from its executors.
#[derive(Clone)]
pub struct ProgressProbe {
    query: QueryId,
    started: Instant,
    stages: u64,
    tasks: u64,
    rows: Arc<AtomicU64>,
    endpoints: Arc<std::sync::Mutex<Vec<String>>>,
    channels: Arc<ClusterChannels>,
}

impl ProgressProbe {
    /// Asks every executor of the query (those that do not answer within a second count as
    /// no progress).
    pub async fn progress(&self) -> QueryProgress {
        let endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let calls = endpoints.into_iter().map(|endpoint| async move {
            let mut client = self.channels.executor_control(&endpoint).ok()?;
            let request = QueryProgressRequest { query_id: self.query.to_string() };
            let call = client.query_progress(request);
            Some(tokio::time::timeout(std::time::Duration::from_secs(1), call).await.ok()?.ok()?.into_inner())
        });
        let mut progress = QueryProgress {
            stages: self.stages,
            tasks: self.tasks,
            rows: self.rows.load(Ordering::Relaxed),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        for answer in futures::future::join_all(calls).await.into_iter().flatten() {
            progress.tasks_done += u64::from(answer.tasks_done);
            progress.task_rows += answer.rows_out;
            progress.bytes_scanned += answer.bytes_scanned;
        }
        progress.tasks_done = progress.tasks_done.min(progress.tasks);
        progress
    }
}

impl QueryStatsHandle {
    pub fn snapshot(&self) -> QueryStats {
        // Every task reported its own work when the query ended (`QueryGuard::finish`).
        let scan = self.late.lock().unwrap_or_else(|e| e.into_inner()).clone();
        QueryStats {
            query_id: self.query.to_string(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            rows: self.rows.load(Ordering::Relaxed),
            stages: self.stages as u64,
            tasks: self.tasks as u64,
            files_planned: self.files_planned as u64,
            bytes_planned: self.bytes_planned,
            partitions_read: self.scans.iter().map(|s| s.partitions as u64).sum(),
            partitions_total: self.scans.iter().map(|s| s.partitions_total.unwrap_or(s.partitions) as u64).sum(),
            tasks_rerun: self.reruns.load(Ordering::Relaxed),
            scan,
        }
    }
}

/// Ends a query's tasks on its executors: when its stream ends ([`QueryGuard::finish`], which
/// collects their statistics), or in the background when dropped.
struct QueryGuard {
    query: QueryId,
    /// Executors with tasks of the query (a re-run may add one while it runs).
    endpoints: Arc<std::sync::Mutex<Vec<String>>>,
    cleanup: mpsc::UnboundedSender<(QueryId, Vec<String>)>,
    channels: Arc<ClusterChannels>,
}

impl QueryGuard {
    /// Ends the query on every executor (cancelling what still runs: a LIMIT may stop reading
    /// early) and returns the statistics every task reports for itself.
    async fn finish(self) -> TaskStats {
        let query = self.query.clone();
        let calls = self.take_endpoints().into_iter().map(|endpoint| {
            let (channels, query) = (Arc::clone(&self.channels), query.clone());
            async move {
                let mut client = channels.executor_control(&endpoint).ok()?;
                let request = CancelQueryRequest { query_id: query.to_string() };
                let call = client.cancel_query(request);
                let response = tokio::time::timeout(std::time::Duration::from_secs(2), call).await.ok()?.ok()?;
                TaskStats::from_json(&response.into_inner().stats)
            }
        });
        let mut total = TaskStats::default();
        for stats in futures::future::join_all(calls).await.into_iter().flatten() {
            total.merge(&stats);
        }
        total
    }

    fn take_endpoints(&self) -> Vec<String> {
        let mut endpoints = std::mem::take(&mut *self.endpoints.lock().unwrap_or_else(|e| e.into_inner()));
        endpoints.sort();
        endpoints.dedup();
        endpoints
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        let endpoints = self.take_endpoints();
        if !endpoints.is_empty() {
            // The receiver lives as long as the scheduler; after that there is nothing to clean.
            let _ = self.cleanup.send((self.query.clone(), endpoints));
        }
    }
}

pub struct QueryEngine {
    pub ctx: SessionContext,
    pub catalog: Arc<dyn Catalog>,
    pub cluster: Arc<ClusterState>,
    pub channels: Arc<ClusterChannels>,
    pub storage: StorageConfig,
    pub cleanup: mpsc::UnboundedSender<(QueryId, Vec<String>)>,
}

pub(crate) fn plan_error(message: String) -> SchedulerError {
    SchedulerError::plan(DataFusionError::Plan(message))
}

/// What a client's statement is resolved against: the database `USE` chose, and the values a
/// prepared statement's placeholders (`$1`, `?`) are bound to.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSession {
    pub database: String,
    pub parameters: Vec<ScalarValue>,
}

impl ClientSession {
    pub fn in_database(database: impl Into<String>) -> Self {
        Self { database: database.into(), parameters: Vec::new() }
    }
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::in_database(DEFAULT_SCHEMA)
    }
}

/// How a statement runs: its result's schema, and whether it changes the catalog or the
/// session (and so runs as soon as it is submitted).
pub struct Description {
    pub schema: SchemaRef,
    pub runs_on_submit: bool,
    /// For `USE`: the database the client's session moves to.
    pub use_database: Option<String>,
    /// The statement's placeholders (`$1`, `$2`, ...), typed where the statement says what they
    /// compare with (text where it does not).
    pub parameters: SchemaRef,
}

impl QueryEngine {
    /// The planning state for a client: DataFusion's, with the client's database as default.
    pub(crate) fn state(&self, session: &ClientSession) -> SessionState {
        let mut state = self.ctx.state();
        state.config_mut().options_mut().catalog.default_schema = session.database.clone();
        state
    }

    /// The schema `sql` will produce, for `GetFlightInfo` and prepared statements, and whether it
    /// runs when submitted (DDL, `MSCK`, `USE`) rather than when its result is fetched.
    pub async fn describe(&self, sql: &str, session: &ClientSession) -> Result<Description, SchedulerError> {
        let mut use_database = None;
        let mut parameters = Arc::new(Schema::empty());
        let (schema, runs_on_submit) = match self.statement(sql, session).await? {
            Statement::ShowCreateTable(_) => (show_create_schema(), false),
            Statement::ShowPartitions(_) => (partitions_schema(), false),
            Statement::ShowFunctions(_) => (crate::show_functions::schema(), false),
            Statement::CreateHiveTable(_)
            | Statement::AddPartitions { .. }
            | Statement::DropPartitions { .. }
            | Statement::Prepare { .. }
            | Statement::Deallocate(_) => (Arc::new(Schema::empty()), true),
            Statement::RepairTable(_) => (repair_schema(), true),
            Statement::Use(database) => {
                use_database = Some(database);
                (use_schema(), true)
            }
            Statement::Plan(plan) => {
                if session.parameters.is_empty() {
                    parameters = parameter_schema(&plan)?;
                }
                match &plan {
                    LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => (explain_schema(), false),
                    // DDL returns no rows and no columns (its plan's schema is the table's).
                    LogicalPlan::Ddl(_) => (Arc::new(Schema::empty()), true),
                    _ => (Arc::new(plan.schema().as_arrow().clone()), false),
                }
            }
        };
        Ok(Description { schema, runs_on_submit, use_database, parameters })
    }

    pub async fn execute(&self, sql: &str, session: &ClientSession) -> Result<QueryResult, SchedulerError> {
        self.execute_observed(sql, session, &ProgressSlot::default()).await
    }

    /// [`Self::execute`], putting the query's progress probe into `progress` as soon as its tasks
    /// are launched (the result only comes back with its first batch).
    pub async fn execute_observed(
        &self,
        sql: &str,
        session: &ClientSession,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let query = QueryId::random();
        let plan = match self.statement(sql, session).await? {
            Statement::Plan(plan) => plan,
            Statement::ShowCreateTable(table) => {
                let ddl = StringArray::from(vec![show_create_table(&table)]);
                let batch = RecordBatch::try_new(show_create_schema(), vec![Arc::new(ddl)])
                    .map_err(|e| SchedulerError::plan(e.into()))?;
                return Ok(finished(query, show_create_schema(), vec![batch]));
            }
            Statement::ShowPartitions(table) => {
                return text_result(query, partitions_schema(), self.show_partitions(&table)?);
            }
            Statement::CreateHiveTable(table) => {
                self.create_hive_table(&table, session).await?;
                return Ok(finished(query, Arc::new(Schema::empty()), vec![]));
            }
            Statement::RepairTable(table) => return text_result(query, repair_schema(), self.repair_table(&table).await?),
            Statement::AddPartitions { table, if_not_exists, partitions } => {
                self.add_partitions(&table, if_not_exists, &partitions)?;
                return Ok(finished(query, Arc::new(Schema::empty()), vec![]));
            }
            Statement::DropPartitions { table, if_exists, partitions } => {
                self.drop_partitions(&table, if_exists, &partitions)?;
                return Ok(finished(query, Arc::new(Schema::empty()), vec![]));
            }
            Statement::Use(database) => return text_result(query, use_schema(), vec![database]),
            Statement::ShowFunctions(pattern) => {
                let batch = crate::show_functions::show_functions(&self.state(session), pattern.as_deref())
                    .map_err(SchedulerError::plan)?;
                return Ok(finished(query, crate::show_functions::schema(), vec![batch]));
            }
            Statement::Prepare { name, statement } => {
                self.catalog.prepare_statement(&name, &statement).map_err(SchedulerError::plan)?;
                return Ok(finished(query, Arc::new(Schema::empty()), vec![]));
            }
            Statement::Deallocate(name) => {
                if !self.catalog.deallocate_statement(&name).map_err(SchedulerError::plan)? {
                    return Err(plan_error(format!("Prepared statement not found: {name}")));
                }
                return Ok(finished(query, Arc::new(Schema::empty()), vec![]));
            }
        };
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => {
                self.create_table(&create, session).await?;
                Ok(finished(query, Arc::new(Schema::empty()), vec![]))
            }
            LogicalPlan::Ddl(_) | LogicalPlan::DescribeTable(_) => self.run_locally(query, plan, session).await,
            LogicalPlan::Explain(explain) => {
                let text = self.explain(&query, &explain.plan).await?;
                let logical = self
                    .ctx
                    .state()
                    .optimize(&explain.plan)
                    .map_err(SchedulerError::plan)?
                    .display_indent()
                    .to_string();
                let batch = RecordBatch::try_new(
                    explain_schema(),
                    vec![
                        Arc::new(StringArray::from(vec!["logical_plan", "distributed_plan"])),
                        Arc::new(StringArray::from(vec![logical, text])),
                    ],
                )
                .map_err(|e| SchedulerError::plan(e.into()))?;
                Ok(finished(query, explain_schema(), vec![batch]))
            }
            LogicalPlan::Analyze(analyze) => self.explain_analyze(query, &analyze.input).await,
            plan => self.run_distributed(query, plan, progress).await,
        }
    }

    /// Runs the query with every task reporting its plan with metrics, and draws the stage tree
    /// with them.
    async fn explain_analyze(&self, query: QueryId, plan: &LogicalPlan) -> Result<QueryResult, SchedulerError> {
        let mut result = self.start_distributed(query.clone(), plan, true, &ProgressSlot::default()).await?;
        let mut rows = 0;
        while let Some(batch) = result.batches.next().await {
            rows += batch.map_err(|source| SchedulerError::Execute { query: query.clone(), source })?.num_rows();
        }
        let stats = result.stats.snapshot();
        let Some(distributed) = result.stats.plan.as_ref() else {
            return Err(SchedulerError::plan(DataFusionError::Internal("EXPLAIN ANALYZE ran no plan".into())));
        };
        let summary = format!(
            "Query {query}: {rows} rows in {} ms; {} stages, {} tasks; data scanned {}\n",
            stats.elapsed_ms,
            stats.stages,
            stats.tasks,
            glaux_proto::format_bytes(stats.scan.bytes_scanned)
        );
        let text = summary + &render_analyzed_plan(distributed, &stats.scan.reports);
        let batch = RecordBatch::try_new(
            explain_schema(),
            vec![
                Arc::new(StringArray::from(vec!["Plan with Metrics"])),
                Arc::new(StringArray::from(vec![text])),
            ],
        )
        .map_err(|e| SchedulerError::plan(e.into()))?;
        Ok(finished(query, explain_schema(), vec![batch]))
    }

    /// Statements that touch only the catalog run here, on the scheduler.
    async fn run_locally(
        &self,
        query: QueryId,
        plan: LogicalPlan,
        session: &ClientSession,
    ) -> Result<QueryResult, SchedulerError> {
        let ctx = SessionContext::new_with_state(self.state(session));
        let df = ctx.execute_logical_plan(plan).await.map_err(SchedulerError::plan)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df
            .collect()
            .await
            .map_err(|source| SchedulerError::Execute { query: query.clone(), source })?;
        Ok(finished(query, schema, batches))
    }

    fn distributed_plan(
        &self,
        query: &QueryId,
        physical: Arc<dyn ExecutionPlan>,
        executors: &[ExecutorInfo],
        scans: Vec<TableScanReport>,
    ) -> DfResult<DistributedPlan> {
        let (root, stages) = cut_stages(query, physical, executors)?;
        Ok(DistributedPlan { query: query.clone(), root, stages, scans })
    }

    /// DataFusion's physical plan, and what its scans of partitioned tables selected.
    async fn physical_plan(
        &self,
        plan: &LogicalPlan,
        executors: &[ExecutorInfo],
    ) -> Result<(Arc<dyn ExecutionPlan>, Vec<TableScanReport>), SchedulerError> {
        let mut state = self.ctx.state();
        let slots: usize = executors.iter().map(|e| e.task_slots as usize).sum();
        state.config_mut().options_mut().execution.target_partitions = slots.max(1);
        let report = Arc::new(PruningReport::default());
        state.config_mut().set_extension(Arc::clone(&report));
        let physical = state.create_physical_plan(plan).await.map_err(|e| {
            // Optimizing folds constants: a cast of a bad literal fails here.
            match crate::trino::explain_plan_error(&e.to_string(), "", &state) {
                Some(message) => plan_error(message),
                None => SchedulerError::plan(e),
            }
        })?;
        Ok((physical, report.scans()))
    }

    async fn explain(&self, query: &QueryId, plan: &LogicalPlan) -> Result<String, SchedulerError> {
        let executors = self.cluster.alive();
        let (physical, scans) = self.physical_plan(plan, &executors).await?;
        let distributed =
            self.distributed_plan(query, physical, &executors, scans).map_err(SchedulerError::plan)?;
        Ok(render_distributed_plan(&distributed))
    }

    /// Runs a query across the cluster. If an executor turns out to be unreachable before the
    /// first row reaches the client (its tasks cannot be installed, or a stage loses it), the
    /// query is planned again without it and re-run on the others, up to [`MAX_ATTEMPTS`] times;
    /// once rows have gone out, the error names the lost executor.
    async fn run_distributed(
        &self,
        query: QueryId,
        plan: LogicalPlan,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let mut attempt = 1;
        let mut query = query;
        loop {
            let lost = match self.start_distributed(query.clone(), &plan, false, progress).await {
                Err(SchedulerError::LaunchTasks { endpoint, code: tonic::Code::Unavailable, .. })
                    if attempt < MAX_ATTEMPTS =>
                {
                    endpoint
                }
                Err(e) => return Err(e),
                Ok(mut result) => match result.batches.next().await {
                    Some(Err(e)) if attempt < MAX_ATTEMPTS && lost_executor(&e.to_string()).is_some() => {
                        lost_executor(&e.to_string()).unwrap_or_default().to_string()
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
            self.cluster.remove_endpoint(&lost);
            self.channels.forget(&lost);
            tracing::warn!(%query, executor = %lost, attempt, "executor lost before any row was returned; planning again without it");
            // A new id: the failed attempt's tasks are cancelled by id, in the background, and
            // that must not reach the new attempt's tasks on the surviving executors.
            query = QueryId::random();
            attempt += 1;
        }
    }

    async fn start_distributed(
        &self,
        query: QueryId,
        plan: &LogicalPlan,
        analyze: bool,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let started = Instant::now();
        let executors = self.cluster.alive();
        let (physical, scans) = self.physical_plan(plan, &executors).await?;
        let distributed =
            self.distributed_plan(&query, physical, &executors, scans).map_err(SchedulerError::plan)?;
        if !distributed.stages.is_empty() && executors.is_empty() {
            return Err(SchedulerError::NoExecutors { query });
        }
        let endpoints = Arc::new(std::sync::Mutex::new(distributed.executor_endpoints()));
        let guard = QueryGuard {
            query: query.clone(),
            endpoints: Arc::clone(&endpoints),
            cleanup: self.cleanup.clone(),
            channels: Arc::clone(&self.channels),
        };
        self.launch(&distributed, analyze).await?;
        tracing::debug!(%query, stages = distributed.stages.len(), "query launched");

        let distributed = Arc::new(distributed);
        let reruns = Reruns::new(
            Arc::clone(&distributed),
            analyze,
            Arc::clone(&self.cluster),
            Arc::clone(&self.channels),
            Arc::clone(&endpoints),
        );
        let mut stats = QueryStatsHandle {
            query: query.clone(),
            started,
            rows: Arc::new(AtomicU64::new(0)),
            plan: Some(Arc::clone(&distributed)),
            stages: distributed.stages.len(),
            tasks: distributed.stages.iter().map(|s| s.tasks.len()).sum(),
            files_planned: distributed.stages.iter().map(|s| s.files).sum(),
            bytes_planned: distributed.stages.iter().map(|s| s.bytes).sum(),
            scans: distributed.scans.clone(),
            late: Arc::default(),
            reruns: Arc::clone(&reruns.count),
            probe: None,
        };
        stats.probe = Some(ProgressProbe {
            query: query.clone(),
            started,
            stages: stats.stages as u64,
            tasks: stats.tasks as u64,
            rows: Arc::clone(&stats.rows),
            endpoints,
            channels: Arc::clone(&self.channels),
        });
        progress.set(stats.probe.clone());
        let schema = distributed.root.schema();
        // The final gather's readers may ask for lost tasks to run again.
        let mut state = self.ctx.state();
        state.config_mut().set_extension(Arc::new(RerunHandle(Arc::new(reruns))));
        let batches = execute_stream(Arc::clone(&distributed.root), state.task_ctx())
            .map_err(|source| SchedulerError::Execute { query: query.clone(), source })?;
        let rows = Arc::clone(&stats.rows);
        let batches = guarded(batches, guard, Arc::clone(&stats.late)).inspect_ok(move |batch| {
            rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        });
        Ok(QueryResult { query, schema, batches: Box::pin(batches), stats })
    }

    /// Installs every task of the plan; each executor gets one request with all of its tasks.
    async fn launch(&self, plan: &DistributedPlan, analyze: bool) -> Result<(), SchedulerError> {
        let mut requests: std::collections::BTreeMap<String, Vec<TaskDefinition>> = Default::default();
        for stage in &plan.stages {
            for task in &stage.tasks {
                let definition = task_definition(&plan.query, stage, task, analyze).map_err(SchedulerError::plan)?;
                requests.entry(task.endpoint.clone()).or_default().push(definition);
            }
        }
        let launches = requests
            .into_iter()
            .map(|(endpoint, tasks)| async move { launch_on(&self.channels, &plan.query, &endpoint, tasks).await });
        futures::future::try_join_all(launches).await?;
        Ok(())
    }
}

/// What an executor needs to run one task of a stage.
pub(crate) fn task_definition(query: &QueryId, stage: &Stage, task: &Task, analyze: bool) -> DfResult<TaskDefinition> {
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
    })
}

/// Installs `tasks` on the executor at `endpoint`.
pub(crate) async fn launch_on(
    channels: &ClusterChannels,
    query: &QueryId,
    endpoint: &str,
    tasks: Vec<TaskDefinition>,
) -> Result<(), SchedulerError> {
    let failed = |code: tonic::Code, message: String| SchedulerError::LaunchTasks {
        query: query.clone(),
        endpoint: endpoint.to_string(),
        code,
        message,
    };
    let mut client =
        channels.executor_control(endpoint).map_err(|e| failed(tonic::Code::Unavailable, e.to_string()))?;
    client
        .launch_tasks(LaunchTasksRequest { tasks })
        .await
        .map_err(|status| failed(status.code(), status.message().to_string()))?;
    Ok(())
}

/// How often a query is planned and started when executors turn out to be lost.
const MAX_ATTEMPTS: usize = 3;

/// The query's batches, then (once they end) its tasks ended everywhere and their statistics
/// put in `late`. Dropped early, the guard cancels in the background.
fn guarded(
    batches: SendableRecordBatchStream,
    guard: QueryGuard,
    late: Arc<std::sync::Mutex<TaskStats>>,
) -> impl Stream<Item = DfResult<RecordBatch>> + Send {
    let finish = stream::once(async move {
        let stats = guard.finish().await;
        late.lock().unwrap_or_else(|e| e.into_inner()).merge(&stats);
        None
    });
    batches.map(Some).chain(finish).filter_map(std::future::ready)
}

fn finished(query: QueryId, schema: SchemaRef, batches: Vec<RecordBatch>) -> QueryResult {
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    QueryResult {
        query: query.clone(),
        schema,
        batches: Box::pin(stream::iter(batches.into_iter().map(Ok))),
        stats: QueryStatsHandle {
            query,
            started: Instant::now(),
            rows: Arc::new(AtomicU64::new(rows)),
            plan: None,
            stages: 0,
            tasks: 0,
            files_planned: 0,
            bytes_planned: 0,
            scans: Vec::new(),
            late: Arc::default(),
            reruns: Arc::default(),
            probe: None,
        },
    }
}

/// A one-column result of text rows.
fn text_result(query: QueryId, schema: SchemaRef, rows: Vec<String>) -> Result<QueryResult, SchedulerError> {
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(rows))])
        .map_err(|e| SchedulerError::plan(e.into()))?;
    Ok(finished(query, schema, vec![batch]))
}

fn repair_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("result", DataType::Utf8, false)]))
}

fn use_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("database", DataType::Utf8, false)]))
}

fn partitions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("partition", DataType::Utf8, false)]))
}

fn show_create_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("createtab_stmt", DataType::Utf8, false)]))
}

fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("plan_type", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]))
}
