//! Trino's date and time functions: `date`, field extraction (`year` ... `second`,
//! `day_of_week`, `week`, ...), `last_day_of_month`, `current_timezone`; arithmetic
//! (`arithmetic.rs`: `date_trunc`, `date_add`, `date_diff`) and formatting and parsing
//! (`formats.rs`: MySQL and Joda patterns, ISO 8601, Unix time).
//!
//! Timestamps are computed at microsecond precision. A timestamp with a time zone is
//! computed in UTC, Glaux's session zone, except by the field extractions, which read the
//! value's own zone.

mod arithmetic;
mod formats;
mod patterns;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Date32Builder};
use arrow::compute::kernels::temporal::{DatePart, date_part};
use arrow::datatypes::{DataType, Date32Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::simplify::ExprSimplifyResult;
use datafusion::logical_expr::{Expr, ScalarUDF, cast, lit};

pub use patterns::{joda_to_strftime, mysql_to_strftime};

use crate::udf::{Udf, arc, as_string, coerce_each, no_form};

pub fn functions() -> Vec<ScalarUDF> {
    let mut functions = vec![
        Udf::new("date", coerce_to_date, |_| Ok(DataType::Date32), to_date).simplify(simplify_date).build(),
        Udf::new("last_day_of_month", coerce_temporal, |_| Ok(DataType::Date32), last_day_of_month).build(),
        Udf::new("current_timezone", coerce_nothing, |_| Ok(DataType::Utf8), current_timezone)
            .stable()
            .simplify(|_, info| {
                let zone = info.config_options().execution.time_zone.clone().unwrap_or_else(|| "UTC".into());
                Ok(ExprSimplifyResult::Simplified(lit(zone)))
            })
            .build(),
    ];
    functions.extend(extractions());
    functions.extend(arithmetic::functions());
    functions.extend(formats::functions());
    functions
}

macro_rules! extraction {
    ($name:literal, [$($alias:literal),*], $part:expr) => {
        Udf::new($name, coerce_temporal, |_| Ok(DataType::Int64), |args, _, _| extract(&args[0], $part))
            .aliases(&[$($alias),*])
            .build()
    };
}

fn extractions() -> Vec<ScalarUDF> {
    vec![
        extraction!("year", [], DatePart::Year),
        extraction!("year_of_week", ["yow"], DatePart::YearISO),
        extraction!("quarter", [], DatePart::Quarter),
        extraction!("month", [], DatePart::Month),
        extraction!("week", ["week_of_year"], DatePart::WeekISO),
        extraction!("day", ["day_of_month"], DatePart::Day),
        extraction!("day_of_week", ["dow"], DatePart::DayOfWeekMonday1),
        extraction!("day_of_year", ["doy"], DatePart::DayOfYear),
        extraction!("hour", [], DatePart::Hour),
        extraction!("minute", [], DatePart::Minute),
        extraction!("second", [], DatePart::Second),
        extraction!("millisecond", [], DatePart::Millisecond),
    ]
}

fn extract(array: &ArrayRef, part: DatePart) -> Result<ArrayRef> {
    let part = date_part(array.as_ref(), part)?;
    Ok(arrow::compute::cast(&part, &DataType::Int64)?)
}

fn coerce_nothing(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    if types.is_empty() { Ok(vec![]) } else { no_form(name, types, "()") }
}

/// A date or timestamp argument: dates stay dates, timestamps become microsecond timestamps in
/// their zone, text is read as a timestamp.
pub(crate) fn as_temporal(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Date32 | DataType::Date64 => Some(DataType::Date32),
        DataType::Timestamp(_, zone) => Some(DataType::Timestamp(TimeUnit::Microsecond, zone.clone())),
        t if as_string(t).is_some() => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        _ => None,
    }
}

fn coerce_temporal(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_temporal], "(date) or (timestamp)")
}

fn coerce_to_date(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let rule = |t: &DataType| match t {
        DataType::Timestamp(..) => Some(t.clone()),
        t => as_temporal(t).map(|_| if as_string(t).is_some() { DataType::Utf8 } else { DataType::Date32 }),
    };
    coerce_each(name, types, &[rule], "(varchar), (timestamp) or (date)")
}

/// `date(x)` is `CAST(x AS DATE)`.
fn simplify_date(
    mut args: Vec<Expr>,
    _: &datafusion::logical_expr::simplify::SimplifyContext,
) -> Result<ExprSimplifyResult> {
    match args.pop() {
        Some(arg) if args.is_empty() => Ok(ExprSimplifyResult::Simplified(cast(arg, DataType::Date32))),
        Some(arg) => {
            args.push(arg);
            Ok(ExprSimplifyResult::Original(args))
        }
        None => Ok(ExprSimplifyResult::Original(args)),
    }
}

fn to_date(args: &[ArrayRef], _: usize, _: &DataType) -> Result<ArrayRef> {
    Ok(arrow::compute::cast(&args[0], &DataType::Date32)?)
}

fn current_timezone(_: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    ScalarValue::Utf8(Some("UTC".into())).to_array_of_size(rows)
}

fn last_day_of_month(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = Date32Builder::with_capacity(rows);
    for row in 0..rows {
        builder.append_option(naive(&args[0], row).and_then(|t| last_day(t.date())).map(days_since_epoch));
    }
    Ok(arc(builder.finish()))
}

fn last_day(date: NaiveDate) -> Option<NaiveDate> {
    let first_of_next = if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    };
    first_of_next?.pred_opt()
}

/// Row `row` of a coerced temporal argument (a `Date32` or a microsecond timestamp) as a
/// date-time; `None` for NULL.
pub(crate) fn naive(array: &ArrayRef, row: usize) -> Option<NaiveDateTime> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Date32 => {
            date_from_days(array.as_primitive::<Date32Type>().value(row)).and_then(|d| d.and_hms_opt(0, 0, 0))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            DateTime::from_timestamp_micros(array.as_primitive::<TimestampMicrosecondType>().value(row))
                .map(|t| t.naive_utc())
        }
        _ => None,
    }
}

pub(crate) fn date_from_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(i64::from(days)))
}

pub(crate) fn days_since_epoch(date: NaiveDate) -> i32 {
    date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// A microsecond timestamp array of `values` in `zone`.
pub(crate) fn timestamps(values: Vec<Option<i64>>, zone: Option<Arc<str>>) -> ArrayRef {
    arc(arrow::array::TimestampMicrosecondArray::from(values).with_timezone_opt(zone))
}

/// A date array of `values`.
pub(crate) fn dates(values: Vec<Option<NaiveDate>>) -> ArrayRef {
    arc(Date32Array::from(values.into_iter().map(|d| d.map(days_since_epoch)).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_of_fields() {
        let micros = NaiveDate::from_ymd_opt(2023, 1, 1)
            .and_then(|d| d.and_hms_micro_opt(13, 4, 5, 678_000))
            .map(|t| t.and_utc().timestamp_micros());
        let array = timestamps(vec![micros], None);
        let get =
            |part| extract(&array, part).expect("extracts").as_primitive::<arrow::datatypes::Int64Type>().value(0);
        // 2023-01-01 is a Sunday in ISO week 52 of 2022.
        assert_eq!(get(DatePart::DayOfWeekMonday1), 7);
        assert_eq!(get(DatePart::WeekISO), 52);
        assert_eq!(get(DatePart::YearISO), 2022);
        assert_eq!(get(DatePart::DayOfYear), 1);
        assert_eq!(get(DatePart::Millisecond), 678);
        assert_eq!(get(DatePart::Second), 5);
    }

    #[test]
    fn last_days() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert_eq!(last_day(day(2024, 2, 10)), Some(day(2024, 2, 29)));
        assert_eq!(last_day(day(2023, 12, 31)), Some(day(2023, 12, 31)));
    }
}
