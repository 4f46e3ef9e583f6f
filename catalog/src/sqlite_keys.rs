//! Access keys for Athena's API (table `access_keys`): an id, the user it signs for, and its
//! secret. AWS Signature Version 4 is an HMAC keyed by the secret itself, so the catalog keeps
//! the secret as issued (it cannot keep a one-way hash of it, as it does of passwords): the
//! catalog file is as private as the users file and the TLS key.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{CatalogError, Result};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS access_keys (
        id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        secret TEXT NOT NULL
    );
";

/// An access key: `id` names it in a request's signature, `secret` signs.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub user: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey").field("id", &self.id).field("user", &self.user).finish_non_exhaustive()
    }
}

fn sql_error(e: rusqlite::Error) -> CatalogError {
    CatalogError::from(e)
}

pub(crate) fn migrate(connection: &Connection) -> Result<()> {
    connection.execute_batch(SCHEMA).map_err(sql_error)
}

pub(crate) fn create(connection: &Connection, key: &AccessKey) -> Result<()> {
    connection
        .execute(
            "INSERT INTO access_keys (id, user_name, secret) VALUES (?1, ?2, ?3)",
            params![key.id, key.user, key.secret],
        )
        .map_err(sql_error)?;
    Ok(())
}

pub(crate) fn get(connection: &Connection, id: &str) -> Result<Option<AccessKey>> {
    connection
        .query_row("SELECT id, user_name, secret FROM access_keys WHERE id = ?1", params![id], |row| {
            Ok(AccessKey { id: row.get(0)?, user: row.get(1)?, secret: row.get(2)? })
        })
        .optional()
        .map_err(sql_error)
}

pub(crate) fn delete(connection: &Connection, id: &str) -> Result<bool> {
    Ok(connection.execute("DELETE FROM access_keys WHERE id = ?1", params![id]).map_err(sql_error)? > 0)
}
