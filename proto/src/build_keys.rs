//! `BuildKeysExec`: passes a hash join's build side through, keeping its distinct keys when
//! they are few, so the join's filter can travel as an `IN` list, or a Bloom filter of them when
//! they are more.
//!
//! A hash join's dynamic filter is its keys' bounds and a lookup into its hash table. Only the
//! bounds serialize, so a filter sent to another stage's scans (see `dynamic_filters.rs`) lost
//! the lookup, and with it all it prunes when the build keys are spread over the probe keys'
//! range (TPC-DS q72: a dimension filtered on a non-key column, its surviving keys anywhere
//! between the smallest and the largest). DataFusion itself turns a build side of at most 150
//! keys into an `IN` list, in every filter; raising that for all joins made local joins slower.
//! This node raises it only for what travels: an executor puts it under a broadcast join whose
//! filter a stage reader of the same task forwards, or under a partitioned join whose filter's
//! shares a reader of the same task sends down, and the reader adds one `IN` list per key to the
//! value it sends ([`BuildKeys::in_lists`]). A partitioned join builds one table per partition,
//! so the node keeps one set of keys per partition of its input, each sent with that partition's
//! share (TPC-H q18 at SF 10: the 624 orders the `IN` subquery kept reach the lineitem scans below
//! the shuffle as lists, where bounds alone spanned every order key).
//!
//! Keys too many for lists go as a Bloom filter of their hashes ([`BuildKeys::bloom`],
//! `bloom.rs`; TPC-H q5 at SF 10: 1.1 M orders per join partition).
//!
//! Bounded: it stops keeping keys after [`MAX_ROWS`] build rows, [`MAX_KEYS`] distinct keys or
//! [`MAX_BYTES`] of them, and hashing them after [`MAX_BLOOM_ROWS`] rows (a filter of at most
//! [`bloom::MAX_BITS`] bits); past both it costs nothing more than a pass-through.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{InListExpr, lit};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};

use crate::bloom::{self, Bloom, BloomFilterExpr};

/// Build rows looked at before giving up on an `IN` list: more rows than this rarely have few
/// distinct keys, and turning each into a scalar costs.
pub const MAX_ROWS: usize = 65_536;
/// Distinct keys (of each key column) an `IN` list may hold.
pub const MAX_KEYS: usize = 4_096;
/// Bytes the kept keys may take.
pub const MAX_BYTES: usize = 1 << 20;
/// Build rows a Bloom filter of the keys may take (beyond, even [`bloom::MAX_BITS`] bits would
/// be too full to help).
pub const MAX_BLOOM_ROWS: usize = 1 << 22;

/// The distinct keys of one build side, shared between the node that sees its rows and the
/// reader that sends its filter.
#[derive(Debug)]
pub struct BuildKeys {
    /// The join's build-side key expressions, in terms of the build side's schema.
    on: Vec<Arc<dyn PhysicalExpr>>,
    state: Mutex<KeysState>,
}

#[derive(Debug)]
enum KeysState {
    Collecting {
        /// `None` once past an `IN` list's bounds.
        keys: Option<Vec<HashSet<ScalarValue>>>,
        rows: usize,
        bytes: usize,
        hashes: Hashes,
        /// The keys' types, from the first batch.
        types: Vec<DataType>,
    },
    /// Every build row was seen.
    Complete {
        keys: Option<Vec<HashSet<ScalarValue>>>,
        bloom: Option<Arc<Bloom>>,
        types: Vec<DataType>,
    },
    GaveUp,
}

/// The build keys' hashes, for a Bloom filter.
#[derive(Debug)]
enum Hashes {
    /// Up to [`MAX_ROWS`] rows', kept to size the filter once all are in.
    Few(Vec<u64>),
    Bloom(Bloom),
    TooMany,
}

impl BuildKeys {
    pub fn new(on: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        let keys = Some(vec![HashSet::new(); on.len()]);
        let state =
            KeysState::Collecting { keys, rows: 0, bytes: 0, hashes: Hashes::Few(Vec::new()), types: Vec::new() };
        Self { on, state: Mutex::new(state) }
    }

    fn state(&self) -> MutexGuard<'_, KeysState> {
        // A panic while holding the lock leaves at worst a partial set in `Collecting`, which is
        // never read as complete.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, batch: &RecordBatch) {
        let mut state = self.state();
        let KeysState::Collecting { keys, rows, bytes, hashes, types } = &mut *state else { return };
        let Some(columns) = self
            .on
            .iter()
            .map(|e| e.evaluate(batch).ok()?.into_array(batch.num_rows()).ok())
            .collect::<Option<Vec<_>>>()
        else {
            *state = KeysState::GaveUp;
            return;
        };
        if types.is_empty() {
            *types = columns.iter().map(|c| c.data_type().clone()).collect();
        }
        *rows += batch.num_rows();
        if *rows > MAX_ROWS || keys.as_mut().is_some_and(|keys| Self::add_keys(&columns, keys, bytes).is_none()) {
            *keys = None;
        }
        add_hashes(hashes, &columns, *rows);
        if keys.is_none() && matches!(hashes, Hashes::TooMany) {
            *state = KeysState::GaveUp;
        }
    }

    /// `None` when a bound is passed or a key cannot be read.
    fn add_keys(columns: &[ArrayRef], keys: &mut [HashSet<ScalarValue>], bytes: &mut usize) -> Option<()> {
        for (column, set) in columns.iter().zip(keys.iter_mut()) {
            for row in 0..column.len() {
                // A null key matches nothing in an equi-join.
                if column.is_null(row) {
                    continue;
                }
                let value = ScalarValue::try_from_array(column, row).ok()?;
                if !set.contains(&value) {
                    *bytes += value.size();
                    set.insert(value);
                    if set.len() > MAX_KEYS || *bytes > MAX_BYTES {
                        return None;
                    }
                }
            }
        }
        Some(())
    }

    fn finish(&self) {
        let mut state = self.state();
        if let KeysState::Collecting { keys, hashes, types, .. } = &mut *state {
            let bloom = match std::mem::replace(hashes, Hashes::TooMany) {
                Hashes::Few(few) => {
                    let mut bloom = Bloom::new(few.len() * 16);
                    few.into_iter().for_each(|h| bloom.insert(h));
                    bloom.finished()
                }
                Hashes::Bloom(bloom) => bloom.finished(),
                Hashes::TooMany => None,
            };
            *state =
                KeysState::Complete { keys: keys.take(), bloom: bloom.map(Arc::new), types: std::mem::take(types) };
        }
    }

    fn give_up(&self) {
        *self.state() = KeysState::GaveUp;
    }

    /// The number of distinct keys kept (of the key column with most), the size of their Bloom
    /// filter, or why there are none.
    fn describe(&self) -> String {
        match &*self.state() {
            KeysState::Collecting { .. } => "not all seen".into(),
            KeysState::Complete { keys: Some(keys), .. } => {
                keys.iter().map(HashSet::len).max().unwrap_or(0).to_string()
            }
            KeysState::Complete { bloom: Some(bloom), .. } => format!("bloom of {} bits", bloom.bits()),
            KeysState::Complete { .. } | KeysState::GaveUp => "too many".into(),
        }
    }

    /// A Bloom filter of the build keys over `probe_keys` (in terms of `probe_schema`), once every
    /// build row was seen, when the keys were too many for `IN` lists and few enough for a filter
    /// that helps, and the probe keys are of the build keys' types (else they hash otherwise).
    pub fn bloom(&self, probe_keys: &[Arc<dyn PhysicalExpr>], probe_schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
        let state = self.state();
        let KeysState::Complete { keys: None, bloom: Some(bloom), types } = &*state else { return None };
        let probe_types = probe_keys.iter().map(|k| k.data_type(probe_schema).ok()).collect::<Option<Vec<_>>>()?;
        if probe_types != *types {
            return None;
        }
        let expr = BloomFilterExpr::try_new(probe_keys.to_vec(), types.clone(), Arc::clone(bloom)).ok()?;
        Some(Arc::new(expr))
    }

    /// `probe_keys[i] IN (distinct build keys of column i)` for each key column, in terms of
    /// `probe_schema`, once every build row was seen and the keys stayed within bounds. Each list
    /// lets through at least the rows the join can match.
    pub fn in_lists(&self, probe_keys: &[Arc<dyn PhysicalExpr>], probe_schema: &Schema) -> Vec<Arc<dyn PhysicalExpr>> {
        let state = self.state();
        let KeysState::Complete { keys: Some(keys), .. } = &*state else { return Vec::new() };
        if keys.len() != probe_keys.len() {
            return Vec::new();
        }
        probe_keys
            .iter()
            .zip(keys)
            .filter_map(|(probe, set)| {
                let list = set.iter().map(|value| lit(value.clone()) as Arc<dyn PhysicalExpr>).collect();
                let in_list = InListExpr::try_new(Arc::clone(probe), list, false, probe_schema).ok()?;
                Some(Arc::new(in_list) as Arc<dyn PhysicalExpr>)
            })
            .collect()
    }
}

/// Adds `columns`' hashes (the batch that took the build side to `rows` rows) to `hashes`.
fn add_hashes(hashes: &mut Hashes, columns: &[ArrayRef], rows: usize) {
    if matches!(hashes, Hashes::TooMany) {
        return;
    }
    let batch_rows = columns.first().map_or(0, |c| c.len());
    let Ok((batch_hashes, nulls)) = bloom::key_hashes(columns, batch_rows) else {
        *hashes = Hashes::TooMany;
        return;
    };
    let valid = |row: &usize| nulls.as_ref().is_none_or(|n| n.is_valid(*row));
    if rows > MAX_BLOOM_ROWS {
        *hashes = Hashes::TooMany;
    } else if let Hashes::Few(few) = hashes
        && rows > MAX_ROWS
    {
        let mut bloom = Bloom::new(bloom::MAX_BITS);
        few.iter().for_each(|h| bloom.insert(*h));
        *hashes = Hashes::Bloom(bloom);
    }
    let rows_hashes = (0..batch_rows).filter(valid).map(|row| batch_hashes[row]);
    match hashes {
        Hashes::Few(few) => few.extend(rows_hashes),
        Hashes::Bloom(bloom) => rows_hashes.for_each(|h| bloom.insert(h)),
        Hashes::TooMany => {}
    }
}

/// Passes its input through, showing every row of partition `i` to the `i`-th [`BuildKeys`].
#[derive(Debug)]
pub struct BuildKeysExec {
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<BuildKeys>>,
}

impl BuildKeysExec {
    /// `input` with one set of keys per partition, `on` evaluated against its rows; the sets, for
    /// the reader that sends them.
    pub fn new(input: Arc<dyn ExecutionPlan>, on: &[Arc<dyn PhysicalExpr>]) -> (Self, Vec<Arc<BuildKeys>>) {
        let partitions = input.properties().partitioning.partition_count();
        let keys: Vec<_> = (0..partitions).map(|_| Arc::new(BuildKeys::new(on.to_vec()))).collect();
        (Self { input, keys: keys.clone() }, keys)
    }
}

impl DisplayAs for BuildKeysExec {
    /// What each partition kept, for EXPLAIN ANALYZE: `BuildKeysExec: keys=[324, too many]`.
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let kept: Vec<String> = self.keys.iter().map(|keys| keys.describe()).collect();
        write!(f, "BuildKeysExec: keys=[{}]", kept.join(", "))
    }
}

impl ExecutionPlan for BuildKeysExec {
    fn name(&self) -> &str {
        "BuildKeysExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)] // DataFusion 55 still requires this deprecated method of every node
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).or_else(|_| internal_err!("BuildKeysExec has one input"))?;
        if input.properties().partitioning.partition_count() != self.keys.len() {
            // Keys kept for partitions the new input numbers otherwise would be another's.
            self.keys.iter().for_each(|keys| keys.give_up());
        }
        Ok(Arc::new(Self { input, keys: self.keys.clone() }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let Some(keys) = self.keys.get(partition) else { return Ok(input) };
        let schema = input.schema();
        let stream = KeysStream { input, keys: Arc::clone(keys) };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

struct KeysStream {
    input: SendableRecordBatchStream,
    keys: Arc<BuildKeys>,
}

impl Stream for KeysStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.input.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => self.keys.add(batch),
            Poll::Ready(Some(Err(_))) => self.keys.give_up(),
            Poll::Ready(None) => self.keys.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int32Array};
    use arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::col;

    fn batch(values: Vec<Option<i32>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(values))]).unwrap()
    }

    #[test]
    fn keeps_distinct_keys_until_complete_and_gives_up_past_a_bound() {
        let b = batch(vec![Some(3), Some(1), Some(3), None]);
        let on = vec![col("k", &b.schema()).unwrap()];
        let keys = BuildKeys::new(on.clone());
        keys.add(&b);
        assert!(keys.in_lists(&on, &b.schema()).is_empty(), "no list before the build side ended");
        keys.finish();
        let lists = keys.in_lists(&on, &b.schema());
        assert_eq!(lists.len(), 1);
        let list = lists[0].downcast_ref::<InListExpr>().unwrap();
        let mut values: Vec<String> = list.list().iter().map(|e| e.to_string()).collect();
        values.sort();
        assert_eq!(values, ["1", "3"]);

        assert_eq!(keys.describe(), "2");
        assert!(keys.bloom(&on, &b.schema()).is_none(), "no Bloom filter where lists serve");
    }

    #[test]
    fn keys_too_many_for_lists_go_as_a_bloom_filter_if_the_probe_keys_hash_alike() {
        let b = batch(vec![Some(1)]);
        let on = vec![col("k", &b.schema()).unwrap()];
        let many = BuildKeys::new(on.clone());
        many.add(&batch((0..=MAX_KEYS as i32).map(Some).collect()));
        assert!(many.bloom(&on, &b.schema()).is_none(), "no filter before the build side ended");
        many.finish();
        assert!(many.in_lists(&on, &b.schema()).is_empty());
        assert!(many.describe().starts_with("bloom of"), "{}", many.describe());
        let bloom = many.bloom(&on, &b.schema()).unwrap();
        let probe = batch(vec![Some(0), Some(MAX_KEYS as i32), Some(-1), None]);
        let passed = bloom.evaluate(&probe).unwrap().into_array(4).unwrap();
        let passed: Vec<_> = passed.as_boolean().iter().map(|p| p == Some(true)).collect();
        assert_eq!(passed, [true, true, false, false]);

        let wide = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        assert!(many.bloom(&[col("k", &wide).unwrap()], &wide).is_none(), "Int64 keys hash unlike Int32 ones");
    }
}
