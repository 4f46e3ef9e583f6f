//! CTAS's `bucketed_by = ARRAY['col', ...], bucket_count = N`: Hive bucketing, as Athena writes it.
//!
//! Each row's bucket is `hive_bucket(N, cols...)` (Hive's hash, version 1: `glaux-functions`).
//! The query's rows are shuffled by bucket (`query/run.rs`, below the writers: DataFusion's
//! optimizer drops a repartition nothing requires), so one writer holds each bucket, and written with the
//! bucket as an extra leading partition column whose value names files instead of directories:
//! every partition gets at most one file per bucket, named `<bucket, six digits>_0_<query>_...`
//! (Hive's `000005_0`; Trino and Athena read the bucket from the leading digits). Bucketed
//! tables record `bucketed_by` and `bucket_count` among their properties; Glaux reads them as
//! any table (no bucket pruning yet), and refuses `INSERT` and `OPTIMIZE` into them, which would
//! break one file per bucket (Athena refuses INSERT into bucketed tables too).

use datafusion::common::Column;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lit};
use glaux_catalog::TableDef;
use glaux_functions::MAX_BUCKETS;

use super::create_table_as::{Value, unsupported};
use crate::error::SchedulerError;
use crate::write::BUCKET_COLUMN;

/// The table properties a bucketed table records.
pub(crate) const BUCKETED_BY: &str = "bucketed_by";
pub(crate) const BUCKET_COUNT: &str = "bucket_count";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bucketing {
    pub columns: Vec<String>,
    pub count: usize,
}

impl Bucketing {
    /// From CTAS's `bucketed_by` and `bucket_count` (both, or neither).
    pub fn read(columns: Option<Value>, count: Option<Value>) -> Result<Option<Self>, SchedulerError> {
        match (columns, count) {
            (None, None) => Ok(None),
            (Some(Value::Array(columns)), Some(Value::Number(count))) => {
                let count: usize =
                    count.parse().ok().filter(|c| (1..=MAX_BUCKETS as usize).contains(c)).ok_or_else(|| {
                        unsupported(format!("bucket_count must be between 1 and {MAX_BUCKETS}, not {count}"))
                    })?;
                if columns.is_empty() {
                    return Err(unsupported("bucketed_by names no column"));
                }
                Ok(Some(Self { columns: columns.iter().map(|c| c.to_ascii_lowercase()).collect(), count }))
            }
            (Some(_), Some(_)) => Err(unsupported("bucketed_by is ARRAY['column', ...] and bucket_count a number")),
            _ => Err(unsupported("bucketed_by and bucket_count go together")),
        }
    }

    /// Checks the columns against the query's (`partitioned_by` among them).
    pub fn check(&self, plan: &LogicalPlan, partitioned_by: &[String]) -> Result<(), SchedulerError> {
        for column in &self.columns {
            if partitioned_by.contains(column) {
                return Err(unsupported(format!("{column} cannot both partition and bucket the table")));
            }
            if plan.schema().field_with_unqualified_name(column).is_err() {
                return Err(unsupported(format!("bucketed_by names {column}, which the query does not return")));
            }
        }
        Ok(())
    }

    /// `plan`'s rows with their bucket before the partition columns (`partitioned_by`, its last
    /// columns); the write shuffles them by it (`query/run.rs`).
    pub fn plan(
        &self,
        plan: &LogicalPlan,
        partitioned_by: &[String],
        state: &datafusion::execution::SessionState,
    ) -> Result<LogicalPlan, SchedulerError> {
        let Some(function) = state.scalar_functions().get("hive_bucket") else {
            return Err(SchedulerError::Internal("hive_bucket is not registered".into()));
        };
        let columns: Vec<Expr> = plan.schema().columns().into_iter().map(Expr::Column).collect();
        let data = columns.len() - partitioned_by.len();
        let mut arguments = vec![lit(self.count as i64)];
        for name in &self.columns {
            let column = plan.schema().qualified_field_with_unqualified_name(name).map_err(SchedulerError::plan)?;
            arguments.push(Expr::Column(Column::from(column)));
        }
        let bucket = Expr::ScalarFunction(ScalarFunction::new_udf(function.clone(), arguments)).alias(BUCKET_COLUMN);
        let mut projection: Vec<Expr> = columns[..data].to_vec();
        projection.push(bucket);
        projection.extend(columns[data..].iter().cloned());
        LogicalPlanBuilder::from(plan.clone())
            .project(projection)
            .and_then(LogicalPlanBuilder::build)
            .map_err(SchedulerError::plan)
    }

    /// The properties a bucketed table records.
    pub fn properties(&self) -> [(String, String); 2] {
        [(BUCKETED_BY.into(), self.columns.join(",")), (BUCKET_COUNT.into(), self.count.to_string())]
    }
}

/// Refuses a write that would add files to a bucketed table.
pub(crate) fn refuse_bucketed(table: &TableDef, statement: &str) -> Result<(), SchedulerError> {
    if table.properties.contains_key(BUCKET_COUNT) {
        return Err(unsupported(format!(
            "{}.{} is bucketed: {statement} would break its one file per bucket (as in Athena, write it \
             with CREATE TABLE AS)",
            table.database, table.name
        )));
    }
    Ok(())
}
