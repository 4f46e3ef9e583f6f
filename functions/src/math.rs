//! Trino's math functions that DataFusion lacks or answers differently: `truncate`, `rand` /
//! `random` with bounds (`rand(n)` is an integer in `[0, n)`), `width_bucket`, `infinity()`,
//! `nan()`, `is_nan`, `is_finite`, `is_infinite`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Builder};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::ScalarUDF;
use rand::Rng;

use crate::udf::{Udf, as_double, as_integer, coerce_each, no_form};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        datafusion::functions::math::trunc().as_ref().clone().with_aliases(["truncate"]),
        Udf::new("random", coerce_random, random_type, random).aliases(&["rand"]).volatile().build(),
        Udf::new("width_bucket", coerce_width_bucket, |_| Ok(DataType::Int64), width_bucket).build(),
        Udf::new("infinity", no_arguments, |_| Ok(DataType::Float64), |_, rows, _| constant(f64::INFINITY, rows))
            .build(),
        Udf::new("nan", no_arguments, |_| Ok(DataType::Float64), |_, rows, _| constant(f64::NAN, rows)).build(),
        Udf::new("is_nan", coerce_double, |_| Ok(DataType::Boolean), |a, _, _| test(&a[0], f64::is_nan)).build(),
        Udf::new("is_finite", coerce_double, |_| Ok(DataType::Boolean), |a, _, _| test(&a[0], f64::is_finite)).build(),
        Udf::new("is_infinite", coerce_double, |_| Ok(DataType::Boolean), |a, _, _| test(&a[0], f64::is_infinite))
            .build(),
    ]
}

fn no_arguments(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    if types.is_empty() { Ok(vec![]) } else { no_form(name, types, "()") }
}

fn coerce_double(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_double], "(double)")
}

fn constant(value: f64, rows: usize) -> Result<ArrayRef> {
    ScalarValue::Float64(Some(value)).to_array_of_size(rows)
}

fn test(values: &ArrayRef, predicate: fn(f64) -> bool) -> Result<ArrayRef> {
    let values = values.as_primitive::<Float64Type>();
    Ok(Arc::new(values.iter().map(|v| v.map(predicate)).collect::<BooleanArray>()))
}

fn coerce_random(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let forms = "(), (bigint) or (bigint, bigint)";
    match types.len() {
        0 => Ok(vec![]),
        1 => coerce_each(name, types, &[as_integer], forms),
        _ => coerce_each(name, types, &[as_integer, as_integer], forms),
    }
}

fn random_type(types: &[DataType]) -> Result<DataType> {
    Ok(if types.is_empty() { DataType::Float64 } else { DataType::Int64 })
}

fn random(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut rng = rand::rng();
    if args.is_empty() {
        return Ok(Arc::new(Float64Array::from_iter_values((0..rows).map(|_| rng.random::<f64>()))));
    }
    let bound = |i: usize, row: usize| {
        let values = args[i].as_primitive::<Int64Type>();
        values.is_valid(row).then(|| values.value(row))
    };
    let mut builder = Int64Builder::with_capacity(rows);
    for row in 0..rows {
        let (low, high) = match args.len() {
            1 => (Some(0), bound(0, row)),
            _ => (bound(0, row), bound(1, row)),
        };
        match (low, high) {
            (Some(low), Some(high)) if low < high => builder.append_value(rng.random_range(low..high)),
            (Some(_), Some(_)) => {
                return exec_err!("bound must be positive and upper bound must be greater than lower bound");
            }
            _ => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

fn coerce_width_bucket(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let forms = "(double, double, double, bigint) or (double, array(double))";
    match types {
        [_, DataType::List(_) | DataType::LargeList(_)] if as_double(&types[0]).is_some() => {
            Ok(vec![DataType::Float64, DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))])
        }
        _ => coerce_each(name, types, &[as_double, as_double, as_double, as_integer], forms),
    }
}

fn width_bucket(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let values = args[0].as_primitive::<Float64Type>();
    let mut builder = Int64Builder::with_capacity(rows);
    if let Some(bins) = args[1].as_list_opt::<i32>() {
        for row in 0..rows {
            if values.is_null(row) || bins.is_null(row) {
                builder.append_null();
                continue;
            }
            let bins = bins.value(row);
            let bins = bins.as_primitive::<Float64Type>();
            if bins.null_count() > 0 {
                return exec_err!("Bin values cannot be NULL");
            }
            let x = values.value(row);
            builder.append_value(bins.values().partition_point(|&b| b <= x) as i64);
        }
        return Ok(Arc::new(builder.finish()));
    }
    let (lows, highs, counts) = (
        args[1].as_primitive::<Float64Type>(),
        args[2].as_primitive::<Float64Type>(),
        args[3].as_primitive::<Int64Type>(),
    );
    for row in 0..rows {
        if values.is_null(row) || lows.is_null(row) || highs.is_null(row) || counts.is_null(row) {
            builder.append_null();
            continue;
        }
        let (x, low, high, count) = (values.value(row), lows.value(row), highs.value(row), counts.value(row));
        if count <= 0 {
            return exec_err!("bucketCount must be greater than 0");
        }
        if !low.is_finite() || !high.is_finite() || low == high {
            return exec_err!("bounds must be finite and differ");
        }
        let (lower, upper, ascending) = if low < high { (low, high, true) } else { (high, low, false) };
        let bucket = if (ascending && x < lower) || (!ascending && x > upper) {
            0
        } else if (ascending && x >= upper) || (!ascending && x <= lower) {
            count + 1
        } else {
            let fraction = if ascending { (x - low) / (high - low) } else { (low - x) / (low - high) };
            (fraction * count as f64) as i64 + 1
        };
        builder.append_value(bucket);
    }
    Ok(Arc::new(builder.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let doubles = |v: Vec<f64>| -> ArrayRef { Arc::new(Float64Array::from(v)) };
        let values = doubles(vec![-1.0, 0.0, 3.3, 9.99, 10.0]);
        let args = [
            values,
            doubles(vec![0.0; 5]),
            doubles(vec![10.0; 5]),
            Arc::new(arrow::array::Int64Array::from(vec![5; 5])) as ArrayRef,
        ];
        let buckets = width_bucket(&args, 5, &DataType::Int64).expect("runs");
        assert_eq!(buckets.as_primitive::<Int64Type>().values().to_vec(), vec![0, 1, 2, 5, 6]);
    }
}
