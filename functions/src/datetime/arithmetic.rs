//! `date_trunc(unit, x)`, `date_add(unit, n, x)` and `date_diff(unit, x, y)` with Trino's units
//! (`millisecond` ... `year`) and semantics: dates stay dates, adding months clamps to the end
//! of the month, and a difference counts whole units (`date_diff('month', DATE '2023-01-31',
//! DATE '2023-02-28')` is 1, as the end of February is a month after the end of January).

use arrow::array::{Array, ArrayRef, AsArray, Int64Builder};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use chrono::{Datelike, Duration, Months, NaiveDateTime, Timelike};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::ScalarUDF;

use super::{as_temporal, dates, naive, timestamps};
use crate::udf::{Udf, as_integer, as_string, coerce_each};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        Udf::new("date_trunc", coerce_trunc, |types| Ok(types[1].clone()), date_trunc).aliases(&["datetrunc"]).build(),
        Udf::new("date_add", coerce_add, |types| Ok(types[2].clone()), date_add).build(),
        Udf::new("date_diff", coerce_diff, |_| Ok(DataType::Int64), date_diff).build(),
    ]
}

enum Span {
    Months(u32),
    Fixed(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Unit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    fn parse(text: &str) -> Result<Self> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "millisecond" | "milliseconds" => Unit::Millisecond,
            "second" | "seconds" => Unit::Second,
            "minute" | "minutes" => Unit::Minute,
            "hour" | "hours" => Unit::Hour,
            "day" | "days" => Unit::Day,
            "week" | "weeks" => Unit::Week,
            "month" | "months" => Unit::Month,
            "quarter" | "quarters" => Unit::Quarter,
            "year" | "years" => Unit::Year,
            _ => {
                return exec_err!(
                    "'{text}' is not a valid unit: use millisecond, second, minute, hour, day, week, month, quarter or year"
                );
            }
        })
    }

    /// A unit of calendar months (how many), or of fixed length (how long).
    fn span(self) -> Span {
        match self {
            Unit::Millisecond => Span::Fixed(Duration::milliseconds(1)),
            Unit::Second => Span::Fixed(Duration::seconds(1)),
            Unit::Minute => Span::Fixed(Duration::minutes(1)),
            Unit::Hour => Span::Fixed(Duration::hours(1)),
            Unit::Day => Span::Fixed(Duration::days(1)),
            Unit::Week => Span::Fixed(Duration::weeks(1)),
            Unit::Month => Span::Months(1),
            Unit::Quarter => Span::Months(3),
            Unit::Year => Span::Months(12),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Millisecond => "millisecond",
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Quarter => "quarter",
            Unit::Year => "year",
        }
    }

    fn is_date_unit(self) -> bool {
        matches!(self, Unit::Day | Unit::Week | Unit::Month | Unit::Quarter | Unit::Year)
    }
}

fn coerce_trunc(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string, as_temporal], "(varchar, date) or (varchar, timestamp)")
}

fn coerce_add(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(
        name,
        types,
        &[as_string, as_integer, as_temporal],
        "(varchar, bigint, date) or (varchar, bigint, timestamp)",
    )
}

fn coerce_diff(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let forms = "(varchar, date, date) or (varchar, timestamp, timestamp)";
    let mut coerced = coerce_each(name, types, &[as_string, as_temporal, as_temporal], forms)?;
    // Both sides as timestamps unless both are dates.
    if coerced[1] != coerced[2] {
        let timestamp = [&coerced[1], &coerced[2]]
            .into_iter()
            .find(|t| matches!(t, DataType::Timestamp(..)))
            .cloned()
            .unwrap_or(DataType::Timestamp(TimeUnit::Microsecond, None));
        coerced[1] = timestamp.clone();
        coerced[2] = timestamp;
    }
    Ok(coerced)
}

/// The unit of each row (they are nearly always one literal).
fn units(array: &ArrayRef, rows: usize) -> Result<Vec<Option<Unit>>> {
    let texts = array.as_string::<i32>();
    let mut last: Option<(String, Unit)> = None;
    (0..rows)
        .map(|row| {
            if texts.is_null(row) {
                return Ok(None);
            }
            let text = texts.value(row);
            if let Some((seen, unit)) = &last
                && seen == text
            {
                return Ok(Some(*unit));
            }
            let unit = Unit::parse(text)?;
            last = Some((text.to_string(), unit));
            Ok(Some(unit))
        })
        .collect()
}

/// Builds the result for a temporal output type from date-times.
fn temporal_result(values: Vec<Option<NaiveDateTime>>, output: &DataType) -> Result<ArrayRef> {
    match output {
        DataType::Date32 => Ok(dates(values.into_iter().map(|v| v.map(|t| t.date())).collect())),
        DataType::Timestamp(_, zone) => Ok(timestamps(
            values.into_iter().map(|v| v.map(|t| t.and_utc().timestamp_micros())).collect(),
            zone.clone(),
        )),
        other => exec_err!("unexpected result type {other}"),
    }
}

fn truncate(t: NaiveDateTime, unit: Unit) -> Option<NaiveDateTime> {
    let day = t.date();
    Some(match unit {
        Unit::Millisecond => t.with_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)?,
        Unit::Second => t.with_nanosecond(0)?,
        Unit::Minute => t.with_nanosecond(0)?.with_second(0)?,
        Unit::Hour => t.with_nanosecond(0)?.with_second(0)?.with_minute(0)?,
        Unit::Day => day.and_hms_opt(0, 0, 0)?,
        Unit::Week => (day - Duration::days(i64::from(day.weekday().num_days_from_monday()))).and_hms_opt(0, 0, 0)?,
        Unit::Month => day.with_day(1)?.and_hms_opt(0, 0, 0)?,
        Unit::Quarter => day.with_day(1)?.with_month((day.month0() / 3) * 3 + 1)?.and_hms_opt(0, 0, 0)?,
        Unit::Year => day.with_day(1)?.with_month(1)?.and_hms_opt(0, 0, 0)?,
    })
}

fn date_trunc(args: &[ArrayRef], rows: usize, output: &DataType) -> Result<ArrayRef> {
    let units = units(&args[0], rows)?;
    let mut values = Vec::with_capacity(rows);
    for (row, unit) in units.into_iter().enumerate() {
        let value = match (unit, naive(&args[1], row)) {
            (Some(unit), Some(t)) => {
                if *output == DataType::Date32 && !unit.is_date_unit() {
                    return exec_err!("'{}' is not a valid DATE field", unit.name());
                }
                truncate(t, unit)
            }
            _ => None,
        };
        values.push(value);
    }
    temporal_result(values, output)
}

fn add(t: NaiveDateTime, unit: Unit, n: i64) -> Option<NaiveDateTime> {
    match unit.span() {
        Span::Months(months) => {
            let months = n.checked_mul(i64::from(months))?;
            let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
            if months >= 0 { t.checked_add_months(magnitude) } else { t.checked_sub_months(magnitude) }
        }
        Span::Fixed(length) => t.checked_add_signed(length.checked_mul(i32::try_from(n).ok()?)?),
    }
}

fn date_add(args: &[ArrayRef], rows: usize, output: &DataType) -> Result<ArrayRef> {
    let units = units(&args[0], rows)?;
    let amounts = args[1].as_primitive::<Int64Type>();
    let mut values = Vec::with_capacity(rows);
    for (row, unit) in units.into_iter().enumerate() {
        let value = match (unit, amounts.is_valid(row), naive(&args[2], row)) {
            (Some(unit), true, Some(t)) => {
                if *output == DataType::Date32 && !unit.is_date_unit() {
                    return exec_err!("'{}' is not a valid DATE field", unit.name());
                }
                match add(t, unit, amounts.value(row)) {
                    Some(sum) => Some(sum),
                    None => {
                        return exec_err!(
                            "date_add: {} {}(s) from {t} is out of range",
                            amounts.value(row),
                            unit.name()
                        );
                    }
                }
            }
            _ => None,
        };
        values.push(value);
    }
    temporal_result(values, output)
}

/// Whole `unit`s from `a` to `b` (negative when `b` is earlier).
fn difference(a: NaiveDateTime, b: NaiveDateTime, unit: Unit) -> Option<i64> {
    match unit.span() {
        Span::Fixed(length) => {
            let micros = (b - a).num_microseconds()?;
            Some(micros / length.num_microseconds()?)
        }
        Span::Months(months_per_unit) => {
            let mut months = i64::from(b.year() - a.year()) * 12 + i64::from(b.month()) - i64::from(a.month());
            // Calendar months overcount when `b` falls before `a`'s day and time in its month.
            if months > 0 && add(a, Unit::Month, months)? > b {
                months -= 1;
            } else if months < 0 && add(a, Unit::Month, months)? < b {
                months += 1;
            }
            Some(months / i64::from(months_per_unit))
        }
    }
}

fn date_diff(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let units = units(&args[0], rows)?;
    let mut builder = Int64Builder::with_capacity(rows);
    for (row, unit) in units.into_iter().enumerate() {
        match (unit, naive(&args[1], row), naive(&args[2], row)) {
            (Some(unit), Some(a), Some(b)) => builder.append_option(difference(a, b, unit)),
            _ => builder.append_null(),
        }
    }
    Ok(std::sync::Arc::new(builder.finish()))
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(h, min, s)).expect("valid")
    }

    #[test]
    fn truncation_by_unit() {
        let t = at(2023, 8, 17, 13, 45, 12);
        assert_eq!(truncate(t, Unit::Week), Some(at(2023, 8, 14, 0, 0, 0)));
        assert_eq!(truncate(t, Unit::Quarter), Some(at(2023, 7, 1, 0, 0, 0)));
        assert_eq!(truncate(t, Unit::Hour), Some(at(2023, 8, 17, 13, 0, 0)));
    }

    #[test]
    fn adding_clamps_to_month_ends() {
        assert_eq!(add(at(2023, 1, 31, 0, 0, 0), Unit::Month, 1), Some(at(2023, 2, 28, 0, 0, 0)));
        assert_eq!(add(at(2024, 2, 29, 0, 0, 0), Unit::Year, -1), Some(at(2023, 2, 28, 0, 0, 0)));
        assert_eq!(add(at(2023, 1, 1, 23, 0, 0), Unit::Hour, 2), Some(at(2023, 1, 2, 1, 0, 0)));
    }

    #[test]
    fn differences_count_whole_units() {
        assert_eq!(difference(at(2023, 1, 31, 0, 0, 0), at(2023, 2, 28, 0, 0, 0), Unit::Month), Some(1));
        assert_eq!(difference(at(2023, 1, 15, 0, 0, 0), at(2023, 2, 14, 0, 0, 0), Unit::Month), Some(0));
        assert_eq!(difference(at(2023, 3, 15, 0, 0, 0), at(2023, 1, 16, 0, 0, 0), Unit::Month), Some(-1));
        assert_eq!(difference(at(2020, 2, 29, 0, 0, 0), at(2021, 2, 28, 0, 0, 0), Unit::Year), Some(1));
        assert_eq!(difference(at(2023, 1, 1, 0, 0, 0), at(2023, 1, 2, 12, 0, 0), Unit::Day), Some(1));
        assert_eq!(difference(at(2023, 1, 2, 12, 0, 0), at(2023, 1, 1, 0, 0, 0), Unit::Hour), Some(-36));
    }
}
