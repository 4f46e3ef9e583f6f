//! `SqliteCatalog`: the catalog in an embedded SQLite database (a file in the warehouse, or memory).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::definitions::{Partition, TableDef};
use crate::error::{CatalogError, Result};
use crate::grants::{Grant, Grantee};
use crate::sqlite_history::{QueryFilter, QueryRecord};
use crate::sqlite_keys::AccessKey;
use crate::sqlite_workgroups::WorkGroup;
use crate::store::{Catalog, NamedQuery, PendingWrite, PreparedStatement};

/// The catalog in SQLite. One scheduler owns the file: partitions are cached in memory and the
/// cache is kept current by this value's own writes.
#[derive(Debug)]
pub struct SqliteCatalog {
    connection: Mutex<Connection>,
    /// A file catalog's second connection, for the query history alone: its commits (and the
    /// log's checkpoints they run) never hold up the statements reading the catalog.
    history: Option<Mutex<Connection>>,
    partitions: Mutex<HashMap<TableKey, Arc<Vec<Partition>>>>,
}

/// `(database, table)`.
type TableKey = (String, String);

fn sql_error(e: rusqlite::Error) -> CatalogError {
    CatalogError::from(e)
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS databases (
        name TEXT PRIMARY KEY
    );
    CREATE TABLE IF NOT EXISTS tables (
        database TEXT NOT NULL REFERENCES databases(name),
        name TEXT NOT NULL,
        definition TEXT NOT NULL,
        PRIMARY KEY (database, name)
    );
    CREATE TABLE IF NOT EXISTS partitions (
        database TEXT NOT NULL,
        table_name TEXT NOT NULL,
        partition_values TEXT NOT NULL,
        location TEXT NOT NULL,
        PRIMARY KEY (database, table_name, partition_values)
    );
    -- Writes in flight (`sqlite_writes.rs`): where each stages its files, and the files it is
    -- moving into tables; what a crash left is removed at the next start.
    CREATE TABLE IF NOT EXISTS writes (
        id TEXT PRIMARY KEY,
        staging TEXT NOT NULL,
        targets TEXT NOT NULL,
        retired TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE IF NOT EXISTS prepared_statements (
        name TEXT PRIMARY KEY,
        statement TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS roles (
        name TEXT PRIMARY KEY
    );
    CREATE TABLE IF NOT EXISTS role_members (
        role TEXT NOT NULL REFERENCES roles(name),
        user_name TEXT NOT NULL,
        PRIMARY KEY (role, user_name)
    );
    -- One privilege on one object (a database, a table, a column, a location prefix) to one user
    -- or role; '' where a part does not apply.
    CREATE TABLE IF NOT EXISTS grants (
        privilege TEXT NOT NULL,
        object_kind TEXT NOT NULL,
        database TEXT NOT NULL,
        table_name TEXT NOT NULL,
        column_name TEXT NOT NULL,
        location TEXT NOT NULL,
        grantee_kind TEXT NOT NULL,
        grantee TEXT NOT NULL,
        grant_option INTEGER NOT NULL,
        PRIMARY KEY (privilege, object_kind, database, table_name, column_name, location, grantee_kind, grantee)
    );
";

/// Partition values as stored: a JSON array of strings (the primary key).
/// Inserts partitions in `transaction`; one registered already is skipped if `if_not_exists`,
/// else an error. How many were added.
pub(crate) fn insert_partitions(
    transaction: &Connection,
    database: &str,
    table: &str,
    partitions: &[Partition],
    if_not_exists: bool,
) -> Result<usize> {
    let mut insert = transaction
        .prepare(
            "INSERT OR IGNORE INTO partitions (database, table_name, partition_values, location) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql_error)?;
    let mut added = 0;
    for partition in partitions {
        let inserted = insert
            .execute(params![database, table, values_key(&partition.values), partition.location])
            .map_err(sql_error)?;
        if inserted == 0 && !if_not_exists {
            return Err(CatalogError::PartitionExists(format!(
                "partition ({}) of {database}.{table} already exists; use ADD IF NOT EXISTS",
                partition.values.join(", ")
            )));
        }
        added += inserted;
    }
    Ok(added)
}

pub(crate) fn values_key(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_default()
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog stored in `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CatalogError::Store(format!("catalog directory {}: {e}", dir.display())))?;
        }
        // A write-ahead log: one sync per commit instead of the rollback journal's several, and
        // readers (another connection, another process) do not wait for writers.
        let open = || -> Result<Connection> {
            let connection = Connection::open(path).map_err(sql_error)?;
            let mode: String =
                connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(sql_error)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "the catalog's file system does not allow a write-ahead log");
            }
            Ok(connection)
        };
        let catalog = Self::init(open()?)?;
        // History commits do not wait for the disk: they survive the process being killed; only
        // an OS crash can take back the last records. Syncing them cost every statement ~0.5 ms
        // of CPU on a 2-core machine (`benchmarks/README.md`, 2026-12-03).
        let history = open()?;
        history.execute_batch("PRAGMA synchronous = NORMAL").map_err(sql_error)?;
        Ok(Self { history: Some(Mutex::new(history)), ..catalog })
    }

    /// A catalog that lives as long as this value: for tests and throwaway clusters.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(sql_error)?)
    }

    fn init(connection: Connection) -> Result<Self> {
        // Every catalog commit is on disk before it returns (history records aside: `open`).
        connection.execute_batch("PRAGMA synchronous = FULL").map_err(sql_error)?;
        connection.execute_batch(SCHEMA).map_err(sql_error)?;
        crate::sqlite_writes::migrate(&connection)?;
        crate::sqlite_keys::migrate(&connection)?;
        crate::sqlite_history::migrate(&connection)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        crate::sqlite_workgroups::migrate(&connection, now_ms)?;
        crate::sqlite_saved::migrate(&connection)?;
        Ok(Self { connection: Mutex::new(connection), history: None, partitions: Mutex::default() })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.history.as_ref().unwrap_or(&self.connection).lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets cached partitions of one table, or of every table of a database (`table` None).
    pub(crate) fn forget_partitions(&self, database: &str, table: Option<&str>) {
        let mut cache = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(db, t), _| db != database || table.is_some_and(|table| t != table));
    }

    fn read_partitions(connection: &Connection, database: &str, table: &str) -> Result<Vec<Partition>> {
        let mut statement = connection
            .prepare(
                "SELECT partition_values, location FROM partitions WHERE database = ?1 AND table_name = ?2 \
                 ORDER BY partition_values",
            )
            .map_err(sql_error)?;
        let rows = statement
            .query_map(params![database, table], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .map_err(sql_error)?;
        let mut partitions = Vec::new();
        for row in rows {
            let (values, location) = row.map_err(sql_error)?;
            let values = serde_json::from_str(&values)
                .map_err(|e| CatalogError::Store(format!("a partition of {database}.{table} is unreadable: {e}")))?;
            partitions.push(Partition { values, location });
        }
        Ok(partitions)
    }

    fn names(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<String>> {
        let connection = self.lock();
        let mut statement = connection.prepare(sql).map_err(sql_error)?;
        let rows = statement.query_map(params, |row| row.get(0)).map_err(sql_error)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(sql_error)
    }
}

impl Catalog for SqliteCatalog {
    fn create_access_key(&self, key: &AccessKey) -> Result<()> {
        crate::sqlite_keys::create(&self.lock(), key)
    }

    fn access_key(&self, id: &str) -> Result<Option<AccessKey>> {
        crate::sqlite_keys::get(&self.lock(), id)
    }

    fn delete_access_key(&self, id: &str) -> Result<bool> {
        crate::sqlite_keys::delete(&self.lock(), id)
    }

    fn record_queries(&self, records: &[QueryRecord]) -> Result<()> {
        crate::sqlite_history::record(&mut self.lock_history(), records)
    }

    fn queries(&self, filter: &QueryFilter) -> Result<Vec<QueryRecord>> {
        crate::sqlite_history::read(&self.lock_history(), filter)
    }

    fn end_unfinished_queries(&self, state: &str, reason: &str, now_ms: i64) -> Result<usize> {
        crate::sqlite_history::end_unfinished(&self.lock_history(), state, reason, now_ms)
    }

    fn prune_queries(&self, before_ms: i64, keep: usize) -> Result<usize> {
        crate::sqlite_history::prune(&self.lock_history(), before_ms, keep)
    }

    fn workgroups(&self) -> Result<Vec<WorkGroup>> {
        crate::sqlite_workgroups::list(&self.lock())
    }

    fn workgroup(&self, name: &str) -> Result<Option<WorkGroup>> {
        crate::sqlite_workgroups::get(&self.lock(), name)
    }

    fn put_workgroup(&self, workgroup: &WorkGroup, replace: bool) -> Result<bool> {
        crate::sqlite_workgroups::put(&self.lock(), workgroup, replace)
    }

    fn delete_workgroup(&self, name: &str) -> Result<bool> {
        crate::sqlite_workgroups::delete(&self.lock(), name)
    }

    fn prepared_statement(&self, name: &str) -> Result<Option<PreparedStatement>> {
        crate::sqlite_saved::prepared_statement(&self.lock(), name)
    }

    fn prepare_statement(&self, name: &str, prepared: &PreparedStatement) -> Result<()> {
        crate::sqlite_saved::prepare(&self.lock(), name, prepared)
    }

    fn prepared_statements(&self) -> Result<Vec<(String, PreparedStatement)>> {
        crate::sqlite_saved::prepared_statements(&self.lock())
    }

    fn put_named_query(&self, query: &NamedQuery) -> Result<()> {
        crate::sqlite_saved::put_named(&self.lock(), query)
    }

    fn named_query(&self, id: &str) -> Result<Option<NamedQuery>> {
        crate::sqlite_saved::named_query(&self.lock(), id)
    }

    fn named_queries(&self) -> Result<Vec<NamedQuery>> {
        crate::sqlite_saved::named_queries(&self.lock())
    }

    fn delete_named_query(&self, id: &str) -> Result<bool> {
        crate::sqlite_saved::delete_named(&self.lock(), id)
    }

    fn deallocate_statement(&self, name: &str) -> Result<bool> {
        let deleted =
            self.lock().execute("DELETE FROM prepared_statements WHERE name = ?1", params![name]).map_err(sql_error)?;
        Ok(deleted > 0)
    }

    fn roles(&self) -> Result<Vec<String>> {
        self.names("SELECT name FROM roles ORDER BY name", [])
    }

    fn create_role(&self, name: &str) -> Result<()> {
        let inserted =
            self.lock().execute("INSERT OR IGNORE INTO roles (name) VALUES (?1)", params![name]).map_err(sql_error)?;
        if inserted == 0 {
            return Err(CatalogError::RoleExists(name.to_string()));
        }
        Ok(())
    }

    fn drop_role(&self, name: &str) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql_error)?;
        let deleted = transaction.execute("DELETE FROM roles WHERE name = ?1", params![name]).map_err(sql_error)?;
        if deleted == 0 {
            return Err(CatalogError::UnknownRole(name.to_string()));
        }
        transaction.execute("DELETE FROM role_members WHERE role = ?1", params![name]).map_err(sql_error)?;
        transaction
            .execute("DELETE FROM grants WHERE grantee_kind = 'ROLE' AND grantee = ?1", params![name])
            .map_err(sql_error)?;
        transaction.commit().map_err(sql_error)
    }

    fn grant_role(&self, role: &str, user: &str) -> Result<()> {
        if !self.roles()?.iter().any(|r| r == role) {
            return Err(CatalogError::UnknownRole(role.to_string()));
        }
        self.lock()
            .execute("INSERT OR IGNORE INTO role_members (role, user_name) VALUES (?1, ?2)", params![role, user])
            .map_err(sql_error)?;
        Ok(())
    }

    fn revoke_role(&self, role: &str, user: &str) -> Result<bool> {
        let deleted = self
            .lock()
            .execute("DELETE FROM role_members WHERE role = ?1 AND user_name = ?2", params![role, user])
            .map_err(sql_error)?;
        Ok(deleted > 0)
    }

    fn role_members(&self) -> Result<Vec<(String, String)>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT role, user_name FROM role_members ORDER BY role, user_name")
            .map_err(sql_error)?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).map_err(sql_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
    }

    fn grant(&self, grant: &Grant) -> Result<()> {
        if let Grantee::Role(role) = &grant.to
            && !self.roles()?.contains(role)
        {
            return Err(CatalogError::UnknownRole(role.clone()));
        }
        crate::grant_rows::insert(&self.lock(), grant)
    }

    fn revoke(&self, grant: &Grant) -> Result<bool> {
        crate::grant_rows::delete(&self.lock(), grant)
    }

    fn grants(&self) -> Result<Vec<Grant>> {
        crate::grant_rows::read(&self.lock())
    }

    fn databases(&self) -> Result<Vec<String>> {
        self.names("SELECT name FROM databases ORDER BY name", [])
    }

    fn database_exists(&self, name: &str) -> Result<bool> {
        let connection = self.lock();
        let found: Option<i64> = connection
            .query_row("SELECT 1 FROM databases WHERE name = ?1", params![name], |row| row.get(0))
            .optional()
            .map_err(sql_error)?;
        Ok(found.is_some())
    }

    fn create_database(&self, name: &str) -> Result<()> {
        self.lock().execute("INSERT OR IGNORE INTO databases (name) VALUES (?1)", params![name]).map_err(sql_error)?;
        Ok(())
    }

    fn drop_database(&self, name: &str, cascade: bool) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql_error)?;
        let tables: i64 = transaction
            .query_row("SELECT count(*) FROM tables WHERE database = ?1", params![name], |row| row.get(0))
            .map_err(sql_error)?;
        if tables > 0 && !cascade {
            return Err(CatalogError::DatabaseNotEmpty { database: name.to_string(), tables });
        }
        transaction.execute("DELETE FROM tables WHERE database = ?1", params![name]).map_err(sql_error)?;
        transaction.execute("DELETE FROM partitions WHERE database = ?1", params![name]).map_err(sql_error)?;
        transaction.execute("DELETE FROM databases WHERE name = ?1", params![name]).map_err(sql_error)?;
        // A database made again later under this name starts with no grants.
        transaction
            .execute("DELETE FROM grants WHERE object_kind IN ('DATABASE', 'TABLE') AND database = ?1", params![name])
            .map_err(sql_error)?;
        transaction.commit().map_err(sql_error)?;
        self.forget_partitions(name, None);
        Ok(())
    }

    fn tables(&self, database: &str) -> Result<Vec<String>> {
        self.names("SELECT name FROM tables WHERE database = ?1 ORDER BY name", params![database])
    }

    fn table(&self, database: &str, name: &str) -> Result<Option<TableDef>> {
        let definition: Option<String> = self
            .lock()
            .query_row(
                "SELECT definition FROM tables WHERE database = ?1 AND name = ?2",
                params![database, name],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error)?;
        definition
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| CatalogError::Store(format!("catalog entry {database}.{name} is unreadable: {e}")))
            })
            .transpose()
    }

    fn create_table(&self, table: &TableDef, partitions: &[Partition], replace: bool) -> Result<()> {
        self.store_table(table, partitions, replace, None)
    }

    fn create_written_table(&self, table: &TableDef, partitions: &[Partition], write: &str) -> Result<()> {
        self.store_table(table, partitions, false, Some(write))
    }

    fn add_written_partitions(&self, database: &str, table: &str, partitions: &[Partition], write: &str) -> Result<()> {
        self.add_partitions_of_write(database, table, partitions, write)
    }

    fn begin_write(&self, write: &PendingWrite) -> Result<()> {
        crate::sqlite_writes::begin(&self.lock(), write)
    }

    fn record_write_targets(&self, id: &str, targets: &[String], retired: &[String]) -> Result<()> {
        crate::sqlite_writes::record_targets(&self.lock(), id, targets, retired)
    }

    fn end_write(&self, id: &str) -> Result<()> {
        crate::sqlite_writes::end(&self.lock(), id)
    }

    fn pending_writes(&self) -> Result<Vec<PendingWrite>> {
        crate::sqlite_writes::pending(&self.lock())
    }

    fn drop_table(&self, database: &str, name: &str) -> Result<bool> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql_error)?;
        let deleted = transaction
            .execute("DELETE FROM tables WHERE database = ?1 AND name = ?2", params![database, name])
            .map_err(sql_error)?;
        transaction
            .execute("DELETE FROM partitions WHERE database = ?1 AND table_name = ?2", params![database, name])
            .map_err(sql_error)?;
        // A table made again later under this name starts with no grants.
        transaction
            .execute(
                "DELETE FROM grants WHERE object_kind = 'TABLE' AND database = ?1 AND table_name = ?2",
                params![database, name],
            )
            .map_err(sql_error)?;
        transaction.commit().map_err(sql_error)?;
        self.forget_partitions(database, Some(name));
        Ok(deleted > 0)
    }

    fn partitions(&self, database: &str, table: &str) -> Result<Arc<Vec<Partition>>> {
        let key = (database.to_string(), table.to_string());
        if let Some(cached) = self.partitions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(cached));
        }
        // Read and cached under the connection lock, so no write can slip between the two.
        let connection = self.lock();
        let partitions = Arc::new(Self::read_partitions(&connection, database, table)?);
        self.partitions.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::clone(&partitions));
        Ok(partitions)
    }

    fn add_partitions(
        &self,
        database: &str,
        table: &str,
        partitions: &[Partition],
        if_not_exists: bool,
    ) -> Result<usize> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql_error)?;
        let added = insert_partitions(&transaction, database, table, partitions, if_not_exists)?;
        transaction.commit().map_err(sql_error)?;
        self.forget_partitions(database, Some(table));
        Ok(added)
    }

    fn drop_partitions(&self, database: &str, table: &str, values: &[Vec<String>], if_exists: bool) -> Result<usize> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql_error)?;
        let mut dropped = 0;
        for values in values {
            let deleted = transaction
                .execute(
                    "DELETE FROM partitions WHERE database = ?1 AND table_name = ?2 AND partition_values = ?3",
                    params![database, table, values_key(values)],
                )
                .map_err(sql_error)?;
            if deleted == 0 && !if_exists {
                return Err(CatalogError::UnknownPartition(format!(
                    "partition ({}) of {database}.{table} does not exist; use DROP IF EXISTS",
                    values.join(", ")
                )));
            }
            dropped += deleted;
        }
        transaction.commit().map_err(sql_error)?;
        self.forget_partitions(database, Some(table));
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{ColumnDef, TableFormat};
    use datafusion::arrow::datatypes::DataType;

    fn table(database: &str, name: &str) -> TableDef {
        TableDef {
            database: database.into(),
            name: name.into(),
            locations: vec!["s3://bucket/t/".into()],
            format: TableFormat::Parquet,
            columns: vec![ColumnDef::new("id", &DataType::Int64)],
            partition_keys: vec![ColumnDef::new("d", &DataType::Utf8)],
            properties: Default::default(),
        }
    }

    #[test]
    fn tables_survive_reopening_and_databases_guard_their_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        {
            let catalog = SqliteCatalog::open(&path).unwrap();
            catalog.create_database("sales").unwrap();
            catalog.create_table(&table("sales", "orders"), &[], false).unwrap();
            assert!(catalog.create_table(&table("sales", "orders"), &[], false).is_err());
            catalog.create_table(&table("sales", "orders"), &[], true).unwrap();
        }
        let catalog = SqliteCatalog::open(&path).unwrap();
        assert_eq!(catalog.databases().unwrap(), vec!["sales"]);
        assert_eq!(catalog.table("sales", "orders").unwrap(), Some(table("sales", "orders")));
        assert_eq!(table("x", "y").columns[0].arrow_type().unwrap(), DataType::Int64);
        let partition = |d: &str| Partition { values: vec![d.into()], location: format!("s3://bucket/t/d={d}/") };
        let both = [partition("2024-01-02"), partition("2024-01-01")];
        assert_eq!(catalog.add_partitions("sales", "orders", &both, false).unwrap(), 2);
        assert!(
            catalog
                .add_partitions("sales", "orders", &[partition("2024-01-03"), partition("2024-01-01")], false)
                .is_err()
        );
        assert_eq!(catalog.add_partitions("sales", "orders", &both, true).unwrap(), 0);
        assert_eq!(*catalog.partitions("sales", "orders").unwrap(), vec![both[1].clone(), both[0].clone()]);
        assert!(catalog.drop_partitions("sales", "orders", &[vec!["2024-01-09".into()]], false).is_err());
        assert_eq!(catalog.drop_partitions("sales", "orders", &[both[0].values.clone()], false).unwrap(), 1);
        assert_eq!(catalog.partitions("sales", "orders").unwrap().len(), 1);
        assert!(catalog.drop_database("sales", false).is_err());
        assert!(catalog.drop_table("sales", "orders").unwrap());
        assert!(!catalog.drop_table("sales", "orders").unwrap());
        assert!(catalog.partitions("sales", "orders").unwrap().is_empty());
        catalog.drop_database("sales", false).unwrap();
        assert!(!catalog.database_exists("sales").unwrap());
    }

    #[test]
    fn a_file_catalog_writes_ahead_and_writes_history_while_its_catalog_connection_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let catalog = Arc::new(SqliteCatalog::open(&path).unwrap());
        let mode: String = catalog.lock().query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let record = QueryRecord { id: "q1".into(), state: "SUCCEEDED".into(), ..Default::default() };
        {
            // A statement reading the catalog holds its connection (as during a long read).
            let _busy = catalog.lock();
            let (done, written) = std::sync::mpsc::channel();
            let writer = Arc::clone(&catalog);
            std::thread::spawn(move || done.send(writer.record_queries(&[record])).unwrap());
            let written = written.recv_timeout(std::time::Duration::from_secs(10));
            assert!(matches!(written, Ok(Ok(()))), "history written beside a busy catalog connection: {written:?}");
        }
        drop(catalog);
        let reopened = SqliteCatalog::open(&path).unwrap();
        let filter = QueryFilter { limit: 10, ..Default::default() };
        assert_eq!(reopened.queries(&filter).unwrap().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["q1"]);
    }
}
