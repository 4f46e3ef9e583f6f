//! A result as Athena writes it to its output location: CSV with a header row, every value in
//! double quotes (a quote inside doubled), NULL as nothing between the commas; and read back a
//! page at a time for `GetQueryResults`, each row's values as text and NULL as no value.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Value, json};

/// How values are written: as Athena's engine prints them.
fn format_options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f %Z"))
}

fn quoted(value: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
    out.push(b'"');
}

/// The header row: the column names.
pub(super) fn header(schema: &Schema, out: &mut Vec<u8>) {
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        quoted(field.name(), out);
    }
    out.push(b'\n');
}

/// Appends `batch`'s rows to `out`.
pub(super) fn encode(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let options = format_options();
    let formatters =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<Vec<_>, _>>()?;
    for row in 0..batch.num_rows() {
        for (i, (formatter, column)) in formatters.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if !column.is_null(row) {
                quoted(&formatter.value(row).to_string(), out);
            }
        }
        out.push(b'\n');
    }
    Ok(())
}

/// A row as read back: each value's text, `None` for NULL.
pub(super) type Row = Vec<Option<String>>;

/// Reads up to `max_rows` whole rows from `buf` (which starts at a row); returns them and the
/// bytes they took. A row cut off by the end of `buf` is left for the next read, unless
/// `at_end` (the file ends there), when it is an error.
pub(super) fn decode(buf: &[u8], max_rows: usize, at_end: bool) -> Result<(Vec<Row>, usize), String> {
    let (mut rows, mut consumed, mut at) = (Vec::new(), 0, 0);
    let mut row: Row = Vec::new();
    while rows.len() < max_rows && at < buf.len() {
        let value = if buf[at] == b'"' {
            let mut text = Vec::new();
            let mut i = at + 1;
            loop {
                match buf.get(i) {
                    None if at_end => return Err("the result file ends inside a quoted value".into()),
                    None => return Ok((rows, consumed)),
                    Some(b'"') if buf.get(i + 1) == Some(&b'"') => {
                        text.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(&byte) => {
                        text.push(byte);
                        i += 1;
                    }
                }
            }
            at = i + 1;
            Some(String::from_utf8(text).map_err(|_| "the result file is not UTF-8".to_string())?)
        } else {
            None
        };
        row.push(value);
        match buf.get(at) {
            Some(b',') => at += 1,
            Some(b'\n') => {
                at += 1;
                rows.push(std::mem::take(&mut row));
                consumed = at;
            }
            None if at_end => return Err("the result file ends inside a row".into()),
            None => break,
            Some(_) => return Err("the result file is not CSV as Glaux writes it".into()),
        }
    }
    Ok((rows, consumed))
}

/// Athena's name of a column type, with its precision and scale.
fn athena_type(data_type: &DataType) -> (&'static str, u32, i32) {
    match data_type {
        DataType::Boolean => ("boolean", 0, 0),
        DataType::Int8 | DataType::UInt8 => ("tinyint", 3, 0),
        DataType::Int16 | DataType::UInt16 => ("smallint", 5, 0),
        DataType::Int32 | DataType::UInt32 => ("integer", 10, 0),
        DataType::Int64 | DataType::UInt64 => ("bigint", 19, 0),
        DataType::Float16 | DataType::Float32 => ("float", 17, 0),
        DataType::Float64 => ("double", 17, 0),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            ("decimal", u32::from(*p), i32::from(*s))
        }
        DataType::Decimal256(p, s) => ("decimal", u32::from(*p), i32::from(*s)),
        DataType::Date32 | DataType::Date64 => ("date", 0, 0),
        DataType::Timestamp(_, None) => ("timestamp", 3, 0),
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", 3, 0),
        DataType::Time32(_) | DataType::Time64(_) => ("time", 3, 0),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            ("varbinary", 1_073_741_824, 0)
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::ListView(_) | DataType::FixedSizeList(..) => {
            ("array", 0, 0)
        }
        DataType::Map(..) => ("map", 0, 0),
        DataType::Struct(_) => ("row", 0, 0),
        DataType::Interval(_) | DataType::Duration(_) => ("interval day to second", 0, 0),
        DataType::Dictionary(_, value) => athena_type(value),
        _ => ("varchar", 2_147_483_647, 0),
    }
}

/// `GetQueryResults`' `ColumnInfo` of each column.
pub(super) fn column_info(schema: &Schema) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .map(|field| {
            let (name, precision, scale) = athena_type(field.data_type());
            json!({
                "CatalogName": "hive",
                "SchemaName": "",
                "TableName": "",
                "Name": field.name(),
                "Label": field.name(),
                "Type": name,
                "Precision": precision,
                "Scale": scale,
                "Nullable": if field.is_nullable() { "NULLABLE" } else { "NOT_NULL" },
                "CaseSensitive": matches!(name, "varchar"),
            })
        })
        .collect()
}

/// The `.csv.metadata` file Athena writes beside a result: its columns, as Protocol Buffers (as
/// reverse-engineered from Athena's files: field 1 the query's id; each column a field 4 holding
/// 1 catalog, 2 schema, 3 table, 4 name, 5 label, 6 type, 7 precision, 8 scale, 9 nullability
/// (1 NOT_NULL, 2 NULLABLE, 3 UNKNOWN), 10 case sensitivity; zero values left out).
pub(super) fn metadata_file(query: &str, columns: &[Value]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn text(out: &mut Vec<u8>, field: u64, value: &str) {
        if !value.is_empty() {
            varint(out, field << 3 | 2);
            varint(out, value.len() as u64);
            out.extend_from_slice(value.as_bytes());
        }
    }
    fn number(out: &mut Vec<u8>, field: u64, value: u64) {
        if value != 0 {
            varint(out, field << 3);
            varint(out, value);
        }
    }
    let mut file = Vec::new();
    text(&mut file, 1, query);
    for column in columns {
        let field = |name: &str| column[name].as_str().unwrap_or_default().to_string();
        let mut encoded = Vec::new();
        for (number_of, name) in
            [(1, "CatalogName"), (2, "SchemaName"), (3, "TableName"), (4, "Name"), (5, "Label"), (6, "Type")]
        {
            text(&mut encoded, number_of, &field(name));
        }
        number(&mut encoded, 7, column["Precision"].as_u64().unwrap_or_default());
        number(&mut encoded, 8, column["Scale"].as_u64().unwrap_or_default());
        let nullable = match field("Nullable").as_str() {
            "NOT_NULL" => 1,
            "NULLABLE" => 2,
            _ => 3,
        };
        number(&mut encoded, 9, nullable);
        number(&mut encoded, 10, u64::from(column["CaseSensitive"].as_bool().unwrap_or_default()));
        varint(&mut file, 4 << 3 | 2);
        varint(&mut file, encoded.len() as u64);
        file.extend_from_slice(&encoded);
    }
    file
}

/// The columns a `.csv.metadata` file describes, as `ColumnInfo` (see [`metadata_file`]).
pub(super) fn metadata_columns(file: &[u8]) -> Result<Vec<Value>, String> {
    let unreadable = || "a .csv.metadata file Glaux cannot read".to_string();
    let mut columns = Vec::new();
    for (number, value) in fields(file).ok_or_else(unreadable)? {
        let Field::Bytes(column) = value else { continue };
        if number != 4 {
            continue;
        }
        let mut info = json!({ "CatalogName": "", "SchemaName": "", "TableName": "", "Name": "", "Label": "",
            "Type": "", "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": false });
        for (number, value) in fields(column).ok_or_else(unreadable)? {
            let names = ["", "CatalogName", "SchemaName", "TableName", "Name", "Label", "Type"];
            match (number, value) {
                (1..=6, Field::Bytes(text)) => {
                    info[names[number as usize]] = json!(String::from_utf8_lossy(text));
                }
                (7, Field::Number(n)) => info["Precision"] = json!(n),
                (8, Field::Number(n)) => info["Scale"] = json!(n),
                (9, Field::Number(n)) => {
                    info["Nullable"] = json!(["", "NOT_NULL", "NULLABLE"].get(n as usize).unwrap_or(&"UNKNOWN"))
                }
                (10, Field::Number(n)) => info["CaseSensitive"] = json!(n != 0),
                _ => {}
            }
        }
        columns.push(info);
    }
    Ok(columns)
}

enum Field<'a> {
    Number(u64),
    Bytes(&'a [u8]),
}

/// The fields of a Protocol Buffers message (varints and length-delimited ones only); `None` if
/// it is not one.
fn fields(mut data: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    fn varint(data: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = data.split_first()?;
            *data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    while !data.is_empty() {
        let key = varint(&mut data)?;
        let value = match key & 7 {
            0 => Field::Number(varint(&mut data)?),
            2 => {
                let size = usize::try_from(varint(&mut data)?).ok()?;
                let (bytes, rest) = (data.get(..size)?, data.get(size..)?);
                data = rest;
                Field::Bytes(bytes)
            }
            _ => return None,
        };
        fields.push((key >> 3, value));
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    use super::*;

    #[test]
    fn the_metadata_file_is_shaped_as_athenas() {
        // Athena's own file for a query with one column `ary` of type array (from its hexdump).
        let athena = b"\x0a\x1b20190423_125128_00001_ehtur\x22\x19\x0a\x04hive\x22\x03ary\x2a\x03ary\x32\x05arrayH\x03";
        let column = json!({ "CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": "ary", "Label": "ary",
            "Type": "array", "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": false });
        assert_eq!(metadata_file("20190423_125128_00001_ehtur", std::slice::from_ref(&column)), athena.to_vec());
        assert_eq!(metadata_columns(athena).unwrap(), [column]);
        assert!(metadata_columns(b"\x0a\xff").is_err(), "a cut file is refused");
    }

    #[test]
    fn rows_written_read_back_whole_across_any_cut() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let notes = StringArray::from(vec![Some("plain"), Some("a \"quote\", a comma\nand a line"), None, Some("")]);
        let ids = Int64Array::from(vec![Some(1), None, Some(3), Some(4)]);
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(ids), Arc::new(notes)]).unwrap();
        let mut file = Vec::new();
        header(&schema, &mut file);
        encode(&batch, &mut file).unwrap();
        let text = |v: &str| Some(v.to_string());
        let expected: Vec<Row> = vec![
            vec![text("id"), text("note")],
            vec![text("1"), text("plain")],
            vec![None, text("a \"quote\", a comma\nand a line")],
            vec![text("3"), None],
            vec![text("4"), text("")],
        ];
        assert_eq!(decode(&file, 100, true).unwrap(), (expected.clone(), file.len()));
        // Pages of two rows, the buffer cut anywhere: the same rows, none split.
        for cut in 0..file.len() {
            let (mut rows, mut at) = (Vec::new(), 0);
            loop {
                let end = (at + cut.max(1)).min(file.len());
                let (page, used) = decode(&file[at..end], 2, end == file.len()).unwrap();
                if used == 0 && end == file.len() {
                    break;
                }
                if used == 0 {
                    // The row is longer than the buffer: read it with the rest.
                    let (page, used) = decode(&file[at..], 2, true).unwrap();
                    rows.extend(page);
                    at += used;
                } else {
                    rows.extend(page);
                    at += used;
                }
                if at == file.len() {
                    break;
                }
            }
            assert_eq!(rows, expected, "cut at {cut}");
        }
        assert!(decode(b"\"unterminated", 1, true).is_err());
        assert!(decode(b"\"a\"x\n", 1, true).is_err());
    }
}
