//! Trino's JSON functions over JSON text: `json_extract_scalar`, `json_extract`, `json_parse`,
//! `json_format`, `json_array_length`, `json_array_get`, `json_size`, `is_json_scalar`.
//!
//! Glaux has no JSON type: JSON values are `varchar` holding JSON text, as they are in the files
//! Athena users query (a `payload` string column). `json_parse` checks and canonicalizes text
//! (keys sorted, as Trino's JSON type does); `json_extract` keeps the document's key order.
//! Extraction from malformed JSON gives NULL, as in Trino; `json_parse` and `is_json_scalar`
//! raise an error.

use arrow::array::{Array, ArrayRef, BooleanBuilder, Int64Builder, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::ScalarUDF;
use serde_json::Value;

use crate::udf::{Udf, arc, as_integer, as_string, coerce_each};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        Udf::new("json_extract_scalar", coerce_document_and_path, string_type, json_extract_scalar).build(),
        Udf::new("json_extract", coerce_document_and_path, string_type, json_extract).build(),
        Udf::new("json_size", coerce_document_and_path, bigint_type, json_size).build(),
        Udf::new("json_parse", coerce_document, string_type, json_parse).build(),
        Udf::new("json_format", coerce_document, string_type, json_format).build(),
        Udf::new("json_array_length", coerce_document, bigint_type, json_array_length).build(),
        Udf::new("is_json_scalar", coerce_document, boolean_type, is_json_scalar).build(),
        Udf::new("json_array_get", coerce_array_and_index, string_type, json_array_get).build(),
    ]
}

fn coerce_document(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string], "(json)")
}

fn coerce_document_and_path(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string, as_string], "(json, json_path)")
}

fn coerce_array_and_index(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string, as_integer], "(json, bigint)")
}

fn string_type(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Utf8)
}

fn bigint_type(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Int64)
}

fn boolean_type(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Boolean)
}

/// One step of a JSON path: a member name or an array index.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Member(String),
    Index(i64),
}

/// Parses Trino's JSON path subset: `$`, `.name`, `["name"]`, `['name']`, `[n]`.
fn parse_path(path: &str) -> Result<Vec<Step>> {
    let invalid = || plan_err!("Invalid JSON path: '{path}'");
    let Some(mut rest) = path.trim().strip_prefix('$') else { return invalid() };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return invalid();
            }
            steps.push(Step::Member(name.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let close = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let Some(end) = after[1..].find(quote) else { return invalid() };
                    steps.push(Step::Member(after[1..1 + end].to_string()));
                    1 + end + 1
                }
                _ => {
                    let Some(end) = after.find(']') else { return invalid() };
                    match after[..end].trim().parse::<i64>() {
                        Ok(index) => steps.push(Step::Index(index)),
                        Err(_) => return invalid(),
                    }
                    end
                }
            };
            match after[close..].strip_prefix(']') {
                Some(next) => rest = next,
                None => return invalid(),
            }
        } else {
            return invalid();
        }
    }
    Ok(steps)
}

/// The value at `steps` in `document`, if there is one.
fn walk<'a>(document: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(document, |value, step| match (step, value) {
        (Step::Member(name), Value::Object(members)) => members.get(name),
        (Step::Index(index), Value::Array(items)) => usize::try_from(*index).ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Applies `extract` to each row's document and path; NULL where either is NULL or the
/// document is not JSON. A path is parsed once when it is the same for every row.
fn with_path<B: arrow::array::ArrayBuilder>(
    args: &[ArrayRef],
    rows: usize,
    mut builder: B,
    mut extract: impl FnMut(&mut B, Option<&Value>),
    mut null: impl FnMut(&mut B),
) -> Result<ArrayRef> {
    let documents = string_array(&args[0])?;
    let paths = string_array(&args[1])?;
    let mut parsed: Option<(String, Vec<Step>)> = None;
    for row in 0..rows {
        if documents.is_null(row) || paths.is_null(row) {
            null(&mut builder);
            continue;
        }
        let path = paths.value(row);
        if parsed.as_ref().is_none_or(|(text, _)| text != path) {
            parsed = Some((path.to_string(), parse_path(path)?));
        }
        let steps = parsed.as_ref().map(|(_, steps)| steps.as_slice()).unwrap_or_default();
        match serde_json::from_str::<Value>(documents.value(row)) {
            Ok(document) => extract(&mut builder, walk(&document, steps)),
            Err(_) => null(&mut builder),
        }
    }
    Ok(builder.finish())
}

fn string_array(array: &ArrayRef) -> Result<&StringArray> {
    match array.as_any().downcast_ref::<StringArray>() {
        Some(strings) => Ok(strings),
        None => exec_err!("expected varchar, got {}", array.data_type()),
    }
}

fn json_extract_scalar(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    with_path(
        args,
        rows,
        StringBuilder::new(),
        |b, value| match value {
            Some(Value::String(text)) => b.append_value(text),
            Some(Value::Number(number)) => b.append_value(number.to_string()),
            Some(Value::Bool(flag)) => b.append_value(flag.to_string()),
            _ => b.append_null(),
        },
        |b| b.append_null(),
    )
}

fn json_extract(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    with_path(
        args,
        rows,
        StringBuilder::new(),
        |b, value| match value {
            Some(value) => b.append_value(value.to_string()),
            None => b.append_null(),
        },
        |b| b.append_null(),
    )
}

fn json_size(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    with_path(
        args,
        rows,
        Int64Builder::new(),
        |b, value| match value {
            Some(Value::Object(members)) => b.append_value(members.len() as i64),
            Some(Value::Array(items)) => b.append_value(items.len() as i64),
            Some(_) => b.append_value(0),
            None => b.append_null(),
        },
        |b| b.append_null(),
    )
}

/// Parses each row's document; `Err` rows are reported by `f`.
fn each_document<B: arrow::array::ArrayBuilder>(
    args: &[ArrayRef],
    rows: usize,
    mut builder: B,
    mut f: impl FnMut(&mut B, &str, serde_json::Result<Value>) -> Result<()>,
    mut null: impl FnMut(&mut B),
) -> Result<ArrayRef> {
    let documents = string_array(&args[0])?;
    for row in 0..rows {
        if documents.is_null(row) {
            null(&mut builder);
        } else {
            let text = documents.value(row);
            f(&mut builder, text, serde_json::from_str(text))?;
        }
    }
    Ok(builder.finish())
}

/// `Value` with object keys sorted, at every depth: Trino's canonical JSON.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(members) => {
            let mut members: Vec<(String, Value)> = members.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(members.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn json_parse(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    each_document(
        args,
        rows,
        StringBuilder::new(),
        |b, text, parsed| match parsed {
            Ok(value) => {
                b.append_value(sorted(value).to_string());
                Ok(())
            }
            Err(e) => exec_err!("Cannot convert value to JSON: '{}' ({e})", shorten(text)),
        },
        |b| b.append_null(),
    )
}

fn json_format(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    each_document(
        args,
        rows,
        StringBuilder::new(),
        |b, text, parsed| {
            match parsed {
                Ok(value) => b.append_value(value.to_string()),
                // Text that is not JSON is passed through: it came from a varchar, not a json.
                Err(_) => b.append_value(text),
            }
            Ok(())
        },
        |b| b.append_null(),
    )
}

fn json_array_length(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    each_document(
        args,
        rows,
        Int64Builder::new(),
        |b, _, parsed| {
            match parsed {
                Ok(Value::Array(items)) => b.append_value(items.len() as i64),
                _ => b.append_null(),
            }
            Ok(())
        },
        |b| b.append_null(),
    )
}

fn is_json_scalar(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    each_document(
        args,
        rows,
        BooleanBuilder::new(),
        |b, text, parsed| match parsed {
            Ok(value) => {
                b.append_value(!matches!(value, Value::Array(_) | Value::Object(_)));
                Ok(())
            }
            Err(_) => exec_err!("Invalid JSON value: '{}'", shorten(text)),
        },
        |b| b.append_null(),
    )
}

fn json_array_get(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let documents = string_array(&args[0])?;
    let indexes = args[1]
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .ok_or_else(|| datafusion::common::exec_datafusion_err!("json_array_get: index is not bigint"))?;
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        if documents.is_null(row) || indexes.is_null(row) {
            builder.append_null();
            continue;
        }
        let item = match serde_json::from_str::<Value>(documents.value(row)) {
            Ok(Value::Array(items)) => {
                let index = indexes.value(row);
                let position = if index < 0 { items.len() as i64 + index } else { index };
                usize::try_from(position).ok().and_then(|p| items.get(p)).map(Value::to_string)
            }
            _ => None,
        };
        builder.append_option(item);
    }
    Ok(arc(builder.finish()))
}

/// At most 100 characters of a value, for error messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn run(f: fn(&[ArrayRef], usize, &DataType) -> Result<ArrayRef>, args: Vec<ArrayRef>) -> Vec<Option<String>> {
        let rows = args[0].len();
        let result = f(&args, rows, &DataType::Utf8).expect("evaluates");
        let formatter = arrow::util::display::ArrayFormatter::try_new(&result, &Default::default()).expect("formatter");
        (0..rows).map(|i| result.is_valid(i).then(|| formatter.value(i).to_string())).collect()
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn paths_parse_as_trino_reads_them() {
        assert_eq!(parse_path("$").expect("root"), vec![]);
        assert_eq!(
            parse_path("$.a.b[2][\"c d\"]['e']").expect("path"),
            vec![
                Step::Member("a".into()),
                Step::Member("b".into()),
                Step::Index(2),
                Step::Member("c d".into()),
                Step::Member("e".into()),
            ]
        );
        for bad in ["a.b", "$.", "$[x]", "$[\"a]", "$a"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extraction_follows_trino() {
        let document = r#"{"a": {"b": [1, "two", true, null, {"c": 3.5}]}, "s": "x"}"#;
        let documents = strings(&[Some(document); 7]);
        let paths = strings(&[
            Some("$.s"),
            Some("$.a.b[1]"),
            Some("$.a.b[0]"),
            Some("$.a.b[2]"),
            Some("$.a.b[3]"),
            Some("$.a"),
            Some("$.nope"),
        ]);
        assert_eq!(
            run(json_extract_scalar, vec![documents.clone(), paths.clone()]),
            vec![Some("x".into()), Some("two".into()), Some("1".into()), Some("true".into()), None, None, None]
        );
        assert_eq!(run(json_extract, vec![documents, paths])[5], Some(r#"{"b":[1,"two",true,null,{"c":3.5}]}"#.into()));
        let malformed =
            run(json_extract_scalar, vec![strings(&[Some("{not json"), None]), strings(&[Some("$.a"), Some("$.a")])]);
        assert_eq!(malformed, vec![None, None]);
    }

    #[test]
    fn parse_sorts_keys_and_refuses_garbage() {
        let parsed = run(json_parse, vec![strings(&[Some(r#"{"b": 1, "a": {"d": 2, "c": [3]}}"#)])]);
        assert_eq!(parsed, vec![Some(r#"{"a":{"c":[3],"d":2},"b":1}"#.into())]);
        let error = json_parse(&[strings(&[Some("{oops")])], 1, &DataType::Utf8).unwrap_err().to_string();
        assert!(error.contains("Cannot convert value to JSON"), "{error}");
    }

    #[test]
    fn arrays_and_sizes() {
        let documents = strings(&[Some(r#"["a", [3, 9], "c"]"#), Some("{}"), Some("[]")]);
        assert_eq!(run(json_array_length, vec![documents.clone()]), vec![Some("3".into()), None, Some("0".into())]);
        let indexes: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 0, -1]));
        assert_eq!(run(json_array_get, vec![documents, indexes]), vec![Some("[3,9]".into()), None, None]);
        let last = run(
            json_array_get,
            vec![strings(&[Some(r#"["a", "c"]"#)]), Arc::new(arrow::array::Int64Array::from(vec![-1]))],
        );
        assert_eq!(last, vec![Some("\"c\"".into())]);
        let sizes = run(
            json_size,
            vec![
                strings(&[Some(r#"{"x": {"a": 1, "b": 2}}"#); 3]),
                strings(&[Some("$.x"), Some("$.x.a"), Some("$.y")]),
            ],
        );
        assert_eq!(sizes, vec![Some("2".into()), Some("0".into()), None]);
    }
}
