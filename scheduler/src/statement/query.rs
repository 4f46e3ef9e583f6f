//! Queries DataFusion plans: `SELECT`, `VALUES`, `WITH`, queries on `information_schema` and
//! `pg_catalog`, and `DESCRIBE`. They run across the cluster (a query that reads no files runs
//! on the scheduler alone), `DESCRIBE` here.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use glaux_proto::QueryId;

use super::placeholders::parameter_schema;
use super::{Context, Family};
use crate::error::SchedulerError;
use crate::query::{AtExecutors, ProgressSlot, QueryResult};

pub(crate) struct Query {
    plan: LogicalPlan,
    parameters: SchemaRef,
}

impl Query {
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    pub fn try_new(plan: LogicalPlan) -> Result<Self, SchedulerError> {
        Ok(Self { parameters: parameter_schema(&plan)?, plan })
    }
}

#[async_trait]
impl Family for Query {
    fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
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
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        if !matches!(self.plan, LogicalPlan::DescribeTable(_)) {
            return ctx.queries.run(&ctx.state, query, &self.plan, progress).await;
        }
        // The table's columns, from the catalog alone.
        let session = SessionContext::new_with_state(ctx.state.clone());
        let df = session.execute_logical_plan(self.plan.clone()).await.map_err(SchedulerError::plan)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(|source| SchedulerError::Execute { query: query.clone(), source })?;
        Ok(QueryResult::finished(query, schema, batches))
    }

    async fn run_at_executors(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<Option<AtExecutors>, SchedulerError> {
        if matches!(self.plan, LogicalPlan::DescribeTable(_)) {
            return Ok(None);
        }
        ctx.queries.run_at_executors(&ctx.state, query, &self.plan, progress).await
    }
}
