//! Saved SQL: prepared statements' Athena attributes (workgroup, description, time) and named
//! queries (table `named_queries`).

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{CatalogError, Result};
use crate::store::{NamedQuery, PreparedStatement};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS named_queries (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        database TEXT NOT NULL,
        query TEXT NOT NULL,
        workgroup TEXT NOT NULL,
        owner TEXT NOT NULL
    );
";

fn sql_error(e: rusqlite::Error) -> CatalogError {
    CatalogError::from(e)
}

/// Adds what catalogs from before had not: named queries, and prepared statements' owner (those
/// of catalogs from before owners belong to nobody in particular: admins may replace or drop
/// them), workgroup, description and time.
pub(crate) fn migrate(connection: &Connection) -> Result<()> {
    connection.execute_batch(SCHEMA).map_err(sql_error)?;
    for (column, definition) in [
        ("owner", "TEXT NOT NULL DEFAULT ''"),
        ("workgroup", "TEXT NOT NULL DEFAULT 'primary'"),
        ("description", "TEXT NOT NULL DEFAULT ''"),
        ("updated_ms", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        let exists = connection
            .prepare("SELECT 1 FROM pragma_table_info('prepared_statements') WHERE name = ?1")
            .and_then(|mut s| s.exists([column]))
            .map_err(sql_error)?;
        if !exists {
            connection
                .execute_batch(&format!("ALTER TABLE prepared_statements ADD COLUMN {column} {definition}"))
                .map_err(sql_error)?;
        }
    }
    Ok(())
}

const PREPARED: &str = "SELECT name, statement, owner, workgroup, description, updated_ms FROM prepared_statements";

fn prepared(row: &Row<'_>) -> rusqlite::Result<(String, PreparedStatement)> {
    Ok((
        row.get(0)?,
        PreparedStatement {
            statement: row.get(1)?,
            owner: row.get(2)?,
            workgroup: row.get(3)?,
            description: row.get(4)?,
            updated_ms: row.get(5)?,
        },
    ))
}

pub(crate) fn prepared_statement(connection: &Connection, name: &str) -> Result<Option<PreparedStatement>> {
    let found = connection.query_row(&format!("{PREPARED} WHERE name = ?1"), params![name], prepared);
    Ok(found.optional().map_err(sql_error)?.map(|(_, p)| p))
}

pub(crate) fn prepared_statements(connection: &Connection) -> Result<Vec<(String, PreparedStatement)>> {
    let mut statement = connection.prepare(&format!("{PREPARED} ORDER BY name")).map_err(sql_error)?;
    let rows = statement.query_map([], prepared).map_err(sql_error)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
}

pub(crate) fn prepare(connection: &Connection, name: &str, p: &PreparedStatement) -> Result<()> {
    connection
        .execute(
            "INSERT OR REPLACE INTO prepared_statements (name, statement, owner, workgroup, description, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, p.statement, p.owner, p.workgroup, p.description, p.updated_ms],
        )
        .map_err(sql_error)?;
    Ok(())
}

const NAMED: &str = "SELECT id, name, description, database, query, workgroup, owner FROM named_queries";

fn named(row: &Row<'_>) -> rusqlite::Result<NamedQuery> {
    Ok(NamedQuery {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        database: row.get(3)?,
        query: row.get(4)?,
        workgroup: row.get(5)?,
        owner: row.get(6)?,
    })
}

pub(crate) fn put_named(connection: &Connection, q: &NamedQuery) -> Result<()> {
    connection
        .execute(
            "INSERT OR REPLACE INTO named_queries (id, name, description, database, query, workgroup, owner) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![q.id, q.name, q.description, q.database, q.query, q.workgroup, q.owner],
        )
        .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn named_query(connection: &Connection, id: &str) -> Result<Option<NamedQuery>> {
    connection.query_row(&format!("{NAMED} WHERE id = ?1"), params![id], named).optional().map_err(sql_error)
}

pub(crate) fn named_queries(connection: &Connection) -> Result<Vec<NamedQuery>> {
    let mut statement = connection.prepare(&format!("{NAMED} ORDER BY name, id")).map_err(sql_error)?;
    let rows = statement.query_map([], named).map_err(sql_error)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
}

pub(crate) fn delete_named(connection: &Connection, id: &str) -> Result<bool> {
    Ok(connection.execute("DELETE FROM named_queries WHERE id = ?1", params![id]).map_err(sql_error)? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_statements_and_named_queries_round_trip() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE prepared_statements (name TEXT PRIMARY KEY, statement TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '')")
            .unwrap();
        connection.execute("INSERT INTO prepared_statements (name, statement) VALUES ('old', 'SELECT 1')", []).unwrap();
        migrate(&connection).unwrap();
        migrate(&connection).unwrap();
        let old = prepared_statement(&connection, "old").unwrap().unwrap();
        assert_eq!((old.workgroup.as_str(), old.description.as_str()), ("primary", ""));
        let new = PreparedStatement {
            statement: "SELECT ?".into(),
            owner: "ann".into(),
            workgroup: "bi".into(),
            description: "one".into(),
            updated_ms: 9,
        };
        prepare(&connection, "new", &new).unwrap();
        assert_eq!(prepared_statements(&connection).unwrap(), [("new".to_string(), new), ("old".to_string(), old)]);
        let query =
            NamedQuery { id: "q1".into(), name: "daily".into(), query: "SELECT 2".into(), ..Default::default() };
        put_named(&connection, &query).unwrap();
        assert_eq!(named_query(&connection, "q1").unwrap(), Some(query.clone()));
        assert_eq!(named_queries(&connection).unwrap(), [query]);
        assert!(delete_named(&connection, "q1").unwrap() && !delete_named(&connection, "q1").unwrap());
    }
}
