//! Trino SQL planned by DataFusion: `?` placeholders numbered, the statement read by `trino`
//! (typographic quotes refused, Trino's syntax rewritten), planned, checked (no writes, no
//! session statements), and bound to the client's parameter values.

use datafusion::common::{DataFusionError, SchemaError};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SQLOptions;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use glaux_catalog::{Columns, Privilege, Securable};

use super::Context;
use super::placeholders::{bind_parameters, number_question_marks};
use crate::error::{ErrorKind, SchedulerError};
use crate::trino::{closest_names, planning_error};

/// Parses and plans `sql` without running it.
pub(super) async fn plan_sql(sql: &str, ctx: &Context<'_>) -> Result<LogicalPlan, SchedulerError> {
    plan(sql, ctx, false).await
}

/// Plans an `INSERT` (DataFusion's DML plan; its family runs it).
pub(super) async fn plan_insert(sql: &str, ctx: &Context<'_>) -> Result<LogicalPlan, SchedulerError> {
    plan(sql, ctx, true).await
}

async fn plan(sql: &str, ctx: &Context<'_>, allow_dml: bool) -> Result<LogicalPlan, SchedulerError> {
    let sql = number_question_marks(sql);
    let state = &ctx.state;
    crate::trino::check_quotes(&sql).map_err(|message| SchedulerError::refused(ErrorKind::Parse, message))?;
    let statement = crate::trino::parse(state, &sql).await.map_err(|e| planning_error(e, &sql, state))?;
    let plan = match state.statement_to_plan(statement).await {
        Ok(plan) => plan,
        Err(error) => {
            // Planning consumed the statement; read it again, on this failing path only.
            let unknown = match crate::trino::parse(state, &sql).await {
                Ok(statement) => unknown_table(&statement, state).or_else(|| ungranted_column(&error, &statement, ctx)),
                Err(_) => None,
            };
            return Err(unknown.unwrap_or_else(|| planning_error(error, &sql, state)));
        }
    };
    // What the plan would do beyond reading and DDL; `verify_plan` fails for nothing else.
    SQLOptions::new()
        .with_allow_ddl(true)
        .with_allow_dml(allow_dml)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| SchedulerError::refused(ErrorKind::Unsupported, e.to_string()))?;
    if ctx.session.parameters.is_empty() { Ok(plan) } else { bind_parameters(plan, &ctx.session.parameters) }
}

/// After DataFusion failed to plan `statement`: the first table it reads that does not exist, as
/// an unknown table with the closest names of its database. `None` when every table it reads
/// exists (DataFusion's own error says what went wrong), or for statements that create tables.
fn unknown_table(statement: &DFStatement, state: &SessionState) -> Option<SchedulerError> {
    let reads = match statement {
        DFStatement::Statement(statement) => matches!(
            statement.as_ref(),
            SqlStatement::Query(_) | SqlStatement::Explain { .. } | SqlStatement::ExplainTable { .. }
        ),
        DFStatement::Explain(_) => true,
        _ => false,
    };
    if !reads {
        return None;
    }
    let defaults = &state.config_options().catalog;
    for reference in state.resolve_table_references(statement).ok()? {
        let resolved = reference.clone().resolve(&defaults.default_catalog, &defaults.default_schema);
        let (database, table) = (resolved.schema.to_string(), resolved.table.to_string());
        let message = match state.schema_for_ref(reference) {
            Err(_) => format!(
                "Table '{database}.{table}' not found: there is no database {database} (SHOW DATABASES lists them)"
            ),
            Ok(schema) if schema.table_exist(&table) => continue,
            Ok(schema) => match closest_names(&table, schema.table_names().iter().map(String::as_str)).as_slice() {
                [] => format!("Table '{database}.{table}' not found (SHOW TABLES lists the tables of a database)"),
                suggestions => {
                    format!("Table '{database}.{table}' not found. Did you mean {}?", suggestions.join(", "))
                }
            },
        };
        return Some(SchedulerError::refused(ErrorKind::UnknownTable, message));
    }
    None
}

/// After DataFusion failed to plan `statement` for want of a column: a permission error if the
/// column exists in a table it reads but the user's column grants leave it out (their view of
/// the table has no such column).
fn ungranted_column(error: &DataFusionError, statement: &DFStatement, ctx: &Context<'_>) -> Option<SchedulerError> {
    if ctx.access.is_admin() {
        return None;
    }
    let missing = match error.find_root() {
        DataFusionError::SchemaError(schema_error, _) => match schema_error.as_ref() {
            SchemaError::FieldNotFound { field, .. } => field.name().to_string(),
            _ => return None,
        },
        _ => return None,
    };
    let defaults = &ctx.state.config_options().catalog;
    for reference in ctx.state.resolve_table_references(statement).ok()? {
        let resolved = reference.resolve(&defaults.default_catalog, &defaults.default_schema);
        let (database, table) = (resolved.schema.to_string(), resolved.table.to_string());
        let Columns::Only(granted) = ctx.access.readable_columns(&database, &table) else { continue };
        let Ok(Some(definition)) = ctx.lake.catalog().table(&database, &table) else { continue };
        let exists = definition.columns.iter().chain(&definition.partition_keys).any(|c| c.name == missing);
        if exists && !granted.contains(&missing) {
            let on = Securable::Table { database, table, column: Some(missing) };
            return Some(ctx.access.denied(Privilege::Select, &on).into());
        }
    }
    None
}
