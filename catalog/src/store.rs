//! [`Catalog`]: the storage contract of databases, tables, partitions and prepared statements.

use std::fmt::Debug;
use std::sync::Arc;

use crate::definitions::{Partition, TableDef};
use crate::error::Result;
use crate::grants::Grant;
use crate::sqlite_history::{QueryFilter, QueryRecord};
use crate::sqlite_keys::AccessKey;
use crate::sqlite_workgroups::WorkGroup;

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
    /// Stores a table with its partitions, in one step (readers see the table with all of them
    /// or not at all), replacing one of the same name if `replace`.
    fn create_table(&self, table: &TableDef, partitions: &[Partition], replace: bool) -> Result<()>;
    /// Stores a new table whose files `write` wrote, with its partitions, and marks that write's
    /// files as the table's, in one step.
    fn create_written_table(&self, table: &TableDef, partitions: &[Partition], write: &str) -> Result<()>;
    /// Registers the partitions (new ones; registered ones are kept) whose directories a write's
    /// files went into, and marks that write's files as the table's, in one step.
    fn add_written_partitions(&self, database: &str, table: &str, partitions: &[Partition], write: &str) -> Result<()>;
    /// Records a write starting: until [`Self::end_write`], what it staged is removed at the next
    /// start if the process dies.
    fn begin_write(&self, write: &PendingWrite) -> Result<()>;
    /// Records the files a write is about to move into a table (removed at the next start unless
    /// the table is stored first), and the table's files it replaces (`retired`: removed at the
    /// next start once the table holds the new ones, kept otherwise).
    fn record_write_targets(&self, id: &str, targets: &[String], retired: &[String]) -> Result<()>;
    /// Forgets a write whose staged files are gone.
    fn end_write(&self, id: &str) -> Result<()>;
    /// Writes begun and not ended: what a process that died left behind.
    fn pending_writes(&self) -> Result<Vec<PendingWrite>>;
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
    /// A prepared statement (`PREPARE name FROM ...`): its text and the user who prepared it
    /// (`""` when the cluster has no users).
    fn prepared_statement(&self, name: &str) -> Result<Option<PreparedStatement>>;
    /// Stores a prepared statement, replacing one of the same name.
    fn prepare_statement(&self, name: &str, prepared: &PreparedStatement) -> Result<()>;
    /// Every prepared statement, by name.
    fn prepared_statements(&self) -> Result<Vec<(String, PreparedStatement)>>;
    /// Forgets a prepared statement; returns whether there was one.
    fn deallocate_statement(&self, name: &str) -> Result<bool>;

    /// Role names, sorted.
    fn roles(&self) -> Result<Vec<String>>;
    fn create_role(&self, name: &str) -> Result<()>;
    /// Drops a role, its members and the grants to it.
    fn drop_role(&self, name: &str) -> Result<()>;
    fn grant_role(&self, role: &str, user: &str) -> Result<()>;
    /// Returns whether the user had the role.
    fn revoke_role(&self, role: &str, user: &str) -> Result<bool>;
    /// `(role, user)` pairs, sorted.
    fn role_members(&self) -> Result<Vec<(String, String)>>;
    /// Records a grant (again: its grant option is updated).
    fn grant(&self, grant: &Grant) -> Result<()>;
    /// Removes a grant (whatever its grant option); returns whether there was one.
    fn revoke(&self, grant: &Grant) -> Result<bool>;
    /// Every grant, sorted.
    fn grants(&self) -> Result<Vec<Grant>>;

    /// Stores a new access key (Athena's API); its id must be new.
    fn create_access_key(&self, key: &AccessKey) -> Result<()>;
    fn access_key(&self, id: &str) -> Result<Option<AccessKey>>;
    /// Returns whether there was such a key.
    fn delete_access_key(&self, id: &str) -> Result<bool>;

    /// Writes statements' history records (one with a known id replaces it).
    fn record_queries(&self, records: &[QueryRecord]) -> Result<()>;
    /// History records, newest first.
    fn queries(&self, filter: &QueryFilter) -> Result<Vec<QueryRecord>>;
    /// Ends every unfinished (queued or running) record in `state` with `reason`; how many.
    fn end_unfinished_queries(&self, state: &str, reason: &str, now_ms: i64) -> Result<usize>;
    /// Deletes finished records submitted before `before_ms` and the oldest beyond `keep`.
    fn prune_queries(&self, before_ms: i64, keep: usize) -> Result<usize>;

    /// Every workgroup, by name (`primary` always among them).
    fn workgroups(&self) -> Result<Vec<WorkGroup>>;
    fn workgroup(&self, name: &str) -> Result<Option<WorkGroup>>;
    /// Creates a workgroup, or with `replace` replaces the one of its name; false if one
    /// existed and was not replaced.
    fn put_workgroup(&self, workgroup: &WorkGroup, replace: bool) -> Result<bool>;
    /// Deletes a workgroup other than `primary`; whether there was one.
    fn delete_workgroup(&self, name: &str) -> Result<bool>;

    /// Stores a named query (replacing the one of its id).
    fn put_named_query(&self, query: &NamedQuery) -> Result<()>;
    fn named_query(&self, id: &str) -> Result<Option<NamedQuery>>;
    /// Every named query, by name then id.
    fn named_queries(&self) -> Result<Vec<NamedQuery>>;
    fn delete_named_query(&self, id: &str) -> Result<bool>;
}

/// A prepared statement as the catalog keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreparedStatement {
    pub statement: String,
    pub owner: String,
    /// The workgroup it was prepared in, and what its author says it does (Athena's API).
    pub workgroup: String,
    pub description: String,
    /// When it was last prepared, in milliseconds since the Unix epoch.
    pub updated_ms: i64,
}

/// A saved query (Athena's named queries): SQL kept under a name, not run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedQuery {
    pub id: String,
    pub name: String,
    pub description: String,
    pub database: String,
    pub query: String,
    pub workgroup: String,
    pub owner: String,
}

/// A write in flight: its staging location (a URL ending in `/`), the object URLs it is moving
/// into a table (empty once the table holds them), and the table's files it replaces (to delete
/// once the table holds the new ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingWrite {
    pub id: String,
    pub staging: String,
    pub targets: Vec<String>,
    pub retired: Vec<String>,
}

impl PendingWrite {
    /// Whether the table took the write's files: what it replaces is to be deleted. Until
    /// then, its own files are the ones to remove.
    pub fn committed(&self) -> bool {
        self.targets.is_empty()
    }
}
