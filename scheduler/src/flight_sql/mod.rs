//! The Arrow Flight SQL front door. Converts Flight SQL messages and delegates to `QueryEngine`.
//!
//! Statement handles carry the SQL text itself (`StatementHandle`): `GetFlightInfo` plans the
//! statement to learn its schema, `DoGet` plans and runs it. The front door keeps no per-query
//! state between the two, so a client that never fetches costs nothing. DDL is the exception: it
//! runs at `GetFlightInfo`, as clients (ADBC among them) never fetch the empty result of a DDL.

mod cancel;
mod metadata;
mod prepared;

pub use cancel::RunningStatements;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas,
    CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetXdbcTypeInfo,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt, stream};
use glaux_proto::generated::StatementHandle;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::client_auth::Users;
use crate::client_types::{client_schema, to_client_batch};
use crate::query::{ClientSession, QueryEngine};

/// The Flight action that reports a running statement's progress (body: its ticket).
pub const PROGRESS_ACTION: &str = "GlauxQueryProgress";

/// The request header naming the client's current database (set by clients after `USE`; any
/// Flight SQL client can send it, e.g. ADBC's `adbc.flight.sql.rpc.call_header.x-glaux-database`).
pub const DATABASE_HEADER: &str = "x-glaux-database";

/// The session a request runs in: its database header, or the default database.
fn client_session<T>(request: &Request<T>) -> ClientSession {
    match request.metadata().get(DATABASE_HEADER).and_then(|v| v.to_str().ok()) {
        Some(database) if !database.is_empty() => ClientSession::in_database(database),
        _ => ClientSession::default(),
    }
}

/// The session a handle's statement runs in: its database and bound parameters.
fn handle_session(handle: &StatementHandle) -> Result<ClientSession, Status> {
    let mut session =
        if handle.database.is_empty() { ClientSession::default() } else { ClientSession::in_database(&handle.database) };
    session.parameters = prepared::decode_parameters(&handle.parameters)?;
    Ok(session)
}

/// A schema as the IPC message Flight SQL puts in prepared-statement results.
fn schema_ipc(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(message) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message)
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

pub struct FlightSqlFrontDoor {
    pub engine: Arc<QueryEngine>,
    pub running: Arc<RunningStatements>,
    pub bound: Arc<prepared::BoundParameters>,
    /// Who may connect; `None`: anyone (the scheduler then serves on loopback only).
    pub users: Option<Arc<Users>>,
}

/// A fresh statement id for `CancelFlightInfo`.
fn statement_id() -> String {
    glaux_proto::QueryId::random().to_string()
}

/// The statement a Flight SQL ticket runs, if it runs one.
fn statement_handle_of(ticket: &Ticket) -> Option<StatementHandle> {
    let any = Any::decode(ticket.ticket.clone()).ok()?;
    if let Ok(Some(query)) = any.unpack::<TicketStatementQuery>() {
        return StatementHandle::decode(query.statement_handle).ok();
    }
    if let Ok(Some(query)) = any.unpack::<CommandPreparedStatementQuery>() {
        return StatementHandle::decode(query.prepared_statement_handle).ok();
    }
    None
}

fn decode_handle(handle: &[u8]) -> Result<StatementHandle, Status> {
    StatementHandle::decode(handle)
        .map_err(|_| Status::invalid_argument("statement handle is not a Glaux statement"))
}

/// Runs `work`, turning a panic (a bug, often in a reader given a malformed file) into an error for
/// this request alone.
async fn contained<T>(work: impl std::future::Future<Output = Result<T, Status>>) -> Result<T, Status> {
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            Err(Status::internal(format!("the scheduler hit a bug while planning this statement: {message}")))
        }
    }
}

impl FlightSqlFrontDoor {
    /// Plans a statement; one that changes the catalog or the session runs now, as clients
    /// (ADBC among them) may never fetch its result. After `USE`, the `FlightInfo`'s
    /// `app_metadata` is `{"database": "..."}` for the client to send back in [`DATABASE_HEADER`].
    async fn flight_info(
        &self,
        sql: &str,
        parameters: Vec<u8>,
        session: &ClientSession,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let description = contained(async { Ok(self.engine.describe(sql, session).await?) }).await?;
        let mut handle = StatementHandle {
            sql: sql.to_string(),
            database: session.database.clone(),
            id: statement_id(),
            parameters,
            ..Default::default()
        };
        if description.runs_on_submit {
            let lines = self.run_to_text(sql, session).await?;
            handle.executed = true;
            if let [field] = description.schema.fields().as_ref() {
                handle.result_column = field.name().clone();
                handle.result = lines;
            }
        }
        let app_metadata = description.use_database.map(|db| serde_json::json!({ "database": db }).to_string());
        let ticket = TicketStatementQuery { statement_handle: handle.encode_to_vec().into() };
        let endpoint = FlightEndpoint::new()
            .with_ticket(Ticket { ticket: ticket.as_any().encode_to_vec().into() });
        let info = FlightInfo::new()
            .try_with_schema(&client_schema(&description.schema))
            .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_ordered(true);
        Ok(match app_metadata {
            Some(metadata) => info.with_app_metadata(metadata.into_bytes()),
            None => info,
        })
    }

    async fn run(&self, handle: StatementHandle) -> Result<DoGetStream, Status> {
        if handle.executed {
            // Ran at GetFlightInfo: its text result, or no columns and no rows.
            let batch = if handle.result_column.is_empty() {
                arrow::array::RecordBatch::new_empty(Arc::new(Schema::empty()))
            } else {
                let schema = Arc::new(Schema::new(vec![Field::new(&handle.result_column, DataType::Utf8, false)]));
                let rows = arrow::array::StringArray::from(handle.result);
                arrow::array::RecordBatch::try_new(schema, vec![Arc::new(rows)])
                    .map_err(|e| Status::internal(e.to_string()))?
            };
            return Ok(batch_stream(batch));
        }
        let session = handle_session(&handle)?;
        let running = self.running.start(&handle.id);
        let sql = handle.sql.as_str();
        let progress = running.progress.clone();
        let execute = contained(async { Ok(self.engine.execute_observed(sql, &session, &progress).await?) });
        // The result comes back with its first batch (an aggregation's comes at its end): a cancel
        // before then drops the query, which ends its tasks.
        let result = tokio::select! {
            result = execute => result?,
            () = running.token.cancelled() => return Err(Status::cancelled("query cancelled by the client")),
        };
        let query = result.query.clone();
        let stats = result.stats;
        let batches = result
            .batches
            .map_err(move |e| FlightError::Tonic(Box::new(Status::internal(format!("query {query}: {e}")))));
        let batches = glaux_proto::contain_panics(batches, |_| {
            FlightError::Tonic(Box::new(Status::internal("the scheduler hit a bug running this query")))
        });
        let batches = until_cancelled(batches, running);
        let schema = Arc::new(client_schema(&result.schema));
        let to_client = Arc::clone(&schema);
        let batches =
            batches.map(move |batch| batch.and_then(|b| Ok(to_client_batch(b, &to_client)?)));
        let data = glaux_proto::with_trailer(schema, batches, true, false, move || {
            stats.snapshot().to_json().into()
        })
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::internal(other.to_string()),
        });
        Ok(Box::pin(data))
    }

    /// Runs a statement to its end; the text of its first column, if it returns text.
    /// A prepared statement's handle with the parameters bound to it, whichever handle the client
    /// sends (drivers differ in whether they use the one `DoPut` returned).
    fn with_bound_parameters(&self, handle: StatementHandle) -> StatementHandle {
        match self.bound.get(&handle.id) {
            Some(parameters) if handle.parameters.is_empty() => StatementHandle { parameters, ..handle },
            _ => handle,
        }
    }

    /// Answers [`PROGRESS_ACTION`]: the progress (JSON) of the statement whose ticket is the
    /// body, or an empty body if it is not running.
    async fn progress(&self, ticket: &[u8]) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let ticket = Ticket { ticket: Bytes::copy_from_slice(ticket) };
        let handle = statement_handle_of(&ticket)
            .ok_or_else(|| Status::invalid_argument("GlauxQueryProgress takes a statement ticket"))?;
        let body = match self.running.progress(&handle.id) {
            Some(probe) => serde_json::to_vec(&probe.progress().await).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Response::new(Box::pin(stream::iter([Ok(arrow_flight::Result { body: body.into() })]))))
    }

    async fn run_to_text(&self, sql: &str, session: &ClientSession) -> Result<Vec<String>, Status> {
        let mut result = contained(async { Ok(self.engine.execute(sql, session).await?) }).await?;
        let mut lines = Vec::new();
        while let Some(batch) = result.batches.next().await {
            let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
            if let Some(column) = batch.columns().first().and_then(|c| arrow::array::AsArray::as_string_opt::<i32>(c.as_ref())) {
                lines.extend(column.iter().map(|v| v.unwrap_or_default().to_string()));
            }
        }
        Ok(lines)
    }
}

/// Ends `batches` with a "cancelled" error once the client cancels the statement, dropping the
/// query (and so cancelling its tasks).
fn until_cancelled<S>(batches: S, running: cancel::Running) -> impl Stream<Item = Result<arrow::array::RecordBatch, FlightError>> + Send
where
    S: Stream<Item = Result<arrow::array::RecordBatch, FlightError>> + Send + 'static,
{
    let token = running.token.clone();
    batches.take_until(token.cancelled_owned()).chain(stream::once(async move {
        let cancelled = running.token.is_cancelled();
        drop(running);
        cancelled.then(|| Err(FlightError::Tonic(Box::new(Status::cancelled("query cancelled by the client")))))
    }).filter_map(futures::future::ready))
}

fn batch_stream(batch: arrow::array::RecordBatch) -> DoGetStream {
    let schema = batch.schema();
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::iter([Ok(batch)]))
        .map_err(|e| Status::internal(e.to_string()));
    Box::pin(data)
}

fn metadata_info<M: ProstMessageExt>(
    command: M,
    schema: SchemaRef,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket { ticket: command.as_any().encode_to_vec().into() };
    let info = FlightInfo::new()
        .try_with_schema(&schema)
        .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlFrontDoor {
    type FlightService = FlightSqlFrontDoor;

    /// Exchanges Basic credentials for a bearer token (see `client_auth`). Without configured
    /// users every handshake succeeds, with no token.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status>
    {
        let Some(users) = &self.users else {
            let response = HandshakeResponse { protocol_version: 0, payload: Default::default() };
            return Ok(Response::new(Box::pin(stream::iter([Ok(response)]))));
        };
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let (user, token) = users.handshake(authorization)?;
        tracing::debug!(%user, "client authenticated");
        let payload = token.clone().into_bytes().into();
        let mut response =
            Response::new(Box::pin(stream::iter([Ok(HandshakeResponse { protocol_version: 0, payload })])) as _);
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not a valid header value"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = client_session(&request);
        Ok(Response::new(self.flight_info(&query.query, Vec::new(), &session, request.into_inner()).await?))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = self.with_bound_parameters(decode_handle(&query.prepared_statement_handle)?);
        let session = handle_session(&handle)?;
        let info = self.flight_info(&handle.sql, handle.parameters, &session, request.into_inner()).await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(self.run(decode_handle(&ticket.statement_handle)?).await?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let handle = self.with_bound_parameters(decode_handle(&query.prepared_statement_handle)?);
        Ok(Response::new(self.run(StatementHandle { executed: false, result: Vec::new(), ..handle }).await?))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.run_to_text(&command.query, &client_session(&request)).await?;
        Ok(0)
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let handle = self.with_bound_parameters(decode_handle(&query.prepared_statement_handle)?);
        self.run_to_text(&handle.sql, &handle_session(&handle)?).await?;
        Ok(0)
    }

    /// Binds parameter values (one row) to a prepared statement: the returned handle carries them.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = decode_handle(&query.prepared_statement_handle)?;
        let parameters = prepared::read_parameters(request.into_inner()).await?;
        prepared::decode_parameters(&parameters)?;
        self.bound.bind(&handle.id, parameters.clone());
        let handle = StatementHandle { parameters, ..handle };
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.encode_to_vec().into()) })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = client_session(&request);
        let description = contained(async { Ok(self.engine.describe(&query.query, &session).await?) }).await?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: StatementHandle {
                sql: query.query,
                database: session.database,
                id: statement_id(),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            dataset_schema: schema_ipc(&client_schema(&description.schema))?,
            parameter_schema: schema_ipc(&client_schema(&description.parameters))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.bound.close(&decode_handle(&query.prepared_statement_handle)?.id);
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(query, schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(query, schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(query, schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(query, schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&metadata::SQL_INFO).schema();
        metadata_info(query, schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::catalogs(&self.engine.ctx, query)?)))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::schemas(&self.engine.ctx, query)?)))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::tables(&self.engine.ctx, query).await?)))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::table_types(query)?)))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query
            .into_builder(&metadata::SQL_INFO)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&metadata::XDBC_TYPES).schema();
        metadata_info(query, schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query.into_builder(&metadata::XDBC_TYPES).build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(query, metadata::primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(RecordBatch::new_empty(metadata::primary_keys_schema()))))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(query, metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(RecordBatch::new_empty(metadata::foreign_keys_schema()))))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(query, metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(RecordBatch::new_empty(metadata::foreign_keys_schema()))))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(query, metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(RecordBatch::new_empty(metadata::foreign_keys_schema()))))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type == PROGRESS_ACTION {
            return self.progress(&action.body).await;
        }
        if action.r#type != "CancelFlightInfo" {
            return Err(Status::unimplemented(format!("unsupported action {:?}", action.r#type)));
        }
        let cancel = CancelFlightInfoRequest::decode(action.body)
            .map_err(|e| Status::invalid_argument(format!("malformed CancelFlightInfoRequest: {e}")))?;
        let mut cancelled = false;
        for endpoint in cancel.info.map(|info| info.endpoint).unwrap_or_default() {
            let Some(ticket) = endpoint.ticket else { continue };
            if let Some(handle) = statement_handle_of(&ticket) {
                cancelled |= self.running.cancel(&handle.id);
            }
        }
        let status = if cancelled { CancelStatus::Cancelled } else { CancelStatus::NotCancellable };
        let result = CancelFlightInfoResult::new(status);
        let body = arrow_flight::Result { body: result.encode_to_vec().into() };
        Ok(Response::new(Box::pin(stream::iter([Ok(body)]))))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!("unsupported Flight SQL ticket: {}", message.type_url)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
