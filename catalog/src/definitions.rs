//! What a table is: [`TableDef`] with its [`ColumnDef`]s and [`TableFormat`], and a registered
//! [`Partition`].

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

use crate::error::CatalogError;

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
    /// A Delta Lake table: Parquet files and the transaction log that says which are the table's.
    Delta,
}

impl TableFormat {
    /// From DataFusion's `STORED AS` name.
    pub fn from_stored_as(name: &str) -> crate::Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PARQUET" => Ok(Self::Parquet),
            "JSON" | "NDJSON" => Ok(Self::Json),
            "CSV" => Ok(Self::Csv),
            "DELTA" => Ok(Self::Delta),
            other => Err(CatalogError::Unsupported(format!(
                "STORED AS {other} is not supported: use PARQUET, JSON, CSV or DELTA"
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
