//! [`Catalog`]: the storage contract of databases, tables, partitions and prepared statements.

use std::fmt::Debug;
use std::sync::Arc;

use crate::definitions::{Partition, TableDef};
use crate::error::Result;

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
    fn add_partitions(
        &self,
        database: &str,
        table: &str,
        partitions: &[Partition],
        if_not_exists: bool,
    ) -> Result<usize>;
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
