//! `MERGE INTO t USING s ON c WHEN MATCHED [AND p] THEN UPDATE SET ... | DELETE WHEN NOT MATCHED
//! [AND p] THEN INSERT ...` on Delta tables, with Trino's semantics: the first `WHEN` clause whose
//! condition holds acts on a row; a target row that two source rows would change is an error.
//! Copy-on-write, both passes on the executors:
//! 1. the target's rows (each named by its file and its position in the file, the provider's
//!    `FILE_COLUMN` and `ROW_COLUMN`) joined with the
//!    source: per file, the target rows a `WHEN MATCHED` clause acts on (any acted on twice is the
//!    error, before anything is written), and the source rows a `WHEN NOT MATCHED` clause inserts;
//! 2. the files with acted-on rows are read again, joined with the source, and written anew
//!    (updated rows changed, deleted ones left out), with the inserted rows in new files; one
//!    commit removes the old files and adds the new ones. A `MERGE` reads the whole table, so any
//!    concurrent commit that adds or removes files makes it fail with nothing changed.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use async_trait::async_trait;
use datafusion::common::{Column, JoinType, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::count::count;
use datafusion::functions_aggregate::min_max::max;
use datafusion::functions_aggregate::sum::sum;
use datafusion::logical_expr::dml::{MergeIntoAction, MergeIntoClause, MergeIntoOp};
use datafusion::logical_expr::{
    Case, DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp, and, cast, col, lit, or,
};
use glaux_catalog::{DeltaTableProvider, Privilege, delta_log};
use glaux_proto::QueryId;

use super::create_table_as::{rows_schema, unsupported, written_result};
use super::delta::{FILES, begin_write, collect, rewriting_scan, rewritten_table, spilling, sql_text};
use super::{Context, Family};
use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryResult};

/// The source's marker column: set on every source row, so it is null after an outer join only
/// where no source row matched.
const SOURCE_ROW: &str = "__glaux_merge_source";

pub(crate) struct DeltaMerge {
    reference: TableReference,
    database: String,
    table: String,
    source: LogicalPlan,
    /// The `ON` condition, joined on as written (a join matches only where it is true), so the
    /// join finds its equality keys rather than looping over all pairs.
    on: Expr,
    /// `WHEN MATCHED` clauses, in order.
    matched: Vec<MergeIntoClause>,
    /// `WHEN NOT MATCHED` clauses, in order (all `INSERT`).
    not_matched: Vec<MergeIntoClause>,
}

impl DeltaMerge {
    /// From DataFusion's plan of a `MERGE`.
    pub(super) fn try_new(plan: LogicalPlan, database: &str) -> Result<Self, SchedulerError> {
        let LogicalPlan::Dml(DmlStatement { table_name, op: WriteOp::MergeInto(op), input, .. }) = plan else {
            return Err(unsupported("not a MERGE"));
        };
        let MergeIntoOp { on, clauses } = *op;
        let (mut matched, mut not_matched) = (Vec::new(), Vec::new());
        for clause in clauses {
            if clause.kind.is_not_matched_by_target() {
                not_matched.push(clause);
            } else if matches!(clause.action, MergeIntoAction::Insert { .. }) {
                return Err(unsupported("MERGE: WHEN MATCHED cannot INSERT"));
            } else if clause.kind == datafusion::logical_expr::dml::MergeIntoClauseKind::Matched {
                matched.push(clause);
            } else {
                return Err(unsupported("MERGE: WHEN NOT MATCHED BY SOURCE is not supported (nor in Trino)"));
            }
        }
        let name = table_name.clone().resolve(glaux_catalog::DEFAULT_CATALOG, database);
        Ok(Self {
            reference: table_name,
            database: name.schema.to_string(),
            table: name.table.to_string(),
            source: Arc::unwrap_or_clone(input),
            on,
            matched,
            not_matched,
        })
    }

    /// The table merged into, `db.t`.
    pub fn table(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// The tables the source reads.
    pub fn source(&self) -> &LogicalPlan {
        &self.source
    }

    fn scan(&self, provider: DeltaTableProvider) -> Result<LogicalPlanBuilder, SchedulerError> {
        LogicalPlanBuilder::scan(self.reference.clone(), provider_as_source(Arc::new(provider)), None)
            .map_err(SchedulerError::plan)
    }

    fn target_column(&self, name: &str) -> Expr {
        Expr::Column(Column::new(Some(self.reference.clone()), name))
    }

    /// The source's rows, each with [`SOURCE_ROW`].
    fn marked_source(&self) -> Result<LogicalPlanBuilder, SchedulerError> {
        let mut columns: Vec<Expr> = self.source.schema().columns().into_iter().map(Expr::Column).collect();
        columns.push(lit(true).alias(SOURCE_ROW));
        LogicalPlanBuilder::from(self.source.clone()).project(columns).map_err(SchedulerError::plan)
    }

    /// Whether a clause's condition holds (a clause without one always does).
    fn holds(clause: &MergeIntoClause) -> Expr {
        clause.predicate.clone().map_or(lit(true), |p| Expr::IsTrue(Box::new(p)))
    }

    /// Whether some `WHEN MATCHED` clause acts on a matched pair of rows.
    fn acted_on(&self) -> Expr {
        self.matched.iter().map(Self::holds).reduce(or).unwrap_or(lit(false))
    }

    /// Pass 1: per target file (null for the source rows inserted), the target rows acted on, the
    /// (target, source) pairs acted on, and the most pairs of one target row.
    fn counted(&self, provider: DeltaTableProvider) -> Result<LogicalPlan, SchedulerError> {
        let file = self.target_column(delta_log::FILE_COLUMN);
        let target = self.scan(provider.with_row_column())?.build().map_err(SchedulerError::plan)?;
        let matched = Expr::IsNotNull(Box::new(file.clone()));
        let inserted = self.not_matched.iter().map(Self::holds).reduce(or).unwrap_or(lit(false));
        let acts = or(and(matched.clone(), self.acted_on()), and(Expr::Not(Box::new(matched)), inserted));
        let join = if self.not_matched.is_empty() { JoinType::Inner } else { JoinType::Left };
        LogicalPlanBuilder::from(self.source.clone())
            .join_on(target, join, [self.on.clone()])
            .and_then(|plan| plan.filter(acts))
            .and_then(|plan| {
                let row = self.target_column(delta_log::ROW_COLUMN);
                plan.aggregate(vec![file.clone(), row], vec![count(lit(1)).alias("pairs")])
            })
            .and_then(|plan| {
                let pairs = col("pairs");
                plan.aggregate(vec![file], vec![count(lit(1)), sum(pairs.clone()), max(pairs)])
            })
            .and_then(LogicalPlanBuilder::build)
            .map_err(SchedulerError::plan)
    }

    /// Pass 2, the target's part: the rows of `provider` (the files with rows acted on), updated
    /// or left out by the first `WHEN MATCHED` clause that acts on them, as `columns`.
    fn rewritten(
        &self,
        provider: DeltaTableProvider,
        columns: &[(String, DataType)],
    ) -> Result<LogicalPlanBuilder, SchedulerError> {
        let matched = Expr::IsNotNull(Box::new(col(SOURCE_ROW)));
        let acts = |clause: &MergeIntoClause| and(matched.clone(), Self::holds(clause));
        // Each target row joins at most one source row a clause acts on (pass 1 checked).
        let condition = and(self.on.clone(), self.acted_on());
        let mut keep = Vec::new();
        let mut values: Vec<Vec<(Expr, Expr)>> = vec![Vec::new(); columns.len()];
        for clause in &self.matched {
            keep.push((acts(clause), lit(!matches!(clause.action, MergeIntoAction::Delete))));
            for ((name, data_type), branches) in columns.iter().zip(&mut values) {
                let assigned = match &clause.action {
                    MergeIntoAction::Update(assignments) => assignments.iter().find(|(c, _)| c == name),
                    _ => None,
                };
                let new =
                    assigned.map_or_else(|| self.target_column(name), |(_, v)| cast(v.clone(), data_type.clone()));
                branches.push((acts(clause), new));
            }
        }
        let keep = first_of(keep, lit(true));
        let projected: Vec<Expr> = columns
            .iter()
            .zip(values)
            .map(|((name, _), branches)| first_of(branches, self.target_column(name)).alias(name))
            .collect();
        self.scan(provider)?
            .join_on(self.marked_source()?.build().map_err(SchedulerError::plan)?, JoinType::Left, [condition])
            .and_then(|plan| plan.filter(keep))
            .and_then(|plan| plan.project(projected))
            .map_err(SchedulerError::plan)
    }

    /// Pass 2, the source's part: the source rows no target row matches, inserted by the first
    /// `WHEN NOT MATCHED` clause whose condition holds, as `columns`.
    fn inserted(
        &self,
        provider: DeltaTableProvider,
        columns: &[(String, DataType)],
    ) -> Result<LogicalPlanBuilder, SchedulerError> {
        let target = self.scan(provider)?.build().map_err(SchedulerError::plan)?;
        let mut values: Vec<Vec<(Expr, Expr)>> = vec![Vec::new(); columns.len()];
        for clause in &self.not_matched {
            let MergeIntoAction::Insert { columns: named, values: given } = &clause.action else {
                return Err(unsupported("MERGE: WHEN NOT MATCHED can only INSERT"));
            };
            for (position, ((name, data_type), branches)) in columns.iter().zip(&mut values).enumerate() {
                let given = if named.is_empty() {
                    given.get(position)
                } else {
                    named.iter().position(|c| c == name).and_then(|i| given.get(i))
                };
                let new = given.cloned().unwrap_or(null());
                branches.push((Self::holds(clause), cast(new, data_type.clone())));
            }
        }
        let projected: Vec<Expr> = columns
            .iter()
            .zip(values)
            .map(|((name, data_type), branches)| first_of(branches, cast(null(), data_type.clone())).alias(name))
            .collect();
        let inserts = self.not_matched.iter().map(Self::holds).reduce(or).unwrap_or(lit(false));
        LogicalPlanBuilder::from(self.source.clone())
            .join_on(target, JoinType::LeftAnti, [self.on.clone()])
            .and_then(|plan| plan.filter(inserts))
            .and_then(|plan| plan.project(projected))
            .map_err(SchedulerError::plan)
    }

    /// What the log records of it.
    fn operation(&self) -> delta_log::Rewrite {
        let described = |clauses: &[MergeIntoClause]| {
            clauses
                .iter()
                .map(|clause| {
                    let action = match clause.action {
                        MergeIntoAction::Update(_) => "update",
                        MergeIntoAction::Delete => "delete",
                        MergeIntoAction::Insert { .. } => "insert",
                    };
                    (action.to_string(), clause.predicate.as_ref().map(sql_text))
                })
                .collect()
        };
        delta_log::Rewrite::Merge {
            on: sql_text(&self.on),
            matched: described(&self.matched),
            not_matched: described(&self.not_matched),
        }
    }
}

/// The value of the first branch whose condition holds, else `otherwise`.
fn first_of(branches: Vec<(Expr, Expr)>, otherwise: Expr) -> Expr {
    if branches.is_empty() {
        return otherwise;
    }
    let branches = branches.into_iter().map(|(when, then)| (Box::new(when), Box::new(then))).collect();
    Expr::Case(Case::new(None, branches, Some(Box::new(otherwise))))
}

fn null() -> Expr {
    Expr::Literal(ScalarValue::Null, None)
}

#[async_trait]
impl Family for DeltaMerge {
    fn schema(&self) -> SchemaRef {
        rows_schema()
    }

    /// Each clause's privilege on the target (`UPDATE`, `DELETE`, `INSERT`) and `SELECT`, as the
    /// target's rows are read; the source's tables were checked as they were planned.
    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        ctx.access.require_table(Privilege::Select, &self.database, &self.table)?;
        for clause in self.matched.iter().chain(&self.not_matched) {
            let privilege = match clause.action {
                MergeIntoAction::Update(_) => Privilege::Update,
                MergeIntoAction::Delete => Privilege::Delete,
                MergeIntoAction::Insert { .. } => Privilege::Insert,
            };
            ctx.access.require_table(privilege, &self.database, &self.table)?;
        }
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let (definition, location, snapshot) = rewritten_table(ctx, &self.database, &self.table, "MERGE").await?;
        let runtime = ctx.state.runtime_env();
        let provider = rewriting_scan(ctx, self.table(), &location, &snapshot)?;
        let columns: Vec<(String, DataType)> = provider
            .schema_without_file_column()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();

        // 1. The rows acted on, per file; a target row acted on twice is an error.
        let state = spilling(&ctx.state);
        let (batches, counted) = collect(ctx, &state, &self.counted(provider.clone())?).await?;
        let (mut touched, mut affected, mut inserts) = (HashSet::new(), 0u64, 0u64);
        for batch in &batches {
            let (Some(files), Some(targets), Some(pairs), Some(most)) = (
                batch.column(0).as_string_opt::<i32>(),
                batch.column(1).as_primitive_opt::<Int64Type>(),
                batch.column(2).as_primitive_opt::<Int64Type>(),
                batch.column(3).as_primitive_opt::<Int64Type>(),
            ) else {
                return Err(SchedulerError::Internal("the count of merged rows has the wrong columns".into()));
            };
            for row in 0..batch.num_rows() {
                let count = |values: &arrow::array::Int64Array| u64::try_from(values.value(row)).unwrap_or_default();
                if files.is_null(row) {
                    inserts += count(pairs);
                    continue;
                }
                if count(most) > 1 {
                    return Err(SchedulerError::refused(
                        ErrorKind::InvalidStatement,
                        format!(
                            "MERGE: one target table row matched more than one source row ({} of {}); \
                             nothing was changed",
                            files.value(row),
                            self.table()
                        ),
                    ));
                }
                touched.insert(files.value(row).to_string());
                affected += count(targets);
            }
        }
        if touched.is_empty() && inserts == 0 {
            return written_result(query, (0, counted));
        }

        // 2. The files with rows acted on, rewritten, and the inserted rows.
        let mut written: Option<LogicalPlanBuilder> = None;
        if !touched.is_empty() {
            written = Some(self.rewritten(provider.clone().restricted_to(touched.clone()), &columns)?);
        }
        if inserts > 0 {
            let inserted = self.inserted(provider, &columns)?.build().map_err(SchedulerError::plan)?;
            written = Some(match written {
                Some(rewritten) => rewritten.union(inserted).map_err(SchedulerError::plan)?,
                None => LogicalPlanBuilder::from(inserted),
            });
        }
        let Some(written) = written else { return written_result(query, (0, counted)) };
        let plan = written.build().map_err(SchedulerError::plan)?;
        let table = (&definition, location.as_str(), &snapshot);
        let (staged, plan) = begin_write((ctx, &state), &query, table, &plan)?;
        let operation = self.operation();
        let (_, stats) = staged
            .run_logged(ctx.queries, &state, &plan, FILES, progress, async |published| {
                delta_log::rewrite(runtime, &location, &snapshot, &touched, &published.placed, operation).await?;
                Ok(())
            })
            .await?;
        written_result(query, (affected + inserts, stats))
    }
}
