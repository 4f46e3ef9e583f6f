//! `DELETE FROM t [WHERE p]` and `UPDATE t SET c = e, ... [WHERE p]` on Delta tables, by
//! copy-on-write, both passes on the executors:
//! 1. the rows `p` matches are counted per file (the scan names each row's file): the files to
//!    rewrite, and the rows affected;
//! 2. those files are read again and written anew without the deleted rows (or with the updated
//!    values), and one commit removes the old files and adds the new ones (a concurrent commit
//!    that rewrote any of them makes this one fail, with nothing changed).
//!
//! DataFusion plans the statement (the predicate, and for `UPDATE` each column's new value, cast
//! to its type); Hive tables are refused, as Athena refuses them.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, SchemaRef};
use async_trait::async_trait;
use datafusion::common::{Column, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp, col, lit, when};
use glaux_catalog::{DEFAULT_CATALOG, DeltaTableProvider, Privilege, delta_log};
use glaux_proto::QueryId;

use super::create_table_as::{rows_schema, unsupported, written_result};
use super::delta::{FILES, begin_write, collect, logged_predicate, rewriting_scan, rewritten_table};
use super::{Context, Family};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};

pub(crate) struct DeltaDml {
    reference: TableReference,
    database: String,
    table: String,
    predicate: Option<Expr>,
    /// `UPDATE`: each column's value after the update (for the rows the predicate matches).
    assignments: Option<Vec<Expr>>,
}

impl DeltaDml {
    /// From DataFusion's plan of a `DELETE` or `UPDATE`.
    pub(super) fn try_new(plan: LogicalPlan, database: &str) -> Result<Self, SchedulerError> {
        let LogicalPlan::Dml(DmlStatement { table_name, op, input, .. }) = plan else {
            return Err(unsupported("not a DELETE or UPDATE"));
        };
        let (assignments, below) = match (op, Arc::unwrap_or_clone(input)) {
            (WriteOp::Delete, input) => (None, input),
            (WriteOp::Update, LogicalPlan::Projection(projection)) => {
                (Some(projection.expr), Arc::unwrap_or_clone(projection.input))
            }
            (op, _) => return Err(unsupported(format!("{} is not a DELETE or UPDATE", op.name()))),
        };
        let predicate = match below {
            LogicalPlan::Filter(filter) => Some(filter.predicate),
            LogicalPlan::TableScan(_) => None,
            other => return Err(unsupported(format!("cannot rewrite rows read by {}", other.display()))),
        };
        let name = table_name.clone().resolve(DEFAULT_CATALOG, database);
        Ok(Self {
            reference: table_name,
            database: name.schema.to_string(),
            table: name.table.to_string(),
            predicate,
            assignments,
        })
    }

    /// The table rewritten, `db.t`.
    pub fn table(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// Whether it is an `UPDATE` (not a `DELETE`).
    pub fn is_update(&self) -> bool {
        self.assignments.is_some()
    }

    fn statement(&self) -> &'static str {
        if self.is_update() { "UPDATE" } else { "DELETE" }
    }

    /// The snapshot's scan, each row with its file, as the statement's table.
    fn scan(&self, provider: DeltaTableProvider) -> Result<LogicalPlanBuilder, SchedulerError> {
        LogicalPlanBuilder::scan(self.reference.clone(), provider_as_source(Arc::new(provider)), None)
            .map_err(SchedulerError::plan)
    }
}

#[async_trait]
impl Family for DeltaDml {
    fn schema(&self) -> SchemaRef {
        rows_schema()
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        let privilege = if self.assignments.is_some() { Privilege::Update } else { Privilege::Delete };
        ctx.access.require_table(privilege, &self.database, &self.table)?;
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let (definition, location, snapshot) =
            rewritten_table(ctx, &self.database, &self.table, self.statement()).await?;
        let runtime = ctx.state.runtime_env();
        let provider = rewriting_scan(ctx, self.table(), &location, &snapshot)?;
        let names: Vec<String> =
            provider.schema_without_file_column().fields().iter().map(|f| f.name().clone()).collect();
        let columns: Vec<Expr> =
            names.iter().map(|name| Expr::Column(Column::new(Some(self.reference.clone()), name))).collect();

        // 1. The rows matched, per file.
        let file = col(Column::new(Some(self.reference.clone()), delta_log::FILE_COLUMN));
        let mut matched = self.scan(provider)?;
        if let Some(predicate) = &self.predicate {
            matched = matched.filter(predicate.clone()).map_err(SchedulerError::plan)?;
        }
        let matched = matched
            .aggregate(vec![file], vec![count(lit(1))])
            .and_then(LogicalPlanBuilder::build)
            .map_err(SchedulerError::plan)?;
        let (batches, counted) = collect(ctx, &ctx.state, &matched).await?;
        let (mut touched, mut affected) = (HashSet::new(), 0u64);
        for batch in &batches {
            let (Some(files), Some(counts)) =
                (batch.column(0).as_string_opt::<i32>(), batch.column(1).as_primitive_opt::<Int64Type>())
            else {
                return Err(SchedulerError::Internal("the count of matched rows has the wrong columns".into()));
            };
            for (file, count) in files.iter().zip(counts.iter()) {
                touched.insert(file.unwrap_or_default().to_string());
                affected += count.unwrap_or_default().max(0) as u64;
            }
        }
        if touched.is_empty() {
            return written_result(query, (0, counted));
        }

        // 2. Those files again, without the deleted rows or with the new values.
        let provider = rewriting_scan(ctx, self.table(), &location, &snapshot)?.restricted_to(touched.clone());
        let matches = |predicate: &Expr| Expr::IsTrue(Box::new(predicate.clone()));
        let rewritten = match (&self.assignments, &self.predicate) {
            (None, Some(predicate)) => self
                .scan(provider)?
                .filter(Expr::Not(Box::new(matches(predicate))))
                .and_then(|plan| plan.project(columns.clone())),
            (None, None) => self.scan(provider)?.filter(lit(false)).and_then(|plan| plan.project(columns.clone())),
            (Some(assignments), predicate) => {
                let values: Vec<Expr> = assignments
                    .iter()
                    .zip(columns.iter().zip(&names))
                    .map(|(assigned, (column, name))| {
                        let value = match predicate {
                            Some(p) => when(matches(p), strip_alias(assigned)).otherwise(column.clone()),
                            None => Ok(strip_alias(assigned)),
                        };
                        value.map(|v| v.alias(name))
                    })
                    .collect::<datafusion::common::Result<_>>()
                    .map_err(SchedulerError::plan)?;
                self.scan(provider)?.project(values)
            }
        }
        .and_then(LogicalPlanBuilder::build)
        .map_err(SchedulerError::plan)?;
        let table = (&definition, location.as_str(), &snapshot);
        let (staged, rewritten) = begin_write((ctx, &ctx.state), &query, table, &rewritten)?;
        let described = self.predicate.as_ref().and_then(logged_predicate);
        let operation = match self.assignments {
            Some(_) => delta_log::Rewrite::Update { predicate: described },
            None => delta_log::Rewrite::Delete { predicate: described },
        };
        let (_, stats) = staged
            .run_logged(ctx.queries, &ctx.state, &rewritten, FILES, progress, async |published| {
                delta_log::rewrite(runtime, &location, &snapshot, &touched, &published.placed, operation).await?;
                Ok(())
            })
            .await?;
        written_result(query, (affected, stats))
    }
}

/// An expression without the alias DataFusion's `UPDATE` plan gives it.
fn strip_alias(expr: &Expr) -> Expr {
    match expr {
        Expr::Alias(alias) => (*alias.expr).clone(),
        other => other.clone(),
    }
}
