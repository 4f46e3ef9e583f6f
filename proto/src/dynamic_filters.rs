//! Dynamic join filters across exchanges.
//!
//! In one process, a hash join that has built its table updates a `DynamicFilterPhysicalExpr`
//! that DataFusion pushed into the scans of its probe side, which then skip what cannot match.
//! Cut into stages, such a scan often lies in another stage, run by another task, maybe on
//! another executor, each with its own decoded copy of the filter (the same expression id). So:
//! - the planner gives each [`StageReaderExec`](crate::StageReaderExec) the filters of
//!   broadcast-build (`CollectLeft`) joins that were pushed into the stage it reads, or into a
//!   stage below that ([`ForwardedFilter`]); the reader shows them as its expressions, so the join
//!   above it knows its filter has a consumer and computes it;
//! - the reader opens a producing task's output only once the filters produced in its own plan are
//!   complete ([`completed`]: an operator such as `CoalescePartitionsExec` starts its inputs at
//!   once, before the joins above have built their tables), and sends the values of those of its
//!   filters that are complete in the ticket ([`values`]);
//! - the producing task applies them to every copy of the filter in its plan before it runs
//!   ([`apply`]): its scans skip row groups and rows, and its own readers pass the values on.
//!
//! A broadcast-build join's filter travels whole: every task of the join's stage builds the same
//! table, so the first reader to arrive sends what all would, and one value serves every consumer
//! of a shuffle. A partitioned join's filter travels as shares: the reader partition under the
//! join that reads output partition `p` of a hash shuffle sends its join partition's share, marked
//! `p` ([`routed_values`]), and the shuffle's task routes its scans' rows to the shares by the
//! hash it sends rows by, letting through rows bound for a partition whose share has not come
//! yet (`join_filter_shares::with_share`; TPC-H q17: the average quantity of only the parts the
//! outer join kept). Where the scans that hold the filter lie deeper (the shuffle's task joins
//! two stages it reads), the planner gives the filter to that task's readers too, and they pass
//! on the shares the task got, naming the join's partition count ([`values`]; TPC-H q18: the `IN`
//! subquery's orders reach the orders scan under the join of customers with orders). Every
//! join's filter is also applied by the readers under the join (`join_filter_shares.rs`).
//! The lookup into a join's hash table cannot travel; in its place go the build side's keys as
//! `IN` lists when there are few, or a Bloom filter of them when they are not too many
//! (`build_keys.rs`, `bloom.rs`).
//! A filter is an optimization: one that cannot be sent or read is skipped, never an error.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::IpcMessage;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_plan::execution_plan::ReplaceChildrenOptions;
use datafusion::physical_plan::joins::{HashJoinExec, HashTableLookupExpr, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ChildrenPropertiesMode, ExecutionPlan, Partitioning};
use datafusion_proto::physical_plan::from_proto::parse_physical_expr;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr;
use datafusion_proto::protobuf::PhysicalExprNode;
use futures::FutureExt;
use prost::Message;

use crate::build_keys::{BuildKeys, BuildKeysExec};
use crate::codec::{GlauxCodec, schema_ipc};
use crate::generated::DynamicFilterValue;
use crate::join_filter_shares::with_share;
use crate::stage_reader::StageReaderExec;

/// A dynamic filter a stage reader forwards: the join's own filter expression (in terms of the
/// join's probe-side input) and that input's schema.
#[derive(Clone, Debug)]
pub struct ForwardedFilter {
    pub filter: Arc<dyn PhysicalExpr>,
    pub probe_schema: SchemaRef,
    /// `filter` is the producing join's own, in the plan that runs the reader: it completes when
    /// that join has built its table. A decoded copy whose join runs in another stage completes
    /// only if a ticket brought its value.
    pub produced_here: bool,
    /// The distinct keys of the producing join's build side, one set per partition of the join,
    /// when this task runs that join: sent, when they are few, as `IN` lists in place of the
    /// hash-table lookup that cannot travel (a broadcast join's one set with its filter, a
    /// partitioned join's set `i` with the share of partition `i`). Empty when not kept.
    pub build_keys: Vec<Arc<BuildKeys>>,
}

impl ForwardedFilter {
    pub fn id(&self) -> Option<u64> {
        self.filter.expression_id()
    }
}

/// The filters broadcast-build hash joins in `plan` produce, by expression id.
pub fn produced_filters(plan: &Arc<dyn ExecutionPlan>) -> HashMap<u64, ForwardedFilter> {
    filters_of_joins(plan, PartitionMode::CollectLeft, true)
}

/// The filters partitioned hash joins in `plan` produce, by expression id: a stage reader between
/// such a join's shuffle and the scans that hold its filter passes on the shares it gets
/// ([`values`]; TPC-H q18: the `IN` subquery's orders reach the orders scan under the join with
/// customers).
pub fn partitioned_filters(plan: &Arc<dyn ExecutionPlan>) -> HashMap<u64, ForwardedFilter> {
    filters_of_joins(plan, PartitionMode::Partitioned, false)
}

/// The filters the hash joins of `mode` in `plan` produce, by expression id.
fn filters_of_joins(
    plan: &Arc<dyn ExecutionPlan>,
    mode: PartitionMode,
    produced_here: bool,
) -> HashMap<u64, ForwardedFilter> {
    let mut produced = HashMap::new();
    // The closure never fails, so neither does the walk.
    let _ = plan.apply(|node| {
        if let Some(join) = node.downcast_ref::<HashJoinExec>()
            && *join.partition_mode() == mode
        {
            for filter in node.dynamic_expressions_produced() {
                if let Some(id) = filter.expression_id() {
                    let probe_schema = join.right().schema();
                    produced
                        .insert(id, ForwardedFilter { filter, probe_schema, produced_here, build_keys: Vec::new() });
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    produced
}

/// The expression ids of the dynamic filters anywhere in `plan`'s expressions (a stage reader's
/// forwarded filters among them).
pub fn filter_ids(plan: &Arc<dyn ExecutionPlan>) -> Vec<u64> {
    filter_ids_where(plan, |_| true)
}

/// [`filter_ids`] of the filters `keep` accepts, sorted, each once.
pub(crate) fn filter_ids_where(
    plan: &Arc<dyn ExecutionPlan>,
    keep: impl Fn(&Arc<dyn PhysicalExpr>) -> bool,
) -> Vec<u64> {
    let mut ids = Vec::new();
    let _ = plan.apply(|node| {
        node.apply_expressions(&mut |root| {
            root.apply(|expr| {
                if expr.is::<DynamicFilterPhysicalExpr>() && keep(expr) {
                    ids.extend(expr.expression_id());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Waits until every one of `filters` produced in the reader's own plan is complete: each join
/// producing one has built its table. (The others are complete already if ever: their values
/// came with the ticket that opened this task.)
pub async fn completed(filters: &[ForwardedFilter]) {
    for forwarded in filters.iter().filter(|f| f.produced_here) {
        if let Some(filter) = forwarded.filter.downcast_ref::<DynamicFilterPhysicalExpr>() {
            filter.wait_complete().await;
        }
    }
}

/// The values of `filters` that are complete, for a ticket; of a partitioned join's filter that
/// this task passes on (it got the shares as the shuffle between the join and the scans that
/// hold the filter), the shares in so far.
pub fn values(filters: &[ForwardedFilter]) -> Vec<DynamicFilterValue> {
    filters
        .iter()
        .flat_map(|forwarded| {
            let Some(filter) = forwarded.filter.downcast_ref::<DynamicFilterPhysicalExpr>() else { return Vec::new() };
            let Ok(current) = filter.current() else { return Vec::new() };
            if filter.wait_complete().now_or_never().is_some() {
                return value(forwarded, &current, forwarded.build_keys.first()).into_iter().collect();
            }
            let Some((partitions, shares)) = crate::join_filter_shares::shares_in(&current) else { return Vec::new() };
            shares
                .iter()
                .filter_map(|(partition, share)| {
                    let value = value(forwarded, share, None)?;
                    Some(DynamicFilterValue {
                        partition: Some(*partition as u32),
                        partitions: Some(partitions as u32),
                        ..value
                    })
                })
                .collect()
        })
        .collect()
}

/// The shares of `routed` (partitioned joins' filters, as the joins hold them) that are complete
/// and that partition `partition` of `partitions` of a reader must pass, for a ticket to output
/// partition `output` of a producing task.
pub(crate) fn routed_values(
    routed: &[ForwardedFilter],
    partition: usize,
    partitions: usize,
    output: u32,
) -> Vec<DynamicFilterValue> {
    routed
        .iter()
        .filter_map(|forwarded| {
            forwarded.filter.downcast_ref::<DynamicFilterPhysicalExpr>()?.wait_complete().now_or_never()?;
            let share = crate::join_filter_shares::share(&forwarded.filter, partition, partitions)?;
            let build_keys = forwarded.build_keys.get(partition);
            Some(DynamicFilterValue { partition: Some(output), ..value(forwarded, &share, build_keys)? })
        })
        .collect()
}

/// `current` (`forwarded`'s value, or a share of it) for a ticket, with the build keys of the
/// join (partition) it comes from.
fn value(
    forwarded: &ForwardedFilter,
    current: &Arc<dyn PhysicalExpr>,
    build_keys: Option<&Arc<BuildKeys>>,
) -> Option<DynamicFilterValue> {
    // A lookup into the join's hash table cannot travel (it would serialize as `true`), nor can
    // a conjunct that does not serialize: both are left out, in favour of the build keys as IN
    // lists when this task kept them (as a Bloom filter when too many). What remains lets
    // through at least what the whole filter would.
    let (lookups, parts): (Vec<_>, Vec<_>) =
        split_conjunction(current).into_iter().partition(|c| c.is::<HashTableLookupExpr>());
    let mut conjuncts: Vec<Vec<u8>> = parts
        .iter()
        .filter_map(|c| serialize_physical_expr(c, &GlauxCodec).ok())
        .map(|node| node.encode_to_vec())
        .collect();
    // A forwarded filter is its join's own (or a copy of it): its children are the join's keys.
    let keys = forwarded.filter.children().into_iter().cloned().collect::<Vec<_>>();
    if (!lookups.is_empty() || conjuncts.len() < parts.len())
        && let Some(build_keys) = build_keys
    {
        let mut lists = build_keys.in_lists(&keys, &forwarded.probe_schema);
        if lists.is_empty() {
            lists.extend(build_keys.bloom(&keys, &forwarded.probe_schema));
        }
        conjuncts.extend(
            lists.iter().filter_map(|l| serialize_physical_expr(l, &GlauxCodec).ok()).map(|n| n.encode_to_vec()),
        );
    }
    if conjuncts.is_empty() {
        return None;
    }
    let children = keys
        .iter()
        .map(|c| serialize_physical_expr(c, &GlauxCodec).ok().map(|n| n.encode_to_vec()))
        .collect::<Option<Vec<_>>>()?;
    let schema = schema_ipc(&forwarded.probe_schema).ok()?;
    Some(DynamicFilterValue { id: forwarded.id()?, conjuncts, schema, children, partition: None, partitions: None })
}

/// Completes, with the values a reader sent, every copy in `plan` of the filters they name that
/// is not complete yet; a share adds its partition's part. Values that do not decode are skipped.
pub fn apply(plan: &Arc<dyn ExecutionPlan>, values: &[DynamicFilterValue], ctx: &TaskContext) {
    for value in values {
        let Some((expr, children)) = decode_value(value, ctx) else {
            tracing::debug!(filter = value.id, "a dynamic filter's value does not decode; skipped");
            continue;
        };
        // A share routes by the hash this task's shuffle sends rows by: only a hash shuffle over as
        // many expressions as the join has keys, with the share's partition among its outputs, takes
        // it; one passed on names the join's partition count.
        let routing = match value.partition {
            None => None,
            Some(partition) => {
                match value.partitions.map(|n| n as usize).or_else(|| hash_outputs(plan, children.len())) {
                    Some(outputs) if (partition as usize) < outputs && outputs <= MAX_SHARES => {
                        Some((partition as usize, outputs))
                    }
                    _ => {
                        tracing::debug!(filter = value.id, "a share for a task that is no such shuffle; skipped");
                        continue;
                    }
                }
            }
        };
        let _ = plan.apply(|node| {
            node.apply_expressions(&mut |root| {
                root.apply(|e| {
                    if e.expression_id() != Some(value.id) {
                        return Ok(TreeNodeRecursion::Continue);
                    }
                    match routing {
                        None => complete(e, &expr, &children),
                        Some((partition, outputs)) => add_share(e, &expr, &children, partition, outputs),
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
    }
}

/// The most partitions a share may route among (a bound on what a ticket makes a task build).
const MAX_SHARES: usize = 1 << 16;

/// Completes the copy `copy` of a filter with `expr`, in terms of the filter's `children`.
///
/// A copy pushed through other operators shows other children (its scan's columns) and shares
/// its state with every copy derived from it; `update` would store `expr` rewritten into this
/// copy's children, which the others would then read as if it were in the join's terms. So the
/// update goes through a twin that maps the join's children onto themselves: the state holds
/// `expr` as the join itself would have stored it, and every copy maps it onto its own children.
fn complete(copy: &Arc<dyn PhysicalExpr>, expr: &Arc<dyn PhysicalExpr>, children: &[Arc<dyn PhysicalExpr>]) {
    let Some(filter) = copy.downcast_ref::<DynamicFilterPhysicalExpr>() else { return };
    if filter.wait_complete().now_or_never().is_some() || filter.children().len() != children.len() {
        return;
    }
    let Ok(twin) = Arc::clone(copy).with_new_children(children.to_vec()) else { return };
    let Some(twin) = twin.downcast_ref::<DynamicFilterPhysicalExpr>() else { return };
    if twin.update(Arc::clone(expr)).is_ok() {
        twin.mark_complete();
    }
}

/// The number of partitions `plan` (a task's) hashes its rows into over `keys` expressions.
fn hash_outputs(plan: &Arc<dyn ExecutionPlan>, keys: usize) -> Option<usize> {
    let shuffle = plan.downcast_ref::<RepartitionExec>()?;
    match shuffle.partitioning() {
        Partitioning::Hash(exprs, outputs) if exprs.len() == keys => Some(*outputs),
        _ => None,
    }
}

/// Adds to the copy `copy` of a partitioned join's filter the share of output partition
/// `partition` of `partitions`, in terms of the filter's `children`, through a twin as
/// [`complete`] does; complete once every partition's share is in.
fn add_share(
    copy: &Arc<dyn PhysicalExpr>,
    share: &Arc<dyn PhysicalExpr>,
    children: &[Arc<dyn PhysicalExpr>],
    partition: usize,
    partitions: usize,
) {
    let Some(filter) = copy.downcast_ref::<DynamicFilterPhysicalExpr>() else { return };
    if filter.wait_complete().now_or_never().is_some() || filter.children().len() != children.len() {
        return;
    }
    let Ok(twin) = Arc::clone(copy).with_new_children(children.to_vec()) else { return };
    let Some(twin) = twin.downcast_ref::<DynamicFilterPhysicalExpr>() else { return };
    // The readers of several partitions send their shares at once; each adds its own to those in.
    let _one_at_a_time = ADDING_SHARES.lock().unwrap_or_else(PoisonError::into_inner);
    let Ok(current) = twin.current() else { return };
    let Ok((routed, every_share)) = with_share(&current, share, children, partition, partitions) else { return };
    if twin.update(routed).is_ok() && every_share {
        twin.mark_complete();
    }
}

/// Taken while a share is added to a filter (for microseconds, by any task of the executor).
static ADDING_SHARES: Mutex<()> = Mutex::new(());

/// A filter's value and the children it is in terms of.
type Decoded = (Arc<dyn PhysicalExpr>, Vec<Arc<dyn PhysicalExpr>>);

fn decode_value(value: &DynamicFilterValue, ctx: &TaskContext) -> Option<Decoded> {
    let schema = Schema::try_from(IpcMessage(value.schema.clone().into())).ok()?;
    let decode = |bytes: &Vec<u8>| {
        let node = PhysicalExprNode::decode(bytes.as_slice()).ok()?;
        parse_physical_expr(&node, ctx, &schema, &GlauxCodec).ok()
    };
    let conjuncts = value.conjuncts.iter().map(decode).collect::<Option<Vec<_>>>()?;
    let children = value.children.iter().map(decode).collect::<Option<Vec<_>>>()?;
    Some((conjunction(conjuncts), children))
}

/// `plan` (a task's, as decoded, or the final stage the scheduler runs) with its readers
/// forwarding and applying the very filters its joins produce (decoded apart, they would be
/// copies the joins never update), and each join whose filter a reader sends on (whole or in
/// shares) keeping its build keys ([`BuildKeysExec`]).
pub fn share_producers(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let (plan, build_keys) = keep_build_keys(plan)?;
    let kept = |id: u64| build_keys.get(&id).cloned().unwrap_or_default();
    let produced: HashMap<u64, ForwardedFilter> = produced_filters(&plan)
        .into_iter()
        .map(|(id, filter)| (id, ForwardedFilter { build_keys: kept(id), ..filter }))
        .collect();
    let joins = join_filters(&plan);
    let shared = plan.transform_up(|node| {
        let Some(reader) = node.downcast_ref::<StageReaderExec>() else { return Ok(Transformed::no(node)) };
        let forwards = reader.dynamic_filters().iter().any(|f| f.id().is_some_and(|id| produced.contains_key(&id)));
        if !forwards && reader.join_filters().is_empty() {
            return Ok(Transformed::no(node));
        }
        let filters = reader
            .dynamic_filters()
            .iter()
            .map(|f| f.id().and_then(|id| produced.get(&id)).unwrap_or(f).clone())
            .collect();
        // A join filter whose join is not in this plan would never complete: left out.
        let mut routed = Vec::new();
        let join_filters = reader
            .join_filters()
            .iter()
            .filter_map(|copy| {
                let id = copy.expression_id()?;
                let (own, partitioned) = joins.get(&id)?;
                if let Some(probe_schema) = partitioned {
                    let filter = Arc::clone(own);
                    let probe_schema = Arc::clone(probe_schema);
                    routed.push(ForwardedFilter { filter, probe_schema, produced_here: true, build_keys: kept(id) });
                }
                Arc::clone(own).with_new_children(copy.children().into_iter().cloned().collect()).ok()
            })
            .collect();
        let reader =
            reader.clone().with_dynamic_filters(filters).with_join_filters(join_filters).with_routed_filters(routed);
        Ok(Transformed::yes(Arc::new(reader) as Arc<dyn ExecutionPlan>))
    })?;
    Ok(shared.data)
}

/// The build keys each join keeps for its filter (one set per partition), by filter id.
type KeysByFilter = HashMap<u64, Vec<Arc<BuildKeys>>>;

/// `plan` with a [`BuildKeysExec`] under each join whose filter one of its readers sends on: a
/// broadcast join's that a reader forwards, a partitioned join's whose shares a reader under it
/// sends; and the keys each keeps, by filter id. (Rebuilt joins keep their filters.)
fn keep_build_keys(plan: Arc<dyn ExecutionPlan>) -> Result<(Arc<dyn ExecutionPlan>, KeysByFilter)> {
    let readers = reader_filter_ids(&plan);
    let mut build_keys = HashMap::new();
    if readers.forwarded.is_empty() && readers.applied.is_empty() {
        return Ok((plan, build_keys));
    }
    let plan = plan
        .transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else { return Ok(Transformed::no(node)) };
            let Some(id) = sent_id(&node, &readers) else { return Ok(Transformed::no(node)) };
            let on: Vec<_> = join.on().iter().map(|(left, _)| Arc::clone(left)).collect();
            let (left, keys) = BuildKeysExec::new(Arc::clone(join.left()), &on);
            build_keys.insert(id, keys);
            let left = Arc::new(left);
            // The new build side shows its input's properties: nothing to recompute.
            let options = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            let joined = Arc::clone(&node).replace_children(vec![left, Arc::clone(join.right())], options)?;
            Ok(Transformed::yes(joined))
        })?
        .data;
    Ok((plan, build_keys))
}

/// The filters hash joins in `plan` produce, by expression id, each with its join's probe-side
/// schema when the join is partitioned.
pub(crate) fn join_filters(plan: &Arc<dyn ExecutionPlan>) -> HashMap<u64, (Arc<dyn PhysicalExpr>, Option<SchemaRef>)> {
    let mut filters = HashMap::new();
    let _ = plan.apply(|node| {
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            let partitioned = (*join.partition_mode() == PartitionMode::Partitioned).then(|| join.right().schema());
            filters.extend(
                node.dynamic_expressions_produced()
                    .into_iter()
                    .filter_map(|f| Some((f.expression_id()?, (f, partitioned.clone())))),
            );
        }
        Ok(TreeNodeRecursion::Continue)
    });
    filters
}

/// The ids of the filters a plan's stage readers hold.
#[derive(Default)]
struct ReaderFilters {
    /// Forwarded to the tasks they read (a broadcast join's go whole).
    forwarded: HashSet<u64>,
    /// Applied to the rows they pass (a partitioned join's also go down as shares).
    applied: HashSet<u64>,
}

fn reader_filter_ids(plan: &Arc<dyn ExecutionPlan>) -> ReaderFilters {
    let mut ids = ReaderFilters::default();
    let _ = plan.apply(|node| {
        if let Some(reader) = node.downcast_ref::<StageReaderExec>() {
            ids.forwarded.extend(reader.dynamic_filters().iter().filter_map(ForwardedFilter::id));
            ids.applied.extend(reader.join_filters().iter().filter_map(|filter| filter.expression_id()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ids
}

/// The id of the filter hash join `node` produces, when a reader sends it down: a broadcast
/// join's that a reader forwards, a partitioned join's that a reader under it applies (and sends
/// in shares).
fn sent_id(node: &Arc<dyn ExecutionPlan>, readers: &ReaderFilters) -> Option<u64> {
    let join = node.downcast_ref::<HashJoinExec>()?;
    let sent = match join.partition_mode() {
        PartitionMode::CollectLeft => &readers.forwarded,
        PartitionMode::Partitioned => &readers.applied,
        PartitionMode::Auto => return None,
    };
    node.dynamic_expressions_produced().into_iter().filter_map(|f| f.expression_id()).find(|id| sent.contains(id))
}

/// A forwarded filter as a reader's plan node carries it.
pub(crate) fn encode(forwarded: &ForwardedFilter) -> Result<crate::generated::ReaderDynamicFilter> {
    Ok(crate::generated::ReaderDynamicFilter {
        filter: serialize_physical_expr(&forwarded.filter, &GlauxCodec)?.encode_to_vec(),
        probe_schema: schema_ipc(&forwarded.probe_schema)?,
    })
}

pub(crate) fn decode(node: &crate::generated::ReaderDynamicFilter, ctx: &TaskContext) -> Result<ForwardedFilter> {
    let schema = Schema::try_from(IpcMessage(node.probe_schema.clone().into()))?;
    let filter = PhysicalExprNode::decode(node.filter.as_slice())
        .map_err(|e| datafusion::common::exec_datafusion_err!("malformed dynamic filter: {e}"))?;
    let filter = parse_physical_expr(&filter, ctx, &schema, &GlauxCodec)?;
    Ok(ForwardedFilter { filter, probe_schema: Arc::new(schema), produced_here: false, build_keys: Vec::new() })
}
