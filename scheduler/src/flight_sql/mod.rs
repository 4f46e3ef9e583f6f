//! The Arrow Flight SQL front door: converts Flight SQL messages and delegates to the
//! `QueryEngine`. Statements (`statements.rs`) and prepared statements' parameters
//! (`prepared.rs`) travel in the handles the client holds; `cancel.rs` knows the statements a
//! `DoGet` runs, for `CancelFlightInfo` and progress; `metadata.rs` answers the catalog and
//! server-info calls drivers make; `result_endpoints.rs` lets a client read a large result from
//! the executors.

mod cancel;
mod metadata;
mod prepared;
mod result_endpoints;
mod statements;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightEndpoint,
    FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::{Stream, stream};
use glaux_proto::generated::StatementHandle;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::background::Background;
use crate::client_auth::Users;
use crate::client_types::client_schema;
use crate::engine::QueryEngine;
use cancel::RunningStatements;
pub use result_endpoints::ENDPOINTS_HEADER;
use result_endpoints::ExecutorEndpoints;
use statements::{
    batch_stream, decode_handle, execute_update, flight_info, handle_session, request_session, request_user,
    statement_handle_of, statement_id,
};

/// The Flight action that reports a running statement's progress (body: its ticket).
pub const PROGRESS_ACTION: &str = "GlauxQueryProgress";

/// A schema as the IPC message Flight SQL puts in prepared-statement results.
fn schema_ipc(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(message) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message)
}

pub struct FlightSqlFrontDoor {
    engine: Arc<QueryEngine>,
    running: Arc<RunningStatements>,
    bound: Arc<prepared::BoundParameters>,
    /// Who may connect; `None`: anyone (the scheduler then serves on loopback only).
    users: Option<Arc<Users>>,
    /// Serving results from the executors; `None` when clients connect over TLS (executors serve
    /// clients in plain gRPC only, and a client that chose TLS must not be sent elsewhere without).
    executors: Option<ExecutorEndpoints>,
}

impl FlightSqlFrontDoor {
    /// A door; with `background`, clients may ask to read large results from the executors.
    pub fn new(engine: Arc<QueryEngine>, users: Option<Arc<Users>>, background: Option<Background>) -> Self {
        let running: Arc<RunningStatements> = Arc::default();
        let executors = background.map(|background| ExecutorEndpoints { running: Arc::clone(&running), background });
        Self { engine, running, bound: Arc::default(), users, executors }
    }

    /// Where the request's client may read a query's result: from the executors if it asks and
    /// this door allows it.
    fn result_endpoints<T>(&self, request: &Request<T>) -> Result<Option<&ExecutorEndpoints>, Status> {
        Ok(if result_endpoints::requested(request)? { self.executors.as_ref() } else { None })
    }

    /// A prepared statement's handle with the parameters bound to it, whichever handle the client
    /// sends (drivers differ in whether they use the one `DoPut` returned).
    fn with_bound_parameters(&self, handle: StatementHandle, user: Option<&str>) -> StatementHandle {
        match self.bound.get(user, &handle.id) {
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
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let Some(users) = &self.users else {
            let response = HandshakeResponse { protocol_version: 0, payload: Default::default() };
            return Ok(Response::new(Box::pin(stream::iter([Ok(response)]))));
        };
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let client = request.remote_addr().map(|a| a.ip());
        let (user, token) = users.handshake(authorization, client).await.inspect_err(|error| {
            if *error == crate::client_auth::AuthError::Wrong {
                self.engine.metrics().failed_login("flight_sql");
            }
        })?;
        tracing::debug!(%user, "client authenticated");
        let payload = token.clone().into_bytes().into();
        let mut response =
            Response::new(Box::pin(stream::iter([Ok(HandshakeResponse { protocol_version: 0, payload })])) as _);
        let header =
            format!("Bearer {token}").parse().map_err(|_| Status::internal("token is not a valid header value"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = request_session(&request);
        let executors = self.result_endpoints(&request)?;
        let info =
            flight_info(&self.engine, &query.query, Vec::new(), &session, request.into_inner(), executors).await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = request_session(&request);
        let handle =
            self.with_bound_parameters(decode_handle(&query.prepared_statement_handle)?, caller.user.as_deref());
        let session = handle_session(&handle, &caller)?;
        let executors = self.result_endpoints(&request)?;
        let descriptor = request.into_inner();
        let info = flight_info(&self.engine, &handle.sql, handle.parameters, &session, descriptor, executors).await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let handle = decode_handle(&ticket.statement_handle)?;
        Ok(Response::new(statements::run(&self.engine, &self.running, handle, &request_session(&request)).await?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = request_session(&request);
        let handle =
            self.with_bound_parameters(decode_handle(&query.prepared_statement_handle)?, caller.user.as_deref());
        let handle = StatementHandle { executed: false, result: Vec::new(), ..handle };
        Ok(Response::new(statements::run(&self.engine, &self.running, handle, &caller).await?))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        execute_update(&self.engine, &command.query, &request_session(&request)).await
    }

    /// Bulk ingest (ADBC `adbc_ingest`): modes create and append; replace is refused for Hive
    /// tables. Returns the rows written.
    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = request_session(&request);
        let target = statements::ingest_target(&command)?;
        let rows = statements::ingested_rows(request.into_inner()).await?;
        let written = self.engine.ingest(&session, target, rows).await?;
        Ok(i64::try_from(written).unwrap_or(i64::MAX))
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = request_session(&request);
        let handle =
            self.with_bound_parameters(decode_handle(&query.prepared_statement_handle)?, caller.user.as_deref());
        execute_update(&self.engine, &handle.sql, &handle_session(&handle, &caller)?).await
    }

    /// Binds parameter values (one row) to a prepared statement: the returned handle carries them.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = decode_handle(&query.prepared_statement_handle)?;
        let user = request_user(&request);
        let parameters = prepared::read_parameters(request.into_inner()).await?;
        prepared::decode_parameters(&parameters)?;
        self.bound.bind(user.as_deref(), &handle.id, parameters.clone());
        let handle = StatementHandle { parameters, ..handle };
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.encode_to_vec().into()) })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = request_session(&request);
        let planned = self.engine.plan(&query.query, &session).await?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: StatementHandle {
                sql: query.query,
                database: session.database,
                id: statement_id(),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            dataset_schema: schema_ipc(&client_schema(&planned.schema()))?,
            parameter_schema: schema_ipc(&client_schema(&planned.parameters()))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.bound.close(request_user(&request).as_deref(), &decode_handle(&query.prepared_statement_handle)?.id);
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
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::catalogs(
            self.engine.catalogs(&request_session(&request))?.as_ref(),
            query,
        )?)))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::schemas(
            self.engine.catalogs(&request_session(&request))?.as_ref(),
            query,
        )?)))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(
            metadata::tables(self.engine.catalogs(&request_session(&request))?.as_ref(), query).await?,
        )))
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
        let batch = query.into_builder(&metadata::SQL_INFO).build().map_err(|e| Status::internal(e.to_string()))?;
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
            } else if let Some(query) = result_endpoints::query_of(&ticket) {
                cancelled |= self.running.cancel(&query);
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
