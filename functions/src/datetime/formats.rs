//! Formatting and parsing: `date_format`/`date_parse` (MySQL patterns),
//! `format_datetime`/`parse_datetime` (Joda patterns), `from_iso8601_timestamp`,
//! `from_iso8601_date`, `to_iso8601`, `from_unixtime`, `to_unixtime`.
//!
//! Values Trino gives a time zone (`parse_datetime`, `from_iso8601_timestamp`,
//! `from_unixtime`) are timestamps in UTC; text without an offset is read in UTC, the session
//! zone.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder, StringBuilder};
use arrow::datatypes::{DataType, Float64Type, TimeUnit};
use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::ScalarUDF;

use super::patterns::{joda_to_strftime, mysql_to_strftime};
use super::{as_temporal, dates, naive, timestamps};
use crate::udf::{Udf, as_double, as_string, coerce_each};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        Udf::new("date_format", coerce_format, |_| Ok(DataType::Utf8), |a, r, _| format(a, r, mysql_to_strftime))
            .build(),
        Udf::new("format_datetime", coerce_format, |_| Ok(DataType::Utf8), |a, r, _| format(a, r, joda_to_strftime))
            .build(),
        Udf::new("date_parse", coerce_parse, |_| Ok(naive_timestamp()), |a, r, _| parse(a, r, mysql_to_strftime, None))
            .build(),
        Udf::new(
            "parse_datetime",
            coerce_parse,
            |_| Ok(utc_timestamp()),
            |a, r, _| parse(a, r, joda_to_strftime, Some(utc())),
        )
        .build(),
        Udf::new("from_iso8601_timestamp", coerce_text, |_| Ok(utc_timestamp()), from_iso8601_timestamp).build(),
        Udf::new("from_iso8601_date", coerce_text, |_| Ok(DataType::Date32), from_iso8601_date).build(),
        Udf::new("to_iso8601", coerce_iso_value, |_| Ok(DataType::Utf8), to_iso8601).build(),
        Udf::new("from_unixtime", coerce_seconds, |_| Ok(utc_timestamp()), from_unixtime).build(),
        Udf::new("to_unixtime", coerce_instant, |_| Ok(DataType::Float64), to_unixtime).build(),
    ]
}

fn utc() -> Arc<str> {
    Arc::from("UTC")
}

fn naive_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(utc()))
}

fn coerce_format(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_temporal, as_string], "(timestamp, varchar) or (date, varchar)")
}

fn coerce_parse(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string, as_string], "(varchar, varchar)")
}

fn coerce_text(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string], "(varchar)")
}

fn coerce_seconds(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_double], "(double)")
}

fn coerce_instant(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let rule = |t: &DataType| match as_temporal(t) {
        Some(DataType::Date32) => Some(naive_timestamp()),
        other => other,
    };
    coerce_each(name, types, &[rule], "(timestamp)")
}

/// `to_iso8601` keeps a timestamp's own precision (its unit), which decides the digits shown.
fn coerce_iso_value(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let rule = |t: &DataType| match t {
        DataType::Timestamp(..) | DataType::Date32 => Some(t.clone()),
        DataType::Date64 => Some(DataType::Date32),
        _ => None,
    };
    coerce_each(name, types, &[rule], "(date) or (timestamp)")
}

/// A pattern translated and checked once per distinct text (nearly always one literal).
struct Patterns {
    translate: fn(&str) -> Result<String>,
    last: Option<(String, Vec<Item<'static>>)>,
}

impl Patterns {
    fn new(translate: fn(&str) -> Result<String>) -> Self {
        Self { translate, last: None }
    }

    fn items(&mut self, pattern: &str) -> Result<&[Item<'static>]> {
        if self.last.as_ref().is_none_or(|(text, _)| text != pattern) {
            let strftime = (self.translate)(pattern)?;
            let items = match StrftimeItems::new(&strftime).parse_to_owned() {
                Ok(items) => items,
                Err(_) => return exec_err!("invalid date pattern '{pattern}'"),
            };
            self.last = Some((pattern.to_string(), items));
        }
        Ok(self.last.as_ref().map(|(_, items)| items.as_slice()).unwrap_or_default())
    }
}

fn format(args: &[ArrayRef], rows: usize, translate: fn(&str) -> Result<String>) -> Result<ArrayRef> {
    let patterns_text = args[1].as_string::<i32>();
    let mut patterns = Patterns::new(translate);
    let mut builder = StringBuilder::with_capacity(rows, rows * 16);
    for row in 0..rows {
        let Some(t) = naive(&args[0], row).filter(|_| patterns_text.is_valid(row)) else {
            builder.append_null();
            continue;
        };
        let items = patterns.items(patterns_text.value(row))?;
        let mut text = String::new();
        use std::fmt::Write;
        if write!(text, "{}", t.format_with_items(items.iter())).is_err() {
            return exec_err!("cannot format {t} with '{}'", patterns_text.value(row));
        }
        builder.append_value(text);
    }
    Ok(Arc::new(builder.finish()))
}

/// Parses `text` with `items`, taking January, the first and midnight for fields the pattern
/// leaves out (as Joda and MySQL do); an offset in the text is honoured.
fn parse_one(text: &str, items: &[Item<'static>]) -> Option<i64> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
    if parsed.year().is_none() && parsed.year_div_100().is_none() && parsed.year_mod_100().is_none() {
        parsed.set_year(1970).ok()?;
    }
    if parsed.month().is_none() && parsed.ordinal().is_none() && parsed.isoweek().is_none() {
        parsed.set_month(1).ok()?;
    }
    if parsed.day().is_none() && parsed.ordinal().is_none() && parsed.weekday().is_none() {
        parsed.set_day(1).ok()?;
    }
    if parsed.hour_div_12().is_none() && parsed.hour_mod_12().is_none() {
        parsed.set_hour(0).ok()?;
    }
    if parsed.minute().is_none() {
        parsed.set_minute(0).ok()?;
    }
    let local = parsed.to_naive_date().ok()?.and_time(parsed.to_naive_time().ok()?);
    let offset = parsed.offset().unwrap_or(0);
    Some(local.and_utc().timestamp_micros() - i64::from(offset) * 1_000_000)
}

fn parse(
    args: &[ArrayRef],
    rows: usize,
    translate: fn(&str) -> Result<String>,
    zone: Option<Arc<str>>,
) -> Result<ArrayRef> {
    let texts = args[0].as_string::<i32>();
    let patterns_text = args[1].as_string::<i32>();
    let mut patterns = Patterns::new(translate);
    let mut values = Vec::with_capacity(rows);
    for row in 0..rows {
        if texts.is_null(row) || patterns_text.is_null(row) {
            values.push(None);
            continue;
        }
        let (text, pattern) = (texts.value(row), patterns_text.value(row));
        match parse_one(text, patterns.items(pattern)?) {
            Some(micros) => values.push(Some(micros)),
            None => return exec_err!("Invalid format: \"{text}\" does not match the pattern '{pattern}'"),
        }
    }
    Ok(timestamps(values, zone))
}

/// An ISO 8601 date, date-time, or date-time with an offset, as UTC microseconds.
fn iso8601_micros(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text, pattern) {
            return Some(t.timestamp_micros());
        }
    }
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, pattern) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    iso8601_date(text).map(|d| d.and_time(NaiveTime::MIN).and_utc().timestamp_micros())
}

fn iso8601_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d"))
        .or_else(|_| NaiveDate::parse_from_str(&format!("{text}-01-01"), "%Y-%m-%d"))
        .ok()
}

/// Each row's text read by `read`; NULL stays NULL, text `read` refuses is an error naming `what`.
fn read_texts<T>(array: &ArrayRef, rows: usize, read: fn(&str) -> Option<T>, what: &str) -> Result<Vec<Option<T>>> {
    let texts = array.as_string::<i32>();
    (0..rows)
        .map(|row| {
            if texts.is_null(row) {
                return Ok(None);
            }
            match read(texts.value(row)) {
                Some(value) => Ok(Some(value)),
                None => exec_err!("Invalid format: \"{}\" is not an ISO 8601 {what}", texts.value(row)),
            }
        })
        .collect()
}

fn from_iso8601_timestamp(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    Ok(timestamps(read_texts(&args[0], rows, iso8601_micros, "timestamp")?, Some(utc())))
}

fn from_iso8601_date(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    Ok(dates(read_texts(&args[0], rows, iso8601_date, "date")?))
}

fn to_iso8601(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let (pattern, zone) = match args[0].data_type() {
        DataType::Date32 => ("%Y-%m-%d", None),
        DataType::Timestamp(unit, zone) => (
            match unit {
                TimeUnit::Second => "%Y-%m-%dT%H:%M:%S",
                TimeUnit::Millisecond => "%Y-%m-%dT%H:%M:%S%.3f",
                TimeUnit::Microsecond => "%Y-%m-%dT%H:%M:%S%.6f",
                TimeUnit::Nanosecond => "%Y-%m-%dT%H:%M:%S%.9f",
            },
            zone.clone(),
        ),
        other => return exec_err!("to_iso8601 of {other}"),
    };
    let values = match args[0].data_type() {
        DataType::Timestamp(..) => {
            arrow::compute::cast(&args[0], &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()))?
        }
        _ => Arc::clone(&args[0]),
    };
    let suffix = match zone.as_deref() {
        None => "",
        Some("UTC" | "+00:00" | "Z") => "Z",
        // Other zones are shown in UTC, where Glaux computes them.
        Some(_) => "Z",
    };
    let mut builder = StringBuilder::with_capacity(rows, rows * 24);
    for row in 0..rows {
        match naive(&values, row) {
            Some(t) => builder.append_value(format!("{}{suffix}", t.format(pattern))),
            None => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

fn from_unixtime(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let seconds = args[0].as_primitive::<Float64Type>();
    let mut values = Vec::with_capacity(rows);
    for row in 0..rows {
        if seconds.is_null(row) {
            values.push(None);
            continue;
        }
        let micros = seconds.value(row) * 1e6;
        if !micros.is_finite() || micros.abs() > 9.2e18 {
            return exec_err!("from_unixtime: {} is out of range", seconds.value(row));
        }
        values.push(Some(micros.round() as i64));
    }
    Ok(timestamps(values, Some(utc())))
}

fn to_unixtime(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = Float64Builder::with_capacity(rows);
    for row in 0..rows {
        builder.append_option(naive(&args[0], row).map(|t| t.and_utc().timestamp_micros() as f64 / 1e6));
    }
    Ok(Arc::new(builder.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(strftime: &str) -> Vec<Item<'static>> {
        StrftimeItems::new(strftime).parse_to_owned().expect("valid")
    }

    #[test]
    fn parsing_fills_missing_fields() {
        let at = |y, m, d, h, min| {
            NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(h, min, 0))
                .map(|t| t.and_utc().timestamp_micros())
        };
        assert_eq!(parse_one("2023/06/18", &items("%Y/%m/%d")), at(2023, 6, 18, 0, 0));
        assert_eq!(parse_one("2023-06", &items("%Y-%m")), at(2023, 6, 1, 0, 0));
        assert_eq!(parse_one("18 Jun 2023 07:30 PM", &items("%d %b %Y %I:%M %p")), at(2023, 6, 18, 19, 30));
        assert_eq!(parse_one("2023-06-18 10:00 +0200", &items("%Y-%m-%d %H:%M %z")), at(2023, 6, 18, 8, 0));
        assert_eq!(parse_one("not a date", &items("%Y-%m-%d")), None);
    }

    #[test]
    fn iso8601_forms() {
        let at = |h| {
            NaiveDate::from_ymd_opt(2020, 5, 11)
                .and_then(|d| d.and_hms_opt(h, 15, 5))
                .map(|t| t.and_utc().timestamp_micros())
        };
        assert_eq!(iso8601_micros("2020-05-11T11:15:05"), at(11));
        assert_eq!(iso8601_micros("2020-05-11T11:15:05Z"), at(11));
        assert_eq!(iso8601_micros("2020-05-11T11:15:05+02:00"), at(9));
        assert_eq!(iso8601_micros("2020-05-11T11:15:05.000-01:00"), at(12));
        assert!(iso8601_micros("2020-05-11").is_some());
        assert_eq!(iso8601_date("2020-05"), NaiveDate::from_ymd_opt(2020, 5, 1));
        assert_eq!(iso8601_micros("yesterday"), None);
    }
}
