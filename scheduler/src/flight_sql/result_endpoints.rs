//! Large results read from the executors: a client that sends [`ENDPOINTS_HEADER`]`: executors`
//! with `GetFlightInfo` says it can read a `FlightInfo`'s endpoints at their locations, so a
//! query whose final stage is a plain gather answers with one endpoint per gathered partition,
//! each on the executor that produces it (`grpc+tcp://<executor>`), and the client reads them in
//! parallel. Every other statement, and every query when the doors or the cluster use TLS
//! (executors serve clients in plain gRPC only), gets the one endpoint on the scheduler as without
//! the header: a client reads whatever endpoints it is given.
//!
//! The query starts at `GetFlightInfo` (its tickets name its tasks); it holds its place among its
//! user's statements until every endpoint has been read, and `CancelFlightInfo` ends it (each
//! ticket names its query). An endpoint's ticket carries a token for reading exactly that task's
//! output as a client, and the schema the `FlightInfo` announces, which is what the executor sends.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::StreamExt;
use glaux_proto::generated::TaskOutputTicket;
use prost::Message;
use tonic::{Request, Status};

use super::cancel::{Running, RunningStatements};
use super::schema_ipc;
use crate::background::Background;
use crate::client_types::client_schema;
use crate::engine::{PlannedStatement, QueryEngine};
use crate::error::SchedulerError;
use crate::query::QueryResult;

/// The request header asking for result endpoints on the executors (`executors`), or on the
/// scheduler (`scheduler`, the default). ADBC sends it with
/// `adbc.flight.sql.rpc.call_header.x-glaux-endpoints`.
pub const ENDPOINTS_HEADER: &str = "x-glaux-endpoints";

/// What a door needs to serve results from the executors.
pub(super) struct ExecutorEndpoints {
    pub running: Arc<RunningStatements>,
    pub background: Background,
}

/// Whether the request asks for endpoints on the executors.
pub(super) fn requested<T>(request: &Request<T>) -> Result<bool, Status> {
    match request.metadata().get(ENDPOINTS_HEADER).map(|v| v.to_str()) {
        None | Some(Ok("scheduler")) => Ok(false),
        Some(Ok("executors")) => Ok(true),
        Some(_) => Err(SchedulerError::MalformedRequest(format!(
            "{ENDPOINTS_HEADER} is either 'scheduler' (the default) or 'executors'"
        ))
        .into()),
    }
}

/// The query a result endpoint's ticket reads, if it is one.
pub(super) fn query_of(ticket: &Ticket) -> Option<String> {
    let ticket = TaskOutputTicket::decode(ticket.ticket.clone()).ok()?;
    (!ticket.client_schema.is_empty()).then_some(ticket.query_id)
}

impl ExecutorEndpoints {
    /// Launches `planned` for its client to read from the executors, and its `FlightInfo`; `None`
    /// (nothing started) if its result must come through the scheduler.
    pub async fn launch(
        &self,
        engine: &QueryEngine,
        planned: PlannedStatement,
        schema: &SchemaRef,
        descriptor: FlightDescriptor,
    ) -> Result<Option<FlightInfo>, Status> {
        let Some(launched) = engine.run_at_executors(planned).await? else { return Ok(None) };
        let schema = client_schema(schema);
        let announced = schema_ipc(&schema)?.to_vec();
        let mut info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
            .with_descriptor(descriptor)
            .with_ordered(false);
        for endpoint in launched.endpoints {
            let ticket = TaskOutputTicket { client_schema: announced.clone(), ..endpoint.ticket };
            info = info.with_endpoint(
                FlightEndpoint::new()
                    .with_ticket(Ticket { ticket: ticket.encode_to_vec().into() })
                    .with_location(format!("grpc+tcp://{}", endpoint.executor)),
            );
        }
        let running = self.running.start(&launched.result.query.to_string());
        self.background.spawn(until_read(launched.result, running));
        Ok(Some(info))
    }
}

/// Holds the query until its client has read every endpoint (its result ends), or until its
/// statement is cancelled (dropping it ends the query on every executor).
async fn until_read(mut result: QueryResult, running: Running) {
    let query = result.query.clone();
    loop {
        tokio::select! {
            item = result.batches.next() => match item {
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%query, "a query read from the executors failed: {error}");
                    break;
                }
                None => break,
            },
            () = running.token.cancelled() => {
                tracing::debug!(%query, "a query read from the executors was cancelled");
                break;
            }
        }
    }
}
