//! Who may do what: roles, grants on databases, tables, columns and locations (Lake Formation's
//! model), kept in the catalog, and [`Access`], one user's rights evaluated from them.
//!
//! Rules:
//! - An admin (named so by the deployment, not by the catalog) may do anything.
//! - A grant on a database covers every table in it; a grant on a table covers all its columns;
//!   a column grant (`SELECT (a, b)`) covers those columns only, and a table with only column
//!   grants shows only those columns.
//! - A user has what is granted to them and to each role granted to them.
//! - `LOCATION` grants cover every location under their prefix (`s3://bucket/raw/` covers
//!   `s3://bucket/raw/events/`, never `s3://bucket/rawdata/`).
//! - `WITH GRANT OPTION` lets its holder grant (and revoke) the same privilege on the same object.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{CatalogError, Result};
use crate::store::Catalog;

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Alter,
    Drop,
    Create,
    /// Declaring tables (and partitions) over locations under a prefix.
    Location,
}

impl Privilege {
    pub const TABLE_PRIVILEGES: [Privilege; 7] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Alter,
        Privilege::Drop,
        Privilege::Create,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Alter => "ALTER",
            Privilege::Drop => "DROP",
            Privilege::Create => "CREATE",
            Privilege::Location => "LOCATION",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::TABLE_PRIVILEGES.into_iter().chain([Privilege::Location]).find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a grant is on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Securable {
    Database(String),
    /// A table, or one column of it.
    Table {
        database: String,
        table: String,
        column: Option<String>,
    },
    /// Locations under a prefix (ending in `/`).
    Location(String),
}

impl Securable {
    pub fn kind(&self) -> &'static str {
        match self {
            Securable::Database(_) => "DATABASE",
            Securable::Table { .. } => "TABLE",
            Securable::Location(_) => "LOCATION",
        }
    }
}

impl fmt::Display for Securable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Securable::Database(database) => write!(f, "database {database}"),
            Securable::Table { database, table, column: None } => write!(f, "table {database}.{table}"),
            Securable::Table { database, table, column: Some(column) } => {
                write!(f, "column {column} of table {database}.{table}")
            }
            Securable::Location(prefix) => write!(f, "location {prefix}"),
        }
    }
}

/// Who a grant is to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grantee {
    User(String),
    Role(String),
}

impl Grantee {
    pub fn kind(&self) -> &'static str {
        match self {
            Grantee::User(_) => "USER",
            Grantee::Role(_) => "ROLE",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Grantee::User(name) | Grantee::Role(name) => name,
        }
    }
}

/// One privilege on one object to one grantee.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub privilege: Privilege,
    pub on: Securable,
    pub to: Grantee,
    pub grant_option: bool,
}

/// A location as a prefix: ends in `/`, so that `s3://b/raw/` never covers `s3://b/rawdata/`.
pub fn location_prefix(location: &str) -> String {
    if location.ends_with('/') { location.to_string() } else { format!("{location}/") }
}

/// Which columns of a table a user may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Columns {
    All,
    Only(BTreeSet<String>),
    None,
}

/// One user's rights, evaluated once per statement from the catalog's grants.
#[derive(Clone, Debug)]
pub struct Access {
    user: Option<String>,
    admin: bool,
    /// The grants to the user and to their roles.
    grants: Vec<Grant>,
    roles: Vec<String>,
}

impl Access {
    /// Everything allowed: an admin, or the one implicit user of a cluster without users.
    pub fn admin(user: Option<&str>) -> Self {
        Self { user: user.map(str::to_string), admin: true, grants: Vec::new(), roles: Vec::new() }
    }

    /// `user`'s rights: theirs and their roles' grants.
    pub fn of(user: &str, admin: bool, catalog: &dyn Catalog) -> Result<Self> {
        if admin {
            return Ok(Self::admin(Some(user)));
        }
        let roles: Vec<String> =
            catalog.role_members()?.into_iter().filter(|(_, member)| member == user).map(|(role, _)| role).collect();
        let grants = catalog
            .grants()?
            .into_iter()
            .filter(|g| match &g.to {
                Grantee::User(name) => name == user,
                Grantee::Role(role) => roles.contains(role),
            })
            .collect();
        Ok(Self { user: Some(user.to_string()), admin: false, grants, roles })
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The roles granted to the user.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// True if `privilege` on the whole table (or its database) is granted.
    pub fn allows_table(&self, privilege: Privilege, database: &str, table: &str) -> bool {
        self.admin
            || self.grants.iter().any(|g| {
                g.privilege == privilege
                    && match &g.on {
                        Securable::Database(d) => d == database,
                        Securable::Table { database: d, table: t, column: None } => d == database && t == table,
                        _ => false,
                    }
            })
    }

    /// True if `privilege` on the database itself is granted.
    pub fn allows_database(&self, privilege: Privilege, database: &str) -> bool {
        self.admin
            || self
                .grants
                .iter()
                .any(|g| g.privilege == privilege && matches!(&g.on, Securable::Database(d) if d == database))
    }

    /// The columns of a table the user may `SELECT`.
    pub fn readable_columns(&self, database: &str, table: &str) -> Columns {
        if self.allows_table(Privilege::Select, database, table) {
            return Columns::All;
        }
        let columns: BTreeSet<String> = self
            .grants
            .iter()
            .filter_map(|g| match &g.on {
                Securable::Table { database: d, table: t, column: Some(c) }
                    if g.privilege == Privilege::Select && d == database && t == table =>
                {
                    Some(c.clone())
                }
                _ => None,
            })
            .collect();
        if columns.is_empty() { Columns::None } else { Columns::Only(columns) }
    }

    /// True if the user holds anything on the database or on a table in it: it shows in their
    /// `SHOW DATABASES`.
    pub fn sees_database(&self, database: &str) -> bool {
        self.admin
            || self.grants.iter().any(|g| match &g.on {
                Securable::Database(d) | Securable::Table { database: d, .. } => d == database,
                Securable::Location(_) => false,
            })
    }

    /// True if the user holds anything on the table (or its database): it shows in their
    /// `SHOW TABLES`.
    pub fn sees_table(&self, database: &str, table: &str) -> bool {
        self.admin
            || self.grants.iter().any(|g| match &g.on {
                Securable::Database(d) => d == database,
                Securable::Table { database: d, table: t, .. } => d == database && t == table,
                Securable::Location(_) => false,
            })
    }

    /// True if tables (and partitions) may be declared at `location`.
    pub fn allows_location(&self, location: &str) -> bool {
        let location = location_prefix(location);
        self.admin
            || self.grants.iter().any(|g| {
                g.privilege == Privilege::Location
                    && matches!(&g.on, Securable::Location(prefix) if location.starts_with(prefix.as_str()))
            })
    }

    /// True if the user may grant (or revoke) `privilege` on `on`: admins, and holders of it
    /// `WITH GRANT OPTION` on that object (or, for a table, on its database).
    pub fn may_grant(&self, privilege: Privilege, on: &Securable) -> bool {
        self.admin
            || self.grants.iter().any(|g| {
                g.grant_option
                    && g.privilege == privilege
                    && match (&g.on, on) {
                        (held, wanted) if held == wanted => true,
                        (Securable::Database(d), Securable::Table { database, .. }) => d == database,
                        (
                            Securable::Table { database, table, column: None },
                            Securable::Table { database: d, table: t, .. },
                        ) => database == d && table == t,
                        (Securable::Location(held), Securable::Location(wanted)) => wanted.starts_with(held.as_str()),
                        _ => false,
                    }
            })
    }

    /// A permission error naming what was missing.
    pub fn denied(&self, privilege: Privilege, on: &Securable) -> CatalogError {
        let who = self.user.as_deref().unwrap_or("this user");
        CatalogError::PermissionDenied(format!("Access Denied: {who} has no {privilege} privilege on {on}"))
    }

    /// `Ok` if `privilege` on the whole table is granted, else the permission error naming it.
    pub fn require_table(&self, privilege: Privilege, database: &str, table: &str) -> Result<()> {
        if self.allows_table(privilege, database, table) {
            Ok(())
        } else {
            let on = Securable::Table { database: database.to_string(), table: table.to_string(), column: None };
            Err(self.denied(privilege, &on))
        }
    }

    /// `Ok` if the user may read some columns of the table (it is theirs to see), else the
    /// permission error naming it.
    pub fn require_readable(&self, database: &str, table: &str) -> Result<()> {
        if self.readable_columns(database, table) == Columns::None {
            return self.require_table(Privilege::Select, database, table);
        }
        Ok(())
    }

    /// `Ok` if `privilege` on the database is granted, else the permission error naming it.
    pub fn require_database(&self, privilege: Privilege, database: &str) -> Result<()> {
        if self.allows_database(privilege, database) {
            Ok(())
        } else {
            Err(self.denied(privilege, &Securable::Database(database.to_string())))
        }
    }

    /// `Ok` if tables may be declared at `location`, else the permission error naming it.
    pub fn require_location(&self, location: &str) -> Result<()> {
        if self.allows_location(location) {
            Ok(())
        } else {
            Err(self.denied(Privilege::Location, &Securable::Location(location.to_string())))
        }
    }

    /// `Ok` for admins, else a permission error saying what only admins do.
    pub fn require_admin(&self, what: &str) -> Result<()> {
        if self.admin {
            Ok(())
        } else {
            let who = self.user.as_deref().unwrap_or("this user");
            Err(CatalogError::PermissionDenied(format!("Access Denied: only an admin may {what} ({who} is not one)")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteCatalog;

    fn table(database: &str, table: &str, column: Option<&str>) -> Securable {
        Securable::Table { database: database.into(), table: table.into(), column: column.map(str::to_string) }
    }

    #[test]
    fn rights_come_from_the_users_and_their_roles_grants() {
        let catalog = SqliteCatalog::in_memory().unwrap();
        catalog.create_role("analysts").unwrap();
        catalog.grant_role("analysts", "ana").unwrap();
        let grant =
            |privilege, on, to, grant_option| catalog.grant(&Grant { privilege, on, to, grant_option }).unwrap();
        grant(Privilege::Select, Securable::Database("sales".into()), Grantee::Role("analysts".into()), false);
        grant(Privilege::Select, table("hr", "people", Some("name")), Grantee::User("ana".into()), false);
        grant(Privilege::Select, table("hr", "people", Some("dept")), Grantee::User("ana".into()), false);
        grant(Privilege::Alter, table("sales", "orders", None), Grantee::User("ana".into()), true);
        grant(Privilege::Location, Securable::Location("s3://lake/raw/".into()), Grantee::User("ana".into()), false);
        grant(Privilege::Select, table("hr", "salaries", None), Grantee::User("bob".into()), false);

        let ana = Access::of("ana", false, &catalog).unwrap();
        assert!(ana.allows_table(Privilege::Select, "sales", "orders"), "through the role, on the database");
        assert!(!ana.allows_table(Privilege::Insert, "sales", "orders"));
        assert_eq!(ana.readable_columns("hr", "people"), Columns::Only(["dept".into(), "name".into()].into()));
        assert_eq!(ana.readable_columns("hr", "salaries"), Columns::None);
        assert!(ana.sees_database("hr") && ana.sees_table("hr", "people") && !ana.sees_table("hr", "salaries"));
        assert!(!ana.sees_database("finance"));
        assert!(ana.allows_location("s3://lake/raw/events/") && ana.allows_location("s3://lake/raw"));
        assert!(!ana.allows_location("s3://lake/rawdata/") && !ana.allows_location("s3://lake/"));
        assert!(ana.may_grant(Privilege::Alter, &table("sales", "orders", None)));
        assert!(!ana.may_grant(Privilege::Select, &table("sales", "orders", None)));
        let error = ana.require_table(Privilege::Drop, "sales", "orders").unwrap_err().to_string();
        assert!(error.contains("ana has no DROP privilege on table sales.orders"), "{error}");

        // Revoking the role takes its grants away; dropping a table takes the grants on it.
        assert!(catalog.revoke_role("analysts", "ana").unwrap());
        let ana = Access::of("ana", false, &catalog).unwrap();
        assert!(!ana.allows_table(Privilege::Select, "sales", "orders"));
        assert!(Access::of("root", true, &catalog).unwrap().allows_table(Privilege::Drop, "x", "y"));
    }
}
