//! A query's physical plan, planned once and optimized for how it will run.
//!
//! DataFusion plans in two steps: an initial plan made from the logical one (where scans list
//! their files and read their footers' statistics), then its physical optimizer rules (join
//! modes, repartitions, filter pushdown). Glaux stops after the first step, estimates what the
//! scans will produce, and only then optimizes: a small query, which runs whole as one task, as
//! DataFusion would for one process; any other for the cluster. Deciding before optimizing costs
//! no second planning.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::catalog::{CatalogProviderList, Session};
use datafusion::common::config::{ConfigOptions, TableOptions};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::execution::config::SessionConfig;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::registry::ExtensionTypeRegistryRef;
use datafusion::logical_expr::{AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::operator_statistics::StatisticsRegistry;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use glaux_catalog::{PruningReport, TableScanReport};
use glaux_storage::{InUse, ListingCache};

use crate::cluster::ExecutorInfo;
use crate::error::SchedulerError;
use crate::planner::{cut_at_row_groups, estimated_scan_bytes};

/// A query's physical plan, what its scans selected, and its hold on the files it lists.
pub(super) struct Planned {
    pub physical: Arc<dyn ExecutionPlan>,
    pub scans: Vec<TableScanReport>,
    pub in_use: Option<InUse>,
    /// A small query: what its scans are estimated to produce.
    pub small: Option<u64>,
}

/// DataFusion's physical plan of `plan` for the executors alive, and what its scans of
/// partitioned tables selected. Where `may_be_small` (not a write: writes spread over every
/// executor's writers), a query whose scans are estimated to produce at most the session's
/// small-query bound (0: none) is small: it is optimized as for one process and runs whole as
/// one task.
pub(super) async fn physical_plan(
    state: &SessionState,
    plan: &LogicalPlan,
    executors: &[ExecutorInfo],
    may_be_small: bool,
) -> Result<Planned, SchedulerError> {
    let mut state = state.clone();
    let slots: usize = executors.iter().map(|e| e.task_slots as usize).sum();
    state.config_mut().options_mut().execution.target_partitions = slots.max(1);
    let planning_error = |e, state: &SessionState| crate::trino::planning_error(e, "", state);
    // Optimizing folds constants: a cast of a bad literal fails here. It lists no file, so it
    // runs before the commit gate is taken.
    let optimizing = Instant::now();
    let logical = state.optimize(plan).map_err(|e| planning_error(e, &state))?;
    let logical_optimized = optimizing.elapsed();
    let report = Arc::new(PruningReport::default());
    state.config_mut().set_extension(Arc::clone(&report));
    // Scans list their files here: no write commits meanwhile, so the plan holds all of a
    // write's files or none.
    let visibility = state.config().get_extension::<ListingCache>().map(|c| Arc::clone(c.visibility()));
    let started = Instant::now();
    let planning = match &visibility {
        Some(visibility) => Some(visibility.planning().await),
        None => None,
    };
    let admitted = started.elapsed();
    let initial = match initial_plan(&mut state, &logical).await.map_err(|e| planning_error(e, &state))? {
        // The scans have read their footers: `NOT IN`'s NULL checks go where no column holds one.
        Initial::Unoptimized(plan) => Initial::Unoptimized(
            super::not_in_nulls::without_needless_null_checks(plan).map_err(|e| planning_error(e, &state))?,
        ),
        whole => whole,
    };
    let initial_done = started.elapsed();
    // Files a later commit replaces are kept until the query ends.
    let in_use = visibility.as_ref().map(|v| v.in_use());
    drop(planning);
    let bound = super::small_query_bytes(&state);
    let small = match &initial {
        Initial::Unoptimized(plan) if may_be_small && bound > 0 && !executors.is_empty() => {
            estimated_scan_bytes(plan).filter(|&bytes| bytes <= bound)
        }
        _ => None,
    };
    let physical = match initial {
        Initial::Unoptimized(plan) => {
            if small.is_some() {
                for_one_process(state.config_mut().options_mut());
            }
            DefaultPhysicalPlanner::default()
                .optimize_physical_plan(plan, &state, |_, _| {})
                .map_err(|e| planning_error(e, &state))?
        }
        Initial::Whole(plan) => plan,
    };
    let optimized = started.elapsed();
    // A small query keeps DataFusion's partitions, even one left with nothing to read.
    let physical = cut_at_row_groups(physical, &state, small.is_none()).await.map_err(SchedulerError::plan)?;
    tracing::debug!(?logical_optimized, ?admitted, ?initial_done, ?optimized, row_groups = ?started.elapsed(), ?small,
        "physical plan made");
    if tracing::enabled!(tracing::Level::TRACE) {
        let shown = datafusion::physical_plan::displayable(physical.as_ref()).set_show_statistics(true).indent(true);
        tracing::trace!(plan = %shown, "physical plan with DataFusion's estimates");
    }
    Ok(Planned { physical, scans: report.scans(), in_use, small })
}

/// The options DataFusion plans one process with, where the cluster's differ: round-robin
/// repartitions (in one task they cost a copy in memory, not a move between executors) and
/// its broadcast thresholds (1 MiB, 128 Ki rows), which weigh an in-memory repartition.
fn for_one_process(options: &mut ConfigOptions) {
    let defaults = ConfigOptions::default();
    options.optimizer.enable_round_robin_repartition = defaults.optimizer.enable_round_robin_repartition;
    options.optimizer.hash_join_single_partition_threshold = defaults.optimizer.hash_join_single_partition_threshold;
    options.optimizer.hash_join_single_partition_threshold_rows =
        defaults.optimizer.hash_join_single_partition_threshold_rows;
}

/// What DataFusion's planner made before its physical optimizer rules.
enum Initial {
    /// The initial plan, to be optimized.
    Unoptimized(Arc<dyn ExecutionPlan>),
    /// A plan DataFusion made whole (an `EXPLAIN`'s, which shows the plans it optimized).
    Whole(Arc<dyn ExecutionPlan>),
}

/// `logical` (an optimized logical plan) made physical, before any physical optimizer rule.
async fn initial_plan(state: &mut SessionState, logical: &LogicalPlan) -> DfResult<Initial> {
    // DataFusion plans and optimizes an EXPLAIN's plan itself, to show it.
    if matches!(logical, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
        let planner = Session::query_planner(&*state);
        return Ok(Initial::Whole(planner.create_physical_plan(logical, state).await?));
    }
    let keep = Arc::new(KeepInitialPlan::default());
    let session = InitialOnly { state, rules: [Arc::clone(&keep) as _] };
    let made = DefaultPhysicalPlanner::default().create_physical_plan(logical, &session).await?;
    let kept = keep.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    Ok(kept.map_or(Initial::Whole(made), Initial::Unoptimized))
}

/// The only physical optimizer rule of an [`InitialOnly`] planning: it keeps the plan it is
/// given and hands DataFusion's final checks an empty plan of the same schema.
#[derive(Debug, Default)]
struct KeepInitialPlan(Mutex<Option<Arc<dyn ExecutionPlan>>>);

impl PhysicalOptimizerRule for KeepInitialPlan {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = plan.schema();
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(plan);
        Ok(Arc::new(EmptyExec::new(schema)))
    }

    fn name(&self) -> &str {
        "glaux_keep_initial_plan"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The session as DataFusion's planner sees it, with [`KeepInitialPlan`] as its only physical
/// optimizer rule; everything else is the session's (table providers find the `SessionState`).
struct InitialOnly<'a> {
    state: &'a mut SessionState,
    rules: [Arc<dyn PhysicalOptimizerRule + Send + Sync>; 1],
}

#[async_trait::async_trait]
impl Session for InitialOnly<'_> {
    fn session_id(&self) -> &str {
        self.state.session_id()
    }

    fn config(&self) -> &SessionConfig {
        self.state.config()
    }

    fn catalog_list(&self) -> Arc<dyn CatalogProviderList> {
        Arc::clone(self.state.catalog_list())
    }

    fn query_planner(&self) -> Arc<dyn datafusion::execution::context::QueryPlanner + Send + Sync> {
        Session::query_planner(&*self.state)
    }

    fn optimize(&self, plan: &LogicalPlan) -> DfResult<LogicalPlan> {
        self.state.optimize(plan)
    }

    fn physical_optimizers(&self) -> &[Arc<dyn PhysicalOptimizerRule + Send + Sync>] {
        &self.rules
    }

    fn statistics_registry(&self) -> Option<&StatisticsRegistry> {
        Session::statistics_registry(&*self.state)
    }

    async fn create_physical_plan(&self, logical_plan: &LogicalPlan) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.state.create_physical_plan(logical_plan).await
    }

    fn create_physical_expr(&self, expr: Expr, df_schema: &DFSchema) -> DfResult<Arc<dyn PhysicalExpr>> {
        self.state.create_physical_expr(expr, df_schema)
    }

    fn scalar_functions(&self) -> &std::collections::HashMap<String, Arc<ScalarUDF>> {
        Session::scalar_functions(&*self.state)
    }

    fn higher_order_functions(&self) -> &std::collections::HashMap<String, Arc<HigherOrderUDF>> {
        Session::higher_order_functions(&*self.state)
    }

    fn aggregate_functions(&self) -> &std::collections::HashMap<String, Arc<AggregateUDF>> {
        Session::aggregate_functions(&*self.state)
    }

    fn window_functions(&self) -> &std::collections::HashMap<String, Arc<WindowUDF>> {
        Session::window_functions(&*self.state)
    }

    fn extension_type_registry(&self) -> &ExtensionTypeRegistryRef {
        Session::extension_type_registry(&*self.state)
    }

    fn runtime_env(&self) -> &Arc<RuntimeEnv> {
        self.state.runtime_env()
    }

    fn execution_props(&self) -> &ExecutionProps {
        self.state.execution_props()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        &*self.state
    }

    fn table_options(&self) -> &TableOptions {
        self.state.table_options()
    }

    fn table_options_mut(&mut self) -> &mut TableOptions {
        self.state.table_options_mut()
    }

    fn task_ctx(&self) -> Arc<TaskContext> {
        self.state.task_ctx()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
    use glaux_proto::{ExecutorAddr, ExecutorId};

    use super::physical_plan;
    use crate::cluster::ExecutorInfo;
    use crate::query::SmallQueryBytes;

    /// A small query is optimized as DataFusion optimizes for one process (here: a round-robin
    /// repartition feeds its aggregation), any other query for the cluster (none), and a write
    /// is never small.
    #[tokio::test]
    async fn small_queries_are_optimized_as_for_one_process() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("t.parquet");
        let setup = SessionContext::new();
        let rows = "SELECT v % 10 AS a, v AS b FROM range(10000) t(v)";
        setup.sql(&format!("COPY ({rows}) TO '{}' STORED AS PARQUET", file.display())).await?.collect().await?;
        let executor = ExecutorInfo {
            id: ExecutorId::from("e0".to_string()),
            addr: ExecutorAddr::parse("127.0.0.1:1")?,
            task_slots: 2,
        };
        // (small-query bound, may be small) -> small, round-robin repartition in the plan.
        for (bound, may_be_small, small) in [(1 << 20, true, true), (1 << 20, false, false), (1000, true, false)] {
            // As Glaux's sessions: no round-robin repartitions for the cluster.
            let config = SessionConfig::new()
                .with_round_robin_repartition(false)
                .with_extension(Arc::new(SmallQueryBytes(bound)));
            let ctx = SessionContext::new_with_config(config);
            ctx.register_parquet("t", file.to_str().unwrap_or_default(), ParquetReadOptions::default()).await?;
            let plan = ctx.sql("SELECT a, sum(b) FROM t GROUP BY a").await?.into_optimized_plan()?;
            let planned = physical_plan(&ctx.state(), &plan, std::slice::from_ref(&executor), may_be_small).await?;
            // Two 8-byte columns of 10,000 rows.
            assert_eq!(planned.small, small.then_some(160_000), "bound {bound}, may be small {may_be_small}");
            let shown = displayable(planned.physical.as_ref()).indent(true).to_string();
            assert_eq!(shown.contains("RoundRobinBatch"), small, "{shown}");
            // The plan's results are the query's.
            let batches = datafusion::physical_plan::collect(planned.physical, ctx.task_ctx()).await?;
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
        }
        // An EXPLAIN is planned whole by DataFusion, never small.
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_extension(Arc::new(SmallQueryBytes(1 << 20))));
        ctx.register_parquet("t", file.to_str().unwrap_or_default(), ParquetReadOptions::default()).await?;
        let plan = ctx.sql("EXPLAIN SELECT a FROM t").await?.into_optimized_plan()?;
        let planned = physical_plan(&ctx.state(), &plan, std::slice::from_ref(&executor), true).await?;
        assert_eq!(planned.small, None);
        assert_eq!(planned.physical.name(), "ExplainExec");
        Ok(())
    }
}
