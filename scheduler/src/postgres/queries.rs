//! Statements on a PostgreSQL connection: the commands and settings PostgreSQL clients send
//! that Glaux answers itself, and everything else through the engine. The simple protocol plans
//! each statement once and runs it; the extended protocol plans at Parse (to describe the
//! statement) and again at Execute, with the values bound.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ScalarValue;
use futures::{Sink, StreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::rewrite::split_and_rewrite;
use super::{DATABASE_KEY, SERVER_VERSION, engine_error, session_of, user_error};
use crate::client_types::{client_schema, to_client_batch};
use crate::engine::{PlannedStatement, QueryEngine};
use crate::error::{ErrorKind, SchedulerError};
use crate::query::ProgressSlot;
use crate::statement::Effect;

/// A statement as the extended protocol keeps it between Parse and Execute.
#[derive(Clone, Debug)]
pub(super) struct PgStatement {
    /// What runs: the client's SQL with `$n` placeholders, rewritten for DataFusion where
    /// PostgreSQL's catalog dialect needs it.
    sql: String,
    kind: Kind,
    schema: SchemaRef,
    parameters: SchemaRef,
    /// For `USE`: the database the connection moves to.
    use_database: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// Runs through the query engine.
    Query,
    /// Answered here with a command tag (`SET`, `BEGIN`, ...).
    Command(String),
    /// `SHOW <setting>`: one text row.
    Setting { name: String, value: String },
}

pub(super) struct Queries {
    engine: Arc<QueryEngine>,
}

/// What a statement is, before planning: the commands and settings PostgreSQL clients send that
/// Glaux answers itself.
fn classify(sql: &str) -> Kind {
    let words: Vec<String> =
        sql.split_whitespace().take(4).map(|w| w.trim_end_matches(';').to_ascii_lowercase()).collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        // Athena's prepared statements live in the catalog; bare `DEALLOCATE name` and
        // `DEALLOCATE ALL` are what PostgreSQL drivers send for their own protocol statements.
        "deallocate" if word(1) == "prepare" => Kind::Query,
        "set" | "reset" | "discard" | "deallocate" | "listen" | "unlisten" => {
            Kind::Command(word(0).to_ascii_uppercase())
        }
        "begin" | "start" => Kind::Command("BEGIN".into()),
        "commit" | "end" => Kind::Command("COMMIT".into()),
        "rollback" | "abort" => Kind::Command("ROLLBACK".into()),
        "savepoint" | "release" => Kind::Command(word(0).to_ascii_uppercase()),
        "show" if words.len() == 2 || (words.len() > 2 && word(2).is_empty()) => {
            let name = word(1).trim_matches('"').to_string();
            match setting(&name) {
                Some(value) => Kind::Setting { name, value },
                None => Kind::Query,
            }
        }
        _ => Kind::Query,
    }
}

/// The value of a PostgreSQL setting a client may `SHOW`; `None` for `SHOW TABLES` and the like,
/// which are Athena statements.
fn setting(name: &str) -> Option<String> {
    let value = match name {
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "server_version" => SERVER_VERSION,
        "server_version_num" => "140000",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" => "on",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "search_path" => glaux_catalog::DEFAULT_DATABASE,
        "integer_datetimes" => "on",
        "max_identifier_length" => "63",
        "extra_float_digits" => "1",
        "transaction_read_only" | "default_transaction_read_only" => "off",
        "lc_collate" | "lc_ctype" => "C",
        _ => return None,
    };
    Some(value.to_string())
}

fn setting_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![arrow::datatypes::Field::new(name, DataType::Utf8, true)]))
}

impl Queries {
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        Self { engine }
    }

    /// What `sql` is: its result and parameter types; and, for statements the engine runs, the
    /// statement planned (the simple protocol runs it as it is).
    async fn describe<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
    ) -> PgWireResult<(PgStatement, Option<PlannedStatement>)> {
        let kind = classify(sql);
        let (schema, parameters, use_database, planned) = match &kind {
            Kind::Query => {
                let planned = self.engine.plan(sql, &session_of(client, Vec::new())).await.map_err(|e| {
                    tracing::debug!(%sql, "PostgreSQL statement failed: {e}");
                    engine_error(e)
                })?;
                let use_database = match planned.effect() {
                    Effect::UseDatabase(database) => Some(database),
                    _ => None,
                };
                (planned.schema(), planned.parameters(), use_database, Some(planned))
            }
            Kind::Command(_) => (Arc::new(Schema::empty()), Arc::new(Schema::empty()), None, None),
            Kind::Setting { name, .. } => (setting_schema(name), Arc::new(Schema::empty()), None, None),
        };
        Ok((PgStatement { sql: sql.to_string(), kind, schema, parameters, use_database }, planned))
    }

    /// Runs a statement in the connection's session (`planned` if the caller has it, else
    /// planned again with `values` bound); rows stream to the client as they come. `USE` moves
    /// the connection to its database.
    async fn run<C: ClientInfo>(
        &self,
        client: &mut C,
        statement: &PgStatement,
        planned: Option<PlannedStatement>,
        values: Vec<ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response> {
        match &statement.kind {
            Kind::Command(tag) => {
                return Ok(match tag.as_str() {
                    "BEGIN" => Response::TransactionStart(Tag::new(tag)),
                    "COMMIT" | "ROLLBACK" => Response::TransactionEnd(Tag::new(tag)),
                    _ => Response::Execution(Tag::new(tag)),
                });
            }
            Kind::Setting { name, value } => {
                let fields = Arc::new(arrow_schema_to_pg_fields(&setting_schema(name), format, None)?);
                let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
                encoder.encode_field(&Some(value.clone()))?;
                let row = encoder.take_row();
                return Ok(Response::Query(QueryResponse::new(fields, stream::iter([Ok(row)]))));
            }
            Kind::Query => {}
        }
        if let Some(database) = &statement.use_database {
            client.metadata_mut().insert(DATABASE_KEY.to_string(), database.clone());
            return Ok(Response::Execution(Tag::new("USE")));
        }
        let progress = ProgressSlot::default();
        let result = match planned {
            Some(planned) => self.engine.run(planned, &progress).await,
            None => self.engine.execute(&statement.sql, &session_of(client, values), &progress).await,
        };
        let result = result.map_err(|e| {
            tracing::debug!(sql = %statement.sql, "PostgreSQL statement failed: {e}");
            engine_error(e)
        })?;
        let query = result.query.clone();
        let failed = move |source| engine_error(SchedulerError::Execute { query: query.clone(), source });
        if result.schema.fields().is_empty() {
            // DDL and other statements without a result set.
            let mut batches = result.batches;
            while let Some(batch) = batches.next().await {
                batch.map_err(&failed)?;
            }
            let tag = statement.sql.split_whitespace().next().unwrap_or("OK").to_ascii_uppercase();
            return Ok(Response::Execution(Tag::new(&tag)));
        }
        let fields = Arc::new(arrow_schema_to_pg_fields(&client_schema(&result.schema), format, None)?);
        let encode_fields = Arc::clone(&fields);
        let client = Arc::new(client_schema(&result.schema));
        let rows = result
            .batches
            .map(move |batch| {
                let batch = batch.map_err(&failed).and_then(|b| {
                    to_client_batch(b, &client).map_err(|e| user_error(ErrorKind::Execution.sqlstate(), e.to_string()))
                });
                let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send> = match batch {
                    Ok(batch) => encode_recordbatch(Arc::clone(&encode_fields), batch),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
                stream::iter(rows)
            })
            .flatten();
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    /// Runs the statements one after another, as PostgreSQL does: the first that fails ends
    /// the query with its error, after the results of those before it. Each is planned once.
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = split_and_rewrite(query);
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for sql in statements {
            let response = match self.describe(client, &sql).await {
                Ok((statement, planned)) => {
                    self.run(client, &statement, planned, Vec::new(), &Format::UnifiedText).await
                }
                Err(e) => Err(e),
            };
            match response {
                Ok(response) => responses.push(response),
                Err(PgWireError::UserError(error)) => {
                    responses.push(Response::Error(error));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for Queries {
    type Statement = PgStatement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = split_and_rewrite(sql);
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(user_error(
                ErrorKind::Parse.sqlstate(),
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        Ok(Some(self.describe(client, &statements.remove(0)).await?.0))
    }

    fn get_parameter_types(&self, statement: &PgStatement) -> PgWireResult<Vec<Type>> {
        client_schema(&statement.parameters).fields().iter().map(|f| into_pg_type(f.data_type())).collect()
    }

    fn get_result_schema(&self, statement: &PgStatement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        arrow_schema_to_pg_fields(&client_schema(&statement.schema), format.unwrap_or(&Format::UnifiedText), None)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = PgStatement;
    type QueryParser = Queries;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(Queries::new(Arc::clone(&self.engine)))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        let types: Vec<DataType> = statement.parameters.fields().iter().map(|f| f.data_type().clone()).collect();
        let type_refs: Vec<Option<&DataType>> = types.iter().map(Some).collect();
        let values = arrow_pg::datatypes::df::deserialize_parameters(portal, &type_refs)?;
        let values = match values {
            datafusion::common::ParamValues::List(values) => values.into_iter().map(|v| v.value).collect(),
            datafusion::common::ParamValues::Map(_) => {
                return Err(user_error("42P02", "named parameters are not supported"));
            }
        };
        self.run(client, statement, None, values, &portal.result_column_format).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_and_settings_are_told_apart() {
        assert_eq!(classify("SET DateStyle = 'ISO'"), Kind::Command("SET".into()));
        assert_eq!(classify("BEGIN"), Kind::Command("BEGIN".into()));
        assert_eq!(
            classify("show transaction_isolation"),
            Kind::Setting { name: "transaction_isolation".into(), value: "read committed".into() }
        );
        assert_eq!(classify("SHOW TABLES"), Kind::Query);
        assert_eq!(classify("SHOW PARTITIONS t"), Kind::Query);
        assert_eq!(classify("SELECT 1"), Kind::Query);
        assert_eq!(classify("DEALLOCATE PREPARE by_region"), Kind::Query);
        assert_eq!(classify("DEALLOCATE ALL"), Kind::Command("DEALLOCATE".into()));
    }
}
