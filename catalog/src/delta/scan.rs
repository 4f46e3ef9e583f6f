//! What a Delta table's scan adds on top of the Parquet scan of its files: the columns under
//! the names the table gives them (column mapping), each row's position in its file
//! ([`ROW_COLUMN`], for statements that name rows), and the rows deletion vectors delete left out.
//!
//! ```text
//! ProjectionExec: the columns asked for, named as the table names them
//!   FilterExec: NOT glaux_delta_deleted(row, deletion vector)     (tables with deletion vectors)
//!     DataSourceExec: columns, file_row_index() AS row, the file's deletion vector
//! ```
//! The projection right above the Parquet scan goes into it (it is what turns
//! `file_row_index()` into the reader's row numbers, on the executor that reads the file).

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::Session;
use datafusion::common::{Result, plan_err};
use datafusion::functions::core::file_row_index;
use datafusion::physical_expr::expressions::{Column, NotExpr};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;

/// Each row's position in its file (0-based), for statements that name rows.
pub const ROW_COLUMN: &str = "__glaux_delta_row";
/// The file's deletion vector, as a constant column of its rows.
pub(super) const DELETION_VECTOR_COLUMN: &str = "__glaux_delta_dv";
const DELETED_ROW: &str = "__glaux_delta_dv_row";

type Projected = Vec<(Arc<dyn PhysicalExpr>, String)>;

/// What the scan reads and how its output is named.
pub(super) struct Shape<'a> {
    /// The table's columns, as it names them (and [`ROW_COLUMN`], last, if asked for).
    pub table: &'a Schema,
    /// The names the Parquet scan gives `table`'s columns (all but [`ROW_COLUMN`]).
    pub physical: &'a [String],
    /// The Parquet scan also carries [`DELETION_VECTOR_COLUMN`], right after the table's columns.
    pub deletion_vectors: bool,
}

impl Shape<'_> {
    fn row_index(&self) -> Option<usize> {
        self.table.fields().iter().position(|f| f.name() == ROW_COLUMN)
    }

    /// The table columns the Parquet scan reads for `projection` (table indices): all asked for
    /// but the row column, and the deletion vector column.
    pub fn scanned(&self, projection: &[usize]) -> Vec<usize> {
        let row = self.row_index();
        let mut scanned: Vec<usize> = projection.iter().copied().filter(|i| Some(*i) != row).collect();
        if self.deletion_vectors {
            scanned.push(self.physical.len());
        }
        scanned
    }

    /// Whether the Parquet scan's output is the answer as it is.
    pub fn is_plain(&self, projection: &[usize]) -> bool {
        !self.deletion_vectors
            && projection.iter().all(|i| self.physical.get(*i).is_some_and(|p| p == self.table.field(*i).name()))
    }

    /// `scan` (reading [`Self::scanned`] of `projection`) as the table's columns `projection`.
    pub fn wrap(
        &self,
        state: &dyn Session,
        scan: Arc<dyn ExecutionPlan>,
        projection: &[usize],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let row = self.row_index();
        let index = |e| -> Arc<dyn PhysicalExpr> {
            let config = Arc::new(state.config_options().clone());
            let field = Arc::new(datafusion::arrow::datatypes::Field::new(
                e,
                datafusion::arrow::datatypes::DataType::Int64,
                true,
            ));
            Arc::new(ScalarFunctionExpr::new("file_row_index", file_row_index(), vec![], field, config))
        };
        // Right above the Parquet scan (and into it): the columns, the row positions, the vector.
        let mut inner: Projected = Vec::new();
        let mut scanned = 0;
        for &i in projection {
            let name = self.table.field(i).name().clone();
            if Some(i) == row {
                inner.push((index(ROW_COLUMN), name));
            } else {
                let column = Column::new(scan.schema().field(scanned).name(), scanned);
                inner.push((Arc::new(column), name));
                scanned += 1;
            }
        }
        if self.deletion_vectors {
            inner.push((index(DELETED_ROW), DELETED_ROW.to_string()));
            let column = Column::new(scan.schema().field(scanned).name(), scanned);
            inner.push((Arc::new(column), DELETION_VECTOR_COLUMN.to_string()));
        }
        let projected = ProjectionExec::try_new(inner, Arc::clone(&scan))?;
        let inner = match scan.try_swapping_with_projection(&projected)? {
            Some(inner) => inner,
            // Renaming alone works above the scan too; row positions only inside it.
            None if row.is_none_or(|r| !projection.contains(&r)) && !self.deletion_vectors => Arc::new(projected),
            None => return plan_err!("the Delta scan cannot take its projection of row positions"),
        };
        if !self.deletion_vectors {
            return Ok(inner);
        }
        let Some(deleted) = state.scalar_functions().get("glaux_delta_deleted").cloned() else {
            return plan_err!("glaux_delta_deleted is not registered");
        };
        let width = projection.len();
        let arguments: Vec<Arc<dyn PhysicalExpr>> =
            vec![Arc::new(Column::new(DELETED_ROW, width)), Arc::new(Column::new(DELETION_VECTOR_COLUMN, width + 1))];
        let config = Arc::new(state.config_options().clone());
        let deleted = ScalarFunctionExpr::try_new(deleted, arguments, &inner.schema(), config)?;
        let kept = FilterExec::try_new(Arc::new(NotExpr::new(Arc::new(deleted))), inner)?;
        let outer: Projected = (0..width)
            .map(|i| {
                let name = kept.schema().field(i).name().clone();
                (Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>, name)
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(outer, Arc::new(kept))?))
    }
}
