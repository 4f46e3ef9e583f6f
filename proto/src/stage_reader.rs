//! `StageReaderExec`: reads the output partitions of a running stage over Arrow Flight.
//!
//! It is the consumer half of every exchange. The planner puts one where it cuts a plan into stages;
//! each of its partitions merges one or more `(executor, task, partition)` outputs of the stage
//! below: one for a gather or a broadcast, one per producing task for a hash shuffle (partition `j`
//! of the reader is bucket `j` of every task). Each output is fetched with a Flight `DoGet` when the
//! partition is first polled and streamed with gRPC flow control as backpressure.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::Ticket;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, exec_err, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt, stream};
use prost::Message;

use crate::channels::ClusterChannels;
use crate::dynamic_filters::ForwardedFilter;
use crate::generated::TaskOutputTicket;
use crate::ids::{ExecutorAddr, QueryId, StageId, TaskId};
use crate::local_outputs::{LocalOutputs, TaskOutputRead};
use crate::stats::{EndedTasks, TaskStats};
use crate::task_error::{TaskError, TaskFailure, lost_executor_words};
use crate::task_rerun::RerunHandle;

/// Where one partition of a stage's output is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOutput {
    /// The executor serving it (its Flight endpoint).
    pub executor: ExecutorAddr,
    pub task: TaskId,
    pub partition: u32,
    /// The scheduler's READ token for this task's output (see `task_token.rs`).
    pub read_token: bytes::Bytes,
}

#[derive(Clone, Debug)]
pub struct StageReaderExec {
    query: QueryId,
    stage: StageId,
    /// Per partition of the reader, the task outputs it merges.
    partitions: Vec<Vec<TaskOutput>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Dynamic join filters pushed into the stage it reads, whose values it sends (`dynamic_filters.rs`).
    dynamic_filters: Arc<Vec<ForwardedFilter>>,
    /// Filters of the hash joins above it in its own stage, applied to its rows (`join_filter_shares.rs`).
    join_filters: Arc<Vec<Arc<dyn PhysicalExpr>>>,
    /// Those of `join_filters` that partitioned joins produce, as the joins hold them: each
    /// partition sends its share to the outputs it reads (`dynamic_filters.rs`). Set where the plan
    /// runs (`share_producers`), never encoded.
    routed_filters: Arc<Vec<ForwardedFilter>>,
}

impl StageReaderExec {
    /// A reader with one partition per entry of `partitions`, each merging the task outputs listed.
    /// `eq_properties` describe each partition (a stage whose partitions are sorted stays sorted
    /// through a gather) and `partitioning` how rows are spread over them (a shuffle's hash).
    pub fn new(
        query: QueryId,
        stage: StageId,
        eq_properties: EquivalenceProperties,
        partitioning: Partitioning,
        partitions: Vec<Vec<TaskOutput>>,
    ) -> Self {
        let partitioning = if partitioning.partition_count() == partitions.len() {
            partitioning
        } else {
            Partitioning::UnknownPartitioning(partitions.len())
        };
        // Cooperative: consumers that loop over their input (an aggregation) give the runtime back
        // every few batches, so cancellation and a vanished consumer are noticed at once.
        let properties =
            PlanProperties::new(eq_properties, partitioning, EmissionType::Incremental, Boundedness::Bounded)
                .with_scheduling_type(SchedulingType::Cooperative);
        Self {
            query,
            stage,
            partitions,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            dynamic_filters: Arc::default(),
            join_filters: Arc::default(),
            routed_filters: Arc::default(),
        }
    }

    /// This reader forwarding `filters`' values to the stage it reads.
    pub fn with_dynamic_filters(self, filters: Vec<ForwardedFilter>) -> Self {
        Self { dynamic_filters: Arc::new(filters), ..self }
    }

    /// The dynamic join filters whose values it forwards.
    pub fn dynamic_filters(&self) -> &[ForwardedFilter] {
        &self.dynamic_filters
    }

    /// This reader dropping the rows that `filters` (hash joins' filters, in terms of its schema,
    /// from joins its partitions feed partition by partition) reject.
    pub fn with_join_filters(self, filters: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        Self { join_filters: Arc::new(filters), ..self }
    }

    pub fn join_filters(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.join_filters
    }

    /// This reader sending each partition's share of `filters` (partitioned joins' own, among its
    /// join filters) to the outputs that partition reads.
    pub fn with_routed_filters(self, filters: Vec<ForwardedFilter>) -> Self {
        Self { routed_filters: Arc::new(filters), ..self }
    }

    pub fn query(&self) -> &QueryId {
        &self.query
    }

    pub fn stage(&self) -> StageId {
        self.stage
    }

    /// Per partition, the task outputs it reads.
    pub fn partitions(&self) -> &[Vec<TaskOutput>] {
        &self.partitions
    }

    /// This reader reading each task that `moved_to` names from its new executor (a task run
    /// again elsewhere, retry policy `task`).
    pub fn relocated(&self, moved_to: &dyn Fn(TaskId) -> Option<ExecutorAddr>) -> Self {
        let mut relocated = self.clone();
        for output in relocated.partitions.iter_mut().flatten() {
            if let Some(executor) = moved_to(output.task) {
                output.executor = executor;
            }
        }
        relocated.metrics = ExecutionPlanMetricsSet::new();
        relocated
    }

    /// A reader of only the listed partitions of this one, in that order.
    pub fn subset(&self, partitions: &[u32]) -> Result<Self> {
        let chosen = partitions.iter().map(|&p| self.partitions.get(p as usize).cloned()).collect::<Option<Vec<_>>>();
        let Some(chosen) = chosen else {
            return internal_err!("stage {} reader has no partitions {partitions:?}", self.stage);
        };
        let eq_properties = self.properties.eq_properties.clone();
        // A task's plan narrows every partition-wise input by the same partitions, in the same
        // order: its partition `i` holds the same hash bucket on every input, so a hash-partitioned
        // reader stays hash-partitioned (by the same expressions) over the buckets it keeps. Nodes
        // that need their inputs partitioned alike (a union's `InterleaveExec`, a partitioned hash
        // join) keep that contract inside the task.
        let partitioning = match self.properties.output_partitioning() {
            Partitioning::Hash(exprs, _) => Partitioning::Hash(exprs.clone(), chosen.len()),
            _ => Partitioning::UnknownPartitioning(chosen.len()),
        };
        let subset = Self::new(self.query.clone(), self.stage, eq_properties, partitioning, chosen);
        Ok(Self {
            dynamic_filters: Arc::clone(&self.dynamic_filters),
            join_filters: Arc::clone(&self.join_filters),
            routed_filters: Arc::clone(&self.routed_filters),
            ..subset
        })
    }
}

impl DisplayAs for StageReaderExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mut executors: Vec<&ExecutorAddr> = self.partitions.iter().flatten().map(|o| &o.executor).collect();
        executors.sort_unstable();
        executors.dedup();
        let sources = self.partitions.iter().map(Vec::len).max().unwrap_or(0);
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "StageReaderExec: stage={}, partitions={}, {}, executors={}",
                    self.stage,
                    self.partitions.len(),
                    if sources > 1 { format!("each merging {sources} tasks") } else { "one task each".into() },
                    executors.len()
                )?;
                match self.join_filters.len() {
                    0 => Ok(()),
                    n => write!(f, ", join filters={n}"),
                }
            }
            DisplayFormatType::TreeRender => write!(f, "stage: {}", self.stage),
        }
    }
}

/// Reads one counter out of a trailer.
type StatField = fn(&TaskStats) -> u64;

/// Counters fed from one partition's trailer into the reader's metrics, and where the finished
/// tasks' accounts it carries go (the session's [`EndedTasks`], if it has one).
pub(crate) struct TrailerCounters {
    counters: [(Count, StatField); 7],
    ended: Option<Arc<EndedTasks>>,
}

impl TrailerCounters {
    pub(crate) fn new(metrics: &ExecutionPlanMetricsSet, partition: usize, ended: Option<Arc<EndedTasks>>) -> Self {
        let c = |name: &'static str| MetricBuilder::new(metrics).counter(name, partition);
        let counters: [(Count, StatField); 7] = [
            (c("task_output_rows"), |s| s.output_rows),
            (c("bytes_scanned"), |s| s.bytes_scanned),
            (c("files_scanned"), |s| s.files_scanned),
            (c("row_groups_pruned"), |s| s.row_groups_pruned),
            (c("row_groups_matched"), |s| s.row_groups_matched),
            (c("page_rows_pruned"), |s| s.page_rows_pruned),
            (c("pushdown_rows_pruned"), |s| s.pushdown_rows_pruned),
        ];
        Self { counters, ended }
    }

    /// Records the trailer of a read from `executor`.
    pub(crate) fn record(&self, stats: &TaskStats, executor: &ExecutorAddr) {
        for (count, field) in &self.counters {
            count.add(field(stats) as usize);
        }
        if let Some(ended) = &self.ended {
            ended.receive(&executor.to_string(), &stats.ended);
        }
    }
}

impl ExecutionPlan for StageReaderExec {
    fn name(&self) -> &str {
        "StageReaderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    /// Its forwarded and applied filters: a join above sees that its filter has a consumer.
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for filter in self.dynamic_filters.iter().map(|forwarded| &forwarded.filter).chain(self.join_filters.iter()) {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)] // DataFusion 55 still requires this deprecated method of every node
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("StageReaderExec is a leaf");
        }
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let Some(sources) = self.partitions.get(partition).cloned() else {
            return internal_err!("StageReaderExec of stage {} has no partition {partition}", self.stage);
        };
        let Some(channels) = context.session_config().get_extension::<ClusterChannels>() else {
            return internal_err!("StageReaderExec needs ClusterChannels in the session config");
        };
        let rerun = context.session_config().get_extension::<RerunHandle>();
        // Only a reader that keeps whole tasks needs the other partitions' outputs.
        let keeps_tasks = rerun.as_ref().is_some_and(|handle| handle.keep_sources);
        // The producing partition this reader partition reads from every task: where its shares go.
        let own_output = sources.first().map(|s| s.partition).filter(|p| sources.iter().all(|s| s.partition == *p));
        let source_context = SourceContext {
            query: self.query.clone(),
            stage: self.stage,
            channels,
            local: context.session_config().get_extension::<LocalOutputs>(),
            schema: self.schema(),
            counters: Arc::new(TrailerCounters::new(
                &self.metrics,
                partition,
                context.session_config().get_extension::<EndedTasks>(),
            )),
            filters: Arc::clone(&self.dynamic_filters),
            await_filters: context.session_config().options().optimizer.enable_join_dynamic_filter_pushdown,
            routed: RoutedShares {
                filters: Arc::clone(&self.routed_filters),
                partition,
                partitions: self.partitions.len(),
                output: own_output,
            },
            runtime: context.runtime_env(),
            all_outputs: if keeps_tasks { Arc::new(self.partitions.clone()) } else { Arc::default() },
        };
        let streams =
            sources.into_iter().map(|source| read_task_output(source_context.clone(), source, rerun.clone()).boxed());
        // A shuffle partition reads every producing task at once, whichever has data first.
        let batches = stream::select_all(streams);
        let mut output: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(self.schema(), batches));
        if !self.join_filters.is_empty() {
            let dropped = MetricBuilder::new(&self.metrics).counter("join_filter_rows_dropped", partition);
            let filters = self.join_filters.to_vec();
            output = crate::join_filter_shares::filtered(output, filters, partition, self.partitions.len(), dropped);
        }
        Ok(make_cooperative(output))
    }
}

/// What every source of a reader partition needs to open its task output.
#[derive(Clone)]
pub(crate) struct SourceContext {
    pub(crate) query: QueryId,
    pub(crate) stage: StageId,
    pub(crate) channels: Arc<ClusterChannels>,
    pub(crate) local: Option<Arc<LocalOutputs>>,
    pub(crate) schema: SchemaRef,
    pub(crate) counters: Arc<TrailerCounters>,
    pub(crate) filters: Arc<Vec<ForwardedFilter>>,
    /// The task's joins complete their filters (dynamic filters are on in its session), so a
    /// task output opens only once the filters it is sent have their values. Operators such as
    /// `CoalescePartitionsExec` start their inputs at once, before the joins above have built
    /// their tables; waiting here is what lets the filter reach a join's build side below them.
    /// The producing joins never wait on this reader: its rows feed their probe sides.
    pub(crate) await_filters: bool,
    pub(crate) routed: RoutedShares,
    /// Where a source read whole is kept beyond memory (retry policy `task`, `kept_source.rs`).
    pub(crate) runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    /// Every task output the reader reads (all its partitions'): a task kept whole is fetched
    /// whole, whichever of its partitions is asked for first (retry policy `task`).
    pub(crate) all_outputs: Arc<Vec<Vec<TaskOutput>>>,
}

/// The shares of partitioned joins' filters a reader partition sends with its tickets.
#[derive(Clone)]
pub(crate) struct RoutedShares {
    filters: Arc<Vec<ForwardedFilter>>,
    /// The reader's partition, of `partitions`: the joins' partition whose share it sends.
    partition: usize,
    partitions: usize,
    /// The producing tasks' output partition the reader partition reads; only tickets for it get
    /// the shares (a task kept whole is also read for its other partitions).
    output: Option<u32>,
}

impl RoutedShares {
    fn values(&self, output: u32) -> Vec<crate::generated::DynamicFilterValue> {
        if self.filters.is_empty() || self.output != Some(output) {
            return Vec::new();
        }
        crate::dynamic_filters::routed_values(&self.filters, self.partition, self.partitions, output)
    }
}

pub(crate) type SourceStream = futures::stream::BoxStream<'static, Result<RecordBatch, TaskError>>;

/// One task output, read to its end. When its executor is lost and the session has a
/// [`crate::TaskRerun`], the task runs again elsewhere and reading resumes there after the rows already
/// passed on. Under retry policy `task` the whole task is kept first (`kept_source.rs`).
fn read_task_output(
    context: SourceContext,
    output: TaskOutput,
    rerun: Option<Arc<RerunHandle>>,
) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
    if let Some(handle) = rerun.as_ref().filter(|handle| handle.keep_sources) {
        return crate::kept_source::read_kept(context, output, Arc::clone(handle));
    }
    struct State {
        output: TaskOutput,
        /// The task's attempt being read (the first run is attempt 0).
        attempt: u32,
        current: Option<SourceStream>,
        /// Rows passed on, and rows of the current stream still to skip (passed on before a re-run).
        delivered: u64,
        skip: u64,
        reruns: usize,
        done: bool,
    }
    let state = State { output, attempt: 0, current: None, delivered: 0, skip: 0, reruns: 0, done: false };
    stream::unfold(state, move |mut state| {
        let (context, rerun) = (context.clone(), rerun.clone());
        async move {
            while !state.done {
                let item = match &mut state.current {
                    None => open_task_output(&context, &state.output).await.map(|opened| state.current = Some(opened)),
                    Some(batches) => match batches.next().await {
                        None => return None,
                        Some(Ok(batch)) => {
                            let rows = batch.num_rows() as u64;
                            let skipped = rows.min(state.skip);
                            state.skip -= skipped;
                            if skipped == rows {
                                continue;
                            }
                            state.delivered += rows - skipped;
                            return Some((Ok(batch.slice(skipped as usize, (rows - skipped) as usize)), state));
                        }
                        Some(Err(e)) => Err(e),
                    },
                };
                let Err(error) = item else { continue };
                state.done = true;
                // The loss of this source's own executor can be made good by running its task
                // elsewhere (a loss it relays from further down only under retry policy `task`).
                let lost = error.lost_executor().cloned();
                let rerun = rerun.as_ref().filter(|handle| {
                    lost.as_ref() == Some(&state.output.executor) && state.reruns < handle.max_per_source
                });
                let task = state.output.task;
                let (Some(rerun), Some(lost)) = (rerun, lost) else {
                    return Some((Err(DataFusionError::External(Box::new(error))), state));
                };
                match rerun.rerun.rerun(context.stage, task, state.attempt, &lost, state.delivered).await {
                    Ok(again) => {
                        tracing::warn!(query = %context.query, stage = %context.stage, %task, %lost,
                            executor = %again.executor, attempt = again.attempt, delivered = state.delivered,
                            "task re-run after losing an executor");
                        state.output.executor = again.executor;
                        state.attempt = again.attempt;
                        state.current = None;
                        state.skip = state.delivered;
                        state.reruns += 1;
                        state.done = false;
                    }
                    Err(why) => {
                        let error = TaskError { message: format!("{}; not re-run: {why}", error.message), ..error };
                        return Some((Err(DataFusionError::External(Box::new(error))), state));
                    }
                }
            }
            None
        }
    })
    .boxed()
}

/// Opens one task output: taken from this executor when it lives here, over Flight otherwise.
pub(crate) async fn open_task_output(context: &SourceContext, output: &TaskOutput) -> Result<SourceStream, TaskError> {
    let SourceContext { query, stage, channels, local, schema, counters, filters, await_filters, routed, .. } =
        context.clone();
    if await_filters {
        crate::dynamic_filters::completed(&filters).await;
    }
    let ticket = TaskOutputTicket {
        query_id: query.to_string(),
        stage_id: stage.0,
        task_id: output.task.0,
        partition: output.partition,
        compress: worth_compressing(&output.executor),
        read_token: output.read_token.to_vec(),
        client_schema: Vec::new(),
        dynamic_filters: [crate::dynamic_filters::values(&filters), routed.values(output.partition)].concat(),
    };
    let (task, executor) = (output.task, output.executor.clone());
    // Every failure names where it happened, keeping its kind.
    let place = format!("stage {stage} task {task} on executor {executor}");
    let failed = {
        let place = place.clone();
        move |e: &DataFusionError| TaskError::from(e).context(&place)
    };
    if let Some(opened) = local.as_ref().and_then(|local| local.open(&executor, ticket.clone())) {
        let TaskOutputRead { batches, trailer } = opened.map_err(|e| failed(&e))?;
        let mut trailer = Some(trailer);
        let batches = batches.map_err(move |e| failed(&e)).chain(stream::poll_fn(move |_| {
            if let Some(trailer) = trailer.take() {
                counters.record(&trailer(), &executor);
            }
            std::task::Poll::Ready(None)
        }));
        return Ok(batches.boxed());
    }
    let lost = |message: String| TaskError::new(TaskFailure::LostExecutor(executor.clone()), message).context(&place);
    let mut client =
        channels.flight(&executor).map_err(|e| lost(format!("{} ({e})", lost_executor_words(&executor))))?;
    let response = client
        .do_get(Ticket { ticket: ticket.encode_to_vec().into() })
        .await
        .map_err(|status| TaskError::from_status(&executor, &status).context(&place))?;
    let messages = response
        .into_inner()
        .inspect_ok(move |message| channels.count_received(message.data_header.len() + message.data_body.len()))
        .map_err(move |status| arrow_flight::error::FlightError::Tonic(Box::new(status)));
    let (messages, unread) =
        crate::unread_trailer::through_slot(messages.boxed(), Arc::clone(&counters), executor.clone());
    Ok(unread.held_by(decode_batches(FlightDataDecoder::new(messages), schema, counters, executor, place).boxed()))
}

fn decode_batches(
    decoder: FlightDataDecoder,
    schema: SchemaRef,
    counters: Arc<TrailerCounters>,
    executor: ExecutorAddr,
    place: String,
) -> impl futures::Stream<Item = Result<RecordBatch, TaskError>> + Send {
    decoder.filter_map(move |message| {
        let item = match message {
            Err(arrow_flight::error::FlightError::Tonic(status)) => {
                Some(Err(TaskError::from_status(&executor, &status).context(&place)))
            }
            Err(other) => Some(Err(TaskError::new(TaskFailure::Failed, other.to_string()).context(&place))),
            Ok(message) => {
                if let Some(stats) = TaskStats::from_json(&message.app_metadata()) {
                    counters.record(&stats, &executor);
                }
                match message.payload {
                    DecodedPayload::RecordBatch(batch) if batch.num_rows() > 0 => {
                        Some(RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()).map_err(|e| {
                            let message = format!("batch does not match the stage schema: {e}");
                            TaskError::new(TaskFailure::Failed, message).context(&place)
                        }))
                    }
                    _ => None,
                }
            }
        };
        futures::future::ready(item)
    })
}

/// Whether batches from `executor` should travel LZ4-compressed: between hosts the network is the
/// bottleneck and Arrow data compresses well; on one host (loopback) compressing costs more CPU
/// than the copy it saves.
fn worth_compressing(executor: &ExecutorAddr) -> bool {
    let host = executor.host();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Used by the codec: rebuilds a reader from its wire form.
pub(crate) fn reader_from_parts(
    query: QueryId,
    stage: StageId,
    properties: EquivalenceProperties,
    partitioning: Partitioning,
    partitions: Vec<Vec<TaskOutput>>,
) -> Result<StageReaderExec> {
    if partitions.is_empty() {
        return exec_err!("a stage reader needs at least one partition");
    }
    Ok(StageReaderExec::new(query, stage, properties, partitioning, partitions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_only_between_hosts() {
        let compresses = |addr: &str| worth_compressing(&ExecutorAddr::parse(addr).unwrap());
        assert!(!compresses("127.0.0.1:5000"));
        assert!(!compresses("localhost:5000"));
        assert!(!compresses("[::1]:5000"));
        assert!(compresses("10.0.0.7:5000"));
        assert!(compresses("executor-3.cluster.local:5000"));
    }
}
