//! Trino's aggregate functions that DataFusion lacks: `count_if`, `max_by`, `min_by`,
//! `map_agg`, `histogram`, `checksum`, `geometric_mean`; and Trino's names for DataFusion's own
//! (`arbitrary`, `every`); `approx_percentile` has a file of its own. Each keeps a partial state
//! that executors merge, so they run distributed like DataFusion's.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, MapArray, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type, UInt64Type};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

use crate::udf::{as_double, no_form};

pub fn functions() -> Vec<AggregateUDF> {
    use datafusion::functions_aggregate::{any_value, bool_and_or};
    vec![
        Udaf::new("count_if", Kind::CountIf).build(),
        Udaf::new("max_by", Kind::By { max: true }).build(),
        Udaf::new("min_by", Kind::By { max: false }).build(),
        Udaf::new("map_agg", Kind::MapAgg).build(),
        Udaf::new("histogram", Kind::Histogram).build(),
        Udaf::new("checksum", Kind::Checksum).build(),
        Udaf::new("geometric_mean", Kind::GeometricMean).build(),
        any_value::any_value_udaf().as_ref().clone().with_aliases(["arbitrary"]),
        bool_and_or::bool_and_udaf().as_ref().clone().with_aliases(["every"]),
        crate::approx_percentile::function(),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    CountIf,
    By { max: bool },
    MapAgg,
    Histogram,
    Checksum,
    GeometricMean,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Udaf {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

impl Udaf {
    fn new(name: &'static str, kind: Kind) -> Self {
        Self { name, kind, signature: Signature::user_defined(Volatility::Immutable) }
    }

    fn build(self) -> AggregateUDF {
        AggregateUDF::new_from_impl(self)
    }
}

fn list_field(name: &str, t: &DataType) -> FieldRef {
    Arc::new(Field::new(name, DataType::List(Arc::new(Field::new_list_field(t.clone(), true))), true))
}

fn map_type(key: &DataType, value: &DataType) -> DataType {
    let entries = Fields::from(vec![Field::new("key", key.clone(), false), Field::new("value", value.clone(), true)]);
    DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
}

impl AggregateUDFImpl for Udaf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match (self.kind, types) {
            (Kind::CountIf, [DataType::Boolean | DataType::Null]) => Ok(vec![DataType::Boolean]),
            (Kind::CountIf, _) => no_form(self.name, types, "(boolean)"),
            (Kind::By { .. } | Kind::MapAgg, [x, y]) => Ok(vec![x.clone(), y.clone()]),
            (Kind::By { .. }, _) => no_form(self.name, types, "(T, K)"),
            (Kind::MapAgg, _) => no_form(self.name, types, "(K, V)"),
            (Kind::Histogram | Kind::Checksum, [x]) => Ok(vec![x.clone()]),
            (Kind::Histogram | Kind::Checksum, _) => no_form(self.name, types, "(T)"),
            (Kind::GeometricMean, [x]) if as_double(x).is_some() => Ok(vec![DataType::Float64]),
            (Kind::GeometricMean, _) => no_form(self.name, types, "(double)"),
        }
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::CountIf => DataType::Int64,
            Kind::By { .. } => types[0].clone(),
            Kind::MapAgg => map_type(&types[0], &types[1]),
            Kind::Histogram => map_type(&types[0], &DataType::Int64),
            Kind::Checksum => DataType::Binary,
            Kind::GeometricMean => DataType::Float64,
        })
    }

    fn is_nullable(&self) -> bool {
        self.kind != Kind::CountIf
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let input = |i: usize| args.input_fields.get(i).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
        Ok(match self.kind {
            Kind::CountIf => vec![Arc::new(Field::new("count", DataType::Int64, false))],
            Kind::By { .. } => {
                vec![Arc::new(Field::new("value", input(0), true)), Arc::new(Field::new("key", input(1), true))]
            }
            Kind::MapAgg => vec![list_field("keys", &input(0)), list_field("values", &input(1))],
            Kind::Histogram => vec![list_field("keys", &input(0)), list_field("counts", &DataType::Int64)],
            Kind::Checksum => {
                vec![
                    Arc::new(Field::new("sum", DataType::UInt64, false)),
                    Arc::new(Field::new("rows", DataType::Int64, false)),
                ]
            }
            Kind::GeometricMean => {
                vec![
                    Arc::new(Field::new("log_sum", DataType::Float64, false)),
                    Arc::new(Field::new("count", DataType::Int64, false)),
                ]
            }
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let input = |i: usize| args.expr_fields.get(i).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
        Ok(match self.kind {
            Kind::CountIf => Box::new(CountIf(0)),
            Kind::By { max } => {
                Box::new(By { max, value: ScalarValue::try_from(input(0))?, key: ScalarValue::try_from(input(1))? })
            }
            Kind::MapAgg => Box::new(Entries::new(input(0), input(1), Merge::KeepFirst)),
            Kind::Histogram => Box::new(Entries::new(input(0), DataType::Int64, Merge::Count)),
            Kind::Checksum => {
                Box::new(Checksum { converter: RowConverter::new(vec![SortField::new(input(0))])?, sum: 0, rows: 0 })
            }
            Kind::GeometricMean => Box::new(GeometricMean { log_sum: 0.0, count: 0 }),
        })
    }
}

#[derive(Debug)]
struct CountIf(i64);

impl Accumulator for CountIf {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.0 += values[0].as_boolean().true_count() as i64;
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.0 += arrow::compute::sum(states[0].as_primitive::<Int64Type>()).unwrap_or(0);
        Ok(())
    }
}

/// `max_by(x, y)` / `min_by(x, y)`: the `x` of the row with the greatest (least) `y`.
#[derive(Debug)]
struct By {
    max: bool,
    value: ScalarValue,
    key: ScalarValue,
}

impl By {
    fn offer(&mut self, values: &ArrayRef, keys: &ArrayRef) -> Result<()> {
        let comparator = arrow::array::make_comparator(keys.as_ref(), keys.as_ref(), Default::default())?;
        let mut best: Option<usize> = None;
        for row in 0..keys.len() {
            if keys.is_null(row) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) if self.max => comparator(row, b).is_gt(),
                Some(b) => comparator(row, b).is_lt(),
            };
            if better {
                best = Some(row);
            }
        }
        let Some(row) = best else { return Ok(()) };
        let key = ScalarValue::try_from_array(keys, row)?;
        let better = self.key.is_null()
            || match key.partial_cmp(&self.key) {
                Some(order) if self.max => order.is_gt(),
                Some(order) => order.is_lt(),
                None => false,
            };
        if better {
            self.key = key;
            self.value = ScalarValue::try_from_array(values, row)?;
        }
        Ok(())
    }
}

impl Accumulator for By {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.offer(&values[0], &values[1])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.value.size() + self.key.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), self.key.clone()])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.offer(&states[0], &states[1])
    }
}

/// How a key seen again combines with what it has.
#[derive(Debug, Clone, Copy)]
enum Merge {
    /// `map_agg`: Trino keeps one value for a repeated key; Glaux keeps the first.
    KeepFirst,
    /// `histogram`: counts add up.
    Count,
}

/// Key-value entries for `map_agg` and `histogram`, in first-seen order.
#[derive(Debug)]
struct Entries {
    key_type: DataType,
    value_type: DataType,
    merge: Merge,
    index: HashMap<ScalarValue, usize>,
    keys: Vec<ScalarValue>,
    values: Vec<ScalarValue>,
}

impl Entries {
    fn new(key_type: DataType, value_type: DataType, merge: Merge) -> Self {
        Self { key_type, value_type, merge, index: HashMap::new(), keys: Vec::new(), values: Vec::new() }
    }

    fn add(&mut self, key: ScalarValue, value: ScalarValue) {
        match (self.index.get(&key), self.merge) {
            (Some(&i), Merge::Count) => {
                let (ScalarValue::Int64(Some(old)), ScalarValue::Int64(Some(more))) = (&self.values[i], &value) else {
                    return;
                };
                self.values[i] = ScalarValue::Int64(Some(old + more));
            }
            (Some(_), Merge::KeepFirst) => {}
            (None, _) => {
                self.index.insert(key.clone(), self.keys.len());
                self.keys.push(key);
                self.values.push(value);
            }
        }
    }

    fn arrays(&self) -> Result<(ArrayRef, ArrayRef)> {
        let keys = if self.keys.is_empty() {
            arrow::array::new_empty_array(&self.key_type)
        } else {
            ScalarValue::iter_to_array(self.keys.iter().cloned())?
        };
        let values = if self.values.is_empty() {
            arrow::array::new_empty_array(&self.value_type)
        } else {
            ScalarValue::iter_to_array(self.values.iter().cloned())?
        };
        Ok((keys, values))
    }
}

impl Accumulator for Entries {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for row in 0..values[0].len() {
            // NULL keys are skipped, as Trino skips them.
            if values[0].is_null(row) {
                continue;
            }
            let key = ScalarValue::try_from_array(&values[0], row)?;
            let value = match self.merge {
                Merge::Count => ScalarValue::Int64(Some(1)),
                Merge::KeepFirst => ScalarValue::try_from_array(&values[1], row)?,
            };
            self.add(key, value);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.keys.is_empty() {
            return ScalarValue::try_from(map_type(&self.key_type, &self.value_type));
        }
        let (keys, values) = self.arrays()?;
        let entries = Fields::from(vec![
            Field::new("key", self.key_type.clone(), false),
            Field::new("value", self.value_type.clone(), true),
        ]);
        let entries = StructArray::try_new(entries.clone(), vec![keys, values], None)?;
        let field = Arc::new(Field::new("entries", entries.data_type().clone(), false));
        let map = MapArray::try_new(field, OffsetBuffer::from_lengths([self.keys.len()]), entries, None, false)?;
        Ok(ScalarValue::Map(Arc::new(map)))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.keys.iter().chain(&self.values).map(|v| v.size()).sum::<usize>() * 2
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (keys, values) = self.arrays()?;
        Ok(vec![ScalarValue::List(Arc::new(single_list(keys)?)), ScalarValue::List(Arc::new(single_list(values)?))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (keys, values) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for row in 0..keys.len() {
            if keys.is_null(row) {
                continue;
            }
            let (row_keys, row_values) = (keys.value(row), values.value(row));
            for i in 0..row_keys.len() {
                self.add(ScalarValue::try_from_array(&row_keys, i)?, ScalarValue::try_from_array(&row_values, i)?);
            }
        }
        Ok(())
    }
}

fn single_list(values: ArrayRef) -> Result<arrow::array::ListArray> {
    let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    Ok(arrow::array::ListArray::try_new(field, OffsetBuffer::from_lengths([values.len()]), values, None)?)
}

/// `checksum(x)`: the wrapping sum of a fixed 64-bit hash of each value's row encoding, so the
/// order of rows (and of executors) does not matter; NULL for no rows.
#[derive(Debug)]
struct Checksum {
    converter: RowConverter,
    sum: u64,
    rows: i64,
}

/// FNV-1a, then a SplitMix64 finalizer to spread the bits.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Accumulator for Checksum {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = self.converter.convert_columns(&values[..1])?;
        for row in rows.iter() {
            self.sum = self.sum.wrapping_add(hash(row.as_ref()));
        }
        self.rows += values[0].len() as i64;
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary((self.rows > 0).then(|| self.sum.to_le_bytes().to_vec())))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.converter.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::UInt64(Some(self.sum)), ScalarValue::Int64(Some(self.rows))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for sum in states[0].as_primitive::<UInt64Type>().iter().flatten() {
            self.sum = self.sum.wrapping_add(sum);
        }
        self.rows += arrow::compute::sum(states[1].as_primitive::<Int64Type>()).unwrap_or(0);
        Ok(())
    }
}

#[derive(Debug)]
struct GeometricMean {
    log_sum: f64,
    count: i64,
}

impl Accumulator for GeometricMean {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for value in values[0].as_primitive::<Float64Type>().iter().flatten() {
            self.log_sum += value.ln();
            self.count += 1;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64((self.count > 0).then(|| (self.log_sum / self.count as f64).exp())))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Float64(Some(self.log_sum)), ScalarValue::Int64(Some(self.count))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.log_sum += states[0].as_primitive::<Float64Type>().iter().flatten().sum::<f64>();
        self.count += arrow::compute::sum(states[1].as_primitive::<Int64Type>()).unwrap_or(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_by_and_min_by_across_partial_states() {
        let values: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![Some("a"), Some("b"), Some("c")]));
        let keys: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![Some(5), None, Some(9)]));
        let mut max = By { max: true, value: ScalarValue::Utf8(None), key: ScalarValue::Int64(None) };
        max.update_batch(&[Arc::clone(&values), Arc::clone(&keys)]).expect("update");
        let state = max.state().expect("state");
        let mut merged = By { max: true, value: ScalarValue::Utf8(None), key: ScalarValue::Int64(None) };
        let state_arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().expect("array")).collect();
        merged.merge_batch(&state_arrays).expect("merge");
        assert_eq!(merged.evaluate().expect("value"), ScalarValue::Utf8(Some("c".into())));
        let mut min = By { max: false, value: ScalarValue::Utf8(None), key: ScalarValue::Int64(None) };
        min.update_batch(&[values, keys]).expect("update");
        assert_eq!(min.evaluate().expect("value"), ScalarValue::Utf8(Some("a".into())));
    }

    #[test]
    fn checksums_ignore_order() {
        let mut a = Checksum {
            converter: RowConverter::new(vec![SortField::new(DataType::Int64)]).expect("converter"),
            sum: 0,
            rows: 0,
        };
        let mut b = Checksum {
            converter: RowConverter::new(vec![SortField::new(DataType::Int64)]).expect("converter"),
            sum: 0,
            rows: 0,
        };
        a.update_batch(&[Arc::new(arrow::array::Int64Array::from(vec![Some(1), None, Some(3)]))]).expect("update");
        b.update_batch(&[Arc::new(arrow::array::Int64Array::from(vec![Some(3)]))]).expect("update");
        b.update_batch(&[Arc::new(arrow::array::Int64Array::from(vec![None, Some(1)]))]).expect("update");
        assert_eq!(a.evaluate().expect("a"), b.evaluate().expect("b"));
        assert!(!a.evaluate().expect("a").is_null());
    }

    #[test]
    fn histograms_add_counts() {
        let mut histogram = Entries::new(DataType::Utf8, DataType::Int64, Merge::Count);
        histogram
            .update_batch(&[Arc::new(arrow::array::StringArray::from(vec![Some("x"), Some("y"), Some("x"), None]))])
            .expect("update");
        let state: Vec<ArrayRef> =
            histogram.state().expect("state").iter().map(|s| s.to_array().expect("array")).collect();
        let mut merged = Entries::new(DataType::Utf8, DataType::Int64, Merge::Count);
        merged.merge_batch(&state).expect("merge");
        merged.merge_batch(&state).expect("merge");
        assert_eq!(merged.values, vec![ScalarValue::Int64(Some(4)), ScalarValue::Int64(Some(2))]);
    }
}
