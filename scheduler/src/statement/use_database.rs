//! `USE db` (or `USE glaux.db`): moves the client's session to a database. The scheduler keeps no
//! session: the door tells the client (Flight SQL) or its connection (PostgreSQL) where it is now.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use glaux_catalog::{CatalogError, DEFAULT_CATALOG};
use glaux_proto::QueryId;

use super::words::Words;
use super::{Context, Effect, Family, Recognized, Statement};
use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryResult};

pub(crate) struct UseDatabase(String);

pub(super) fn recognize(words: &Words<'_>, ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let ["USE", ..] = words.words().as_slice() else { return None };
    let name = words.name_ending_at(1)?;
    let database = match name.as_slice() {
        [database] => database,
        [catalog, database] if catalog == DEFAULT_CATALOG => database,
        _ => {
            let message = format!("{} is not a database name", name.join("."));
            return Some(Err(SchedulerError::refused(ErrorKind::InvalidStatement, message)));
        }
    };
    Some(match ctx.lake.catalog().database_exists(database) {
        Ok(true) => Ok(Recognized::Statement(Statement::UseDatabase(UseDatabase(database.clone())))),
        Ok(false) => Err(CatalogError::UnknownDatabase { database: database.clone(), hint: "" }.into()),
        Err(error) => Err(error.into()),
    })
}

#[async_trait]
impl Family for UseDatabase {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("database", DataType::Utf8, false)]))
    }

    fn effect(&self) -> Effect {
        Effect::UseDatabase(self.0.clone())
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        if ctx.access.sees_database(&self.0) {
            Ok(())
        } else {
            let who = ctx.access.user().unwrap_or("this user");
            let message = format!("Access Denied: {who} has no privilege on database {}", self.0);
            Err(SchedulerError::refused(crate::error::ErrorKind::PermissionDenied, message))
        }
    }

    async fn run(
        &self,
        _ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        QueryResult::text(query, self.schema(), vec![self.0.clone()])
    }
}
