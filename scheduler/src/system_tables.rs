//! The `system` catalog, as Trino names it: `system.runtime.queries` is the query history
//! (`history.rs`), each user seeing their own statements and an administrator everyone's.
//! Its rows are read from the catalog's database when a statement scans it, on the scheduler.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use glaux_catalog::history::{QueryFilter, QueryRecord};

use crate::history::History;

const SYSTEM: &str = "system";
const RUNTIME: &str = "runtime";
const QUERIES: &str = "queries";
/// Records a scan reads at most (the history's retention bounds them too).
const MAX_ROWS: usize = 1_000_000;

/// The catalogs with `system` added, for one user (`None`: an administrator, who sees all).
#[derive(Debug)]
pub struct WithSystem {
    inner: Arc<dyn CatalogProviderList>,
    system: Arc<dyn CatalogProvider>,
}

impl WithSystem {
    pub fn wrap(
        inner: Arc<dyn CatalogProviderList>,
        history: Arc<History>,
        user: Option<String>,
    ) -> Arc<dyn CatalogProviderList> {
        let queries = Arc::new(QueriesTable { history, user });
        Arc::new(Self { inner, system: Arc::new(SystemCatalog(Arc::new(RuntimeSchema(queries)))) })
    }
}

impl CatalogProviderList for WithSystem {
    fn register_catalog(&self, name: String, catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.register_catalog(name, catalog)
    }

    /// Not listed: `information_schema`, `pg_catalog` and the BI tools browsing them show the
    /// lake; `system` is queried by name.
    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if name == SYSTEM { Some(Arc::clone(&self.system)) } else { self.inner.catalog(name) }
    }
}

#[derive(Debug)]
struct SystemCatalog(Arc<dyn SchemaProvider>);

impl CatalogProvider for SystemCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![RUNTIME.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == RUNTIME).then(|| Arc::clone(&self.0))
    }
}

#[derive(Debug)]
struct RuntimeSchema(Arc<QueriesTable>);

#[async_trait]
impl SchemaProvider for RuntimeSchema {
    fn table_names(&self) -> Vec<String> {
        vec![QUERIES.to_string()]
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok((name == QUERIES).then(|| Arc::clone(&self.0) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        name == QUERIES
    }
}

struct QueriesTable {
    history: Arc<History>,
    /// Whose statements it shows; `None`: everyone's.
    user: Option<String>,
}

impl std::fmt::Debug for QueriesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueriesTable").field("user", &self.user).finish_non_exhaustive()
    }
}

fn queries_schema() -> SchemaRef {
    let time = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        text("query_id", false),
        text("user", false),
        text("door", false),
        text("workgroup", false),
        text("database", false),
        text("state", false),
        text("statement_type", false),
        text("query", false),
        text("error", true),
        Field::new("created", time(), false),
        Field::new("started", time(), true),
        Field::new("end", time(), true),
        count("queued_time_ms"),
        count("planning_time_ms"),
        count("execution_time_ms"),
        count("data_scanned_bytes"),
        count("rows"),
        text("output_location", true),
        Field::new("reused_previous_result", DataType::Boolean, false),
        count("tasks_rerun"),
    ]))
}

fn batch(records: &[QueryRecord]) -> Result<RecordBatch> {
    let text =
        |f: fn(&QueryRecord) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(records.iter().map(f))) };
    let maybe =
        |f: fn(&QueryRecord) -> Option<&str>| -> ArrayRef { Arc::new(records.iter().map(f).collect::<StringArray>()) };
    let time = |f: fn(&QueryRecord) -> Option<i64>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<TimestampMillisecondArray>().with_timezone("UTC"))
    };
    let count = |f: fn(&QueryRecord) -> u64| -> ArrayRef { Arc::new(records.iter().map(f).collect::<UInt64Array>()) };
    let columns = vec![
        text(|r| &r.id),
        text(|r| &r.user),
        text(|r| &r.door),
        text(|r| &r.workgroup),
        text(|r| &r.database),
        text(|r| &r.state),
        text(|r| &r.kind),
        text(|r| &r.sql),
        maybe(|r| r.reason.as_deref()),
        time(|r| Some(r.submitted_ms)),
        time(|r| r.started_ms),
        time(|r| r.ended_ms),
        count(|r| r.queue_ms),
        count(|r| r.planning_ms),
        count(|r| r.execution_ms),
        count(|r| r.bytes_scanned),
        count(|r| r.rows),
        maybe(|r| r.output_location.as_deref()),
        Arc::new(records.iter().map(|r| Some(r.reused)).collect::<BooleanArray>()),
        count(|r| r.tasks_rerun),
    ];
    Ok(RecordBatch::try_new(queries_schema(), columns)?)
}

#[async_trait]
impl TableProvider for QueriesTable {
    fn schema(&self) -> SchemaRef {
        queries_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let filter = QueryFilter { user: self.user.clone(), limit: MAX_ROWS, ..Default::default() };
        let records = self.history.read(filter).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        let batch = batch(&records)?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], queries_schema(), projection.cloned())?)
    }
}
