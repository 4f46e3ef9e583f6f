//! Trino's array and map functions that DataFusion lacks or answers differently:
//! `element_at` (1-based, negative from the end, NULL out of range; a map's value),
//! `contains` (of arrays; DataFusion's string `contains` still answers for strings),
//! `sequence` (integers, dates, timestamps; descending when stop < start), and `slice`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, Int64Array, MutableArrayData, OffsetSizeTrait, make_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit};
use chrono::{Duration, Months, NaiveDateTime};
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{Expr, ScalarUDF, lit};

use crate::datetime::{as_temporal, dates, naive, timestamps};
use crate::udf::{Udf, as_integer, as_string, delegate, no_form};

/// Trino refuses longer sequences; so does Glaux, so a typo cannot build a huge array.
const MAX_SEQUENCE: usize = 10_000;

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        Udf::new("element_at", coerce_element_at, element_type, element_at).simplify(simplify_element_at).build(),
        Udf::new("contains", coerce_contains, |_| Ok(DataType::Boolean), contains).build(),
        Udf::new("sequence", coerce_sequence, |types| Ok(list_of(types[0].clone())), sequence).build(),
        Udf::new("slice", coerce_slice, |types| Ok(types[0].clone()), slice).build(),
    ]
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, true)))
}

fn list_field(t: &DataType) -> Option<&FieldRef> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => Some(f),
        _ => None,
    }
}

/// The map's key and value fields.
fn map_fields(t: &DataType) -> Option<(DataType, DataType)> {
    match t {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => {
                Some((fields[0].data_type().clone(), fields[1].data_type().clone()))
            }
            _ => None,
        },
        _ => None,
    }
}

fn coerce_element_at(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let forms = "(array(E), bigint) or (map(K, V), K)";
    match types {
        [list, index] if list_field(list).is_some() && as_integer(index).is_some() => Ok(vec![
            list_of(list_field(list).map(|f| f.data_type().clone()).unwrap_or(DataType::Null)),
            DataType::Int64,
        ]),
        [map, _] if map_fields(map).is_some() => {
            let (key, _) = map_fields(map).unwrap_or((DataType::Null, DataType::Null));
            Ok(vec![map.clone(), key])
        }
        _ => no_form(name, types, forms),
    }
}

fn element_type(types: &[DataType]) -> Result<DataType> {
    match (list_field(&types[0]), map_fields(&types[0])) {
        (Some(field), _) => Ok(field.data_type().clone()),
        (None, Some((_, value))) => Ok(value),
        _ => exec_err!("element_at of {}", types[0]),
    }
}

/// A map lookup is DataFusion's `map_extract` (a list of the matching values), first element.
fn simplify_element_at(args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
    let is_map = match args.first() {
        Some(map) => matches!(info.get_data_type(map)?, DataType::Map(..)),
        None => false,
    };
    if !is_map {
        return Ok(ExprSimplifyResult::Original(args));
    }
    let values = Expr::ScalarFunction(ScalarFunction::new_udf(
        datafusion::functions_nested::map_extract::map_extract_udf(),
        args,
    ));
    let first =
        ScalarFunction::new_udf(datafusion::functions_nested::extract::array_element_udf(), vec![values, lit(1i64)]);
    Ok(ExprSimplifyResult::Simplified(Expr::ScalarFunction(first)))
}

fn element_at(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let Some(lists) = args[0].as_list_opt::<i32>() else {
        return internal_err!("element_at of {} reached evaluation unsimplified", args[0].data_type());
    };
    let indexes = args[1].as_primitive::<Int64Type>();
    let mut positions = Vec::with_capacity(rows);
    for row in 0..rows {
        if lists.is_null(row) || indexes.is_null(row) {
            positions.push(None);
            continue;
        }
        let (start, end) = (lists.value_offsets()[row] as i64, lists.value_offsets()[row + 1] as i64);
        let index = indexes.value(row);
        if index == 0 {
            return exec_err!("SQL array indices start at 1");
        }
        let position = if index > 0 { start + index - 1 } else { end + index };
        positions.push((position >= start && position < end).then_some(position as u64));
    }
    let positions = arrow::array::UInt64Array::from(positions);
    Ok(arrow::compute::take(lists.values().as_ref(), &positions, None)?)
}

fn coerce_contains(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    match types {
        [list, _] if list_field(list).is_some() => {
            let element_type = list_field(list).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
            Ok(vec![list_of(element_type.clone()), element_type])
        }
        [a, b] if as_string(a).is_some() && as_string(b).is_some() => Ok(vec![DataType::Utf8, DataType::Utf8]),
        _ => no_form(name, types, "(array(T), T)"),
    }
}

fn contains(args: &[ArrayRef], rows: usize, return_type: &DataType) -> Result<ArrayRef> {
    match args[0].data_type() {
        DataType::Utf8 => delegate(&datafusion::functions::string::contains(), args, rows, return_type),
        _ => delegate(&datafusion::functions_nested::array_has::array_has_udf(), args, rows, return_type),
    }
}

fn coerce_sequence(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let forms = "(bigint, bigint), (bigint, bigint, bigint), (date, date), (date, date, interval), \
                 (timestamp, timestamp, interval)";
    let interval = DataType::Interval(IntervalUnit::MonthDayNano);
    let is_interval = |t: &DataType| matches!(t, DataType::Interval(_) | DataType::Duration(_));
    match types {
        [a, b] if as_integer(a).is_some() && as_integer(b).is_some() => Ok(vec![DataType::Int64, DataType::Int64]),
        [a, b, c] if as_integer(a).is_some() && as_integer(b).is_some() && as_integer(c).is_some() => {
            Ok(vec![DataType::Int64; 3])
        }
        [a, b, rest @ ..] if rest.len() <= 1 && rest.iter().all(is_interval) => {
            let temporal = match (as_temporal(a), as_temporal(b)) {
                (Some(DataType::Date32), Some(DataType::Date32)) => DataType::Date32,
                (Some(_), Some(_)) => DataType::Timestamp(TimeUnit::Microsecond, None),
                _ => return no_form(name, types, forms),
            };
            if rest.is_empty() && temporal != DataType::Date32 {
                return no_form(name, types, forms);
            }
            let mut coerced = vec![temporal.clone(), temporal];
            coerced.extend(rest.iter().map(|_| interval.clone()));
            Ok(coerced)
        }
        _ => no_form(name, types, forms),
    }
}

fn too_long<T>() -> Result<T> {
    exec_err!("result of sequence function must not have more than {MAX_SEQUENCE} entries")
}

fn sequence(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    match args[0].data_type() {
        DataType::Int64 => integer_sequence(args, rows),
        _ => temporal_sequence(args, rows),
    }
}

fn integer_sequence(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let (starts, stops) = (args[0].as_primitive::<Int64Type>(), args[1].as_primitive::<Int64Type>());
    let steps = args.get(2).map(|a| a.as_primitive::<Int64Type>());
    let mut values = Vec::new();
    let mut lengths = Vec::with_capacity(rows);
    let mut validity = Vec::with_capacity(rows);
    for row in 0..rows {
        let step = match steps {
            Some(steps) if steps.is_null(row) => None,
            Some(steps) => Some(steps.value(row)),
            None => Some(if stops.value(row) >= starts.value(row) { 1 } else { -1 }),
        };
        let (Some(step), false, false) = (step, starts.is_null(row), stops.is_null(row)) else {
            lengths.push(0);
            validity.push(false);
            continue;
        };
        let (start, stop) = (starts.value(row), stops.value(row));
        if step == 0 {
            return exec_err!("step must not be zero");
        }
        if (stop > start && step < 0) || (stop < start && step > 0) {
            return exec_err!(
                "sequence stop value should be greater than or equal to start value if step is greater than zero otherwise stop should be less than or equal to start"
            );
        }
        let count = ((i128::from(stop) - i128::from(start)) / i128::from(step) + 1) as usize;
        if count > MAX_SEQUENCE {
            return too_long();
        }
        values.extend((0..count as i64).map(|i| start + i * step));
        lengths.push(count);
        validity.push(true);
    }
    let values: ArrayRef = Arc::new(Int64Array::from(values));
    list_array(values, lengths, validity)
}

/// Adds an interval of months, days and nanoseconds.
fn add_interval(t: NaiveDateTime, months: i32, days: i32, nanos: i64) -> Option<NaiveDateTime> {
    let magnitude = Months::new(months.unsigned_abs());
    let t = if months >= 0 { t.checked_add_months(magnitude)? } else { t.checked_sub_months(magnitude)? };
    t.checked_add_signed(Duration::days(i64::from(days)))?.checked_add_signed(Duration::nanoseconds(nanos))
}

fn temporal_sequence(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let date = args[0].data_type() == &DataType::Date32;
    let steps = args.get(2).map(|a| a.as_primitive::<IntervalMonthDayNanoType>());
    let mut values: Vec<NaiveDateTime> = Vec::new();
    let mut lengths = Vec::with_capacity(rows);
    let mut validity = Vec::with_capacity(rows);
    for row in 0..rows {
        let (start, stop) = match (naive(&args[0], row), naive(&args[1], row)) {
            (Some(start), Some(stop)) => (start, stop),
            _ => {
                lengths.push(0);
                validity.push(false);
                continue;
            }
        };
        let (months, days, nanos) = match steps {
            Some(steps) if steps.is_null(row) => {
                lengths.push(0);
                validity.push(false);
                continue;
            }
            Some(steps) => {
                let step = steps.value(row);
                (step.months, step.days, step.nanoseconds)
            }
            None => (0, if stop >= start { 1 } else { -1 }, 0),
        };
        let ascending = months > 0 || (months == 0 && (days > 0 || (days == 0 && nanos > 0)));
        if months == 0 && days == 0 && nanos == 0 {
            return exec_err!("step must not be zero");
        }
        if date && nanos != 0 {
            return exec_err!("sequence step must be a day interval if start and end values are dates");
        }
        // Element i is start + i * step (not the previous element plus step), so month steps
        // from the 31st land on each month's last day: Jan 31, Feb 28, Mar 31.
        let mut count = 0;
        let mut current = start;
        while (ascending && current <= stop) || (!ascending && current >= stop) {
            count += 1;
            if count > MAX_SEQUENCE {
                return too_long();
            }
            values.push(current);
            let i = count as i64;
            let (Ok(m), Ok(d)) = (i32::try_from(i64::from(months) * i), i32::try_from(i64::from(days) * i)) else {
                break;
            };
            let Some(next) = nanos.checked_mul(i).and_then(|n| add_interval(start, m, d, n)) else { break };
            current = next;
        }
        lengths.push(count);
        validity.push(true);
    }
    let values = if date {
        dates(values.into_iter().map(|t| Some(t.date())).collect())
    } else {
        timestamps(values.into_iter().map(|t| Some(t.and_utc().timestamp_micros())).collect(), None)
    };
    list_array(values, lengths, validity)
}

fn list_array(values: ArrayRef, lengths: Vec<usize>, validity: Vec<bool>) -> Result<ArrayRef> {
    let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    let nulls = arrow::buffer::NullBuffer::from(validity);
    Ok(Arc::new(GenericListArray::<i32>::try_new(field, OffsetBuffer::from_lengths(lengths), values, Some(nulls))?))
}

fn coerce_slice(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    match types {
        [list, start, length]
            if list_field(list).is_some() && as_integer(start).is_some() && as_integer(length).is_some() =>
        {
            Ok(vec![
                list_of(list_field(list).map(|f| f.data_type().clone()).unwrap_or(DataType::Null)),
                DataType::Int64,
                DataType::Int64,
            ])
        }
        _ => no_form(name, types, "(array(E), bigint, bigint)"),
    }
}

fn slice(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let Some(lists) = args[0].as_list_opt::<i32>() else { return exec_err!("slice of {}", args[0].data_type()) };
    let (starts, lengths) = (args[1].as_primitive::<Int64Type>(), args[2].as_primitive::<Int64Type>());
    let mut ranges = Vec::with_capacity(rows);
    for row in 0..rows {
        if lists.is_null(row) || starts.is_null(row) || lengths.is_null(row) {
            ranges.push(None);
            continue;
        }
        let (start, length) = (starts.value(row), lengths.value(row));
        if start == 0 {
            return exec_err!("SQL array indices start at 1");
        }
        if length < 0 {
            return exec_err!("length must be greater than or equal to 0");
        }
        let size = lists.value_length(row) as i64;
        let from = if start > 0 { start - 1 } else { size + start };
        let (from, to) = if from < 0 || from >= size { (0, 0) } else { (from, (from + length).min(size)) };
        ranges.push(Some((from as usize, to as usize)));
    }
    sub_lists(lists, &ranges)
}

/// A list array holding, for each row, the given sub-range of its list (`None`: NULL).
fn sub_lists<O: OffsetSizeTrait>(lists: &GenericListArray<O>, ranges: &[Option<(usize, usize)>]) -> Result<ArrayRef> {
    let values = lists.values().to_data();
    let mut data = MutableArrayData::new(vec![&values], true, 0);
    let mut lengths = Vec::with_capacity(ranges.len());
    for (row, range) in ranges.iter().enumerate() {
        let base = lists.value_offsets()[row].as_usize();
        let (from, to) = range.unwrap_or((0, 0));
        data.try_extend(0, base + from, base + to)?;
        lengths.push(to - from);
    }
    let values = make_array(data.freeze());
    let field = match lists.data_type() {
        DataType::List(field) | DataType::LargeList(field) => Arc::clone(field),
        other => return exec_err!("slice of {other}"),
    };
    let nulls = arrow::buffer::NullBuffer::from(ranges.iter().map(Option::is_some).collect::<Vec<_>>());
    Ok(Arc::new(GenericListArray::<i32>::try_new(field, OffsetBuffer::from_lengths(lengths), values, Some(nulls))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(array: &ArrayRef) -> Vec<String> {
        let options = arrow::util::display::FormatOptions::default().with_null("NULL");
        let formatter = arrow::util::display::ArrayFormatter::try_new(array, &options).expect("formatter");
        (0..array.len()).map(|i| formatter.value(i).to_string()).collect()
    }

    fn lists() -> ArrayRef {
        Arc::new(GenericListArray::<i32>::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2), Some(3), Some(4)]),
            None,
            Some(vec![]),
        ]))
    }

    #[test]
    fn elements_by_position() {
        let index = |i: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![i; 3])) };
        assert_eq!(
            show(&element_at(&[lists(), index(2)], 3, &DataType::Int64).expect("runs")),
            vec!["2", "NULL", "NULL"]
        );
        assert_eq!(
            show(&element_at(&[lists(), index(-1)], 3, &DataType::Int64).expect("runs")),
            vec!["4", "NULL", "NULL"]
        );
        assert_eq!(
            show(&element_at(&[lists(), index(9)], 3, &DataType::Int64).expect("runs")),
            vec!["NULL", "NULL", "NULL"]
        );
        assert!(element_at(&[lists(), index(0)], 3, &DataType::Int64).is_err());
    }

    #[test]
    fn slices() {
        let int = |i: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![i; 3])) };
        assert_eq!(
            show(&slice(&[lists(), int(2), int(2)], 3, &DataType::Null).expect("runs")),
            vec!["[2, 3]", "NULL", "[]"]
        );
        assert_eq!(
            show(&slice(&[lists(), int(-2), int(5)], 3, &DataType::Null).expect("runs")),
            vec!["[3, 4]", "NULL", "[]"]
        );
    }

    #[test]
    fn integer_sequences() {
        let int = |i: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![i])) };
        assert_eq!(show(&sequence(&[int(1), int(4)], 1, &DataType::Null).expect("runs")), vec!["[1, 2, 3, 4]"]);
        assert_eq!(show(&sequence(&[int(3), int(1)], 1, &DataType::Null).expect("runs")), vec!["[3, 2, 1]"]);
        assert_eq!(show(&sequence(&[int(0), int(10), int(5)], 1, &DataType::Null).expect("runs")), vec!["[0, 5, 10]"]);
        assert!(sequence(&[int(0), int(10), int(-1)], 1, &DataType::Null).is_err());
        assert!(sequence(&[int(0), int(1_000_000)], 1, &DataType::Null).is_err());
    }
}
