//! The catalog's journal of writes in flight (table `writes`): a write is recorded before it
//! stages anything, its targets (and the files it replaces) before it moves files into a table,
//! and it is forgotten once its staging location (and what it replaced) is gone. The table's
//! registration clears the targets in the same transaction, so a record with targets always
//! names files no table holds yet, and one without names replaced files nothing may read.

use rusqlite::{Connection, params};

use crate::definitions::{Partition, TableDef};
use crate::error::{CatalogError, Result};
use crate::sqlite::{SqliteCatalog, insert_partitions};
use crate::store::PendingWrite;

fn sql_error(e: rusqlite::Error) -> CatalogError {
    CatalogError::from(e)
}

fn targets_json(targets: &[String]) -> String {
    serde_json::to_string(targets).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn begin(connection: &Connection, write: &PendingWrite) -> Result<()> {
    connection
        .execute(
            "INSERT INTO writes (id, staging, targets) VALUES (?1, ?2, ?3)",
            params![write.id, write.staging, targets_json(&write.targets)],
        )
        .map_err(sql_error)?;
    Ok(())
}

/// Adds the `retired` column to a journal made before it existed.
pub(crate) fn migrate(connection: &Connection) -> Result<()> {
    let has_retired = connection
        .prepare("SELECT 1 FROM pragma_table_info('writes') WHERE name = 'retired'")
        .and_then(|mut s| s.exists([]))
        .map_err(sql_error)?;
    if !has_retired {
        connection
            .execute_batch("ALTER TABLE writes ADD COLUMN retired TEXT NOT NULL DEFAULT '[]'")
            .map_err(sql_error)?;
    }
    Ok(())
}

pub(crate) fn record_targets(connection: &Connection, id: &str, targets: &[String], retired: &[String]) -> Result<()> {
    let updated = connection
        .execute(
            "UPDATE writes SET targets = ?2, retired = ?3 WHERE id = ?1",
            params![id, targets_json(targets), targets_json(retired)],
        )
        .map_err(sql_error)?;
    if updated == 0 {
        return Err(CatalogError::Store(format!("no write {id} is in flight")));
    }
    Ok(())
}

/// Inside the transaction that stores the written table: its files are no write's to undo.
pub(crate) fn published(connection: &Connection, id: &str) -> Result<()> {
    connection.execute("UPDATE writes SET targets = '[]' WHERE id = ?1", params![id]).map_err(sql_error)?;
    Ok(())
}

pub(crate) fn end(connection: &Connection, id: &str) -> Result<()> {
    connection.execute("DELETE FROM writes WHERE id = ?1", params![id]).map_err(sql_error)?;
    Ok(())
}

pub(crate) fn pending(connection: &Connection) -> Result<Vec<PendingWrite>> {
    let mut query =
        connection.prepare("SELECT id, staging, targets, retired FROM writes ORDER BY id").map_err(sql_error)?;
    let rows = query
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?))
        })
        .map_err(sql_error)?;
    let mut writes = Vec::new();
    for row in rows {
        let (id, staging, targets, retired) = row.map_err(sql_error)?;
        let list = |text: &str| {
            serde_json::from_str(text)
                .map_err(|e| CatalogError::Store(format!("write {id}'s journal record is unreadable: {e}")))
        };
        let (targets, retired) = (list(&targets)?, list(&retired)?);
        writes.push(PendingWrite { id, staging, targets, retired });
    }
    Ok(writes)
}

impl SqliteCatalog {
    /// Stores a table and its partitions in one transaction; with `write`, that write's files
    /// become the table's in the same step (its record keeps only its staging location).
    pub(crate) fn store_table(
        &self,
        table: &TableDef,
        partitions: &[Partition],
        replace: bool,
        write: Option<&str>,
    ) -> Result<()> {
        let definition = serde_json::to_string(table)
            .map_err(|e| CatalogError::Store(format!("encoding table {}: {e}", table.name)))?;
        let verb = if replace { "INSERT OR REPLACE" } else { "INSERT" };
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql_error)?;
        // A replaced table starts without partitions: its keys or location may have changed.
        transaction
            .execute(
                "DELETE FROM partitions WHERE database = ?1 AND table_name = ?2",
                params![table.database, table.name],
            )
            .map_err(sql_error)?;
        let inserted = transaction.execute(
            &format!("{verb} INTO tables (database, name, definition) VALUES (?1, ?2, ?3)"),
            params![table.database, table.name, definition],
        );
        match inserted {
            Ok(_) => {
                insert_partitions(&transaction, &table.database, &table.name, partitions, true)?;
                if let Some(write) = write {
                    published(&transaction, write)?;
                }
                transaction.commit().map_err(sql_error)?;
                self.forget_partitions(&table.database, Some(&table.name));
                Ok(())
            }
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(CatalogError::TableExists { database: table.database.clone(), table: table.name.clone() })
            }
            Err(e) => Err(sql_error(e)),
        }
    }

    /// Registers the new partitions a write's files went into and marks its files as the
    /// table's, in one transaction.
    pub(crate) fn add_partitions_of_write(
        &self,
        database: &str,
        table: &str,
        partitions: &[Partition],
        write: &str,
    ) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql_error)?;
        insert_partitions(&transaction, database, table, partitions, true)?;
        published(&transaction, write)?;
        transaction.commit().map_err(sql_error)?;
        self.forget_partitions(database, Some(table));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{TableDef, TableFormat};
    use crate::sqlite::SqliteCatalog;
    use crate::store::Catalog;

    #[test]
    fn a_written_table_takes_its_writes_files_in_the_same_step() {
        let catalog = SqliteCatalog::in_memory().unwrap();
        catalog.create_database("db").unwrap();
        let write =
            PendingWrite { id: "q1".into(), staging: "file:///w/t/_glaux_staging/q1/".into(), ..Default::default() };
        catalog.begin_write(&write).unwrap();
        assert!(catalog.begin_write(&write).is_err(), "one record per write");
        let targets = vec!["file:///w/t/q1_a.parquet".to_string()];
        let retired = vec!["file:///w/t/old.parquet".to_string()];
        catalog.record_write_targets("q1", &targets, &retired).unwrap();
        let recorded = PendingWrite { targets, retired: retired.clone(), ..write.clone() };
        assert_eq!(catalog.pending_writes().unwrap(), [recorded]);
        assert!(!catalog.pending_writes().unwrap()[0].committed());
        let table = TableDef {
            database: "db".into(),
            name: "t".into(),
            locations: vec!["file:///w/t/".into()],
            format: TableFormat::Parquet,
            columns: vec![],
            partition_keys: vec![],
            properties: Default::default(),
        };
        catalog.create_written_table(&table, &[], "q1").unwrap();
        let committed = PendingWrite { retired, ..write };
        assert_eq!(catalog.pending_writes().unwrap(), [committed], "the table holds the files; the rest remains");
        assert!(catalog.pending_writes().unwrap()[0].committed());
        catalog.end_write("q1").unwrap();
        assert!(catalog.pending_writes().unwrap().is_empty());
        assert!(catalog.record_write_targets("q1", &[], &[]).is_err());
    }
}
