//! DDL that DataFusion runs against the catalog provider: `CREATE`/`DROP SCHEMA`, Athena's
//! `CREATE DATABASE [IF NOT EXISTS] db` and `DROP DATABASE [IF EXISTS] db [RESTRICT|CASCADE]`
//! (said as the `SCHEMA` DDL), `DROP TABLE`, and views. It runs on the scheduler.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use glaux_proto::QueryId;

use super::words::{Words, quote};
use super::{Context, Effect, Family, Recognized};
use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryResult};

pub(crate) struct CatalogDdl(DdlStatement);

impl CatalogDdl {
    /// DataFusion's DDL, but for what a lake catalog cannot hold.
    pub fn try_new(ddl: DdlStatement) -> Result<Self, SchedulerError> {
        let refused = match &ddl {
            DdlStatement::CreateMemoryTable(_) | DdlStatement::CreateIndex(_) => {
                "CREATE TABLE without EXTERNAL is not supported (Glaux reads tables from the lake; use CREATE EXTERNAL TABLE)"
            }
            DdlStatement::CreateFunction(_) | DdlStatement::DropFunction(_) => "CREATE/DROP FUNCTION is not supported",
            _ => return Ok(Self(ddl)),
        };
        Err(SchedulerError::refused(ErrorKind::Unsupported, refused))
    }
}

pub(super) fn recognize(words: &Words<'_>, _ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    rewrite(words)
}

/// Athena's database DDL as DataFusion's schema DDL.
fn rewrite(words: &Words<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let w = words.words();
    let sql = match w.as_slice() {
        ["CREATE", "DATABASE", ..] => {
            let if_not_exists = w.get(2..5) == Some(&["IF", "NOT", "EXISTS"]);
            let (name, end) = words.name_at(if if_not_exists { 5 } else { 2 })?;
            if let Some(clause) = w.get(end) {
                // COMMENT, LOCATION, WITH DBPROPERTIES: not stored yet; say so rather than drop them.
                let message = format!("CREATE DATABASE ... {clause} is not supported yet: databases have a name only");
                return Some(Err(SchedulerError::refused(ErrorKind::Unsupported, message)));
            }
            let guard = if if_not_exists { "IF NOT EXISTS " } else { "" };
            format!("CREATE SCHEMA {guard}{}", quote(name.last()?))
        }
        ["DROP", "DATABASE", ..] => {
            let if_exists = w.get(2..4) == Some(&["IF", "EXISTS"]);
            let (name, end) = words.name_at(if if_exists { 4 } else { 2 })?;
            let cascade = match w.get(end..) {
                Some([] | ["RESTRICT"]) => false,
                Some(["CASCADE"]) => true,
                _ => return None,
            };
            let guard = if if_exists { "IF EXISTS " } else { "" };
            let mode = if cascade { " CASCADE" } else { "" };
            format!("DROP SCHEMA {guard}{}{mode}", quote(name.last()?))
        }
        _ => return None,
    };
    Some(Ok(Recognized::Sql(sql)))
}

#[async_trait]
impl Family for CatalogDdl {
    /// DDL returns no rows and no columns (its plan's schema is the table's).
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::empty())
    }

    fn effect(&self) -> Effect {
        Effect::ChangesCatalog
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        use datafusion::common::TableReference;
        use glaux_catalog::Privilege;
        let access = &ctx.access;
        let table = |name: &TableReference| {
            let database = name.schema().unwrap_or(&ctx.session.database).to_string();
            (database, name.table().to_string())
        };
        match &self.0 {
            DdlStatement::DropCatalogSchema(drop) => {
                access.require_database(Privilege::Drop, drop.name.schema_name())?;
            }
            DdlStatement::DropTable(drop) => {
                let (database, name) = table(&drop.name);
                access.require_table(Privilege::Drop, &database, &name)?;
            }
            DdlStatement::DropView(drop) => {
                let (database, name) = table(&drop.name);
                access.require_table(Privilege::Drop, &database, &name)?;
            }
            DdlStatement::CreateView(create) => {
                let (database, _) = table(&create.name);
                access.require_database(Privilege::Create, &database)?;
            }
            // New databases, and anything else: the admins'.
            _ => access.require_admin("create databases")?,
        }
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let session = SessionContext::new_with_state(ctx.state.clone());
        let plan = LogicalPlan::Ddl(self.0.clone());
        let df = session.execute_logical_plan(plan).await.map_err(SchedulerError::plan)?;
        df.collect().await.map_err(|source| SchedulerError::Execute { query: query.clone(), source })?;
        Ok(QueryResult::empty(query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> Option<String> {
        match rewrite(&Words::of(sql).unwrap())? {
            Ok(Recognized::Sql(sql)) => Some(sql),
            _ => None,
        }
    }

    #[test]
    fn databases_are_schemas() {
        assert_eq!(
            rewritten("CREATE DATABASE IF NOT EXISTS Sales").as_deref(),
            Some("CREATE SCHEMA IF NOT EXISTS \"sales\"")
        );
        assert_eq!(rewritten("DROP DATABASE \"Sales\" CASCADE").as_deref(), Some("DROP SCHEMA \"Sales\" CASCADE"));
        assert!(matches!(rewrite(&Words::of("CREATE DATABASE x LOCATION 's3://b/'").unwrap()), Some(Err(_))));
        assert_eq!(rewritten("SELECT 1"), None);
    }
}
