//! `LowercaseColumns`: a table whose files name columns in mixed case (`OrderCount`), presented
//! as Athena presents it: every column under its lower-case name, so `SELECT OrderCount`
//! (which SQL reads as `ordercount`) finds it. Scans ask the inner table for the columns by
//! their stored names and rename the result; filters are translated on the way in.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;

#[derive(Debug)]
pub struct LowercaseColumns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// Lower-case name → the name the files (and the inner table) use.
    stored: HashMap<String, String>,
}

impl LowercaseColumns {
    /// Wraps `inner` if any of its columns has upper-case letters; returns it as is otherwise.
    pub fn wrap(inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        let schema = inner.schema();
        if schema.fields().iter().all(|f| f.name().to_lowercase() == *f.name()) {
            return inner;
        }
        let mut stored = HashMap::new();
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let lower = f.name().to_lowercase();
                stored.insert(lower.clone(), f.name().clone());
                f.as_ref().clone().with_name(lower)
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        Arc::new(Self { inner, schema, stored })
    }

    /// `filter` with its columns under their stored names.
    fn translate(&self, filter: &Expr) -> Result<Expr> {
        filter
            .clone()
            .transform(|e| match e {
                Expr::Column(mut column) => match self.stored.get(&column.name) {
                    Some(stored) if *stored != column.name => {
                        column.name = stored.clone();
                        Ok(Transformed::yes(Expr::Column(column)))
                    }
                    _ => Ok(Transformed::no(Expr::Column(column))),
                },
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
    }
}

#[async_trait]
impl TableProvider for LowercaseColumns {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let translated = filters.iter().map(|f| self.translate(f)).collect::<Result<Vec<_>>>()?;
        self.inner.supports_filters_pushdown(&translated.iter().collect::<Vec<_>>())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let filters = filters.iter().map(|f| self.translate(f)).collect::<Result<Vec<_>>>()?;
        let plan = self.inner.scan(state, projection, &filters, limit).await?;
        let renamed: Vec<(Arc<dyn datafusion::physical_plan::PhysicalExpr>, String)> = plan
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (Arc::new(Column::new(f.name(), i)) as _, f.name().to_lowercase()))
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(renamed, plan)?))
    }
}
