//! DataFusion's view of the catalog: `LakeCatalogProvider` and its schemas (databases).
//!
//! A table is read from the catalog each time a query names it; its provider is built from that
//! [`TableDef`], or reused while the definition is the one it was built from (building one
//! parses every column's type and the locations: about 0.06 ms a table, a short query's
//! planning resolves several).
//! Views live in memory beside the catalog until views get a durable definition of their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::cache::cache_manager::FileStatisticsCache;
use datafusion::execution::runtime_env::RuntimeEnv;

use crate::definitions::{TableDef, TableFormat};
use crate::delta::{
    DeltaTableProvider, NameSuffix, Snapshot as DeltaSnapshot, history_table, properties_table, split_name,
};
use crate::hive_ddl::{COMPRESSION, FILE_EXTENSION};
use crate::lake_table::LakeTable;
use crate::lowercase_columns::LowercaseColumns;
use crate::store::Catalog;

#[derive(Debug)]
struct Shared {
    catalog: Arc<dyn Catalog>,
    /// The object stores Delta tables' logs are read through.
    runtime: Arc<RuntimeEnv>,
    /// Parquet reading options of the session (pushdown, page index), applied to every table.
    parquet: TableParquetOptions,
    views: RwLock<HashMap<(String, String), Arc<dyn TableProvider>>>,
    /// Providers built, by database and table, with the definition each was built from.
    built: Mutex<HashMap<(String, String), Built>>,
}

/// A provider and the definition it was built from.
type Built = (TableDef, Arc<dyn TableProvider>);

/// Providers kept at most; beyond, all are dropped and built again as queries name them.
const MAX_BUILT: usize = 1024;

impl Shared {
    fn table_provider(&self, table: &TableDef) -> Result<Arc<dyn TableProvider>> {
        table_provider(table, &self.catalog, &self.parquet, self.runtime.cache_manager.get_file_statistic_cache())
    }

    /// The provider of `table` (as the catalog holds it now): the one built before from the same
    /// definition, else a new one. A provider holds nothing of the queries that used it.
    fn current_provider(&self, table: TableDef) -> Result<Arc<dyn TableProvider>> {
        let key = (table.database.clone(), table.name.clone());
        let lock = || self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((definition, provider)) = lock().get(&key)
            && *definition == table
        {
            return Ok(Arc::clone(provider));
        }
        let provider = self.table_provider(&table)?;
        let mut built = lock();
        if built.len() >= MAX_BUILT {
            built.clear();
        }
        built.insert(key, (table, Arc::clone(&provider)));
        Ok(provider)
    }
}

#[derive(Debug)]
pub struct LakeCatalogProvider {
    shared: Arc<Shared>,
    /// Schemas of the engine itself, kept in memory and never in the catalog: `pg_catalog` for
    /// PostgreSQL clients.
    system: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

/// Schema names registered in memory instead of as databases.
const SYSTEM_SCHEMAS: [&str; 1] = ["pg_catalog"];

impl LakeCatalogProvider {
    pub fn new(catalog: Arc<dyn Catalog>, parquet: TableParquetOptions, runtime: Arc<RuntimeEnv>) -> Self {
        let shared = Shared { catalog, runtime, parquet, views: RwLock::default(), built: Mutex::default() };
        Self { shared: Arc::new(shared), system: RwLock::default() }
    }
}

/// The listing options (format, extension, partition columns) a table definition implies.
pub fn listing_options(table: &TableDef, parquet: &TableParquetOptions) -> Result<ListingOptions> {
    let compression: FileCompressionType = match table.properties.get(COMPRESSION) {
        Some(codec) => codec.parse()?,
        None => FileCompressionType::UNCOMPRESSED,
    };
    let format: Arc<dyn FileFormat> = match table.format {
        TableFormat::Parquet | TableFormat::Delta => Arc::new(ParquetFormat::default().with_options(parquet.clone())),
        TableFormat::Json => Arc::new(JsonFormat::default().with_file_compression_type(compression)),
        TableFormat::Csv => {
            let header = table.properties.get("format.has_header").is_some_and(|v| v == "true");
            let mut csv = CsvFormat::default().with_has_header(header).with_file_compression_type(compression);
            if let Some(delimiter) = table.properties.get("format.delimiter") {
                match delimiter.as_bytes() {
                    [byte] => csv = csv.with_delimiter(*byte),
                    _ => return plan_err!("field delimiter {delimiter:?} must be a single byte"),
                }
            }
            Arc::new(csv)
        }
    };
    let partition_cols =
        table.partition_keys.iter().map(|c| Ok((c.name.clone(), c.arrow_type()?))).collect::<Result<Vec<_>>>()?;
    let mut options = ListingOptions::new(format).with_table_partition_cols(partition_cols);
    if let Some(extension) = table.properties.get(FILE_EXTENSION) {
        options = options.with_file_extension(extension);
    }
    Ok(options)
}

/// Builds the provider that scans `table`. No I/O: the schema comes from the definition.
/// A partitioned table reads the partitions the catalog (or its projection) gives; an
/// unpartitioned one lists its location on every query, as Athena does. A Delta table is read
/// from its log ([`delta_provider`]); here it is an empty table of the catalog's columns.
/// `statistics`: where an unpartitioned table keeps each file's statistics across queries (keyed
/// by table and file, and checked against the file's size and modification time before use), so
/// planning does not decode them from the footer every time.
pub fn table_provider(
    table: &TableDef,
    catalog: &Arc<dyn Catalog>,
    parquet: &TableParquetOptions,
    statistics: Option<Arc<FileStatisticsCache>>,
) -> Result<Arc<dyn TableProvider>> {
    if table.format == TableFormat::Delta {
        let fields = table
            .columns
            .iter()
            .chain(&table.partition_keys)
            .map(|c| Ok(Field::new(&c.name, c.arrow_type()?, true)))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Arc::new(EmptyTable::new(Arc::new(Schema::new(fields)))));
    }
    let fields =
        table.columns.iter().map(|c| Ok(Field::new(&c.name, c.arrow_type()?, true))).collect::<Result<Vec<_>>>()?;
    let file_schema = Arc::new(Schema::new(fields));
    let options = listing_options(table, parquet)?;
    // Columns the files name in mixed case are seen in lower case, as Athena shows them.
    if !table.partition_keys.is_empty() {
        return Ok(LowercaseColumns::wrap(Arc::new(LakeTable::new(
            table.clone(),
            Arc::clone(catalog),
            options,
            file_schema,
        )?)));
    }
    let urls = table.locations.iter().map(ListingTableUrl::parse).collect::<Result<Vec<_>>>()?;
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(file_schema);
    Ok(LowercaseColumns::wrap(Arc::new(ListingTable::try_new(config)?.with_cache(statistics))))
}

impl CatalogProvider for LakeCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        self.shared.catalog.databases().unwrap_or_else(|e| {
            tracing::error!("listing databases: {e}");
            Vec::new()
        })
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(system) = self.system.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Some(Arc::clone(system));
        }
        match self.shared.catalog.database_exists(name) {
            Ok(true) => Some(Arc::new(LakeSchemaProvider { shared: Arc::clone(&self.shared), database: name.into() })),
            Ok(false) => None,
            Err(e) => {
                tracing::error!("looking up database {name}: {e}");
                None
            }
        }
    }

    /// `CREATE SCHEMA` / `CREATE DATABASE`: the provider DataFusion made is replaced by ours.
    fn register_schema(&self, name: &str, schema: Arc<dyn SchemaProvider>) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if SYSTEM_SCHEMAS.contains(&name) {
            return Ok(self.system.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), schema));
        }
        self.shared.catalog.create_database(name)?;
        Ok(None)
    }

    fn deregister_schema(&self, name: &str, cascade: bool) -> Result<Option<Arc<dyn SchemaProvider>>> {
        let Some(schema) = self.schema(name) else { return Ok(None) };
        self.shared.catalog.drop_database(name, cascade)?;
        let mut views = self.shared.views.write().unwrap_or_else(|e| e.into_inner());
        views.retain(|(database, _), _| database != name);
        Ok(Some(schema))
    }
}

#[derive(Debug)]
struct LakeSchemaProvider {
    shared: Arc<Shared>,
    database: String,
}

impl LakeSchemaProvider {
    fn key(&self, name: &str) -> (String, String) {
        (self.database.clone(), name.to_string())
    }

    fn view(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.shared.views.read().unwrap_or_else(|e| e.into_inner()).get(&self.key(name)).cloned()
    }
}

#[async_trait]
impl SchemaProvider for LakeSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.shared.catalog.tables(&self.database).unwrap_or_else(|e| {
            tracing::error!("listing tables of {}: {e}", self.database);
            Vec::new()
        });
        let views = self.shared.views.read().unwrap_or_else(|e| e.into_inner());
        names.extend(views.keys().filter(|(db, _)| db == &self.database).map(|(_, name)| name.clone()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(view) = self.view(name) {
            return Ok(Some(view));
        }
        let (base, suffix) = split_name(name);
        match self.shared.catalog.table(&self.database, base)? {
            Some(table) if table.format == TableFormat::Delta => {
                Ok(Some(delta_provider(&table, suffix, &self.shared).await?))
            }
            Some(_) if suffix.is_some() => plan_err!(
                "{}.{base} is not a Delta table: {} needs a transactional table ('table_type' = 'DELTA')",
                self.database,
                match suffix {
                    Some(NameSuffix::At(_)) => "time travel (FOR VERSION | TIMESTAMP AS OF)",
                    _ => "a $history or $properties table",
                }
            ),
            Some(table) => Ok(Some(self.shared.current_provider(table)?)),
            None => Ok(None),
        }
    }

    /// Reached by `CREATE VIEW` (external tables are stored by the scheduler's DDL handling).
    fn register_table(&self, name: String, table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut views = self.shared.views.write().unwrap_or_else(|e| e.into_inner());
        Ok(views.insert(self.key(&name), table))
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = self.shared.views.write().unwrap_or_else(|e| e.into_inner()).remove(&self.key(name)) {
            return Ok(Some(view));
        }
        let Some(table) = self.shared.catalog.table(&self.database, name)? else { return Ok(None) };
        let provider = self.shared.table_provider(&table)?;
        self.shared.catalog.drop_table(&self.database, name)?;
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.view(name).is_some()
            || matches!(self.shared.catalog.table(&self.database, split_name(name).0), Ok(Some(_)))
    }
}

/// A Delta table as a query names it: a snapshot of it (the latest, or one it travels to), or
/// one of its metadata tables; columns and partitions come from its log.
async fn delta_provider(
    table: &TableDef,
    suffix: Option<NameSuffix>,
    shared: &Shared,
) -> Result<Arc<dyn TableProvider>> {
    let Some(location) = table.locations.first() else {
        return plan_err!("the Delta table {}.{} has no location", table.database, table.name);
    };
    let snapshot = match suffix {
        Some(NameSuffix::At(snapshot)) => snapshot,
        _ => DeltaSnapshot::Latest,
    };
    let delta = match crate::delta::open(&shared.runtime, location, snapshot).await {
        Ok(delta) => delta,
        // Named plainly (as metadata listings name every table), a table whose log cannot be
        // read shows its catalog columns, and reading it fails with why.
        Err(error) if suffix.is_none() => {
            let schema = shared.table_provider(table)?.schema();
            return Ok(Arc::new(UnreadableTable { schema, error: error.to_string() }));
        }
        Err(error) => return Err(error.into()),
    };
    Ok(match suffix {
        Some(NameSuffix::History) => Arc::new(history_table(&delta).await?),
        Some(NameSuffix::Properties) => Arc::new(properties_table(&delta)?),
        _ => {
            let name = format!("{}.{}", table.database, table.name);
            LowercaseColumns::wrap(Arc::new(DeltaTableProvider::try_new(
                name,
                location.clone(),
                delta,
                &shared.parquet,
            )?))
        }
    })
}

/// A Delta table whose log cannot be read now: its catalog columns, and scans that fail with why.
#[derive(Debug)]
struct UnreadableTable {
    schema: SchemaRef,
    error: String,
}

#[async_trait]
impl TableProvider for UnreadableTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        plan_err!("{}", self.error)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;

    use super::*;
    use crate::definitions::ColumnDef;
    use crate::sqlite::SqliteCatalog;

    fn orders(columns: &[&str]) -> TableDef {
        TableDef {
            database: "sales".into(),
            name: "orders".into(),
            locations: vec!["file:///lake/orders/".into()],
            format: TableFormat::Parquet,
            columns: columns.iter().map(|c| ColumnDef::new(*c, &DataType::Int64)).collect(),
            partition_keys: Vec::new(),
            properties: Default::default(),
        }
    }

    /// A table named again gets the provider built before, until its definition changes.
    #[tokio::test]
    async fn a_provider_is_built_again_only_when_its_definition_changes() {
        let catalog: Arc<dyn Catalog> = Arc::new(SqliteCatalog::in_memory().unwrap());
        catalog.create_database("sales").unwrap();
        catalog.create_table(&orders(&["id"]), &[], false).unwrap();
        let lake = LakeCatalogProvider::new(
            Arc::clone(&catalog),
            TableParquetOptions::default(),
            Arc::new(RuntimeEnv::default()),
        );
        let schema = lake.schema("sales").unwrap();
        let first = schema.table("orders").await.unwrap().unwrap();
        let again = schema.table("orders").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same definition, the same provider");

        catalog.create_table(&orders(&["id", "total"]), &[], true).unwrap();
        let altered = schema.table("orders").await.unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &altered));
        let names: Vec<String> = altered.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["id", "total"]);

        catalog.drop_table("sales", "orders").unwrap();
        assert!(schema.table("orders").await.unwrap().is_none(), "a dropped table is gone, kept provider or not");
    }
}
