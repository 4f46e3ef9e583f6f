//! Partitioned joins' dynamic filters, applied where a stage reader hands rows to them.
//!
//! A partitioned hash join builds one table per partition, and DataFusion makes its filter route
//! each probe row to its partition's share: `CASE hash(key) % n WHEN 0 THEN f0 WHEN 1 THEN f1 ...`.
//! In one process that filter reaches the scans, whose rows feed every partition. Cut into stages,
//! those scans run in other tasks, and a task of the join's stage runs only some partitions
//! (renumbered from 0, so the routing would send rows to the wrong share), so the filter cannot go
//! there. It can go to the join's own task: the planner gives each stage reader below such a join
//! (in the join's stage, through nodes that keep partition `i` as partition `i`) the join's filter
//! in the reader's columns, and partition `i` of the reader drops the rows that share `i`
//! rejects, taking the `CASE`'s branch for `i` rather than routing. The join then builds and probes
//! only rows that can match (TPC-H q18: orders whose keys the `IN` subquery kept).
//!
//! A broadcast join's filter (no routing: one table serves every partition) goes to the readers
//! under it the same way, whole: what crosses to the scans of other stages is only its bounds and
//! small key sets, the reader also has the lookup into the join's hash table (TPC-H q7: the
//! orders of the customers of two nations, dropped before a partitioned join builds on them).
//!
//! A filter is an optimization: one not complete yet, or of a shape not known here, lets every
//! row through.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr, DynamicFilterPhysicalExpr, Literal, lit};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::joins::HashExpr;
use datafusion::physical_plan::metrics::Count;
use datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{FutureExt, Stream, StreamExt};

/// The share of `filter` (a partitioned join's, complete) that partition `partition` of
/// `partitions` must pass; `None` if not known.
pub(crate) fn share(
    filter: &Arc<dyn PhysicalExpr>,
    partition: usize,
    partitions: usize,
) -> Option<Arc<dyn PhysicalExpr>> {
    let dynamic = filter.downcast_ref::<DynamicFilterPhysicalExpr>()?;
    let current = dynamic.current().ok()?;
    if let Some(case) = current.downcast_ref::<CaseExpr>()
        && case.expr().is_some_and(is_hash_routing)
    {
        let branch = case.when_then_expr().iter().find(|(when, _)| is_partition(when, partition));
        return match branch {
            Some((_, then)) => Some(Arc::clone(then)),
            None => case.else_expr().cloned(),
        };
    }
    // One partition routes every row to its own share; otherwise a filter without routing in it
    // (every share alike, or the only non-empty share, which lets through more than an empty
    // share's `false` would) holds for every partition.
    if partitions == 1 || !routes(&current) { Some(current) } else { None }
}

/// `current` (a copy of a partitioned join's filter in a task of the hash shuffle that feeds the
/// join, in terms of the join's probe keys `keys`) with output partition `partition`'s share
/// added, routing as DataFusion does in one process: `CASE hash(keys) % n WHEN p THEN share_p ...
/// END`, by the hash the shuffle sends rows by. Rows bound for a partition whose share has not come
/// yet all pass. Also whether every partition's share is in.
pub(crate) fn with_share(
    current: &Arc<dyn PhysicalExpr>,
    share: &Arc<dyn PhysicalExpr>,
    keys: &[Arc<dyn PhysicalExpr>],
    partition: usize,
    partitions: usize,
) -> Result<(Arc<dyn PhysicalExpr>, bool)> {
    let mut shares = vec![None; partitions];
    if let Some(case) = current.downcast_ref::<CaseExpr>()
        && case.expr().is_some_and(is_hash_routing)
    {
        for (when, then) in case.when_then_expr() {
            if let Some(slot) = (0..partitions).find(|&p| is_partition(when, p)) {
                shares[slot] = Some(Arc::clone(then));
            }
        }
    }
    shares[partition] = Some(Arc::clone(share));
    let every_share = shares.iter().all(Option::is_some);
    let hash = HashExpr::new(keys.to_vec(), REPARTITION_RANDOM_STATE, "hash_repartition".to_string());
    let routing = BinaryExpr::new(Arc::new(hash), Operator::Modulo, lit(ScalarValue::UInt64(Some(partitions as u64))));
    let branches = shares
        .into_iter()
        .enumerate()
        .filter_map(|(p, then)| Some((lit(ScalarValue::UInt64(Some(p as u64))), then?)))
        .collect();
    let case = CaseExpr::try_new(Some(Arc::new(routing)), branches, Some(lit(!every_share)))?;
    Ok((Arc::new(case), every_share))
}

/// An output partition's share of a partitioned join's filter.
pub(crate) type PartitionShare = (usize, Arc<dyn PhysicalExpr>);

/// The shares added so far to `current` (a copy of a partitioned join's filter, built by
/// [`with_share`]) and the number of partitions they route among; `None` for a filter of
/// another shape.
pub(crate) fn shares_in(current: &Arc<dyn PhysicalExpr>) -> Option<(usize, Vec<PartitionShare>)> {
    let case = current.downcast_ref::<CaseExpr>()?;
    let routing = case.expr().filter(|e| is_hash_routing(e))?.downcast_ref::<BinaryExpr>()?;
    let Some(ScalarValue::UInt64(Some(partitions))) = routing.right().downcast_ref::<Literal>().map(|l| l.value())
    else {
        return None;
    };
    let partitions = usize::try_from(*partitions).ok()?;
    let shares = case
        .when_then_expr()
        .iter()
        .filter_map(|(when, then)| Some(((0..partitions).find(|&p| is_partition(when, p))?, Arc::clone(then))))
        .collect();
    Some((partitions, shares))
}

/// `hash(keys) % n`, as DataFusion routes a probe row to a partition's share.
fn is_hash_routing(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<BinaryExpr>()
        .is_some_and(|modulo| *modulo.op() == Operator::Modulo && modulo.left().is::<HashExpr>())
}

fn is_partition(when: &Arc<dyn PhysicalExpr>, partition: usize) -> bool {
    when.downcast_ref::<Literal>().is_some_and(|l| *l.value() == ScalarValue::UInt64(Some(partition as u64)))
}

/// Whether a routing `CASE` (hash or range) is anywhere in `expr`.
fn routes(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found = e.is::<CaseExpr>();
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// `input` (partition `partition` of `partitions` of a reader) without the rows `filters` reject;
/// `dropped` counts them.
pub(crate) fn filtered(
    input: SendableRecordBatchStream,
    filters: Vec<Arc<dyn PhysicalExpr>>,
    partition: usize,
    partitions: usize,
    dropped: Count,
) -> SendableRecordBatchStream {
    let schema = input.schema();
    let shares = filters.into_iter().map(Share::Waiting).collect();
    let stream = SharesStream { input, shares, partition, partitions, dropped };
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

enum Share {
    /// The join has not built its tables yet.
    Waiting(Arc<dyn PhysicalExpr>),
    Known(Arc<dyn PhysicalExpr>),
    /// Complete, but of a shape not known here.
    Unknown,
}

struct SharesStream {
    input: SendableRecordBatchStream,
    shares: Vec<Share>,
    partition: usize,
    partitions: usize,
    dropped: Count,
}

impl SharesStream {
    fn drop_rejected(&mut self, mut batch: RecordBatch) -> Result<RecordBatch> {
        let rows_in = batch.num_rows();
        for share in self.shares.iter_mut() {
            if let Share::Waiting(filter) = share
                && let Some(dynamic) = filter.downcast_ref::<DynamicFilterPhysicalExpr>()
                && dynamic.wait_complete().now_or_never().is_some()
            {
                *share = self::share(filter, self.partition, self.partitions).map_or(Share::Unknown, Share::Known);
            }
            let Share::Known(expr) = share else { continue };
            let rows = batch.num_rows();
            // An optimization: a share that cannot be evaluated lets every row through from now on.
            let Some(mask) = expr.evaluate(&batch).and_then(|m| m.into_array(rows)).ok() else {
                *share = Share::Unknown;
                continue;
            };
            if *mask.data_type() != DataType::Boolean {
                *share = Share::Unknown;
                continue;
            }
            batch = filter_record_batch(&batch, mask.as_boolean())?;
            self.dropped.add(rows - batch.num_rows());
        }
        if batch.num_rows() < rows_in / 2 {
            // Kept view columns still point into every data buffer of the whole batch: a join
            // building on a few hundred rows left of 7.5 M orders held 254 MB (TPC-H q18, SF 10).
            batch = crate::trailer::compacted(&batch)?;
        }
        Ok(batch)
    }
}

impl Stream for SharesStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.input.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => match self.drop_rejected(batch) {
                    // Every row dropped: read on rather than pass an empty batch up.
                    Ok(batch) if batch.num_rows() == 0 => continue,
                    result => Poll::Ready(Some(result)),
                },
                other => other,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_plan::joins::SeededRandomState;

    #[test]
    fn a_partition_takes_its_own_branch_of_the_routing() {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, true)]);
        let k = col("k", &schema).unwrap();
        let hash: Arc<dyn PhysicalExpr> =
            Arc::new(HashExpr::new(vec![Arc::clone(&k)], SeededRandomState::with_seed(1), "h".into()));
        let routing = Arc::new(BinaryExpr::new(hash, Operator::Modulo, lit(ScalarValue::UInt64(Some(2)))));
        let share_1 = lit(ScalarValue::Boolean(Some(true)));
        let case = CaseExpr::try_new(
            Some(routing),
            vec![(lit(ScalarValue::UInt64(Some(1))), Arc::clone(&share_1))],
            Some(lit(ScalarValue::Boolean(Some(false)))),
        )
        .unwrap();
        let filter = Arc::new(DynamicFilterPhysicalExpr::new(vec![Arc::clone(&k)], lit(true)));
        filter.update(Arc::new(case)).unwrap();
        let filter: Arc<dyn PhysicalExpr> = filter;
        assert_eq!(share(&filter, 1, 2).unwrap().to_string(), "true");
        // Partition 0 built nothing: the `ELSE` drops all its rows.
        assert_eq!(share(&filter, 0, 2).unwrap().to_string(), "false");
    }

    /// The keys `RepartitionExec` sends to each of `partitions` partitions, and those `filter` keeps.
    async fn routed_keys(keys: &[i64], filter: &Arc<dyn PhysicalExpr>, partitions: usize) -> (Vec<Vec<i64>>, Vec<i64>) {
        use datafusion::physical_plan::{ExecutionPlan, Partitioning, collect_partitioned, test::TestMemoryExec};
        use datafusion::prelude::SessionContext;
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(arrow::array::Int64Array::from(keys.to_vec()))])
                .unwrap();
        let input = TestMemoryExec::try_new_exec(&[vec![batch.clone()]], Arc::clone(&schema), None).unwrap();
        let hash = Partitioning::Hash(vec![col("k", &schema).unwrap()], partitions);
        let shuffle: Arc<dyn ExecutionPlan> =
            Arc::new(datafusion::physical_plan::repartition::RepartitionExec::try_new(input, hash).unwrap());
        let values = |batches: &[RecordBatch]| -> Vec<i64> {
            let mut values: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec())
                .collect();
            values.sort_unstable();
            values
        };
        let routed = collect_partitioned(shuffle, SessionContext::new().task_ctx()).await.unwrap();
        let mask = filter.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap();
        let kept = filter_record_batch(&batch, mask.as_boolean()).unwrap();
        (routed.iter().map(|p| values(p)).collect(), values(&[kept]))
    }

    #[tokio::test]
    async fn shares_route_rows_as_the_shuffle_sends_them() {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, true)]);
        let k = col("k", &schema).unwrap();
        let keys: Vec<i64> = (0..200).collect();
        // Partition 1's share keeps every row, partition 2's none; partition 0's has not come.
        let (first, done) = with_share(&lit(true), &lit(true), std::slice::from_ref(&k), 1, 3).unwrap();
        assert!(!done);
        let (filter, done) = with_share(&first, &lit(false), std::slice::from_ref(&k), 2, 3).unwrap();
        assert!(!done);
        let (routed, kept) = routed_keys(&keys, &filter, 3).await;
        let mut expected = [routed[0].clone(), routed[1].clone()].concat();
        expected.sort_unstable();
        assert!(routed.iter().all(|p| !p.is_empty()));
        assert_eq!(kept, expected);
        // Partition 0's share comes as `k < 50`: complete, and its rows above 49 go.
        let below_50: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(Arc::clone(&k), Operator::Lt, lit(50i64)));
        let (filter, done) = with_share(&filter, &below_50, std::slice::from_ref(&k), 0, 3).unwrap();
        assert!(done);
        let (routed, kept) = routed_keys(&keys, &filter, 3).await;
        let mut expected: Vec<i64> = routed[0].iter().copied().filter(|k| *k < 50).chain(routed[1].clone()).collect();
        expected.sort_unstable();
        assert_eq!(kept, expected);
        // A share sent again replaces the one in.
        let (again, _) = with_share(&filter, &lit(false), std::slice::from_ref(&k), 1, 3).unwrap();
        let (_, kept) = routed_keys(&keys, &again, 3).await;
        assert_eq!(kept, routed[0].iter().copied().filter(|k| *k < 50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_few_rows_a_share_keeps_hold_only_their_own_strings() {
        use arrow::array::{Int64Array, StringViewArray};
        use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
        use futures::TryStreamExt;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("name", DataType::Utf8View, false),
        ]));
        let names = StringViewArray::from_iter_values((0..1_000).map(|i| format!("customer number {i:0>40}")));
        let columns: Vec<arrow::array::ArrayRef> =
            vec![Arc::new(Int64Array::from_iter_values(0..1_000)), Arc::new(names)];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let k = col("k", &schema).unwrap();
        let filter = Arc::new(DynamicFilterPhysicalExpr::new(vec![Arc::clone(&k)], lit(true)));
        filter.update(Arc::new(BinaryExpr::new(Arc::clone(&k), Operator::Lt, lit(3i64)))).unwrap();
        filter.mark_complete();
        let input = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), futures::stream::iter([Ok(batch)])));
        let dropped =
            datafusion::physical_plan::metrics::MetricBuilder::new(&ExecutionPlanMetricsSet::new()).counter("d", 0);
        let output: Vec<RecordBatch> =
            filtered(input, vec![filter], 0, 1, dropped.clone()).try_collect().await.unwrap();
        assert_eq!(output.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert_eq!(dropped.value(), 997);
        let kept_bytes: usize = output[0].column(1).as_string_view().data_buffers().iter().map(|b| b.len()).sum();
        assert!(kept_bytes < 1_000, "3 names of 56 bytes hold {kept_bytes} bytes of strings");
    }
}
