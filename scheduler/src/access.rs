//! What a user sees of the catalog: DataFusion's catalogs wrapped so that planning, the
//! `information_schema`, `pg_catalog` and Flight SQL's metadata calls all see only the databases,
//! tables and columns the user's grants allow ([`Access`]).
//!
//! - A database shows if the user holds anything on it or on a table in it.
//! - A table shows, and can be read, if the user may `SELECT` some of its columns; with column
//!   grants only, it shows with those columns only (`SELECT *` returns them, as in Lake Formation).
//! - A table that exists but may not be read is a permission error naming it, not "not found".
//!
//! Statements other than reads are checked by their families (`Family::authorize`).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use glaux_catalog::{Access, Columns, DEFAULT_CATALOG, NameSuffix, Privilege};

/// The schemas that are the engine's own, shown to everyone.
const PG_CATALOG: &str = "pg_catalog";

/// The catalogs as one user sees them.
#[derive(Debug)]
pub struct GrantedCatalogs {
    inner: Arc<dyn CatalogProviderList>,
    access: Arc<Access>,
    pg_tables: Arc<PgCatalogStaticTables>,
    /// This view's `pg_catalog`, made once: its tables number objects (OIDs) as they are first
    /// met, so every `pg_catalog` table a statement joins must come from the same one.
    pg_catalog: Arc<OnceLock<Arc<dyn SchemaProvider>>>,
}

impl GrantedCatalogs {
    pub fn wrap(
        inner: Arc<dyn CatalogProviderList>,
        access: Arc<Access>,
        pg_tables: Arc<PgCatalogStaticTables>,
    ) -> Arc<dyn CatalogProviderList> {
        Arc::new(Self { inner, access, pg_tables, pg_catalog: Arc::default() })
    }
}

impl CatalogProviderList for GrantedCatalogs {
    fn register_catalog(&self, name: String, catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let inner = self.inner.catalog(name)?;
        if name != DEFAULT_CATALOG {
            return Some(inner);
        }
        // The user's own view of pg_catalog: built over these filtered catalogs.
        let me: Arc<dyn CatalogProviderList> = Arc::new(Self {
            inner: Arc::clone(&self.inner),
            access: Arc::clone(&self.access),
            pg_tables: Arc::clone(&self.pg_tables),
            pg_catalog: Arc::clone(&self.pg_catalog),
        });
        Some(Arc::new(GrantedCatalog { inner, access: Arc::clone(&self.access), everything: me }))
    }
}

#[derive(Debug)]
struct GrantedCatalog {
    inner: Arc<dyn CatalogProvider>,
    access: Arc<Access>,
    /// The filtered catalog list this catalog belongs to (for `pg_catalog`).
    everything: Arc<dyn CatalogProviderList>,
}

impl CatalogProvider for GrantedCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.inner.schema_names().into_iter().filter(|s| s == PG_CATALOG || self.access.sees_database(s)).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == PG_CATALOG {
            let granted = self.everything.downcast_ref::<GrantedCatalogs>()?;
            if let Some(made) = granted.pg_catalog.get() {
                return Some(Arc::clone(made));
            }
            let provider = PgCatalogSchemaProvider::try_new(
                Arc::clone(&self.everything),
                Arc::clone(&granted.pg_tables),
                EmptyContextProvider,
            )
            .ok()?;
            let shaped = crate::session::ShapedPgCatalog::new(Arc::new(provider));
            return Some(Arc::clone(granted.pg_catalog.get_or_init(|| Arc::new(shaped))));
        }
        let inner = self.inner.schema(name)?;
        Some(Arc::new(GrantedSchema { database: name.to_string(), inner, access: Arc::clone(&self.access) }))
    }

    fn register_schema(&self, name: &str, schema: Arc<dyn SchemaProvider>) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.register_schema(name, schema)
    }

    fn deregister_schema(&self, name: &str, cascade: bool) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.deregister_schema(name, cascade)
    }
}

#[derive(Debug)]
struct GrantedSchema {
    database: String,
    inner: Arc<dyn SchemaProvider>,
    access: Arc<Access>,
}

#[async_trait]
impl SchemaProvider for GrantedSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner
            .table_names()
            .into_iter()
            .filter(|t| self.access.readable_columns(&self.database, t) != Columns::None)
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        // A Delta table's snapshots and metadata tables (`t$history`) are read as the table is.
        // Checked before the table is built: building a Delta table reads its log.
        let (base, suffix) = glaux_catalog::split_name(name);
        let metadata = matches!(suffix, Some(NameSuffix::History | NameSuffix::Properties));
        let columns = self.access.readable_columns(&self.database, base);
        if columns == Columns::None && !self.inner.table_exist(name) {
            return Ok(None);
        }
        let table = match columns {
            Columns::None => None,
            _ => match self.inner.table(name).await? {
                Some(table) => Some(table),
                None => return Ok(None),
            },
        };
        match (columns, table) {
            (Columns::All, Some(table)) => Ok(Some(table)),
            (Columns::Only(_), Some(table)) if metadata => Ok(Some(table)),
            (Columns::Only(columns), Some(table)) => Ok(Some(Arc::new(SomeColumns::new(table, &columns)))),
            (_, _) => Err(DataFusionError::from(self.access.denied(
                Privilege::Select,
                &glaux_catalog::Securable::Table {
                    database: self.database.clone(),
                    table: base.to_string(),
                    column: None,
                },
            ))),
        }
    }

    fn register_table(&self, name: String, table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A table with only some of its columns: the ones a user's column grants allow.
#[derive(Debug)]
struct SomeColumns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// For each visible column, its index in the inner table.
    indices: Vec<usize>,
}

impl SomeColumns {
    fn new(inner: Arc<dyn TableProvider>, columns: &std::collections::BTreeSet<String>) -> Self {
        let full = inner.schema();
        let indices: Vec<usize> =
            (0..full.fields().len()).filter(|&i| columns.contains(full.field(i).name())).collect();
        let schema = Arc::new(full.project(&indices).unwrap_or_else(|_| Schema::empty()));
        Self { inner, schema, indices }
    }
}

#[async_trait]
impl TableProvider for SomeColumns {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        // A view's plan would show every column again: read through `scan` instead.
        None
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner: Vec<usize> = match projection {
            Some(projection) => projection.iter().filter_map(|&i| self.indices.get(i).copied()).collect(),
            None => self.indices.clone(),
        };
        self.inner.scan(state, Some(&inner), filters, limit).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}
