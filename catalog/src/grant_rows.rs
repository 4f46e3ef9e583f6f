//! Grants as the SQLite catalog stores them: one row per privilege, object and grantee, with
//! '' where a part of the object does not apply.

use rusqlite::{Connection, params};

use crate::error::{CatalogError, Result};
use crate::grants::{Grant, Grantee, Privilege, Securable};

/// A grant as stored: '' where a part does not apply.
pub(crate) struct GrantRow {
    pub(crate) privilege: String,
    pub(crate) kind: String,
    pub(crate) database: String,
    pub(crate) table: String,
    pub(crate) column: String,
    pub(crate) location: String,
    pub(crate) grantee_kind: String,
    pub(crate) grantee: String,
    pub(crate) grant_option: bool,
}

impl GrantRow {
    /// The columns that identify a grant, in the `grants` table's key order.
    pub(crate) fn key(&self) -> [&String; 8] {
        [
            &self.privilege,
            &self.kind,
            &self.database,
            &self.table,
            &self.column,
            &self.location,
            &self.grantee_kind,
            &self.grantee,
        ]
    }

    pub(crate) fn of(grant: &Grant) -> Self {
        let (database, table, column, location) = match &grant.on {
            Securable::Database(database) => (database.clone(), String::new(), String::new(), String::new()),
            Securable::Table { database, table, column } => {
                (database.clone(), table.clone(), column.clone().unwrap_or_default(), String::new())
            }
            Securable::Location(prefix) => (String::new(), String::new(), String::new(), prefix.clone()),
        };
        Self {
            privilege: grant.privilege.name().to_string(),
            kind: grant.on.kind().to_string(),
            database,
            table,
            column,
            location,
            grantee_kind: grant.to.kind().to_string(),
            grantee: grant.to.name().to_string(),
            grant_option: grant.grant_option,
        }
    }

    pub(crate) fn grant(self) -> Result<Grant> {
        let unreadable = || CatalogError::Store(format!("a grant is unreadable: {} on {}", self.privilege, self.kind));
        let privilege = Privilege::parse(&self.privilege).ok_or_else(unreadable)?;
        let on = match self.kind.as_str() {
            "DATABASE" => Securable::Database(self.database.clone()),
            "TABLE" => Securable::Table {
                database: self.database.clone(),
                table: self.table.clone(),
                column: Some(self.column.clone()).filter(|c| !c.is_empty()),
            },
            "LOCATION" => Securable::Location(self.location.clone()),
            _ => return Err(unreadable()),
        };
        let to = match self.grantee_kind.as_str() {
            "USER" => Grantee::User(self.grantee.clone()),
            "ROLE" => Grantee::Role(self.grantee.clone()),
            _ => return Err(unreadable()),
        };
        Ok(Grant { privilege, on, to, grant_option: self.grant_option })
    }
}

/// Stores `grant` (a grant of the same privilege, object and grantee takes its grant option).
pub(crate) fn insert(connection: &Connection, grant: &Grant) -> Result<()> {
    let row = GrantRow::of(grant);
    let [privilege, kind, database, table, column, location, grantee_kind, grantee] = row.key();
    connection
        .execute(
            "INSERT INTO grants (privilege, object_kind, database, table_name, column_name, location, \
             grantee_kind, grantee, grant_option) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT DO UPDATE SET grant_option = excluded.grant_option",
            params![privilege, kind, database, table, column, location, grantee_kind, grantee, grant.grant_option],
        )
        .map_err(CatalogError::from)?;
    Ok(())
}

/// Deletes `grant`; whether it was there.
pub(crate) fn delete(connection: &Connection, grant: &Grant) -> Result<bool> {
    let row = GrantRow::of(grant);
    let deleted = connection
        .execute(
            "DELETE FROM grants WHERE privilege = ?1 AND object_kind = ?2 AND database = ?3 AND table_name = ?4 \
             AND column_name = ?5 AND location = ?6 AND grantee_kind = ?7 AND grantee = ?8",
            row.key(),
        )
        .map_err(CatalogError::from)?;
    Ok(deleted > 0)
}

/// Every grant, by grantee, object and privilege (read for each statement of a user who is not
/// an administrator: the statement is prepared once per connection).
pub(crate) fn read(connection: &Connection) -> Result<Vec<Grant>> {
    let mut statement = connection
        .prepare_cached(
            "SELECT privilege, object_kind, database, table_name, column_name, location, grantee_kind, grantee, \
             grant_option FROM grants ORDER BY grantee_kind, grantee, object_kind, database, table_name, \
             column_name, location, privilege",
        )
        .map_err(CatalogError::from)?;
    let rows = statement
        .query_map([], |row| {
            Ok(GrantRow {
                privilege: row.get(0)?,
                kind: row.get(1)?,
                database: row.get(2)?,
                table: row.get(3)?,
                column: row.get(4)?,
                location: row.get(5)?,
                grantee_kind: row.get(6)?,
                grantee: row.get(7)?,
                grant_option: row.get(8)?,
            })
        })
        .map_err(CatalogError::from)?;
    let mut grants = Vec::new();
    for row in rows {
        grants.push(row.map_err(CatalogError::from)?.grant()?);
    }
    Ok(grants)
}
