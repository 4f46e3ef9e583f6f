//! Athena's prepared statements: `PREPARE name FROM statement`, `EXECUTE name [USING value, ...]`
//! and `DEALLOCATE PREPARE name`. They live in the catalog, shared by every client as Athena
//! shares them within a workgroup. `EXECUTE` is not a statement of its own: it is recognized as
//! its prepared statement with the values in place of the parameters.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use glaux_catalog::PreparedStatement;
use glaux_proto::QueryId;

use super::placeholders::substitute_parameters;
use super::words::{Words, identifier};
use super::{Context, Effect, Family, Recognized, Statement};
use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryResult};

pub(crate) enum Prepared {
    /// `PREPARE name FROM statement`, the statement checked.
    Prepare { name: String, statement: String },
    /// `DEALLOCATE PREPARE name`.
    Deallocate(String),
}

/// Prepared statements belong to their creator: only they (and admins) execute, replace or
/// deallocate them. One made without users belongs to the admins once there are users.
fn belongs_to(prepared: &PreparedStatement, ctx: &Context<'_>) -> bool {
    ctx.access.is_admin() || ctx.access.user() == Some(prepared.owner.as_str())
}

fn not_theirs(name: &str, ctx: &Context<'_>) -> SchedulerError {
    let who = ctx.access.user().unwrap_or("this user");
    SchedulerError::refused(
        ErrorKind::PermissionDenied,
        format!("Access Denied: prepared statement {name} belongs to another user ({who} did not prepare it)"),
    )
}

fn not_found(name: &str) -> SchedulerError {
    SchedulerError::refused(ErrorKind::UnknownObject, format!("Prepared statement not found: {name}"))
}

pub(super) fn recognize(words: &Words<'_>, _ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let statement = match words.words().as_slice() {
        ["PREPARE", _, "FROM", ..] => {
            let name = identifier(words.part(1)?)?;
            let statement = words.after_words(3)?.to_string();
            if let Some(inner) = Words::of(&statement)
                && matches!(inner.words().first(), Some(&"PREPARE" | &"EXECUTE"))
            {
                let message = "a prepared statement cannot be PREPARE or EXECUTE";
                return Some(Err(SchedulerError::refused(ErrorKind::InvalidStatement, message)));
            }
            Prepared::Prepare { name, statement }
        }
        ["DEALLOCATE", "PREPARE", _] => Prepared::Deallocate(identifier(words.part(2)?)?),
        _ => return None,
    };
    Some(Ok(Recognized::Statement(Statement::Prepared(statement))))
}

/// `EXECUTE name [USING v, ...]`: the prepared statement's text with the values in place of its
/// parameters; `None` if the words are not an `EXECUTE`.
pub(super) fn execute(words: &Words<'_>, ctx: &Context<'_>) -> Option<Result<String, SchedulerError>> {
    let values = match words.words().as_slice() {
        // Without USING, the values its client bound (Athena's `ExecutionParameters`).
        ["EXECUTE", _] => ctx.session.parameters.iter().map(sql_literal).collect(),
        ["EXECUTE", _, "USING", ..] => using_values(words.after_words(3)?)?,
        _ => return None,
    };
    let name = identifier(words.part(1)?)?;
    Some(match ctx.lake.catalog().prepared_statement(&name) {
        Ok(Some(prepared)) if !belongs_to(&prepared, ctx) => Err(not_theirs(&name, ctx)),
        Ok(Some(prepared)) if Words::of(&prepared.statement).is_some_and(|w| w.words().first() == Some(&"EXECUTE")) => {
            Err(SchedulerError::refused(ErrorKind::InvalidStatement, "EXECUTE inside EXECUTE"))
        }
        Ok(Some(prepared)) => substitute_parameters(&prepared.statement, &values),
        Ok(None) => Err(not_found(&name)),
        Err(error) => Err(error.into()),
    })
}

/// `value` written as SQL.
fn sql_literal(value: &datafusion::common::ScalarValue) -> String {
    use datafusion::common::ScalarValue;
    match value {
        _ if value.is_null() => "NULL".to_string(),
        ScalarValue::Utf8(Some(text)) | ScalarValue::LargeUtf8(Some(text)) | ScalarValue::Utf8View(Some(text)) => {
            format!("'{}'", text.replace('\'', "''"))
        }
        other => other.to_string(),
    }
}

/// `a, f(b, c), 'x,y'`: the comma-separated SQL values of `EXECUTE ... USING`.
fn using_values(text: &str) -> Option<Vec<String>> {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};
    let statements =
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&GenericDialect {}, &format!("SELECT {text}")).ok()?;
    let Some(Statement::Query(query)) = statements.first() else { return None };
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(expr.to_string()),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl Family for Prepared {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::empty())
    }

    fn effect(&self) -> Effect {
        Effect::ChangesCatalog
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        let (Self::Prepare { name, .. } | Self::Deallocate(name)) = self;
        match ctx.lake.catalog().prepared_statement(name)? {
            Some(prepared) if !belongs_to(&prepared, ctx) => Err(not_theirs(name, ctx)),
            _ => Ok(()),
        }
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let catalog = ctx.lake.catalog();
        match self {
            Self::Prepare { name, statement } => {
                let prepared = PreparedStatement {
                    statement: statement.clone(),
                    owner: ctx.access.user().unwrap_or_default().to_string(),
                    workgroup: ctx.session.workgroup.clone(),
                    description: String::new(),
                    updated_ms: crate::history::epoch_ms(std::time::SystemTime::now()),
                };
                catalog.prepare_statement(name, &prepared)?
            }
            Self::Deallocate(name) => {
                if !catalog.deallocate_statement(name)? {
                    return Err(not_found(name));
                }
            }
        }
        Ok(QueryResult::empty(query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn using_values_are_sql_expressions() {
        assert_eq!(
            using_values("42, concat('a', 'b'), DATE '2023-01-01'"),
            Some(vec!["42".into(), "concat('a', 'b')".into(), "DATE '2023-01-01'".into()])
        );
        let words = Words::of("PREPARE my_select FROM SELECT * FROM t WHERE x = ? AND y IN (?, 'a,b');").unwrap();
        assert_eq!(words.after_words(3), Some("SELECT * FROM t WHERE x = ? AND y IN (?, 'a,b')"));
    }
}
