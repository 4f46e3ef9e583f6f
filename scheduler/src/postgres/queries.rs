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
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::rewrite::split_and_rewrite;
use super::{DATABASE_KEY, SERVER_VERSION, STARTUP_DATABASE_KEY, engine_error, session_of, user_error};
use crate::client_types::{client_schema, to_client_batch};
use crate::engine::{PlannedStatement, QueryEngine};
use crate::error::{ErrorKind, SchedulerError};
use crate::limits::RateLimiter;
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
    /// Answered here with a command tag (`SET`, `BEGIN`, ...): it does what it says.
    Command(String),
    /// Answered with a command tag and a warning (NOTICE) saying what it did not do, so that no
    /// client believes a setting took effect or a rollback undid anything.
    Warned { tag: String, message: String },
    /// `SET search_path`/`SET SCHEMA` (the connection's database, as `USE`), or back to the
    /// startup database (`None`: `RESET ALL`, `DISCARD ALL`, `RESET search_path`).
    Database(Option<String>),
    /// `DEALLOCATE name`: forgets a statement prepared on this connection.
    Deallocate(String),
    /// `SHOW <setting>`: one text row.
    Setting { name: String, value: String },
}

pub(super) struct Queries {
    engine: Arc<QueryEngine>,
    rates: Arc<RateLimiter>,
}

/// What a statement is, before planning: the commands and settings PostgreSQL clients send that
/// Glaux answers itself.
fn classify(sql: &str) -> Kind {
    let words: Vec<String> =
        sql.split_whitespace().take(4).map(|w| w.trim_end_matches(';').to_ascii_lowercase()).collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let no_transactions = |tag: &str| Kind::Warned {
        tag: tag.to_string(),
        message: format!("Glaux has no transactions: each statement took effect when it ran, and {tag} undid nothing"),
    };
    match word(0) {
        // Athena's prepared statements live in the catalog; bare `DEALLOCATE name` and
        // `DEALLOCATE ALL` are what PostgreSQL drivers send for their own protocol statements.
        "deallocate" if word(1) == "prepare" => Kind::Query,
        "deallocate" if word(1) == "all" => Kind::Warned {
            tag: "DEALLOCATE".into(),
            message: "DEALLOCATE ALL is not supported: statements prepared on this connection stay until it closes \
                      (DEALLOCATE name forgets one)"
                .into(),
        },
        "deallocate" => {
            // A quoted name keeps its case; an unquoted one folds to lower case, as in PostgreSQL.
            let name = sql.split_whitespace().nth(1).unwrap_or("").trim_end_matches(';');
            Kind::Deallocate(if name.starts_with('"') { unquote(name) } else { name.to_ascii_lowercase() })
        }
        "set" => classify_set(sql),
        "reset" if matches!(word(1), "all" | "search_path") => Kind::Database(None),
        // Only `SET search_path` changes anything here, so resetting anything else is true as said.
        "reset" => Kind::Command("RESET".into()),
        "discard" if word(1) == "all" => Kind::Database(None),
        "discard" => Kind::Command("DISCARD".into()),
        "unlisten" => Kind::Command("UNLISTEN".into()),
        "begin" | "start" => Kind::Command("BEGIN".into()),
        "commit" | "end" => Kind::Command("COMMIT".into()),
        "rollback" | "abort" => no_transactions("ROLLBACK"),
        "savepoint" | "release" => Kind::Command(word(0).to_ascii_uppercase()),
        // PostgreSQL's two-word spellings (SQLAlchemy asks the first on every connection).
        "show"
            if matches!((word(1), word(2), word(3)), ("transaction", "isolation", "level") | ("time", "zone", "")) =>
        {
            let name = if word(1) == "time" { "timezone" } else { "transaction_isolation" };
            Kind::Setting { name: name.into(), value: setting(name).unwrap_or_default() }
        }
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

fn unquote(text: &str) -> String {
    text.trim().trim_matches(|c| c == '\'' || c == '"').to_string()
}

/// `SET [SESSION | LOCAL] name { TO | = } value`, `SET SCHEMA 'db'`, `SET TIME ZONE ...`: what
/// takes effect does; a value Glaux already has is accepted; anything else is accepted with a
/// warning that it was ignored.
fn classify_set(sql: &str) -> Kind {
    let text = sql.trim().trim_end_matches(';');
    let rest = text.get(3..).unwrap_or("").trim_start();
    let rest = ["session ", "local "]
        .iter()
        .find_map(|prefix| {
            rest.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|p| &rest[p.len()..])
        })
        .unwrap_or(rest)
        .trim_start();
    let (name, value) = if rest.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("schema ")) {
        ("search_path".to_string(), rest[7..].trim())
    } else if rest.get(..10).is_some_and(|p| p.eq_ignore_ascii_case("time zone ")) {
        ("timezone".to_string(), rest[10..].trim())
    } else {
        let end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
        let name = unquote(&rest[..end]).to_ascii_lowercase();
        let value = rest[end..].trim_start();
        let value = value
            .strip_prefix('=')
            .or_else(|| value.get(..3).filter(|p| p.eq_ignore_ascii_case("to ")).map(|p| &value[p.len()..]));
        (name, value.unwrap_or("").trim())
    };
    let value = unquote(value);
    let ignored = |name: &str| Kind::Warned {
        tag: "SET".into(),
        message: format!(
            "Glaux does not support changing {name}; the statement was ignored (SHOW {name} shows the value in effect)"
        ),
    };
    match name.as_str() {
        "search_path" => {
            // `SET search_path TO db, public`: the first schema is the database.
            let first = value.split(',').map(unquote).next().unwrap_or_default();
            if first.is_empty() || first.eq_ignore_ascii_case("default") {
                Kind::Database(None)
            } else {
                Kind::Database(Some(first))
            }
        }
        // Glaux prints floats in their shortest exact form, which is what a positive value asks.
        "extra_float_digits" if value.parse::<i32>().is_ok_and(|n| n >= 1) => Kind::Command("SET".into()),
        // A label for the client's own logs; Glaux does not show it anywhere, so it changes nothing.
        "application_name" => Kind::Command("SET".into()),
        _ => match setting(&name) {
            Some(current) if current.eq_ignore_ascii_case(&value) || (value.eq_ignore_ascii_case("default")) => {
                Kind::Command("SET".into())
            }
            // `DateStyle = ISO` is what Glaux does, whatever the order part says.
            Some(current)
                if name == "datestyle"
                    && value.to_ascii_lowercase().starts_with("iso")
                    && current.starts_with("ISO") =>
            {
                Kind::Command("SET".into())
            }
            _ => ignored(&name),
        },
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
    pub fn new(engine: Arc<QueryEngine>, rates: Arc<RateLimiter>) -> Self {
        Self { engine, rates }
    }

    /// Counts a statement against its client address's rate.
    fn admit<C: ClientInfo>(&self, client: &C) -> PgWireResult<()> {
        self.rates.admit(client.socket_addr().ip()).map_err(engine_error)
    }

    /// What `sql` is: its result and parameter types; and, for statements the engine runs, the
    /// statement planned (the simple protocol runs it as it is).
    async fn describe<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
    ) -> PgWireResult<(PgStatement, Option<PlannedStatement>)> {
        self.admit(client)?;
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
            Kind::Command(_) | Kind::Warned { .. } | Kind::Database(_) | Kind::Deallocate(_) => {
                (Arc::new(Schema::empty()), Arc::new(Schema::empty()), None, None)
            }
            Kind::Setting { name, .. } => (setting_schema(name), Arc::new(Schema::empty()), None, None),
        };
        Ok((PgStatement { sql: sql.to_string(), kind, schema, parameters, use_database }, planned))
    }

    /// Runs a statement in the connection's session (`planned` if the caller has it, else
    /// planned again with `values` bound); rows stream to the client as they come. `USE` moves
    /// the connection to its database.
    async fn run<C>(
        &self,
        client: &mut C,
        statement: &PgStatement,
        planned: Option<PlannedStatement>,
        values: Vec<ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let tagged = |tag: &str| match tag {
            "BEGIN" => Response::TransactionStart(Tag::new(tag)),
            "COMMIT" | "ROLLBACK" => Response::TransactionEnd(Tag::new(tag)),
            _ => Response::Execution(Tag::new(tag)),
        };
        match &statement.kind {
            Kind::Command(tag) => return Ok(tagged(tag)),
            Kind::Warned { tag, message } => {
                let notice = ErrorInfo::new("WARNING".into(), "01000".into(), message.clone());
                client.send(PgWireBackendMessage::NoticeResponse(notice.into())).await?;
                return Ok(tagged(tag));
            }
            Kind::Deallocate(name) => {
                client.portal_store().rm_statement(name);
                return Ok(tagged("DEALLOCATE"));
            }
            Kind::Database(database) => {
                let database = match database {
                    Some(database) => {
                        if !self.engine.database_exists(database).map_err(engine_error)? {
                            return Err(user_error(
                                ErrorKind::UnknownDatabase.sqlstate(),
                                format!("database \"{database}\" does not exist (SHOW DATABASES lists them)"),
                            ));
                        }
                        database.clone()
                    }
                    None => client
                        .metadata()
                        .get(STARTUP_DATABASE_KEY)
                        .cloned()
                        .unwrap_or_else(|| glaux_catalog::DEFAULT_DATABASE.to_string()),
                };
                client.metadata_mut().insert(DATABASE_KEY.to_string(), database);
                return Ok(tagged("SET"));
            }
            Kind::Setting { name, value } => {
                // `search_path` is the connection's database: it follows `USE` and `SET`.
                let current = client.metadata().get(DATABASE_KEY).cloned();
                let value = match (name.as_str(), current) {
                    ("search_path", Some(database)) => &database.clone(),
                    _ => value,
                };
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
        Arc::new(Queries::new(Arc::clone(&self.engine), Arc::clone(&self.rates)))
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
        self.admit(client)?;
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
        assert_eq!(
            classify("SHOW TRANSACTION ISOLATION LEVEL;"),
            Kind::Setting { name: "transaction_isolation".into(), value: "read committed".into() }
        );
        assert_eq!(classify("show time zone"), Kind::Setting { name: "timezone".into(), value: "UTC".into() });
        assert_eq!(classify("SHOW TABLES"), Kind::Query);
        assert_eq!(classify("SHOW PARTITIONS t"), Kind::Query);
        assert_eq!(classify("SELECT 1"), Kind::Query);
        assert_eq!(classify("DEALLOCATE PREPARE by_region"), Kind::Query);
        assert!(matches!(classify("DEALLOCATE ALL"), Kind::Warned { .. }));
        assert_eq!(classify("DEALLOCATE \"S_1\""), Kind::Deallocate("S_1".into()));
    }

    #[test]
    fn a_set_takes_effect_is_already_true_or_says_it_was_ignored() {
        assert_eq!(classify("SET search_path TO sales, public"), Kind::Database(Some("sales".into())));
        assert_eq!(classify("set schema 'sales'"), Kind::Database(Some("sales".into())));
        assert_eq!(classify("SET SESSION search_path = DEFAULT"), Kind::Database(None));
        assert_eq!(classify("RESET ALL"), Kind::Database(None));
        assert_eq!(classify("DISCARD ALL"), Kind::Database(None));
        for already in [
            "SET DateStyle = 'ISO'",
            "SET client_encoding TO 'UTF8'",
            "SET extra_float_digits = 3",
            "SET application_name = 'PostgreSQL JDBC Driver'",
            "SET TIME ZONE 'UTC'",
            "SET standard_conforming_strings = on",
        ] {
            assert_eq!(classify(already), Kind::Command("SET".into()), "{already}");
        }
        for ignored in ["SET TimeZone = 'Europe/Paris'", "SET statement_timeout = 5000", "SET work_mem TO '64MB'"] {
            match classify(ignored) {
                Kind::Warned { tag, message } => assert!(tag == "SET" && message.contains("ignored"), "{message}"),
                other => panic!("{ignored}: {other:?}"),
            }
        }
        assert!(matches!(classify("ROLLBACK"), Kind::Warned { .. }));
    }
}
