//! A Delta file's statistics, as the log keeps them (`numRecords`, `minValues`, `maxValues`,
//! `nullCount`, in JSON), turned into DataFusion's: what prunes files before any is read, and
//! what the planner's estimates start from.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use serde_json::Value;

/// Writers truncate long strings in `maxValues` (Spark and delta-rs to 32 characters), so a
/// string maximum that long may be below the file's true maximum: it is not used.
const TRUNCATED_STRING_CHARS: usize = 32;

/// The statistics of one file over `schema` (data columns, then partition keys): from the log's
/// `stats` JSON for data columns, and each partition key's value as its minimum and maximum.
/// Anything the log does not say (or says in a form that does not parse) is unknown.
pub(crate) fn file_statistics(
    schema: &Schema,
    stats: Option<&str>,
    partition_values: &[(usize, ScalarValue)],
    size: u64,
) -> Statistics {
    let parsed: Option<Value> = stats.and_then(|s| serde_json::from_str(s).ok());
    let section = |name: &str| parsed.as_ref().and_then(|p| p.get(name)).and_then(Value::as_object);
    let (min, max, nulls) = (section("minValues"), section("maxValues"), section("nullCount"));
    let rows = parsed.as_ref().and_then(|p| p.get("numRecords")).and_then(Value::as_u64);
    let mut columns: Vec<ColumnStatistics> = schema
        .fields()
        .iter()
        .map(|field| {
            let value = |section: Option<&serde_json::Map<String, Value>>| {
                section.and_then(|s| s.get(field.name())).and_then(|v| scalar(v, field.data_type()))
            };
            let max_value = value(max).filter(|v| !is_truncated(v));
            ColumnStatistics {
                null_count: nulls
                    .and_then(|n| n.get(field.name()))
                    .and_then(Value::as_u64)
                    .map_or(Precision::Absent, |n| Precision::Exact(n as usize)),
                max_value: max_value.map_or(Precision::Absent, Precision::Exact),
                min_value: value(min).map_or(Precision::Absent, Precision::Exact),
                ..ColumnStatistics::new_unknown()
            }
        })
        .collect();
    for (index, value) in partition_values {
        if let Some(column) = columns.get_mut(*index) {
            let nulls = match (value.is_null(), rows) {
                (true, Some(rows)) => Precision::Exact(rows as usize),
                (false, _) => Precision::Exact(0),
                (true, None) => Precision::Absent,
            };
            *column = ColumnStatistics {
                null_count: nulls,
                min_value: Precision::Exact(value.clone()),
                max_value: Precision::Exact(value.clone()),
                distinct_count: Precision::Exact(1),
                ..ColumnStatistics::new_unknown()
            };
        }
    }
    Statistics {
        num_rows: rows.map_or(Precision::Absent, |r| Precision::Exact(r as usize)),
        total_byte_size: Precision::Inexact(size as usize),
        column_statistics: columns,
    }
}

fn is_truncated(value: &ScalarValue) -> bool {
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            s.chars().count() >= TRUNCATED_STRING_CHARS
        }
        _ => false,
    }
}

/// A statistic's JSON value as a value of the column's type; `None` for nested columns, nulls,
/// and anything that does not convert exactly.
fn scalar(value: &Value, data_type: &DataType) -> Option<ScalarValue> {
    if data_type.is_nested() {
        return None;
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    ScalarValue::try_from_string(text, data_type).ok().filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn the_log_statistics_become_exact_bounds_and_partition_values_fixed_ones() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("day", DataType::Date32, true),
        ]);
        let long = "x".repeat(40);
        let stats = format!(
            r#"{{"numRecords":3,"minValues":{{"id":1,"name":"a","at":"2024-01-01T00:00:00.000Z"}},
               "maxValues":{{"id":9,"name":"{long}","at":"2024-01-02T00:00:00.000Z"}},"nullCount":{{"id":0,"name":1}}}}"#
        );
        let day = ScalarValue::Date32(Some(19_723));
        let statistics = file_statistics(&schema, Some(&stats), &[(3, day.clone())], 100);
        assert_eq!(statistics.num_rows, Precision::Exact(3));
        let id = &statistics.column_statistics[0];
        assert_eq!(id.min_value, Precision::Exact(ScalarValue::Int64(Some(1))));
        assert_eq!(id.max_value, Precision::Exact(ScalarValue::Int64(Some(9))));
        assert_eq!(id.null_count, Precision::Exact(0));
        let name = &statistics.column_statistics[1];
        assert_eq!(name.min_value, Precision::Exact(ScalarValue::Utf8(Some("a".into()))));
        assert_eq!(name.max_value, Precision::Absent, "a truncated maximum is not a bound");
        let at = &statistics.column_statistics[2];
        assert_eq!(
            at.min_value,
            Precision::Exact(ScalarValue::TimestampMicrosecond(Some(1_704_067_200_000_000), Some("UTC".into())))
        );
        assert_eq!(statistics.column_statistics[3].min_value, Precision::Exact(day.clone()));
        assert_eq!(statistics.column_statistics[3].max_value, Precision::Exact(day));
        let none = file_statistics(&schema, Some("not json"), &[], 5);
        assert_eq!(none.num_rows, Precision::Absent);
        assert!(none.column_statistics.iter().all(|c| c.min_value == Precision::Absent));
    }
}
