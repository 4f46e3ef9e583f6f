//! The PostgreSQL wire protocol front door: the bridge for JDBC, ODBC and `psql`.
//!
//! `pgwire` speaks the protocol (startup, simple and extended queries); every statement runs
//! through the same [`QueryEngine`] as Flight SQL, so the catalog, Athena DDL and distributed
//! execution are the same. What PostgreSQL clients send that is not SQL for a lake is answered
//! here: `SET`, `SHOW <setting>`, `BEGIN`/`COMMIT`/`ROLLBACK` (Glaux has no transactions; they are
//! accepted so drivers that wrap statements in them work), and catalog queries, which
//! `datafusion-pg-catalog` rewrites (regclass casts, `OPERATOR(pg_catalog.~)`, ...) and answers from
//! its `pg_catalog` tables. Results are streamed and encoded by `arrow-pg` (text or binary, as the
//! client asks). With users configured, clients authenticate with a cleartext password checked
//! against the Argon2id hash (over TLS when it is configured, and then only over TLS); without
//! users, anyone on the (loopback) port may connect. A connection's database (its startup
//! `database`, then `USE`) is kept in pgwire's per-connection metadata.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use crate::client_auth::Users;
use crate::client_types::{client_schema, to_client_batch};
use crate::query::{ClientSession, QueryEngine};

pub(crate) mod functions;

/// The version clients see: a PostgreSQL they know how to talk to, and what really answers.
const SERVER_VERSION: &str = "14.0 (Glaux)";
const SERVER_VERSION_NUMBER: &str = "14.0";

/// Serves PostgreSQL clients on `listener` until the task is dropped; with `tls`, only over TLS.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    users: Option<Arc<Users>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let handlers = Arc::new(Handlers { engine, users, tls_required: tls.is_some() });
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("PostgreSQL port: accept failed: {e}");
                continue;
            }
        };
        let handlers = Arc::clone(&handlers);
        let tls = tls.clone();
        tokio::spawn(async move {
            // Garbage, a vanished client or a protocol error ends this connection only.
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, "PostgreSQL connection ended: {e}");
            }
        });
    }
}

struct Handlers {
    engine: Arc<QueryEngine>,
    users: Option<Arc<Users>>,
    tls_required: bool,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Queries { engine: Arc::clone(&self.engine) })
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Queries { engine: Arc::clone(&self.engine) })
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup { users: self.users.clone(), engine: Arc::clone(&self.engine), tls_required: self.tls_required })
    }
}

fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = SERVER_VERSION.to_string();
    parameters.search_path = crate::session::DEFAULT_SCHEMA.to_string();
    parameters
}

/// Password authentication against the configured users, or none without users; then the
/// connection's database.
struct Startup {
    users: Option<Arc<Users>>,
    engine: Arc<QueryEngine>,
    /// With TLS configured, a client that did not negotiate it is refused before it can send
    /// a password.
    tls_required: bool,
}

/// Where a connection keeps the database its statements resolve against (`USE` changes it).
const DATABASE_KEY: &str = "glaux.database";

impl Startup {
    /// The Athena database a connection's `database` parameter names: an existing database, or
    /// the default one for the names clients use when they mean "the server" (`glaux`, the
    /// catalog; `postgres`; none). Any other name is refused, as PostgreSQL refuses it.
    fn database(&self, requested: Option<&String>) -> PgWireResult<String> {
        let requested = requested.map(String::as_str).unwrap_or("");
        if requested.is_empty() || requested == crate::session::DEFAULT_CATALOG || requested == "postgres" {
            return Ok(crate::session::DEFAULT_SCHEMA.to_string());
        }
        match self.engine.catalog.database_exists(requested) {
            Ok(true) => Ok(requested.to_string()),
            Ok(false) => Err(user_error(
                "3D000",
                format!("database \"{requested}\" does not exist (a Glaux database is an Athena database: see SHOW DATABASES)"),
            )),
            Err(e) => Err(user_error("XX000", e.to_string())),
        }
    }

    /// Authentication succeeded: choose the database, then tell the client it may query.
    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let database = self.database(client.metadata().get(pgwire::api::METADATA_DATABASE))?;
        client.metadata_mut().insert(DATABASE_KEY.to_string(), database);
        finish_authentication(client, &server_parameters()).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            return Err(user_error("28000", "this server accepts only TLS connections (sslmode=require)"));
        }
        let Some(users) = &self.users else {
            if let PgWireFrontendMessage::Startup(ref startup) = message {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                self.finish(client).await?;
            }
            return Ok(());
        };
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client.send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword)).await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let login = LoginInfo::from_client_info(client);
                let user = login.user().unwrap_or_default().to_string();
                if !users.verify(&user, &password.password) {
                    return Err(PgWireError::InvalidPassword(user));
                }
                self.finish(client).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A statement as the extended protocol keeps it between Parse and Execute.
#[derive(Clone, Debug)]
struct Prepared {
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

struct Queries {
    engine: Arc<QueryEngine>,
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

/// SQLSTATE for an engine error, as PostgreSQL would class it: unknown tables (42P01) and
/// columns (42703), syntax errors (42601), other planning errors (42000), what Glaux does not
/// support (0A000); anything at execution is an internal error (XX000).
fn engine_error(error: crate::SchedulerError) -> PgWireError {
    let message = error.to_string();
    let code = match &error {
        crate::SchedulerError::Plan(_) | crate::SchedulerError::MalformedRequest(_) => {
            if message.contains("ParserError") || message.contains("sql parser error") {
                "42601"
            } else if message.contains("No field named") {
                "42703"
            } else if message.contains("not found") && message.to_lowercase().contains("table") {
                "42P01"
            } else {
                "42000"
            }
        }
        crate::SchedulerError::Unsupported(_) => "0A000",
        _ => "XX000",
    };
    user_error(code, message)
}

/// The statements of `sql` as the engine should see them: rewritten by the PostgreSQL
/// compatibility parser when it can read them (psql's and drivers' catalog queries), as written
/// otherwise (Athena DDL, which that parser does not know).
fn split_and_rewrite(sql: &str) -> Vec<String> {
    match PostgresCompatibilityParser::new().parse(sql) {
        Ok(statements) => statements
            .into_iter()
            .map(|mut statement| {
                postgres_version(&mut statement);
                name_unnamed_columns(&mut statement);
                numeric_oid_arguments(&mut statement);
                statement.to_string()
            })
            .collect(),
        Err(_) => {
            let trimmed = sql.trim().trim_end_matches(';').trim();
            if trimmed.is_empty() { Vec::new() } else { vec![trimmed.to_string()] }
        }
    }
}

/// Names the top-level select list's unnamed expressions as PostgreSQL does: a function call
/// after the function (`count(*)` is `count`), anything else but a column `?column?`. Clients
/// read columns by those names (`rs.getLong("count")`). Where two would share a name, which
/// DataFusion refuses (catalog queries select several `NULL`s), later ones get their position
/// appended (`?column?2`).
fn name_unnamed_columns(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement};
    /// PostgreSQL's name for an unnamed select-list expression; `None` for columns, which keep
    /// their own.
    fn postgres_name(expr: &Expr) -> String {
        match expr {
            Expr::Identifier(ident) => ident.value.clone(),
            Expr::CompoundIdentifier(parts) => parts.last().map(|part| part.value.clone()).unwrap_or_default(),
            Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => postgres_name(inner),
            Expr::Function(function) => {
                function.name.0.last().map(|part| part.to_string().trim_matches('"').to_string()).unwrap_or_default()
            }
            Expr::Case { .. } => "case".to_string(),
            _ => "?column?".to_string(),
        }
    }
    fn name(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                let mut seen = std::collections::HashSet::new();
                for (i, item) in select.projection.iter_mut().enumerate() {
                    let expr = match item {
                        SelectItem::UnnamedExpr(expr) => expr,
                        SelectItem::ExprWithAlias { alias, .. } => {
                            seen.insert(alias.value.clone());
                            continue;
                        }
                        _ => continue,
                    };
                    let own = postgres_name(expr);
                    if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                        // Columns keep their names (DataFusion tells `a.id` from `b.id`).
                        seen.insert(own);
                        continue;
                    }
                    let alias = if seen.insert(own.clone()) { own } else { format!("{own}{}", i + 1) };
                    seen.insert(alias.clone());
                    *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::with_quote('"', alias) };
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                name(left);
                name(right);
            }
            SetExpr::Query(query) => name(&mut query.body),
            _ => {}
        }
    }
    if let Statement::Query(query) = statement {
        name(&mut query.body);
    }
}

/// `version()` answers as a PostgreSQL server would (drivers and BI tools parse it for a
/// version number), naming Glaux after it; a select-list `version()` keeps the column name
/// `version`. Flight SQL clients get DataFusion's `version()`.
fn postgres_version(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, FunctionArguments, Ident, SelectItem, SetExpr, Statement, Value, visit_expressions_mut};
    fn is_version(expr: &Expr) -> bool {
        matches!(expr, Expr::Function(f)
            if (f.name.to_string().eq_ignore_ascii_case("version") || f.name.to_string().eq_ignore_ascii_case("pg_catalog.version"))
            && matches!(&f.args, FunctionArguments::List(list) if list.args.is_empty()))
    }
    if let Statement::Query(query) = statement
        && let SetExpr::Select(select) = query.body.as_mut()
    {
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) = item
                && is_version(expr)
            {
                *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::new("version") };
            }
        }
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if is_version(expr) {
            let version = format!("PostgreSQL {SERVER_VERSION_NUMBER} (Glaux {}) on {}", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH);
            *expr = Expr::value(Value::SingleQuotedString(version));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `pg_relation_is_publishable('16386')`: PostgreSQL reads a quoted number passed to its catalog
/// functions as an oid; DataFusion needs the number.
fn numeric_oid_arguments(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, visit_expressions_mut};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr
            && function.name.to_string().to_ascii_lowercase().trim_start_matches("pg_catalog.").starts_with("pg_")
            && let FunctionArguments::List(list) = &mut function.args
        {
            for arg in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(argument)) = arg
                    && let Expr::Value(value) = argument
                    && let Value::SingleQuotedString(text) = &value.value
                    && !text.is_empty()
                    && text.len() < 10
                    && text.chars().all(|c| c.is_ascii_digit())
                    && let Ok(mut parser) = Parser::new(&GenericDialect {}).try_with_sql(&format!("CAST({text} AS INT)"))
                    && let Ok(oid) = parser.parse_expr()
                {
                    *argument = oid;
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// What a statement is, before planning: the commands and settings PostgreSQL clients send that
/// Glaux answers itself.
fn classify(sql: &str) -> Kind {
    let words: Vec<String> = sql.split_whitespace().take(4).map(|w| w.trim_end_matches(';').to_ascii_lowercase()).collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        "set" | "reset" | "discard" | "deallocate" | "listen" | "unlisten" => Kind::Command(word(0).to_ascii_uppercase()),
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
        "search_path" => crate::session::DEFAULT_SCHEMA,
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

/// The session a connection's statements run in: its database (see [`Startup::database`]).
fn session_of<C: ClientInfo>(client: &C) -> ClientSession {
    match client.metadata().get(DATABASE_KEY) {
        Some(database) => ClientSession::in_database(database.clone()),
        None => ClientSession::default(),
    }
}

impl Queries {
    /// Plans `sql` enough to know its result and parameter types.
    async fn prepare(&self, sql: &str, session: &ClientSession) -> PgWireResult<Prepared> {
        let kind = classify(sql);
        let (schema, parameters, use_database) = match &kind {
            Kind::Query => {
                let description = self.engine.describe(sql, session).await.map_err(|e| {
                    tracing::debug!(%sql, "PostgreSQL statement failed: {e}");
                    engine_error(e)
                })?;
                (description.schema, description.parameters, description.use_database)
            }
            Kind::Command(_) => (Arc::new(Schema::empty()), Arc::new(Schema::empty()), None),
            Kind::Setting { name, .. } => (setting_schema(name), Arc::new(Schema::empty()), None),
        };
        Ok(Prepared { sql: sql.to_string(), kind, schema, parameters, use_database })
    }

    /// Runs a statement with bound values in the connection's session; rows stream to the
    /// client as they come. `USE` moves the connection to its database.
    async fn run<C: ClientInfo>(
        &self,
        client: &mut C,
        prepared: &Prepared,
        parameters: Vec<ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response> {
        match &prepared.kind {
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
        if let Some(database) = &prepared.use_database {
            client.metadata_mut().insert(DATABASE_KEY.to_string(), database.clone());
            return Ok(Response::Execution(Tag::new("USE")));
        }
        let session = ClientSession { parameters, ..session_of(client) };
        let result = self.engine.execute(&prepared.sql, &session).await.map_err(|e| {
            tracing::debug!(sql = %prepared.sql, "PostgreSQL statement failed: {e}");
            engine_error(e)
        })?;
        if result.schema.fields().is_empty() {
            // DDL and other statements without a result set.
            let mut batches = result.batches;
            while let Some(batch) = batches.next().await {
                batch.map_err(|e| user_error("XX000", e.to_string()))?;
            }
            let tag = prepared.sql.split_whitespace().next().unwrap_or("OK").to_ascii_uppercase();
            return Ok(Response::Execution(Tag::new(&tag)));
        }
        let fields = Arc::new(arrow_schema_to_pg_fields(&client_schema(&result.schema), format, None)?);
        let encode_fields = Arc::clone(&fields);
        let client = Arc::new(client_schema(&result.schema));
        let rows = result
            .batches
            .map(move |batch| {
                let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send> = match batch
                    .map_err(|e| e.to_string())
                    .and_then(|b| to_client_batch(b, &client).map_err(|e| e.to_string()))
                {
                    Ok(batch) => encode_recordbatch(Arc::clone(&encode_fields), batch),
                    Err(e) => Box::new(std::iter::once(Err(user_error("XX000", e)))),
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
    /// the query with its error, after the results of those before it.
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
            let response = match self.prepare(&sql, &session_of(client)).await {
                Ok(prepared) => self.run(client, &prepared, Vec::new(), &Format::UnifiedText).await,
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
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = split_and_rewrite(sql);
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(user_error("42601", "cannot insert multiple commands into a prepared statement"));
        }
        Ok(Some(self.prepare(&statements.remove(0), &session_of(client)).await?))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        client_schema(&statement.parameters).fields().iter().map(|f| into_pg_type(f.data_type())).collect()
    }

    fn get_result_schema(&self, statement: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        arrow_schema_to_pg_fields(&client_schema(&statement.schema), format.unwrap_or(&Format::UnifiedText), None)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Prepared;
    type QueryParser = Queries;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(Queries { engine: Arc::clone(&self.engine) })
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let types: Vec<DataType> = prepared.parameters.fields().iter().map(|f| f.data_type().clone()).collect();
        let type_refs: Vec<Option<&DataType>> = types.iter().map(Some).collect();
        let values = arrow_pg::datatypes::df::deserialize_parameters(portal, &type_refs)?;
        let values = match values {
            datafusion::common::ParamValues::List(values) => values.into_iter().map(|v| v.value).collect(),
            datafusion::common::ParamValues::Map(_) => return Err(user_error("42P02", "named parameters are not supported")),
        };
        self.run(client, prepared, values, &portal.result_column_format).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_and_settings_are_told_apart() {
        assert_eq!(classify("SET DateStyle = 'ISO'"), Kind::Command("SET".into()));
        assert_eq!(classify("BEGIN"), Kind::Command("BEGIN".into()));
        assert_eq!(classify("show transaction_isolation"), Kind::Setting {
            name: "transaction_isolation".into(),
            value: "read committed".into()
        });
        assert_eq!(classify("SHOW TABLES"), Kind::Query);
        assert_eq!(classify("SHOW PARTITIONS t"), Kind::Query);
        assert_eq!(classify("SELECT 1"), Kind::Query);
    }

    #[test]
    fn duplicate_unnamed_columns_get_names_and_athena_ddl_passes_through() {
        let statements = split_and_rewrite("SELECT NULL, NULL, a FROM t; SELECT 2");
        assert_eq!(statements, vec![
            "SELECT NULL AS \"?column?\", NULL AS \"?column?2\", a FROM t".to_string(),
            "SELECT 2 AS \"?column?\"".to_string()
        ]);
        let named = split_and_rewrite("SELECT t.a, count(*), pg_catalog.format_type(x, y), CAST(b AS INT), max(c) AS m, a + 1 FROM t");
        assert_eq!(named, vec![
            "SELECT t.a, count(*) AS \"count\", format_type(x, y) AS \"format_type\", CAST(b AS INT) AS \"b\", \
             max(c) AS m, a + 1 AS \"?column?\" FROM t"
                .to_string()
        ]);
        let ddl = "CREATE EXTERNAL TABLE t (a struct<b:int>) STORED AS PARQUET LOCATION 's3://b/t/'";
        assert_eq!(split_and_rewrite(ddl), vec![ddl.to_string()]);
        let grouped = split_and_rewrite("select region, count(*) from sales group by region order by count(*) desc");
        assert_eq!(grouped, vec![
            "SELECT region, count(*) AS \"count\" FROM sales GROUP BY region ORDER BY count(*) DESC".to_string()
        ]);
    }
}
