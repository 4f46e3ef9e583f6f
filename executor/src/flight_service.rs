//! Arrow Flight on the executor: `DoGet` streams one output partition of one installed task.
//!
//! The partition starts executing when its `DoGet` arrives and is pulled batch by batch by the
//! consumer, so gRPC flow control is the backpressure. Nothing gates it on task slots: stages of
//! one query stream into each other, so a partition waiting for its input while holding a slot
//! would starve the very stage it waits for. Slots decide how many partitions the planner gives
//! an executor; the memory pool bounds what they hold. A broadcast partition (read by several
//! consumers) is computed once and replayed. The last message carries [`TaskStats`] in its
//! app_metadata.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use glaux_proto::generated::TaskOutputTicket;
use glaux_proto::{
    QueryId, StageId, TaskId, TaskOutputRead, TaskStats, TokenPurpose, collect_task_stats, contain_panics, status_of,
    with_trailer,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ExecutorError;
use crate::task_key::TokenKey;
use crate::task_table::{BufferCell, Buffered, InstalledTask, TaskKey, TaskTable};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct ExecutorFlight {
    pub tasks: Arc<TaskTable>,
    pub task_key: TokenKey,
}

impl ExecutorFlight {
    async fn task_output(&self, ticket: Ticket) -> Result<BoxStream<FlightData>, ExecutorError> {
        let ticket = TaskOutputTicket::decode(ticket.ticket)
            .map_err(|e| ExecutorError::MalformedRequest(format!("ticket: {e}")))?;
        // Only a holder of this task's read token gets its output.
        self.task_key.check(
            &ticket.read_token,
            TokenPurpose::Read,
            &ticket.query_id,
            ticket.stage_id,
            ticket.task_id,
        )?;
        let compress = ticket.compress;
        let TaskOutputRead { batches, trailer } = open_output(&self.tasks, ticket)?;
        let schema = batches.schema();
        // A failure reaches the reader with its kind (a lost executor, exhausted memory).
        let batches = batches.map_err(|e| FlightError::Tonic(Box::new(status_of(&e))));
        // Dictionaries stay dictionaries between cluster members: the consumer's schema expects them.
        let data =
            with_trailer(schema, batches, false, compress, move || trailer().to_json().into()).map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => Status::internal(other.to_string()),
            });
        Ok(Box::pin(data))
    }
}

/// Starts one read of an installed task's output partition: for Flight's `DoGet`, and for readers
/// on this executor (`LocalOutputs`).
pub fn open_output(tasks: &Arc<TaskTable>, ticket: TaskOutputTicket) -> Result<TaskOutputRead, ExecutorError> {
    let key = TaskKey {
        query: QueryId::from(ticket.query_id),
        stage: StageId(ticket.stage_id),
        task: TaskId(ticket.task_id),
    };
    let partition = ticket.partition;
    let task = tasks.get(&key).ok_or_else(|| ExecutorError::UnknownTask {
        query: key.query.clone(),
        stage: key.stage,
        task: key.task,
    })?;
    let Some(index) = task.plan_partition(partition) else {
        return Err(ExecutorError::UnknownPartition { query: key.query, stage: key.stage, task: key.task, partition });
    };
    let batches = match task.buffer(partition) {
        None => task.plan.execute(index, Arc::clone(&task.context))?,
        Some(buffer) => broadcast(&task, index, buffer)?,
    };
    let schema = batches.schema();
    let rows = Arc::new(AtomicU64::new(0));
    let (counted, task_rows) = (Arc::clone(&rows), Arc::clone(&task.rows_out));
    let batches = batches.inspect_ok(move |b| {
        counted.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
        task_rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
    });
    let batches = contain_panics(batches, |message| {
        DataFusionError::Execution(format!("the executor hit a bug while running this task: {message}"))
    });
    let batches = until_cancelled(batches, task.cancel.clone());
    let tasks = Arc::clone(tasks);
    let plan = Arc::clone(&task.plan);
    let bytes_read = Arc::clone(&task.bytes_read);
    let trailer = move || {
        // The read that finishes the task also reports its scans, for the reader's metrics; the
        // query's totals come from every task when the scheduler ends the query.
        let mut stats = if tasks.finish_partition(&key, partition) {
            let mut stats = collect_task_stats(&plan);
            stats.bytes_scanned += bytes_read.load(Ordering::Relaxed);
            stats
        } else {
            TaskStats::default()
        };
        stats.output_rows = rows.load(Ordering::Relaxed);
        stats
    };
    Ok(TaskOutputRead { batches: Box::pin(RecordBatchStreamAdapter::new(schema, batches)), trailer: Box::new(trailer) })
}

/// A broadcast partition: the first read computes and keeps its batches (reserving their memory
/// in the executor's pool), every read replays them.
fn broadcast(
    task: &Arc<InstalledTask>,
    partition: usize,
    buffer: BufferCell,
) -> Result<SendableRecordBatchStream, ExecutorError> {
    let schema = task.plan.schema();
    let task = Arc::clone(task);
    let batches = stream::once(async move {
        let buffered = buffer
            .get_or_try_init(|| async {
                let consumer = MemoryConsumer::new(format!("broadcast partition {partition}"));
                let reservation = consumer.register(task.context.memory_pool());
                let mut batches = task.plan.execute(partition, Arc::clone(&task.context))?;
                let mut kept = Vec::new();
                while let Some(batch) = batches.next().await {
                    let batch = batch?;
                    reservation.try_grow(batch.get_array_memory_size()).map_err(|e| {
                        DataFusionError::ResourcesExhausted(format!(
                            "the broadcast side of a join does not fit in this executor's memory: {e}"
                        ))
                    })?;
                    kept.push(batch);
                }
                Ok::<_, DataFusionError>(Arc::new(Buffered::new(kept, reservation)))
            })
            .await?;
        let batches = buffered.batches.clone();
        Ok::<_, DataFusionError>(stream::iter(batches.into_iter().map(Ok)))
    })
    .try_flatten();
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
}

/// Ends `batches` with an error as soon as `cancel` fires.
fn until_cancelled<S, T>(
    batches: S,
    cancel: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<T, DataFusionError>> + Send + 'static
where
    S: Stream<Item = Result<T, DataFusionError>> + Send + 'static,
    T: Send + 'static,
{
    let fired = cancel.clone();
    batches.take_until(cancel.cancelled_owned()).chain(
        stream::once(
            async move { fired.is_cancelled().then(|| Err(DataFusionError::Execution("query cancelled".into()))) },
        )
        .filter_map(futures::future::ready),
    )
}

fn unsupported<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!("executors do not serve {what}")))
}

#[tonic::async_trait]
impl FlightService for ExecutorFlight {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;
    type DoExchangeStream = BoxStream<FlightData>;

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        Ok(Response::new(self.task_output(request.into_inner()).await?))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("ListFlights")
    }

    async fn get_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        unsupported("GetFlightInfo")
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        unsupported("PollFlightInfo")
    }

    async fn get_schema(&self, _request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        unsupported("GetSchema")
    }

    async fn do_put(&self, _request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        unsupported("DoPut")
    }

    async fn do_action(&self, _request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("DoAction")
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("ListActions")
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("DoExchange")
    }
}
