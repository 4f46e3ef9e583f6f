//! Arrow types under their Trino names (`varchar`, `bigint`, `array(integer)`, `row(a
//! varchar)`), for `typeof` and for error messages Athena users can read.

use arrow::datatypes::{DataType, TimeUnit};

/// The Trino name of an Arrow type.
pub fn trino_type_name(t: &DataType) -> String {
    match t {
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => format!("{t}").to_lowercase(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => format!("decimal({p},{s})"),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "varbinary".into()
        }
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Timestamp(unit, zone) => {
            let precision = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            match zone {
                Some(_) => format!("timestamp({precision}) with time zone"),
                None => format!("timestamp({precision})"),
            }
        }
        DataType::Interval(arrow::datatypes::IntervalUnit::YearMonth) => "interval year to month".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval day to second".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::FixedSizeList(f, _) => {
            format!("array({})", trino_type_name(f.data_type()))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => {
                format!("map({}, {})", trino_type_name(fields[0].data_type()), trino_type_name(fields[1].data_type()))
            }
            other => format!("map({other})"),
        },
        DataType::Struct(fields) => {
            let fields: Vec<String> =
                fields.iter().map(|f| format!("{} {}", f.name(), trino_type_name(f.data_type()))).collect();
            format!("row({})", fields.join(", "))
        }
        DataType::Dictionary(_, value) => trino_type_name(value),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Field;

    use super::*;

    #[test]
    fn arrow_types_have_trino_names() {
        assert_eq!(trino_type_name(&DataType::Utf8View), "varchar");
        assert_eq!(trino_type_name(&DataType::Decimal128(10, 2)), "decimal(10,2)");
        assert_eq!(trino_type_name(&DataType::Timestamp(TimeUnit::Millisecond, None)), "timestamp(3)");
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
        assert_eq!(trino_type_name(&list), "array(integer)");
        let row = DataType::Struct(vec![Field::new("a", DataType::Utf8, true), Field::new("b", list, true)].into());
        assert_eq!(trino_type_name(&row), "row(a varchar, b array(integer))");
    }
}
