//! `hive_bucket(bucket_count, value, ...)`: the bucket Hive's bucketing (version 1, which
//! Athena's `bucketed_by` and Trino's Hive tables use) puts a row with these values in. Writes of
//! bucketed tables shuffle and name their files by it; users may call it too, to see where a
//! row went.
//!
//! Hive hashes each value (an integer as itself, a `bigint` as its two halves XORed, a string
//! as `31 * h + byte` over its UTF-8 bytes, a double's and a float's bits, a date as its day
//! number, a boolean as 1 or 0, NULL as 0), combines the values' hashes as `31 * h + hash`, and
//! takes `(h & i32::MAX) % bucket_count`.

use arrow::array::{Array, ArrayRef, AsArray, Int32Builder};
use arrow::datatypes::{DataType, Date32Type, Float32Type, Float64Type, Int32Type, Int64Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;

use crate::udf::Udf;

/// The most buckets a table may have (Hive's and Athena's limit is far lower in practice).
pub const MAX_BUCKETS: i64 = 100_000;

pub fn functions() -> Vec<ScalarUDF> {
    vec![Udf::new("hive_bucket", coerce, |_| Ok(DataType::Int32), invoke).build()]
}

/// The type each value is hashed as: Hive's hash depends on it (an `int` 5 and a `bigint` 5
/// hash alike, a string "5" does not).
fn hashed_as(data_type: &DataType) -> Option<DataType> {
    Some(match data_type {
        DataType::Boolean => DataType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::Int64 | DataType::UInt32 => DataType::Int64,
        DataType::Float32 => DataType::Float32,
        DataType::Float64 => DataType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Date32 => DataType::Date32,
        DataType::Null => DataType::Int32,
        _ => return None,
    })
}

fn coerce(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let Some((count, values)) = types.split_first().filter(|(_, values)| !values.is_empty()) else {
        return plan_err!("{name}(bucket_count, value, ...) takes a bucket count and at least one value");
    };
    if !count.is_integer() && !count.is_null() {
        return plan_err!("{name}'s bucket count must be an integer, not {count}");
    }
    let mut coerced = vec![DataType::Int64];
    for value in values {
        match hashed_as(value) {
            Some(hashed) => coerced.push(hashed),
            None => {
                return plan_err!(
                    "{name} cannot bucket by a value of type {value}: Hive buckets by booleans, integers, \
                     floating-point numbers, strings and dates"
                );
            }
        }
    }
    Ok(coerced)
}

/// Hive's hash of row `row` of `values` (already of a type [`hashed_as`] gives).
fn hash(values: &ArrayRef, row: usize) -> i32 {
    if values.is_null(row) {
        return 0;
    }
    match values.data_type() {
        DataType::Boolean => i32::from(values.as_boolean().value(row)),
        DataType::Int32 => values.as_primitive::<Int32Type>().value(row),
        DataType::Int64 => {
            let v = values.as_primitive::<Int64Type>().value(row);
            (v ^ ((v as u64) >> 32) as i64) as i32
        }
        DataType::Float32 => values.as_primitive::<Float32Type>().value(row).to_bits() as i32,
        DataType::Float64 => {
            let bits = canonical_bits(values.as_primitive::<Float64Type>().value(row));
            (bits ^ (bits >> 32)) as i32
        }
        DataType::Utf8 => values
            .as_string::<i32>()
            .value(row)
            .bytes()
            .fold(0i32, |h, b| h.wrapping_mul(31).wrapping_add(b as i8 as i32)),
        DataType::Date32 => values.as_primitive::<Date32Type>().value(row),
        _ => 0,
    }
}

/// Java's `doubleToLongBits`: every NaN as the one canonical NaN.
fn canonical_bits(value: f64) -> u64 {
    if value.is_nan() { 0x7ff8_0000_0000_0000 } else { value.to_bits() }
}

fn invoke(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let counts = args[0].as_primitive::<Int64Type>();
    let mut buckets = Int32Builder::with_capacity(rows);
    for row in 0..rows {
        if counts.is_null(row) {
            buckets.append_null();
            continue;
        }
        let count = counts.value(row);
        if !(1..=MAX_BUCKETS).contains(&count) {
            return exec_err!("hive_bucket's bucket count must be between 1 and {MAX_BUCKETS}, not {count}");
        }
        let combined = args[1..].iter().fold(0i32, |h, values| h.wrapping_mul(31).wrapping_add(hash(values, row)));
        buckets.append_value((combined & i32::MAX) % count as i32);
    }
    Ok(Arc::new(buckets.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn bucket(values: Vec<ArrayRef>, count: i64) -> Vec<Option<i32>> {
        let mut args: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![count; values[0].len()]))];
        args.extend(values);
        let out = invoke(&args, args[1].len(), &DataType::Int32).unwrap();
        out.as_primitive::<Int32Type>().iter().collect()
    }

    /// Java's `"abc".hashCode()` is 96354 and `"hello".hashCode()` 99162322: Hive's string hash
    /// is the same over ASCII; a `bigint` 2^32 + 5 hashes to 1 ^ 5.
    #[test]
    fn hashes_are_hives() {
        let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("abc"), Some("hello"), None]));
        assert_eq!(bucket(vec![strings], 100_000), vec![Some(96354), Some(62322), Some(0)]);
        let longs: ArrayRef = Arc::new(Int64Array::from(vec![(1i64 << 32) + 5, -1]));
        // -1 as a long: (-1 ^ 0xffffffff) as int = 0.
        assert_eq!(bucket(vec![longs], 1000), vec![Some(4), Some(0)]);
        let a: ArrayRef = Arc::new(StringArray::from(vec!["abc"]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![7]));
        // Combined: 31 * 96354 + 7.
        assert_eq!(bucket(vec![a, b], 100_000), vec![Some((31 * 96354 + 7) % 100_000)]);
        // Non-ASCII bytes are signed, as in Java: "é" is 0xC3 0xA9 → 31 * -61 + -87.
        let accented: ArrayRef = Arc::new(StringArray::from(vec!["é"]));
        assert_eq!(bucket(vec![accented], 100_000), vec![Some(((31 * -61 - 87) & i32::MAX) % 100_000)]);
    }

    #[test]
    fn bad_counts_and_types_are_refused() {
        assert!(coerce("hive_bucket", &[DataType::Int64]).is_err());
        assert!(coerce("hive_bucket", &[DataType::Utf8, DataType::Int64]).is_err());
        assert!(coerce("hive_bucket", &[DataType::Int64, DataType::Binary]).is_err());
        let args: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![0])), Arc::new(Int64Array::from(vec![1]))];
        assert!(invoke(&args, 1, &DataType::Int32).is_err());
    }
}
