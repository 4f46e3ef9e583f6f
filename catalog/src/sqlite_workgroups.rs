//! Workgroups (table `workgroups`): named settings statements run under (output location, data
//! scanned cutoff, concurrency, timeout, result reuse, retry policy). `primary` always exists.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};

/// The workgroup that always exists.
pub const PRIMARY: &str = "primary";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS workgroups (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        settings TEXT NOT NULL,
        tags TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
";

/// What a workgroup sets for the statements that run in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkGroupSettings {
    /// Where Athena's API writes results when a request names none (or always, if enforced).
    pub output_location: Option<String>,
    /// The workgroup's settings beat the request's.
    pub enforce: bool,
    /// A statement that scans more bytes is stopped and fails.
    pub bytes_scanned_cutoff: Option<u64>,
    /// Statements running at once; more wait, first in first out.
    pub max_concurrent: Option<u32>,
    /// A statement running longer (after its wait) is stopped and fails.
    pub timeout_seconds: Option<u64>,
    /// Result reuse, unless a request says otherwise: results at most this old are reused.
    pub reuse_max_age_minutes: Option<u32>,
    /// What its queries do when they lose an executor (`query` or `task`; the scheduler checks
    /// the name); `None`: the session's choice, else the cluster's.
    pub retry_policy: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkGroup {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub settings: WorkGroupSettings,
    /// Labels a client attached (`Key`, `Value`).
    pub tags: Vec<(String, String)>,
    pub created_ms: i64,
}

fn sql_error(e: rusqlite::Error) -> CatalogError {
    CatalogError::from(e)
}

fn unreadable(name: &str, e: serde_json::Error) -> CatalogError {
    CatalogError::Store(format!("workgroup {name} is unreadable: {e}"))
}

pub(crate) fn migrate(connection: &Connection, now_ms: i64) -> Result<()> {
    connection.execute_batch(SCHEMA).map_err(sql_error)?;
    connection
        .execute(
            "INSERT OR IGNORE INTO workgroups (name, description, enabled, settings, tags, created_ms) \
             VALUES (?1, '', 1, '{}', '[]', ?2)",
            params![PRIMARY, now_ms],
        )
        .map_err(sql_error)?;
    Ok(())
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, bool, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn decode(
    (name, description, enabled, settings, tags, created_ms): (String, String, bool, String, String, i64),
) -> Result<WorkGroup> {
    let settings = serde_json::from_str(&settings).map_err(|e| unreadable(&name, e))?;
    let tags = serde_json::from_str(&tags).map_err(|e| unreadable(&name, e))?;
    Ok(WorkGroup { name, description, enabled, settings, tags, created_ms })
}

pub(crate) fn list(connection: &Connection) -> Result<Vec<WorkGroup>> {
    let mut statement = connection
        .prepare("SELECT name, description, enabled, settings, tags, created_ms FROM workgroups ORDER BY name")
        .map_err(sql_error)?;
    let rows = statement.query_map([], row).map_err(sql_error)?;
    rows.map(|r| r.map_err(sql_error).and_then(decode)).collect()
}

/// Every statement reads its workgroup: the statement is prepared once per connection.
pub(crate) fn get(connection: &Connection, name: &str) -> Result<Option<WorkGroup>> {
    connection
        .prepare_cached("SELECT name, description, enabled, settings, tags, created_ms FROM workgroups WHERE name = ?1")
        .map_err(sql_error)?
        .query_row(params![name], row)
        .optional()
        .map_err(sql_error)?
        .map(decode)
        .transpose()
}

/// Creates `workgroup` (`replace`: or replaces the one of its name); false if it existed and
/// was not replaced.
pub(crate) fn put(connection: &Connection, workgroup: &WorkGroup, replace: bool) -> Result<bool> {
    let settings = serde_json::to_string(&workgroup.settings).map_err(|e| unreadable(&workgroup.name, e))?;
    let tags = serde_json::to_string(&workgroup.tags).map_err(|e| unreadable(&workgroup.name, e))?;
    let verb = if replace { "INSERT OR REPLACE" } else { "INSERT OR IGNORE" };
    let changed = connection
        .execute(
            &format!(
                "{verb} INTO workgroups (name, description, enabled, settings, tags, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            params![workgroup.name, workgroup.description, workgroup.enabled, settings, tags, workgroup.created_ms],
        )
        .map_err(sql_error)?;
    Ok(changed > 0)
}

/// Deletes a workgroup (never `primary`); whether there was one.
pub(crate) fn delete(connection: &Connection, name: &str) -> Result<bool> {
    if name == PRIMARY {
        return Err(CatalogError::Store("the primary workgroup cannot be deleted".into()));
    }
    Ok(connection.execute("DELETE FROM workgroups WHERE name = ?1", params![name]).map_err(sql_error)? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_exists_and_workgroups_round_trip() {
        let connection = Connection::open_in_memory().unwrap();
        migrate(&connection, 5).unwrap();
        migrate(&connection, 6).unwrap();
        assert_eq!(
            list(&connection).unwrap().iter().map(|w| (w.name.as_str(), w.created_ms)).collect::<Vec<_>>(),
            [(PRIMARY, 5)]
        );
        let analysts = WorkGroup {
            name: "analysts".into(),
            description: "BI".into(),
            enabled: true,
            settings: WorkGroupSettings {
                max_concurrent: Some(1),
                bytes_scanned_cutoff: Some(10),
                ..Default::default()
            },
            tags: vec![("team".into(), "bi".into())],
            created_ms: 7,
        };
        assert!(put(&connection, &analysts, false).unwrap());
        assert!(!put(&connection, &analysts, false).unwrap());
        assert_eq!(get(&connection, "analysts").unwrap(), Some(analysts.clone()));
        let disabled = WorkGroup { enabled: false, ..analysts };
        assert!(put(&connection, &disabled, true).unwrap());
        assert!(!get(&connection, "analysts").unwrap().unwrap().enabled);
        assert!(delete(&connection, PRIMARY).is_err());
        assert!(delete(&connection, "analysts").unwrap());
        assert!(!delete(&connection, "analysts").unwrap());
    }
}
