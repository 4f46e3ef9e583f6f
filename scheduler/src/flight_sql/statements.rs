//! Statements through Flight SQL: `GetFlightInfo` plans a statement to learn its schema and
//! answers with a ticket holding the statement itself (`StatementHandle`); `DoGet` plans and runs
//! it. The door keeps no per-query state between the two, so a client that never fetches costs
//! nothing. A statement that changes the catalog or the session runs at `GetFlightInfo` (planned
//! once), as clients (ADBC among them) never fetch the empty result of DDL.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{
    Any, CommandPreparedStatementQuery, CommandStatementIngest, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use glaux_proto::generated::StatementHandle;
use prost::Message;
use tonic::{Request, Status};

use super::cancel::{Running, RunningStatements};
use super::prepared;
use super::result_endpoints::ExecutorEndpoints;
use crate::audit::Door;
use crate::client_auth::AuthenticatedUser;
use crate::client_session::ClientSession;
use crate::client_types::{client_schema, to_client_batch};
use crate::engine::{PlannedStatement, QueryEngine};
use crate::error::SchedulerError;
use crate::query::ProgressSlot;
use crate::statement::{Effect, IfExists, IngestTarget};

/// The request header naming the client's current database (set by clients after `USE`; any
/// Flight SQL client can send it, e.g. ADBC's `adbc.flight.sql.rpc.call_header.x-glaux-database`).
pub const DATABASE_HEADER: &str = "x-glaux-database";

pub(super) type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The request header naming the kind of client: `shell` is `glaux shell` (a label for the
/// history and the audit log; it grants nothing).
pub const CLIENT_HEADER: &str = "x-glaux-client";

/// The request header naming the workgroup the client's statements run in (else its user's
/// default, else `primary`).
pub const WORKGROUP_HEADER: &str = "x-glaux-workgroup";

/// The request header choosing the retry policy of the client's statements (`query` or `task`),
/// unless their workgroup enforces its own.
pub const RETRY_POLICY_HEADER: &str = "x-glaux-retry-policy";

/// The session a request runs in: its user, its database header (or the default database), its
/// workgroup and retry policy headers.
pub(super) fn request_session<T>(request: &Request<T>) -> ClientSession {
    let header = |name| request.metadata().get(name).and_then(|v| v.to_str().ok());
    let door = if header(CLIENT_HEADER) == Some("shell") { Door::Shell } else { Door::FlightSql };
    let session = ClientSession::new(header(DATABASE_HEADER), Vec::new())
        .for_user(request_user(request))
        .sent_by(door, request.remote_addr().map(|a| a.ip()));
    ClientSession {
        workgroup: header(WORKGROUP_HEADER).unwrap_or_default().to_string(),
        retry_policy: header(RETRY_POLICY_HEADER).unwrap_or_default().to_string(),
        ..session
    }
}

/// The user the request's credentials proved (`None` without configured users).
pub(super) fn request_user<T>(request: &Request<T>) -> Option<String> {
    request.extensions().get::<AuthenticatedUser>().map(|u| u.0.clone())
}

/// The session a handle's statement runs in for `user`: the handle's database and bound
/// parameters. Who runs it is the caller, never what the (client-held) handle says.
pub(super) fn handle_session(handle: &StatementHandle, caller: &ClientSession) -> Result<ClientSession, Status> {
    let parameters = prepared::decode_parameters(&handle.parameters)?;
    Ok(ClientSession { database: handle.database.clone(), parameters, ..caller.clone() })
}

/// A fresh statement id for `CancelFlightInfo`.
pub(super) fn statement_id() -> String {
    glaux_proto::QueryId::random().to_string()
}

/// The statement a Flight SQL ticket runs, if it runs one.
pub(super) fn statement_handle_of(ticket: &Ticket) -> Option<StatementHandle> {
    let any = Any::decode(ticket.ticket.clone()).ok()?;
    if let Ok(Some(query)) = any.unpack::<TicketStatementQuery>() {
        return StatementHandle::decode(query.statement_handle).ok();
    }
    if let Ok(Some(query)) = any.unpack::<CommandPreparedStatementQuery>() {
        return StatementHandle::decode(query.prepared_statement_handle).ok();
    }
    None
}

pub(super) fn decode_handle(handle: &[u8]) -> Result<StatementHandle, Status> {
    StatementHandle::decode(handle)
        .map_err(|_| Status::from(SchedulerError::MalformedRequest("statement handle is not a Glaux statement".into())))
}

/// Plans a statement; one that changes the catalog or the session runs now. After `USE`, the
/// `FlightInfo`'s `app_metadata` is `{"database": "..."}` for the client to send back in
/// [`DATABASE_HEADER`].
///
/// With `executors`, a query whose result the client may read from the executors starts now and
/// its `FlightInfo` lists their endpoints (`result_endpoints.rs`).
pub(super) async fn flight_info(
    engine: &QueryEngine,
    sql: &str,
    parameters: Vec<u8>,
    session: &ClientSession,
    descriptor: FlightDescriptor,
    executors: Option<&ExecutorEndpoints>,
) -> Result<FlightInfo, Status> {
    let planned = engine.plan(sql, session).await?;
    let (schema, effect) = (planned.schema(), planned.effect());
    let mut handle = StatementHandle {
        sql: sql.to_string(),
        database: session.database.clone(),
        id: statement_id(),
        parameters,
        ..Default::default()
    };
    if effect == Effect::Reads {
        match executors {
            Some(executors) => {
                if let Some(info) = executors.launch(engine, planned, &schema, descriptor.clone()).await? {
                    return Ok(info);
                }
            }
            // `DoGet` runs it as planned here (unless the catalog changes meanwhile).
            None => engine.keep_planned(&handle.id, sql, session, planned),
        }
    } else {
        let lines = run_to_text(engine, planned).await?;
        handle.executed = true;
        if let [field] = schema.fields().as_ref() {
            handle.result_column = field.name().clone();
            handle.result = lines;
        }
    }
    let ticket = TicketStatementQuery { statement_handle: handle.encode_to_vec().into() };
    let endpoint = FlightEndpoint::new().with_ticket(Ticket { ticket: ticket.as_any().encode_to_vec().into() });
    let info = FlightInfo::new()
        .try_with_schema(&client_schema(&schema))
        .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_ordered(true);
    Ok(match effect {
        Effect::UseDatabase(database) => {
            info.with_app_metadata(serde_json::json!({ "database": database }).to_string().into_bytes())
        }
        _ => info,
    })
}

/// The text a statement run at `GetFlightInfo` may return: it travels in the ticket, back to the
/// client and back again with `DoGet`.
const MAX_TICKET_RESULT_BYTES: usize = 1 << 20;

/// Runs a planned statement to its end; the text of its first column, if it returns text, up to
/// [`MAX_TICKET_RESULT_BYTES`] (beyond, the statement fails: only catalog statements run here,
/// and their answers are short).
async fn run_to_text(engine: &QueryEngine, planned: PlannedStatement) -> Result<Vec<String>, Status> {
    let mut result = engine.run(planned, &ProgressSlot::default()).await?;
    let (mut lines, mut bytes) = (Vec::new(), 0usize);
    while let Some(batch) = result.batches.next().await {
        let batch = batch.map_err(|source| SchedulerError::Execute { query: result.query.clone(), source })?;
        if let Some(column) = batch.columns().first().and_then(|c| c.as_string_opt::<i32>()) {
            for line in column.iter() {
                let line = line.unwrap_or_default();
                bytes += line.len();
                if bytes > MAX_TICKET_RESULT_BYTES {
                    return Err(Status::resource_exhausted(format!(
                        "the statement's answer is longer than {MAX_TICKET_RESULT_BYTES} bytes"
                    )));
                }
                lines.push(line.to_string());
            }
        }
    }
    Ok(lines)
}

/// Plans and runs `sql` to its end (`DoPut` updates): rows it returns are read and dropped as
/// they come, never gathered. The count is what a write (`INSERT`, `CREATE TABLE AS`, `UNLOAD`)
/// says it wrote, 0 for any other statement.
pub(super) async fn execute_update(engine: &QueryEngine, sql: &str, session: &ClientSession) -> Result<i64, Status> {
    let mut result = engine.run(engine.plan(sql, session).await?, &ProgressSlot::default()).await?;
    let writes =
        matches!(result.schema.fields().as_ref(), [f] if f.name() == "rows" && f.data_type() == &DataType::Int64);
    let mut written = 0i64;
    while let Some(batch) = result.batches.next().await {
        let batch = batch.map_err(|source| SchedulerError::Execute { query: result.query.clone(), source })?;
        if writes && let Some(rows) = batch.column(0).as_primitive_opt::<arrow::datatypes::Int64Type>() {
            written += rows.iter().flatten().sum::<i64>();
        }
    }
    Ok(written)
}

/// `DoGet` of a statement: its text result if it ran at `GetFlightInfo`, else its result
/// streamed, then the query's statistics in a trailing message.
pub(super) async fn run(
    engine: &QueryEngine,
    running: &Arc<RunningStatements>,
    handle: StatementHandle,
    caller: &ClientSession,
) -> Result<DoGetStream, Status> {
    if handle.executed {
        return executed_result(handle);
    }
    let session = handle_session(&handle, caller)?;
    let running = running.start(&handle.id);
    let progress = running.progress.clone();
    let execute = async { engine.run(engine.plan_kept(&handle.id, &handle.sql, &session).await?, &progress).await };
    // The result comes back with its first batch (an aggregation's comes at its end): a cancel
    // before then drops the query, which ends its tasks.
    let result = tokio::select! {
        result = execute => result?,
        () = running.token.cancelled() => return Err(SchedulerError::Cancelled.into()),
    };
    let query = result.query.clone();
    let stats = result.stats;
    let batches = result.batches.map_err(move |source| {
        let status = Status::from(SchedulerError::Execute { query: query.clone(), source });
        FlightError::Tonic(Box::new(status))
    });
    let batches = until_cancelled(batches, running);
    let schema = Arc::new(client_schema(&result.schema));
    let to_client = Arc::clone(&schema);
    let batches = batches.map(move |batch| batch.and_then(|b| Ok(to_client_batch(b, &to_client)?)));
    let data = glaux_proto::with_trailer(schema, batches, true, false, move || stats.snapshot().to_json().into())
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::internal(other.to_string()),
        });
    Ok(Box::pin(data))
}

/// The result a statement produced when it ran at `GetFlightInfo`: its text, or no columns and
/// no rows.
fn executed_result(handle: StatementHandle) -> Result<DoGetStream, Status> {
    let batch = if handle.result_column.is_empty() {
        RecordBatch::new_empty(Arc::new(Schema::empty()))
    } else {
        let schema = Arc::new(Schema::new(vec![Field::new(&handle.result_column, DataType::Utf8, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(handle.result))])
            .map_err(|e| Status::internal(e.to_string()))?
    };
    Ok(batch_stream(batch))
}

/// Ends `batches` with a "cancelled" error once the client cancels the statement, dropping the
/// query (and so cancelling its tasks).
fn until_cancelled<S>(batches: S, running: Running) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
{
    let token = running.token.clone();
    let cancelled = stream::once(async move {
        let cancelled = running.token.is_cancelled();
        drop(running);
        cancelled.then(|| Err(FlightError::Tonic(Box::new(Status::from(SchedulerError::Cancelled)))))
    });
    batches.take_until(token.cancelled_owned()).chain(cancelled.filter_map(futures::future::ready))
}

/// One batch as a `DoGet` stream.
pub(super) fn batch_stream(batch: RecordBatch) -> DoGetStream {
    let schema = batch.schema();
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::iter([Ok(batch)]))
        .map_err(|e| Status::internal(e.to_string()));
    Box::pin(data)
}

/// Where an ingest command writes. Temporary tables and transactions are refused (Glaux has
/// neither); so is another catalog than Glaux's.
pub(super) fn ingest_target(command: &CommandStatementIngest) -> Result<IngestTarget, Status> {
    use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
    let refused = |what: &str| Status::invalid_argument(format!("bulk ingest: {what} is not supported"));
    if command.temporary {
        return Err(refused("a temporary table"));
    }
    if command.transaction_id.is_some() {
        return Err(refused("a transaction"));
    }
    if command.catalog.as_deref().is_some_and(|c| c != glaux_catalog::DEFAULT_CATALOG) {
        return Err(refused("a catalog other than glaux"));
    }
    let options = command.table_definition_options.unwrap_or_default();
    let if_exists = match TableExistsOption::try_from(options.if_exists) {
        Ok(TableExistsOption::Append) => IfExists::Append,
        Ok(TableExistsOption::Replace) => IfExists::Replace,
        _ => IfExists::Fail,
    };
    let create = matches!(TableNotExistOption::try_from(options.if_not_exist), Ok(TableNotExistOption::Create));
    Ok(IngestTarget { database: command.schema.clone(), table: command.table.clone(), if_exists, create })
}

/// The client's batches as a stream of rows (its schema read from its first message).
pub(super) async fn ingested_rows(
    data: arrow_flight::sql::server::PeekableFlightDataStream,
) -> Result<datafusion::physical_plan::SendableRecordBatchStream, Status> {
    let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
        data.map_err(|status| FlightError::Tonic(Box::new(status))),
    );
    let first = batches.next().await.transpose().map_err(|e| Status::invalid_argument(format!("bulk ingest: {e}")))?;
    let Some(schema) = first.as_ref().map(RecordBatch::schema).or_else(|| batches.schema().cloned()) else {
        return Err(Status::invalid_argument("bulk ingest: the stream has no schema"));
    };
    let rows = stream::iter(first.map(Ok))
        .chain(batches)
        .map(|batch| batch.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))));
    Ok(Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rows)))
}
