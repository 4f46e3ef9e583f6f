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
    IpcMessage, PollInfo, PutResult, SchemaResult, Ticket,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use glaux_proto::generated::TaskOutputTicket;
use glaux_proto::{
    Outsider, QueryId, StageId, TaskId, TaskOutputRead, TaskStats, TokenPurpose, contain_panics, status_of,
    with_trailer,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ExecutorError;
use crate::spool::SpoolRun;
use crate::task_key::TokenKey;
use crate::task_table::{BufferCell, Buffered, InstalledTask, TaskCounters, TaskKey, TaskTable};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct ExecutorFlight {
    pub tasks: Arc<TaskTable>,
    pub task_key: TokenKey,
}

impl ExecutorFlight {
    /// One output partition of a task: for a cluster member (a stage reader), or for a client
    /// holding a result endpoint's ticket (`outsider`: it came without the cluster credential).
    async fn task_output(&self, ticket: Ticket, outsider: bool) -> Result<BoxStream<FlightData>, ExecutorError> {
        let ticket = TaskOutputTicket::decode(ticket.ticket)
            .map_err(|e| ExecutorError::MalformedRequest(format!("ticket: {e}")))?;
        // A result endpoint's ticket says what its client was told; anything else is a member's.
        let for_client = !ticket.client_schema.is_empty();
        if outsider && !for_client {
            return Err(ExecutorError::MembersOnly);
        }
        // Only a holder of this task's read token gets its output.
        let purpose = if for_client { TokenPurpose::ClientRead } else { TokenPurpose::Read };
        self.task_key.check(&ticket.read_token, purpose, &ticket.query_id, ticket.stage_id, ticket.task_id)?;
        let compress = ticket.compress;
        let client_schema = for_client.then(|| client_schema(&ticket.client_schema)).transpose()?;
        let TaskOutputRead { batches, trailer } = open_output(&self.tasks, ticket)?;
        let data = match client_schema {
            // A client gets exactly the schema it was announced, plain arrays, and an empty
            // trailer (the query's statistics are the scheduler's to report).
            Some(schema) => {
                let to = Arc::clone(&schema);
                let batches = batches
                    .map(move |batch| batch.and_then(|b| conform(b, &to)))
                    .map_err(|e| FlightError::Tonic(Box::new(status_of(&e))));
                with_trailer(schema, batches, true, compress, move || {
                    trailer();
                    bytes::Bytes::new()
                })
                .boxed()
            }
            None => {
                let schema = batches.schema();
                // A failure reaches the reader with its kind (a lost executor, exhausted memory).
                let batches = batches.map_err(|e| FlightError::Tonic(Box::new(status_of(&e))));
                // Dictionaries stay dictionaries between cluster members: the consumer's schema expects them.
                with_trailer(schema, batches, false, compress, move || trailer().to_json().into()).boxed()
            }
        };
        let table = Arc::clone(&self.tasks);
        let data = data.inspect_ok(move |message| {
            let counters = &table.counters;
            let sent = if for_client { &counters.bytes_sent_clients } else { &counters.bytes_sent_members };
            TaskCounters::add(sent, (message.data_header.len() + message.data_body.len()) as u64);
        });
        Ok(Box::pin(data.map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::internal(other.to_string()),
        })))
    }
}

/// The schema a result endpoint's ticket announces.
fn client_schema(ipc: &[u8]) -> Result<SchemaRef, ExecutorError> {
    let schema = Schema::try_from(IpcMessage(ipc.to_vec().into()))
        .map_err(|e| ExecutorError::MalformedRequest(format!("the ticket's client schema: {e}")))?;
    Ok(Arc::new(schema))
}

/// `batch` as `schema` says: each column cast to its announced type (dictionaries and views
/// become plain arrays), under the announced names and nullability.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, DataFusionError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(DataFusionError::Execution(format!(
            "the result endpoint's ticket announces {} columns; the task produces {}",
            schema.fields().len(),
            batch.num_columns()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| match column.data_type() == field.data_type() {
            true => Ok(Arc::clone(column)),
            false => arrow::compute::cast(column, field.data_type()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
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
    // A member's reader sends the values of join filters pushed into this task's scans; they
    // apply before the task runs (a client's ticket carries none that count).
    if ticket.client_schema.is_empty() && !ticket.dynamic_filters.is_empty() {
        glaux_proto::apply_dynamic_filters(&task.plan, &ticket.dynamic_filters, &task.context);
    }
    // Made and run on the compute runtime; this one only passes the batches on (`Compute`).
    let batches = tasks.compute.stream(|| {
        Ok(match (&task.spool, task.buffer(partition)) {
            (Some(spool), _) => spool.read(
                partition,
                SpoolRun {
                    plan: Arc::clone(&task.plan),
                    context: Arc::clone(&task.context),
                    partitions: task.served(),
                    cancel: task.cancel.clone(),
                },
            ),
            (None, None) => task.plan.execute(index, Arc::clone(&task.context))?,
            (None, Some(buffer)) => broadcast(&task, index, buffer)?,
        })
    })?;
    let schema = batches.schema();
    let rows = Arc::new(AtomicU64::new(0));
    let (counted, task_rows, task_bytes) = (Arc::clone(&rows), Arc::clone(&task.rows_out), Arc::clone(&task.bytes_out));
    let batches = batches.inspect_ok(move |b| {
        counted.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
        task_rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
        // The bytes the batch's arrays reference (not the capacity of buffers it shares).
        let bytes: usize = b
            .columns()
            .iter()
            .map(|c| datafusion::arrow::array::Array::to_data(c.as_ref()).get_slice_memory_size().unwrap_or(0))
            .sum();
        task_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    });
    let batches = contain_panics(batches, |message| {
        DataFusionError::Execution(format!("the executor hit a bug while running this task: {message}"))
    });
    let table = Arc::clone(tasks);
    let failure = Arc::clone(&task.failure);
    let batches = batches.inspect_err(move |e| {
        TaskCounters::add(&table.counters.failed_outputs, 1);
        let _ = failure.set(glaux_proto::status_message(e.to_string()));
    });
    let batches = until_cancelled(batches, task.cancel.clone());
    let tasks = Arc::clone(tasks);
    let member = ticket.client_schema.is_empty();
    let trailer = move || {
        // The read that finishes the task also reports its scans, for the reader's metrics, and
        // to a member passes on the finished tasks' accounts (`EndedTask`): its own and those its
        // readers received. A client gets neither kind of account: the scheduler then asks.
        let mut stats = if tasks.finish_partition(&key, partition) {
            let account = task.account(&key);
            let counters = &tasks.counters;
            TaskCounters::add(&counters.finished, 1);
            TaskCounters::add(&counters.bytes_scanned, account.stats.bytes_scanned);
            TaskCounters::add(&counters.spilled_bytes, account.progress.spilled_bytes);
            let mut stats = TaskStats { reports: Vec::new(), ..account.stats.clone() };
            if member {
                stats.ended = task.ended.take();
                stats.ended.push(account);
            }
            stats
        } else {
            TaskStats::default()
        };
        stats.output_rows = rows.load(Ordering::Relaxed);
        TaskCounters::add(&tasks.counters.rows_sent, stats.output_rows);
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
) -> datafusion::common::Result<SendableRecordBatchStream> {
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
        let outsider = request.extensions().get::<Outsider>().is_some();
        Ok(Response::new(self.task_output(request.into_inner(), outsider).await?))
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
