//! `EXPLAIN` (DataFusion's optimized logical plan and the distributed plan: stages, tasks per
//! executor, partition pruning) and `EXPLAIN ANALYZE` (the query run with every task reporting
//! its plan with metrics).

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use futures::StreamExt;
use glaux_proto::QueryId;

use super::placeholders::parameter_schema;
use super::{Context, Family};
use crate::error::SchedulerError;
use crate::planner::{render_analyzed_plan, render_distributed_plan};
use crate::query::{ProgressSlot, QueryResult};

pub(crate) struct Explain {
    plan: LogicalPlan,
    analyze: bool,
    /// `EXPLAIN VERBOSE`: every file of every scan, not a summary of the file groups.
    verbose: bool,
    parameters: SchemaRef,
}

impl Explain {
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    pub fn try_new(plan: LogicalPlan, analyze: bool, verbose: bool) -> Result<Self, SchedulerError> {
        Ok(Self { parameters: parameter_schema(&plan)?, plan, analyze, verbose })
    }

    fn result(&self, query: QueryId, types: Vec<&str>, plans: Vec<String>) -> Result<QueryResult, SchedulerError> {
        let columns = vec![Arc::new(StringArray::from(types)) as _, Arc::new(StringArray::from(plans)) as _];
        let batch = RecordBatch::try_new(self.schema(), columns).map_err(|e| SchedulerError::plan(e.into()))?;
        Ok(QueryResult::finished(query, self.schema(), vec![batch]))
    }

    /// Runs the query with every task reporting its plan with metrics, and draws the stage tree
    /// with them.
    async fn analyze(&self, ctx: &Context<'_>, query: QueryId) -> Result<QueryResult, SchedulerError> {
        let mut result = ctx.queries.analyze(&ctx.state, query.clone(), &self.plan).await?;
        let mut rows = 0;
        while let Some(batch) = result.batches.next().await {
            rows += batch.map_err(|source| SchedulerError::Execute { query: query.clone(), source })?.num_rows();
        }
        let stats = result.stats.snapshot();
        let Some(distributed) = result.stats.plan() else {
            return Err(SchedulerError::Internal("EXPLAIN ANALYZE ran no plan".into()));
        };
        let reruns = match stats.tasks_rerun {
            0 => String::new(),
            n => format!(" ({n} re-run after losing an executor)"),
        };
        let summary = format!(
            "Query {query}: {rows} rows in {} ms; {} stages, {} tasks{reruns}; data scanned {}\n",
            stats.elapsed_ms,
            stats.stages,
            stats.tasks,
            glaux_proto::format_bytes(stats.scan.bytes_scanned)
        );
        let text = summary + &render_analyzed_plan(distributed, &stats.scan.reports, self.verbose);
        self.result(query, vec!["Plan with Metrics"], vec![text])
    }
}

#[async_trait]
impl Family for Explain {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("plan_type", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ]))
    }

    fn parameters(&self) -> SchemaRef {
        Arc::clone(&self.parameters)
    }

    fn authorize(&self, _ctx: &Context<'_>) -> Result<(), SchedulerError> {
        // Reads are checked as they are planned, through the user's view of the catalog.
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        if self.analyze {
            return self.analyze(ctx, query).await;
        }
        let distributed = ctx.queries.explain(&ctx.state, query.clone(), &self.plan).await?;
        let logical = ctx.state.optimize(&self.plan).map_err(SchedulerError::plan)?.display_indent().to_string();
        let plans = vec![logical, render_distributed_plan(&distributed, self.verbose)];
        self.result(query, vec!["logical_plan", "distributed_plan"], plans)
    }
}
