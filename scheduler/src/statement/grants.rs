//! Roles and grants (Lake Formation's model in SQL): `CREATE ROLE r`, `DROP ROLE r`,
//! `GRANT r TO USER u`, `REVOKE r FROM USER u`, `GRANT SELECT|INSERT|UPDATE|DELETE|ALTER|DROP|CREATE
//! [(columns)] ON [DATABASE|SCHEMA] db | [TABLE] [db.]t TO [USER|ROLE] x [WITH GRANT OPTION]`
//! (`ALL [PRIVILEGES]` for all of them), `GRANT LOCATION 's3://prefix/' TO ...`, the same with
//! `REVOKE [GRANT OPTION FOR] ... FROM`, `SHOW GRANTS [ON [TABLE] t] [FOR USER u | FOR ROLE r]`,
//! `SHOW ROLES`, `SHOW CURRENT ROLES`.
//!
//! Unquoted user and role names fold to lower case, like every other name; quote one to keep its
//! case. Roles and role grants are the admins'; a privilege may be granted by an admin or by a
//! holder of it `WITH GRANT OPTION`.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use glaux_catalog::{Grant, Grantee, Privilege, Securable, location_prefix};
use glaux_proto::QueryId;

use super::words::{Part, Words, identifier};
use super::{Context, Effect, Family, Recognized, Statement};
use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryResult};

pub(crate) enum Authorization {
    CreateRole(String),
    DropRole(String),
    GrantRole {
        role: String,
        user: String,
    },
    RevokeRole {
        role: String,
        user: String,
    },
    Grant(Vec<Grant>),
    /// Revoke these grants; with `option_only`, only their grant option.
    Revoke {
        grants: Vec<Grant>,
        option_only: bool,
    },
    ShowGrants {
        on: Option<Securable>,
        to: Option<Grantee>,
    },
    ShowRoles {
        current: bool,
    },
}

fn invalid(message: impl Into<String>) -> SchedulerError {
    SchedulerError::refused(ErrorKind::InvalidStatement, message)
}

pub(super) fn recognize(words: &Words<'_>, ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let w = words.words();
    let statement = match w.as_slice() {
        ["CREATE", "ROLE", _] => name(words, 2).map(Authorization::CreateRole),
        ["DROP", "ROLE", _] => name(words, 2).map(Authorization::DropRole),
        ["SHOW", "ROLES"] => Ok(Authorization::ShowRoles { current: false }),
        ["SHOW", "CURRENT", "ROLES"] => Ok(Authorization::ShowRoles { current: true }),
        ["SHOW", "GRANTS", ..] => show_grants(words, ctx),
        ["GRANT", ..] => grant(words, ctx, false),
        ["REVOKE", ..] => grant(words, ctx, true),
        _ => return None,
    };
    Some(statement.map(|s| Recognized::Statement(Statement::Authorization(s))))
}

/// A user or role name at `i`.
fn name(words: &Words<'_>, i: usize) -> Result<String, SchedulerError> {
    words.part(i).and_then(identifier).ok_or_else(|| invalid("expected a name"))
}

/// `USER u` or `ROLE r` at `i` (a bare name is a user, as in Trino); returns where it ends.
fn grantee(words: &Words<'_>, i: usize) -> Result<(Grantee, usize), SchedulerError> {
    match words.words().get(i) {
        Some(&"USER") => Ok((Grantee::User(name(words, i + 1)?), i + 2)),
        Some(&"ROLE") => Ok((Grantee::Role(name(words, i + 1)?), i + 2)),
        Some(_) => Ok((Grantee::User(name(words, i)?), i + 1)),
        None => Err(invalid("expected USER name or ROLE name")),
    }
}

fn show_grants(words: &Words<'_>, ctx: &Context<'_>) -> Result<Authorization, SchedulerError> {
    let w = words.words();
    let mut i = 2;
    let mut on = None;
    let mut to = None;
    while i < w.len() {
        match w[i] {
            "ON" => {
                let (securable, end) = securable(words, ctx, i + 1)?;
                on = Some(securable);
                i = end;
            }
            "FOR" => {
                let (grantee, end) = grantee(words, i + 1)?;
                to = Some(grantee);
                i = end;
            }
            other => return Err(invalid(format!("SHOW GRANTS: unexpected {other}"))),
        }
    }
    Ok(Authorization::ShowGrants { on, to })
}

/// `[DATABASE|SCHEMA] db`, `[TABLE] [db.]t`, or `LOCATION 'prefix'` at `i`; the object must
/// exist. Returns where it ends.
fn securable(words: &Words<'_>, ctx: &Context<'_>, i: usize) -> Result<(Securable, usize), SchedulerError> {
    let w = words.words();
    match w.get(i) {
        Some(&"DATABASE" | &"SCHEMA") => {
            let (name, end) = words.name_at(i + 1).ok_or_else(|| invalid("expected a database name"))?;
            let [database] = name.as_slice() else { return Err(invalid("a database name has one part")) };
            if !ctx.lake.catalog().database_exists(database)? {
                return Err(
                    glaux_catalog::CatalogError::UnknownDatabase { database: database.clone(), hint: "" }.into()
                );
            }
            Ok((Securable::Database(database.clone()), end))
        }
        Some(&"LOCATION") => match words.part(i + 1) {
            Some(Part::Text(location)) => {
                ctx.lake.storage().check_location(location).map_err(glaux_catalog::CatalogError::from)?;
                Ok((Securable::Location(location_prefix(location)), i + 2))
            }
            _ => Err(invalid("LOCATION takes a quoted location, e.g. LOCATION 's3://bucket/prefix/'")),
        },
        Some(_) => {
            let start = if w.get(i) == Some(&"TABLE") { i + 1 } else { i };
            let (name, end) = words.name_at(start).ok_or_else(|| invalid("expected a table name"))?;
            let table = ctx.lake.table(&name, &ctx.session.database)?;
            Ok((Securable::Table { database: table.database, table: table.name, column: None }, end))
        }
        None => Err(invalid("expected what the grant is on")),
    }
}

/// `GRANT ...` or (with `revoke`) `REVOKE ...`.
fn grant(words: &Words<'_>, ctx: &Context<'_>, revoke: bool) -> Result<Authorization, SchedulerError> {
    let w = words.words();
    let mut i = 1;
    let option_only = revoke && w.get(1..4) == Some(&["GRANT", "OPTION", "FOR"]);
    if option_only {
        i = 4;
    }
    let to_word = if revoke { "FROM" } else { "TO" };
    // A role: `GRANT r TO USER u`, `REVOKE r FROM USER u`.
    let first = w.get(i).copied().unwrap_or("");
    let is_privilege = Privilege::parse(first).is_some() || first == "ALL";
    if !is_privilege {
        let role = name(words, i)?;
        if w.get(i + 1) != Some(&to_word) {
            return Err(invalid(format!("expected {to_word} after the role")));
        }
        let (Grantee::User(user), end) = grantee(words, i + 2)? else {
            return Err(invalid("roles are granted to users (GRANT role TO USER name)"));
        };
        if end != w.len() {
            return Err(invalid("unexpected words after the user"));
        }
        return Ok(if revoke {
            Authorization::RevokeRole { role, user }
        } else {
            Authorization::GrantRole { role, user }
        });
    }

    // Privileges, with columns for SELECT.
    let mut privileges = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    if first == "ALL" {
        privileges.extend(Privilege::TABLE_PRIVILEGES);
        i += if w.get(i + 1) == Some(&"PRIVILEGES") { 2 } else { 1 };
    } else {
        loop {
            let privilege =
                w.get(i).and_then(|p| Privilege::parse(p)).ok_or_else(|| invalid("expected a privilege"))?;
            privileges.push(privilege);
            i += 1;
            if words.part(i) == Some(&Part::Symbol('(')) {
                i += 1;
                loop {
                    columns.push(words.part(i).and_then(identifier).ok_or_else(|| invalid("expected a column"))?);
                    i += 1;
                    match words.part(i) {
                        Some(Part::Symbol(',')) => i += 1,
                        Some(Part::Symbol(')')) => {
                            i += 1;
                            break;
                        }
                        _ => return Err(invalid("expected , or ) in the column list")),
                    }
                }
            }
            if words.part(i) != Some(&Part::Symbol(',')) {
                break;
            }
            i += 1;
        }
    }
    let location = privileges == [Privilege::Location];
    let on = if location {
        // `GRANT LOCATION 'prefix' TO ...`: the location is the object.
        let (on, end) = securable(words, ctx, i - 1)?;
        i = end;
        on
    } else {
        if privileges.contains(&Privilege::Location) {
            return Err(invalid("LOCATION is granted on its own: GRANT LOCATION 's3://prefix/' TO ..."));
        }
        if w.get(i) != Some(&"ON") {
            return Err(invalid("expected ON after the privileges"));
        }
        let (on, end) = securable(words, ctx, i + 1)?;
        i = end;
        on
    };
    if w.get(i) != Some(&to_word) {
        return Err(invalid(format!("expected {to_word} and who the privileges are for")));
    }
    let (to, end) = grantee(words, i + 1)?;
    i = end;
    let grant_option = !revoke && w.get(i..) == Some(&["WITH", "GRANT", "OPTION"]);
    if grant_option {
        i += 3;
    }
    if i != w.len() {
        return Err(invalid(format!("unexpected {} at the end", w[i])));
    }

    let on_columns: Vec<Securable> = match (&on, columns.is_empty()) {
        (_, true) => vec![on.clone()],
        (Securable::Table { database, table, .. }, false) => {
            if privileges != [Privilege::Select] {
                return Err(invalid("column lists are for SELECT only"));
            }
            let definition = ctx.lake.table(&[database.clone(), table.clone()], database)?;
            for column in &columns {
                if !definition.columns.iter().chain(&definition.partition_keys).any(|c| &c.name == column) {
                    return Err(SchedulerError::refused(
                        ErrorKind::UnknownColumn,
                        format!("column {column} does not exist in table {database}.{table}"),
                    ));
                }
            }
            columns
                .iter()
                .map(|c| Securable::Table { database: database.clone(), table: table.clone(), column: Some(c.clone()) })
                .collect()
        }
        (_, false) => return Err(invalid("column lists are for tables only")),
    };
    let grants = privileges
        .iter()
        .flat_map(|&privilege| on_columns.iter().map(move |on| (privilege, on.clone())))
        .map(|(privilege, on)| Grant { privilege, on, to: to.clone(), grant_option })
        .collect();
    Ok(if revoke { Authorization::Revoke { grants, option_only } } else { Authorization::Grant(grants) })
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

#[async_trait]
impl Family for Authorization {
    fn schema(&self) -> SchemaRef {
        Arc::new(match self {
            Self::ShowGrants { .. } => Schema::new(vec![
                text("grantee"),
                text("grantee_type"),
                text("object_type"),
                text("table_schema"),
                text("table_name"),
                text("column_name"),
                text("location"),
                text("privilege_type"),
                Field::new("is_grantable", DataType::Boolean, false),
            ]),
            Self::ShowRoles { .. } => Schema::new(vec![Field::new("role", DataType::Utf8, false)]),
            _ => Schema::empty(),
        })
    }

    fn effect(&self) -> Effect {
        match self {
            Self::ShowGrants { .. } | Self::ShowRoles { .. } => Effect::Reads,
            _ => Effect::ChangesCatalog,
        }
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        let access = &ctx.access;
        match self {
            Self::CreateRole(_) | Self::DropRole(_) => access.require_admin("create or drop roles")?,
            Self::GrantRole { .. } | Self::RevokeRole { .. } => access.require_admin("grant or revoke roles")?,
            Self::Grant(grants) | Self::Revoke { grants, .. } => {
                for grant in grants {
                    if !access.may_grant(grant.privilege, &grant.on) {
                        let who = access.user().unwrap_or("this user");
                        return Err(SchedulerError::refused(
                            ErrorKind::PermissionDenied,
                            format!(
                                "Access Denied: {who} may not grant {} on {} (it takes an admin or that privilege \
                                 WITH GRANT OPTION)",
                                grant.privilege, grant.on
                            ),
                        ));
                    }
                }
            }
            Self::ShowGrants { to, .. } => {
                let own = match to {
                    None => true,
                    Some(Grantee::User(user)) => Some(user.as_str()) == access.user(),
                    Some(Grantee::Role(role)) => access.roles().contains(role),
                };
                if !own {
                    access.require_admin("see other users' grants")?;
                }
            }
            Self::ShowRoles { .. } => {}
        }
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let catalog = ctx.lake.catalog();
        match self {
            Self::CreateRole(role) => catalog.create_role(role)?,
            Self::DropRole(role) => catalog.drop_role(role)?,
            Self::GrantRole { role, user } => catalog.grant_role(role, user)?,
            Self::RevokeRole { role, user } => {
                if !catalog.revoke_role(role, user)? {
                    return Err(invalid(format!("{user} does not have role {role}")));
                }
            }
            Self::Grant(grants) => {
                for grant in grants {
                    catalog.grant(grant)?;
                }
            }
            Self::Revoke { grants, option_only } => {
                for grant in grants {
                    if catalog.revoke(grant)? && *option_only {
                        catalog.grant(&Grant { grant_option: false, ..grant.clone() })?;
                    }
                }
            }
            Self::ShowRoles { current } => {
                let roles =
                    if ctx.access.is_admin() && !current { catalog.roles()? } else { ctx.access.roles().to_vec() };
                return QueryResult::text(query, self.schema(), roles);
            }
            Self::ShowGrants { on, to } => {
                let all = if ctx.access.is_admin() { catalog.grants()? } else { ctx.access.grants().to_vec() };
                let shown: Vec<Grant> = all
                    .into_iter()
                    .filter(|g| to.as_ref().is_none_or(|to| &g.to == to))
                    .filter(|g| on.as_ref().is_none_or(|on| covers(on, &g.on)))
                    .collect();
                return Ok(QueryResult::finished(query, self.schema(), vec![grants_batch(self.schema(), &shown)?]));
            }
        }
        Ok(QueryResult::empty(query))
    }
}

/// True if a grant on `held` is about `asked` (a table's grants include its columns').
fn covers(asked: &Securable, held: &Securable) -> bool {
    match (asked, held) {
        (Securable::Table { database, table, column: None }, Securable::Table { database: d, table: t, .. }) => {
            database == d && table == t
        }
        _ => asked == held,
    }
}

fn grants_batch(schema: SchemaRef, grants: &[Grant]) -> Result<RecordBatch, SchedulerError> {
    let column =
        |f: &dyn Fn(&Grant) -> Option<String>| -> ArrayRef { Arc::new(StringArray::from_iter(grants.iter().map(f))) };
    let part = |g: &Grant, which: usize| -> Option<String> {
        match (&g.on, which) {
            (Securable::Database(d), 0) | (Securable::Table { database: d, .. }, 0) => Some(d.clone()),
            (Securable::Table { table, .. }, 1) => Some(table.clone()),
            (Securable::Table { column, .. }, 2) => column.clone(),
            (Securable::Location(prefix), 3) => Some(prefix.clone()),
            _ => None,
        }
    };
    let columns: Vec<ArrayRef> = vec![
        column(&|g| Some(g.to.name().to_string())),
        column(&|g| Some(g.to.kind().to_string())),
        column(&|g| Some(g.on.kind().to_string())),
        column(&|g| part(g, 0)),
        column(&|g| part(g, 1)),
        column(&|g| part(g, 2)),
        column(&|g| part(g, 3)),
        column(&|g| Some(g.privilege.name().to_string())),
        Arc::new(BooleanArray::from(grants.iter().map(|g| g.grant_option).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| SchedulerError::Internal(format!("SHOW GRANTS: {e}")))
}
