//! The lake catalog: databases and tables that survive restarts.
//!
//! [`Catalog`] is the storage contract (SQLite by default, [`SqliteCatalog`]; a shared server
//! database can implement it later). [`LakeCatalogProvider`] presents it to DataFusion, building a
//! table provider from a [`TableDef`] whenever a query names the table, so planning always sees
//! the catalog's current state and nothing about a table lives only in memory.

mod hive_ddl;
mod lake_table;
mod lowercase_columns;
mod partition_filter;
mod projection;
mod providers;
mod show_create;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

pub use hive_ddl::{COMPRESSION, FILE_EXTENSION, HiveTable, is_create_external_table, parse_hive_create_table};
pub use lake_table::{PruningReport, TableScanReport};
pub use partition_filter::{HIVE_NULL_PARTITION, typed_value};
pub use projection::Projection;
pub use providers::{LakeCatalogProvider, listing_options, table_provider};
pub use show_create::show_create_table;
pub use sqlite::SqliteCatalog;

/// Whether a file name is a side file rather than data: `_SUCCESS`, `_temporary`, `.crc` and
/// anything else starting with `_` or `.`, which Hive, Spark and Athena all skip.
pub fn is_side_file(name: &str) -> bool {
    name.starts_with(['_', '.'])
}

/// A column: its name and its Arrow type, stored in Arrow's textual form (`Int64`, `Utf8`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: String,
}

impl ColumnDef {
    pub fn new(name: impl Into<String>, data_type: &DataType) -> Self {
        Self { name: name.into(), data_type: data_type.to_string() }
    }

    pub fn arrow_type(&self) -> Result<DataType> {
        self.data_type.parse().map_err(|e| {
            DataFusionError::Plan(format!("column {} has unreadable type {}: {e}", self.name, self.data_type))
        })
    }
}

/// The file formats tables can be stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Parquet,
    Json,
    Csv,
}

impl TableFormat {
    /// From DataFusion's `STORED AS` name.
    pub fn from_stored_as(name: &str) -> Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PARQUET" => Ok(Self::Parquet),
            "JSON" | "NDJSON" => Ok(Self::Json),
            "CSV" => Ok(Self::Csv),
            other => Err(DataFusionError::Plan(format!(
                "STORED AS {other} is not supported: use PARQUET, JSON or CSV"
            ))),
        }
    }
}

/// Everything the catalog knows about a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub database: String,
    pub name: String,
    /// URLs of the table's data (usually one directory, ending in '/').
    pub locations: Vec<String>,
    pub format: TableFormat,
    /// Columns stored in the files.
    pub columns: Vec<ColumnDef>,
    /// Hive partition keys, in directory order; they follow the file columns in the table schema.
    pub partition_keys: Vec<ColumnDef>,
    /// Format options and table properties (`format.has_header`, ...).
    pub properties: BTreeMap<String, String>,
}

/// A partition registered in the catalog: its values (in partition-key order, as text, the
/// way Hive writes them in paths) and the URL of the directory holding its files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub values: Vec<String>,
    pub location: String,
}

impl Partition {
    /// `k1=v1/k2=v2`, as `SHOW PARTITIONS` writes it.
    pub fn spec(&self, keys: &[ColumnDef]) -> String {
        keys.iter().zip(&self.values).map(|(k, v)| format!("{}={v}", k.name)).collect::<Vec<_>>().join("/")
    }
}

/// Durable storage of databases and tables. Names are stored as given (already normalized by the
/// SQL planner). Implementations must be safe to call from any thread.
pub trait Catalog: Debug + Send + Sync {
    fn databases(&self) -> Result<Vec<String>>;
    fn database_exists(&self, name: &str) -> Result<bool>;
    fn create_database(&self, name: &str) -> Result<()>;
    /// Drops a database; with `cascade`, its tables too, else it must be empty.
    fn drop_database(&self, name: &str, cascade: bool) -> Result<()>;
    fn tables(&self, database: &str) -> Result<Vec<String>>;
    fn table(&self, database: &str, name: &str) -> Result<Option<TableDef>>;
    /// Stores a table, replacing one of the same name if `replace`.
    fn create_table(&self, table: &TableDef, replace: bool) -> Result<()>;
    /// Returns whether there was such a table. Its partitions go with it.
    fn drop_table(&self, database: &str, name: &str) -> Result<bool>;
    /// The table's registered partitions, ordered by their values. Read on every query of the
    /// table, so implementations keep them in memory between writes.
    fn partitions(&self, database: &str, table: &str) -> Result<Arc<Vec<Partition>>>;
    /// Registers partitions, all or none. One whose values are registered already is skipped
    /// if `if_not_exists`, else an error. Returns how many were added.
    fn add_partitions(&self, database: &str, table: &str, partitions: &[Partition], if_not_exists: bool)
    -> Result<usize>;
    /// Forgets the partitions with these values, all or none; each must exist unless `if_exists`.
    fn drop_partitions(&self, database: &str, table: &str, values: &[Vec<String>], if_exists: bool) -> Result<usize>;
    /// The text of a prepared statement (`PREPARE name FROM ...`), shared by every client as
    /// Athena shares them within a workgroup.
    fn prepared_statement(&self, name: &str) -> Result<Option<String>>;
    /// Stores a prepared statement, replacing one of the same name.
    fn prepare_statement(&self, name: &str, statement: &str) -> Result<()>;
    /// Forgets a prepared statement; returns whether there was one.
    fn deallocate_statement(&self, name: &str) -> Result<bool>;
}
