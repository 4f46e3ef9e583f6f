//! Trino's string and binary functions that DataFusion lacks or answers differently:
//! `split`, `split_part` (NULL past the end), `regexp_extract`, `regexp_extract_all`,
//! `regexp_replace` (every match, `$1` groups), `url_extract_*`, `url_encode`/`url_decode`,
//! `to_utf8`/`from_utf8`, `md5` of varbinary (a varbinary digest), `to_hex`/`from_hex`, and
//! `levenshtein_distance`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};
use regex::Regex;

use crate::udf::{Udf, as_binary, as_integer, as_string, coerce_each, delegate, delegate_values, no_form};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        Udf::new("split", coerce_split, |_| Ok(string_list()), split).build(),
        Udf::new("split_part", coerce_split_part, |_| Ok(DataType::Utf8), split_part).build(),
        Udf::new("regexp_extract", coerce_regexp_extract, |_| Ok(DataType::Utf8), regexp_extract).build(),
        Udf::new("regexp_extract_all", coerce_regexp_extract, |_| Ok(string_list()), regexp_extract_all).build(),
        Udf::new("regexp_replace", coerce_regexp_replace, |_| Ok(DataType::Utf8), regexp_replace).build(),
        url_udf("url_extract_protocol", |a, r, _| url_parts(a, r, |u| Some(u.scheme().to_string()))),
        url_udf("url_extract_host", |a, r, _| url_parts(a, r, |u| u.host_str().map(str::to_string))),
        url_udf("url_extract_path", |a, r, _| url_parts(a, r, |u| Some(u.path().to_string()))),
        url_udf("url_extract_query", |a, r, _| url_parts(a, r, |u| u.query().map(str::to_string))),
        url_udf("url_extract_fragment", |a, r, _| url_parts(a, r, |u| u.fragment().map(str::to_string))),
        Udf::new("url_extract_port", coerce_one_string, |_| Ok(DataType::Int64), url_extract_port).build(),
        Udf::new("url_extract_parameter", coerce_two_strings, |_| Ok(DataType::Utf8), url_extract_parameter).build(),
        Udf::new("url_encode", coerce_one_string, |_| Ok(DataType::Utf8), url_encode).build(),
        Udf::new("url_decode", coerce_one_string, |_| Ok(DataType::Utf8), url_decode).build(),
        Udf::new("to_utf8", coerce_one_string, |_| Ok(DataType::Binary), to_utf8).build(),
        Udf::new("from_utf8", coerce_from_utf8, |_| Ok(DataType::Utf8), from_utf8).build(),
        Udf::new("from_hex", coerce_one_string, |_| Ok(DataType::Binary), from_hex).build(),
        Udf::new("to_hex", coerce_to_hex, |_| Ok(DataType::Utf8), to_hex).build(),
        Udf::new(
            "md5",
            coerce_md5,
            |types| Ok(if types[0] == DataType::Binary { DataType::Binary } else { DataType::Utf8 }),
            md5,
        )
        .build(),
        datafusion::functions::string::levenshtein().as_ref().clone().with_aliases(["levenshtein_distance"]),
    ]
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn coerce_one_string(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string], "(varchar)")
}

fn coerce_two_strings(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string, as_string], "(varchar, varchar)")
}

fn coerce_split(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    match types.len() {
        2 => coerce_each(name, types, &[as_string, as_string], "(varchar, varchar) or (varchar, varchar, bigint)"),
        _ => coerce_each(
            name,
            types,
            &[as_string, as_string, as_integer],
            "(varchar, varchar) or (varchar, varchar, bigint)",
        ),
    }
}

fn coerce_split_part(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_each(name, types, &[as_string, as_string, as_integer], "(varchar, varchar, bigint)")
}

fn coerce_regexp_extract(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    match types.len() {
        2 => coerce_each(name, types, &[as_string, as_string], "(varchar, varchar) or (varchar, varchar, bigint)"),
        _ => coerce_each(
            name,
            types,
            &[as_string, as_string, as_integer],
            "(varchar, varchar) or (varchar, varchar, bigint)",
        ),
    }
}

fn coerce_regexp_replace(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    match types.len() {
        2 => coerce_each(name, types, &[as_string, as_string], "(varchar, varchar) or (varchar, varchar, varchar)"),
        _ => coerce_each(
            name,
            types,
            &[as_string, as_string, as_string],
            "(varchar, varchar) or (varchar, varchar, varchar)",
        ),
    }
}

fn coerce_from_utf8(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    match types.len() {
        1 => coerce_each(name, types, &[as_binary], "(varbinary) or (varbinary, varchar)"),
        _ => coerce_each(name, types, &[as_binary, as_string], "(varbinary) or (varbinary, varchar)"),
    }
}

fn coerce_to_hex(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let rule = |t: &DataType| as_binary(t).or_else(|| as_integer(t));
    coerce_each(name, types, &[rule], "(varbinary)")
}

fn coerce_md5(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let rule = |t: &DataType| as_binary(t).or_else(|| as_string(t));
    coerce_each(name, types, &[rule], "(varbinary)")
}

/// Row `row` of a coerced string argument, `None` for NULL.
fn text(array: &ArrayRef, row: usize) -> Option<&str> {
    let strings = array.as_string::<i32>();
    strings.is_valid(row).then(|| strings.value(row))
}

fn integer(array: &ArrayRef, row: usize) -> Option<i64> {
    let integers = array.as_primitive::<Int64Type>();
    integers.is_valid(row).then(|| integers.value(row))
}

fn split(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for row in 0..rows {
        let limit = match args.get(2) {
            Some(limit) => match integer(limit, row) {
                Some(n) if n > 0 => Some(n as usize),
                Some(_) => return exec_err!("split: the limit must be positive"),
                None => {
                    builder.append_null();
                    continue;
                }
            },
            None => None,
        };
        match (text(&args[0], row), text(&args[1], row)) {
            (Some(_), Some("")) => return exec_err!("split: the delimiter is empty"),
            (Some(value), Some(delimiter)) => {
                match limit {
                    Some(limit) => value.splitn(limit, delimiter).for_each(|p| builder.values().append_value(p)),
                    None => value.split(delimiter).for_each(|p| builder.values().append_value(p)),
                }
                builder.append(true);
            }
            _ => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

fn split_part(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        match (text(&args[0], row), text(&args[1], row), integer(&args[2], row)) {
            (Some(_), Some(_), Some(index)) if index < 1 => {
                return exec_err!("split_part: the index must be greater than zero");
            }
            (Some(value), Some(delimiter), Some(index)) => {
                let part = if delimiter.is_empty() {
                    value.chars().nth(index as usize - 1).map(String::from)
                } else {
                    value.split(delimiter).nth(index as usize - 1).map(str::to_string)
                };
                builder.append_option(part);
            }
            _ => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// Compiled patterns, one per distinct pattern text.
#[derive(Default)]
struct Patterns {
    last: Option<(String, Regex)>,
}

impl Patterns {
    fn get(&mut self, pattern: &str) -> Result<&Regex> {
        if self.last.as_ref().is_none_or(|(text, _)| text != pattern) {
            match Regex::new(pattern) {
                Ok(regex) => self.last = Some((pattern.to_string(), regex)),
                Err(e) => return exec_err!("invalid regular expression '{pattern}': {e}"),
            }
        }
        match &self.last {
            Some((_, regex)) => Ok(regex),
            None => exec_err!("invalid regular expression '{pattern}'"),
        }
    }
}

/// The group asked for (0 without one), checked against the pattern's groups.
fn group(args: &[ArrayRef], row: usize, regex: &Regex) -> Result<Option<usize>> {
    let Some(array) = args.get(2) else { return Ok(Some(0)) };
    let Some(group) = integer(array, row) else { return Ok(None) };
    let groups = regex.captures_len() - 1;
    if group < 0 || group as usize > groups {
        return exec_err!("Pattern has {groups} groups. Cannot access group {group}");
    }
    Ok(Some(group as usize))
}

/// Calls `matched` with each row's value, compiled pattern and group, or `null` for rows where
/// any of them is NULL.
fn each_pattern_row(
    args: &[ArrayRef],
    rows: usize,
    mut matched: impl FnMut(&str, &Regex, usize),
    mut null: impl FnMut(),
) -> Result<()> {
    let mut patterns = Patterns::default();
    for row in 0..rows {
        let (Some(value), Some(pattern)) = (text(&args[0], row), text(&args[1], row)) else {
            null();
            continue;
        };
        let regex = patterns.get(pattern)?;
        match group(args, row, regex)? {
            Some(group) => matched(value, regex, group),
            None => null(),
        }
    }
    Ok(())
}

fn regexp_extract(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let builder = std::cell::RefCell::new(StringBuilder::new());
    each_pattern_row(
        args,
        rows,
        |value, regex, group| {
            builder.borrow_mut().append_option(regex.captures(value).and_then(|c| c.get(group)).map(|m| m.as_str()))
        },
        || builder.borrow_mut().append_null(),
    )?;
    Ok(Arc::new(builder.into_inner().finish()))
}

fn regexp_extract_all(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let builder = std::cell::RefCell::new(ListBuilder::new(StringBuilder::new()));
    each_pattern_row(
        args,
        rows,
        |value, regex, group| {
            let mut builder = builder.borrow_mut();
            for captures in regex.captures_iter(value) {
                builder.values().append_option(captures.get(group).map(|m| m.as_str()));
            }
            builder.append(true);
        },
        || builder.borrow_mut().append_null(),
    )?;
    Ok(Arc::new(builder.into_inner().finish()))
}

/// Trino's replacement syntax (`$1`, `${name}`, `\$` for a dollar) in the regex crate's
/// (`${1}`, `${name}`, `$$`).
fn replacement(trino: &str) -> String {
    let mut out = String::with_capacity(trino.len() + 4);
    let mut chars = trino.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                    out.push(digit);
                }
                out.push('}');
            }
            other => out.push(other),
        }
    }
    out
}

fn regexp_replace(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut patterns = Patterns::default();
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        let replace_with = match args.get(2) {
            Some(array) => text(array, row).map(replacement),
            None => Some(String::new()),
        };
        match (text(&args[0], row), text(&args[1], row), replace_with) {
            (Some(value), Some(pattern), Some(with)) => {
                builder.append_value(patterns.get(pattern)?.replace_all(value, with.as_str()));
            }
            _ => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

fn url_udf(name: &'static str, invoke: crate::udf::Invoke) -> ScalarUDF {
    Udf::new(name, coerce_one_string, |_| Ok(DataType::Utf8), invoke).build()
}

fn url_parts(args: &[ArrayRef], rows: usize, part: impl Fn(&url::Url) -> Option<String>) -> Result<ArrayRef> {
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        builder.append_option(text(&args[0], row).and_then(|t| url::Url::parse(t).ok()).and_then(|u| part(&u)));
    }
    Ok(Arc::new(builder.finish()))
}

/// The port a URL names, even its scheme's default (`http://host:80/` is 80; the url crate
/// forgets default ports), or `None`.
fn explicit_port(text: &str) -> Option<i64> {
    url::Url::parse(text).ok()?;
    let (_, rest) = text.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match host_port.strip_prefix('[') {
        Some(ipv6) => ipv6.split_once(']')?.1,
        None => host_port,
    };
    after_host.rsplit_once(':').and_then(|(_, port)| port.parse().ok())
}

fn url_extract_port(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = arrow::array::Int64Builder::new();
    for row in 0..rows {
        builder.append_option(text(&args[0], row).and_then(explicit_port));
    }
    Ok(Arc::new(builder.finish()))
}

fn url_extract_parameter(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        let value = match (text(&args[0], row).and_then(|t| url::Url::parse(t).ok()), text(&args[1], row)) {
            (Some(url), Some(name)) => {
                url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
            }
            _ => None,
        };
        builder.append_option(value);
    }
    Ok(Arc::new(builder.finish()))
}

fn url_encode(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        builder.append_option(
            text(&args[0], row).map(|t| url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()),
        );
    }
    Ok(Arc::new(builder.finish()))
}

fn url_decode(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        builder.append_option(text(&args[0], row).map(|t| {
            url::form_urlencoded::parse(format!("x={t}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        }));
    }
    Ok(Arc::new(builder.finish()))
}

fn to_utf8(args: &[ArrayRef], _: usize, _: &DataType) -> Result<ArrayRef> {
    Ok(arrow::compute::cast(&args[0], &DataType::Binary)?)
}

fn from_utf8(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let bytes = args[0].as_binary::<i32>();
    let mut builder = StringBuilder::new();
    for row in 0..rows {
        let replacement = match args.get(1) {
            Some(array) => match text(array, row) {
                Some(r) => r,
                None => {
                    builder.append_null();
                    continue;
                }
            },
            None => "\u{FFFD}",
        };
        if bytes.is_null(row) {
            builder.append_null();
            continue;
        }
        let mut out = String::new();
        for chunk in bytes.value(row).utf8_chunks() {
            out.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                out.push_str(replacement);
            }
        }
        builder.append_value(out);
    }
    Ok(Arc::new(builder.finish()))
}

fn from_hex(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = BinaryBuilder::new();
    for row in 0..rows {
        let Some(hex) = text(&args[0], row) else {
            builder.append_null();
            continue;
        };
        if hex.len() % 2 != 0 {
            return exec_err!("from_hex: '{hex}' has an odd number of digits");
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect();
        match bytes {
            Some(bytes) => builder.append_value(bytes),
            None => return exec_err!("from_hex: '{hex}' is not hexadecimal"),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// Binary as upper-case hex (Trino's `to_hex(varbinary)`); integers as DataFusion shows them
/// (lower-case, two's complement), for queries written for DataFusion.
fn to_hex(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let mut builder = StringBuilder::new();
    match args[0].data_type() {
        DataType::Binary => {
            let bytes = args[0].as_binary::<i32>();
            for row in 0..rows {
                builder.append_option(
                    bytes
                        .is_valid(row)
                        .then(|| bytes.value(row).iter().map(|b| format!("{b:02X}")).collect::<String>()),
                );
            }
        }
        _ => {
            for row in 0..rows {
                builder.append_option(integer(&args[0], row).map(|v| format!("{v:x}")));
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// `md5(varbinary)` is the 16-byte digest (Trino); `md5(varchar)` stays DataFusion's hex text.
fn md5(args: &[ArrayRef], rows: usize, return_type: &DataType) -> Result<ArrayRef> {
    match args[0].data_type() {
        DataType::Binary => {
            let arguments = vec![
                ColumnarValue::Array(Arc::clone(&args[0])),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some("md5".into()))),
            ];
            delegate_values(&datafusion::functions::crypto::digest(), arguments, rows, return_type)
        }
        // DataFusion's md5 answers in its own string type (Utf8View in 55), not necessarily ours.
        DataType::Utf8 => {
            let md5 = datafusion::functions::crypto::md5();
            let native = md5.return_type(&[DataType::Utf8])?;
            Ok(arrow::compute::cast(&delegate(&md5, args, rows, &native)?, return_type)?)
        }
        other => no_form("md5", std::slice::from_ref(other), "(varbinary)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(arrow::array::StringArray::from(values.to_vec()))
    }

    fn show(array: &ArrayRef) -> Vec<String> {
        let formatter = arrow::util::display::ArrayFormatter::try_new(
            array,
            &arrow::util::display::FormatOptions::default().with_null("NULL"),
        )
        .expect("formatter");
        (0..array.len()).map(|i| formatter.value(i).to_string()).collect()
    }

    #[test]
    fn replacements_translate_trino_groups() {
        assert_eq!(replacement("$1-$2"), "${1}-${2}");
        assert_eq!(replacement("$1a \\$ ${name}"), "${1}a $$ ${name}");
    }

    #[test]
    fn regexp_functions_follow_trino() {
        let values = strings(&[Some("1a 2b 14m"), None]);
        let patterns = strings(&[Some("(\\d+)([a-z]+)"); 2]);
        let all = regexp_extract_all(&[values.clone(), patterns.clone()], 2, &DataType::Utf8).expect("runs");
        assert_eq!(show(&all), vec!["[1a, 2b, 14m]", "NULL"]);
        let groups: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![2, 2]));
        let first = regexp_extract(&[values.clone(), patterns.clone(), groups], 2, &DataType::Utf8).expect("runs");
        assert_eq!(show(&first), vec!["a", "NULL"]);
        let bad_group: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![3, 3]));
        assert!(regexp_extract(&[values.clone(), patterns.clone(), bad_group], 2, &DataType::Utf8).is_err());
        let replaced =
            regexp_replace(&[values, patterns, strings(&[Some("$2$1"); 2])], 2, &DataType::Utf8).expect("runs");
        assert_eq!(show(&replaced), vec!["a1 b2 m14", "NULL"]);
    }

    #[test]
    fn splitting() {
        let parts = split(&[strings(&[Some("a.b.c")]), strings(&[Some(".")])], 1, &DataType::Utf8).expect("runs");
        assert_eq!(show(&parts), vec!["[a, b, c]"]);
        let index: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![2, 4]));
        let part = split_part(&[strings(&[Some("a,b,c"); 2]), strings(&[Some(","); 2]), index], 2, &DataType::Utf8)
            .expect("runs");
        assert_eq!(show(&part), vec!["b", "NULL"]);
    }

    #[test]
    fn urls_binary_and_hex() {
        let urls = strings(&[Some("https://user@example.com:8080/a/b?x=1&y=two%20words#top"), Some("not a url")]);
        let host = url_parts(std::slice::from_ref(&urls), 2, |u| u.host_str().map(str::to_string)).expect("runs");
        assert_eq!(show(&host), vec!["example.com", "NULL"]);
        let parameter =
            url_extract_parameter(&[urls.clone(), strings(&[Some("y"); 2])], 2, &DataType::Utf8).expect("runs");
        assert_eq!(show(&parameter), vec!["two words", "NULL"]);
        let port = url_extract_port(&[urls], 2, &DataType::Int64).expect("runs");
        assert_eq!(show(&port), vec!["8080", "NULL"]);
        let bytes = to_utf8(&[strings(&[Some("hé")])], 1, &DataType::Binary).expect("runs");
        assert_eq!(show(&to_hex(std::slice::from_ref(&bytes), 1, &DataType::Utf8).expect("runs")), vec!["68C3A9"]);
        assert_eq!(show(&from_utf8(&[bytes], 1, &DataType::Utf8).expect("runs")), vec!["hé"]);
        let invalid: ArrayRef = Arc::new(arrow::array::BinaryArray::from(vec![&b"a\xffb"[..]]));
        assert_eq!(show(&from_utf8(&[invalid], 1, &DataType::Utf8).expect("runs")), vec!["a\u{FFFD}b"]);
        let digest =
            md5(&[to_utf8(&[strings(&[Some("a")])], 1, &DataType::Binary).expect("bytes")], 1, &DataType::Binary)
                .expect("runs");
        assert_eq!(
            show(&to_hex(&[digest], 1, &DataType::Utf8).expect("hex")),
            vec!["0CC175B9C0F1B6A831C399E269772661"]
        );
    }
}
