//! `BloomFilterExpr`: whether a row's join keys may be among a build side's, from a Bloom filter
//! of the build keys' hashes, for a join's filter to travel when its keys are too many for an
//! `IN` list (`build_keys.rs`).
//!
//! A partitioned join's hash table cannot cross a shuffle, and its bounds alone prune nothing
//! when the build keys are spread over the probe keys' range (TPC-H q5 at SF 10: 1.1 M orders per
//! join partition, the lineitem scans below the shuffle sending on 30 M rows per task of which the
//! join keeps 4.6 M). A Bloom filter of those keys is at most [`MAX_BITS`] bits (1 MiB), lets
//! through every row the join can match and few others (about 4 % at 1 M keys), and costs a hash
//! and three bit tests per row.
//!
//! The filter hashes keys as DataFusion's hash join and shuffle do (`create_hashes`) but with a
//! seed of its own: the rows a share sees are those the shuffle routes to one partition, whose
//! shuffle hashes agree modulo the partition count; hashes with the same seed would use a
//! fraction of the bits. Every member of a cluster runs the same binary, so the same key hashes
//! alike on the executor that built the filter and the one that applies it, as the shuffle's own
//! routing already requires.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// The most bits a filter has: 1 MiB, sent in each ticket that carries it.
pub const MAX_BITS: usize = 1 << 23;
/// Probes per key.
const PROBES: u64 = 3;
/// A filter more than this full lets too much through to be worth its cost.
const MAX_FILL: f64 = 0.5;
/// Folding stops before a filter gets fuller than this.
const FOLDED_FILL: f64 = 0.3;
/// Rows a filter looks at before it judges itself: if it let through more than
/// [`USELESS_PASS_RATE`] of them, it lets every later row through unlooked.
const JUDGED_AFTER_ROWS: u64 = 1 << 20;
const USELESS_PASS_RATE: f64 = 0.9;

/// The seed of the filter's hashes ("glaux bloom"), unlike the shuffle's (0) and the join's.
fn random_state() -> RandomState {
    RandomState::with_seed(0x676c_6175_785f_626c)
}

/// The hashes of `keys`' rows, `None` for a row with a null key (it matches nothing).
pub(crate) fn key_hashes(keys: &[ArrayRef], rows: usize) -> Result<(Vec<u64>, Option<NullBuffer>)> {
    let mut hashes = vec![0; rows];
    create_hashes(keys, &random_state(), &mut hashes)?;
    let nulls = keys.iter().fold(None, |nulls, key| NullBuffer::union(nulls.as_ref(), key.logical_nulls().as_ref()));
    Ok((hashes, nulls))
}

/// A Bloom filter over key hashes: a power of two of bits, probe `i` of hash `h` at
/// `(h + i * g(h)) mod bits`, so a filter folds in half by OR-ing its halves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    /// An empty filter of `bits` bits (a power of two, at least 64).
    pub(crate) fn new(bits: usize) -> Self {
        Self { words: vec![0; bits.next_power_of_two().max(64) / 64] }
    }

    fn probes(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        let mask = (self.words.len() * 64 - 1) as u64;
        let step = hash.rotate_left(32) | 1;
        (0..PROBES).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) & mask) as usize)
    }

    pub(crate) fn insert(&mut self, hash: u64) {
        for bit in self.probes(hash) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn contains(&self, hash: u64) -> bool {
        self.probes(hash).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn fill(&self) -> f64 {
        let set: u32 = self.words.iter().map(|w| w.count_ones()).sum();
        f64::from(set) / (self.words.len() * 64) as f64
    }

    /// The filter once every key is in: folded while it stays sparse, `None` if too full to help.
    pub(crate) fn finished(mut self) -> Option<Self> {
        if self.fill() > MAX_FILL {
            return None;
        }
        while self.words.len() > 1 {
            let half = self.words.len() / 2;
            let folded: Vec<u64> = (0..half).map(|i| self.words[i] | self.words[i + half]).collect();
            let folded = Self { words: folded };
            if folded.fill() > FOLDED_FILL {
                break;
            }
            self = folded;
        }
        Some(self)
    }

    pub fn bits(&self) -> usize {
        self.words.len() * 64
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// A filter as [`Self::to_bytes`] wrote it; an error for a length that is not a power of two
    /// of words up to [`MAX_BITS`].
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let words = bytes.len() / 8;
        if !bytes.len().is_multiple_of(8) || !words.is_power_of_two() || words * 64 > MAX_BITS {
            return exec_err!("a Bloom filter of {} bytes", bytes.len());
        }
        let words = bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect();
        Ok(Self { words })
    }
}

/// `true` for a row whose keys may be in the filter, `false` for one whose are not (or are null).
#[derive(Debug)]
pub struct BloomFilterExpr {
    /// The probe side's keys, in the order and of the types the filter's keys were hashed in.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_types: Vec<DataType>,
    bloom: Arc<Bloom>,
    /// Rows looked at and let through, to stop looking when the filter keeps nearly everything.
    looked: Arc<AtomicU64>,
    passed: Arc<AtomicU64>,
}

impl BloomFilterExpr {
    /// An error when `keys` are not as many as `key_types`.
    pub fn try_new(keys: Vec<Arc<dyn PhysicalExpr>>, key_types: Vec<DataType>, bloom: Arc<Bloom>) -> Result<Self> {
        if keys.len() != key_types.len() || keys.is_empty() {
            return exec_err!("a Bloom filter over {} keys of {} types", keys.len(), key_types.len());
        }
        Ok(Self { keys, key_types, bloom, looked: Arc::default(), passed: Arc::default() })
    }

    pub fn bloom(&self) -> &Bloom {
        &self.bloom
    }

    /// The key types as the fields of a schema (`k0`, `k1`, ...), to travel as Arrow IPC.
    pub fn key_schema(&self) -> Schema {
        Schema::new(
            self.key_types
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("k{i}"), t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    fn useless(&self) -> bool {
        let looked = self.looked.load(Ordering::Relaxed);
        looked >= JUDGED_AFTER_ROWS && self.passed.load(Ordering::Relaxed) as f64 > looked as f64 * USELESS_PASS_RATE
    }
}

impl fmt::Display for BloomFilterExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        write!(f, "bloom({}; {} bits)", keys.join(", "), self.bloom.bits())
    }
}

impl PartialEq for BloomFilterExpr {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys && self.key_types == other.key_types && Arc::ptr_eq(&self.bloom, &other.bloom)
    }
}

impl Eq for BloomFilterExpr {}

impl Hash for BloomFilterExpr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.keys.hash(state);
        Arc::as_ptr(&self.bloom).hash(state);
    }
}

impl PhysicalExpr for BloomFilterExpr {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _input_schema: &Schema) -> Result<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let keys = self.keys.iter().map(|k| k.evaluate(batch)?.into_array(rows)).collect::<Result<Vec<_>>>()?;
        // Keys of other types than the build side's hash otherwise: let every row through.
        if self.useless() || keys.iter().zip(&self.key_types).any(|(k, t)| k.data_type() != t) {
            return Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![true; rows]))));
        }
        let (hashes, nulls) = key_hashes(&keys, rows)?;
        let maybe = BooleanBuffer::collect_bool(rows, |row| {
            nulls.as_ref().is_none_or(|n| n.is_valid(row)) && self.bloom.contains(hashes[row])
        });
        self.looked.fetch_add(rows as u64, Ordering::Relaxed);
        self.passed.fetch_add(maybe.count_set_bits() as u64, Ordering::Relaxed);
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(maybe, None))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.keys.iter().collect()
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = Self::try_new(children, self.key_types.clone(), Arc::clone(&self.bloom))?;
        Ok(Arc::new(Self { looked: Arc::clone(&self.looked), passed: Arc::clone(&self.passed), ..expr }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `expr` as a Bloom filter, if it is one.
pub fn as_bloom(expr: &Arc<dyn PhysicalExpr>) -> Option<&BloomFilterExpr> {
    expr.downcast_ref::<BloomFilterExpr>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use datafusion::physical_expr::expressions::col;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::from_proto::parse_physical_expr;
    use datafusion_proto::physical_plan::to_proto::serialize_physical_expr;

    use crate::GlauxCodec;

    fn hashes(values: &[Option<i64>]) -> Vec<u64> {
        let array: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        key_hashes(&[array], values.len()).unwrap().0
    }

    #[test]
    fn lets_through_every_key_in_it_and_few_others_and_folds_while_sparse() {
        let inside: Vec<Option<i64>> = (0..100_000).map(|k| Some(k * 7)).collect();
        let mut bloom = Bloom::new(MAX_BITS);
        hashes(&inside).into_iter().for_each(|h| bloom.insert(h));
        let bloom = bloom.finished().unwrap();
        assert!(bloom.bits() < MAX_BITS / 4, "folded to {} bits", bloom.bits());
        assert!(hashes(&inside).into_iter().all(|h| bloom.contains(h)));
        let outside: Vec<Option<i64>> = (0..100_000).map(|k| Some(k * 7 + 1)).collect();
        let false_positives = hashes(&outside).into_iter().filter(|h| bloom.contains(*h)).count();
        assert!(false_positives < 5_000, "{false_positives} of 100,000 keys not in it pass");
        assert_eq!(Bloom::from_bytes(&bloom.to_bytes()).unwrap(), bloom);
        assert!(Bloom::from_bytes(&[0; 24]).is_err());

        let mut full = Bloom::new(64);
        hashes(&inside).into_iter().for_each(|h| full.insert(h));
        assert!(full.finished().is_none(), "a filter too full to help is dropped");
    }

    #[test]
    fn the_expression_rejects_null_keys_and_keys_not_in_it() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let mut bloom = Bloom::new(1 << 16);
        hashes(&[Some(3), Some(5)]).into_iter().for_each(|h| bloom.insert(h));
        let keys = vec![col("k", &schema).unwrap()];
        let expr = BloomFilterExpr::try_new(keys, vec![DataType::Int64], Arc::new(bloom)).unwrap();
        let column = Int64Array::from(vec![Some(3), None, Some(4), Some(5)]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap();
        let passed = |expr: &Arc<dyn PhysicalExpr>| -> Vec<bool> {
            let result = expr.evaluate(&batch).unwrap().into_array(4).unwrap();
            result.as_any().downcast_ref::<BooleanArray>().unwrap().iter().map(|b| b == Some(true)).collect()
        };
        let expr: Arc<dyn PhysicalExpr> = Arc::new(expr);
        assert_eq!(passed(&expr), [true, false, false, true]);

        // On the wire and back, as a ticket carries it.
        let node = serialize_physical_expr(&expr, &GlauxCodec).unwrap();
        let ctx = SessionContext::new().task_ctx();
        let decoded = parse_physical_expr(&node, &ctx, &batch.schema(), &GlauxCodec).unwrap();
        assert_eq!(as_bloom(&decoded).unwrap().bloom(), as_bloom(&expr).unwrap().bloom());
        assert_eq!(passed(&decoded), [true, false, false, true]);
    }
}
