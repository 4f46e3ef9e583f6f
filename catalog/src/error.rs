//! `CatalogError`: what can go wrong with the catalog, by kind, so that callers decide on the
//! variant and never on the text.

use datafusion::common::DataFusionError;
use glaux_storage::LocationError;

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// DDL that does not read (Athena's dialect: a missing keyword, an unknown type).
    #[error("{0}")]
    Parse(String),
    /// A clause or format Glaux cannot honour, named.
    #[error("{0}")]
    Unsupported(String),
    /// A definition or statement the catalog cannot accept (a partition value of the wrong type,
    /// a table that is not partitioned, a malformed projection).
    #[error("{0}")]
    Invalid(String),
    #[error("database {database} does not exist{hint}")]
    UnknownDatabase { database: String, hint: &'static str },
    #[error("table {database}.{table} not found")]
    UnknownTable { database: String, table: String },
    #[error("{0}")]
    UnknownPartition(String),
    #[error("table {database}.{table} already exists")]
    TableExists { database: String, table: String },
    #[error("{0}")]
    PartitionExists(String),
    /// The user lacks a grant (or is not an admin): the message names what is missing.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("role {0} does not exist")]
    UnknownRole(String),
    #[error("role {0} already exists")]
    RoleExists(String),
    #[error("database {database} is not empty ({tables} tables); drop its tables first or use CASCADE")]
    DatabaseNotEmpty { database: String, tables: i64 },
    /// A location this deployment may not read, or that does not exist.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The catalog's own storage failed (SQLite), or holds an entry it cannot read.
    #[error("catalog database: {0}")]
    Store(String),
    /// A file the crawler read could not be read (a corrupt Parquet footer, say).
    #[error("{what}: {source}")]
    ReadFile { what: String, source: DataFusionError },
    /// Listing the files a definition names, or building a table's provider.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl From<CatalogError> for DataFusionError {
    /// Through DataFusion (a provider's answer), the error travels as itself, to be recovered by
    /// downcast.
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<rusqlite::Error> for CatalogError {
    fn from(error: rusqlite::Error) -> Self {
        CatalogError::Store(error.to_string())
    }
}
