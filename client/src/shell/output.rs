//! How the shell prints results: aligned tables, CSV, TSV, JSON lines, or one record per block.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow::util::pretty::pretty_format_batches_with_schema;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// A boxed table with a header (the default).
    #[default]
    Aligned,
    /// RFC 4180: a header line, fields quoted when they hold a comma, a quote or a line break.
    Csv,
    /// Tab-separated with a header; tabs, line breaks and backslashes in values escaped as `\t`,
    /// `\n`, `\\`.
    Tsv,
    /// One JSON object per row (nulls omitted).
    Json,
    /// Each row as a block of `column | value` lines, for wide rows.
    Vertical,
}

impl OutputFormat {
    pub const NAMES: &'static str = "aligned, csv, tsv, json, vertical";

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "aligned" | "table" => Some(Self::Aligned),
            "csv" => Some(Self::Csv),
            "tsv" => Some(Self::Tsv),
            "json" | "jsonl" | "ndjson" => Some(Self::Json),
            "vertical" | "expanded" => Some(Self::Vertical),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Aligned => "aligned",
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Json => "json",
            Self::Vertical => "vertical",
        }
    }
}

/// Writes `batches` (with `schema`) to `out` in `format`.
pub fn write_result(
    out: &mut dyn Write,
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> std::io::Result<()> {
    let failed = |e: arrow::error::ArrowError| std::io::Error::other(format!("cannot display the result: {e}"));
    match format {
        OutputFormat::Aligned if is_plan(schema) => write_plans(out, batches),
        OutputFormat::Aligned => {
            let table = pretty_format_batches_with_schema(schema.clone(), batches).map_err(failed)?;
            writeln!(out, "{table}")
        }
        OutputFormat::Csv => write_delimited(out, schema, batches, ',', csv_field),
        OutputFormat::Tsv => write_delimited(out, schema, batches, '\t', tsv_field),
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(out);
            for batch in batches {
                writer.write(batch).map_err(failed)?;
            }
            writer.finish().map_err(failed)
        }
        OutputFormat::Vertical => write_vertical(out, schema, batches),
    }
}

/// `EXPLAIN`'s answer: (plan_type, plan) rows, shown as plain text rather than in a table whose
/// borders would wrap every line of the plan.
fn is_plan(schema: &SchemaRef) -> bool {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names == ["plan_type", "plan"]
}

fn write_plans(out: &mut dyn Write, batches: &[RecordBatch]) -> std::io::Result<()> {
    for batch in batches {
        text_rows(batch, |row| {
            let [kind, plan] = [&row[0], &row[1]].map(|v| v.as_deref().unwrap_or(""));
            writeln!(out, "{kind}:")?;
            for line in plan.lines() {
                writeln!(out, "  {line}")?;
            }
            writeln!(out)
        })?;
    }
    Ok(())
}

fn text_rows(
    batch: &RecordBatch,
    mut row: impl FnMut(Vec<Option<String>>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let options = FormatOptions::default().with_display_error(true);
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for i in 0..batch.num_rows() {
        let values = batch
            .columns()
            .iter()
            .zip(&formatters)
            .map(|(c, f)| c.is_valid(i).then(|| f.value(i).to_string()))
            .collect();
        row(values)?;
    }
    Ok(())
}

fn write_delimited(
    out: &mut dyn Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    delimiter: char,
    field: fn(&str) -> String,
) -> std::io::Result<()> {
    let separator = delimiter.to_string();
    let header: Vec<String> = schema.fields().iter().map(|f| field(f.name())).collect();
    writeln!(out, "{}", header.join(&separator))?;
    for batch in batches {
        text_rows(batch, |values| {
            let line: Vec<String> = values.iter().map(|v| v.as_deref().map(field).unwrap_or_default()).collect();
            writeln!(out, "{}", line.join(&separator))
        })?;
    }
    Ok(())
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn tsv_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
}

fn write_vertical(out: &mut dyn Write, schema: &SchemaRef, batches: &[RecordBatch]) -> std::io::Result<()> {
    let width = schema.fields().iter().map(|f| f.name().chars().count()).max().unwrap_or(0);
    let mut record = 0;
    for batch in batches {
        text_rows(batch, |values| {
            record += 1;
            writeln!(out, "-[ RECORD {record} ]{}", "-".repeat(width.saturating_sub(8)))?;
            for (field, value) in schema.fields().iter().zip(values) {
                writeln!(out, "{:width$} | {}", field.name(), value.as_deref().unwrap_or("NULL"))?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn render(format: OutputFormat) -> String {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![Some(1), None])) as _),
            ("note", Arc::new(StringArray::from(vec![Some("a, \"b\""), Some("tab\there")])) as _),
        ])
        .expect("batch");
        let mut out = Vec::new();
        write_result(&mut out, format, &batch.schema(), &[batch]).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn every_format_prints_values_and_nulls_faithfully() {
        assert_eq!(render(OutputFormat::Csv), "id,note\n1,\"a, \"\"b\"\"\"\n,tab\there\n");
        assert_eq!(render(OutputFormat::Tsv), "id\tnote\n1\ta, \"b\"\n\ttab\\there\n");
        assert_eq!(render(OutputFormat::Json), "{\"id\":1,\"note\":\"a, \\\"b\\\"\"}\n{\"note\":\"tab\\there\"}\n");
        let vertical = render(OutputFormat::Vertical);
        assert!(vertical.starts_with("-[ RECORD 1 ]"), "{vertical}");
        assert!(vertical.contains("id   | NULL"), "{vertical}");
        assert!(render(OutputFormat::Aligned).contains("| 1  | a, \"b\""));
        assert_eq!(OutputFormat::parse("JSON"), Some(OutputFormat::Json));
        assert_eq!(OutputFormat::parse("xml"), None);
    }

    #[test]
    fn a_plan_prints_as_plain_text() {
        let batch = RecordBatch::try_from_iter([
            ("plan_type", Arc::new(StringArray::from(vec!["logical_plan"])) as _),
            ("plan", Arc::new(StringArray::from(vec!["Projection: a\n  TableScan: t"])) as _),
        ])
        .expect("batch");
        let mut out = Vec::new();
        write_result(&mut out, OutputFormat::Aligned, &batch.schema(), &[batch]).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text, "logical_plan:\n  Projection: a\n    TableScan: t\n\n");
    }
}
