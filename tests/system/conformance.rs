//! The Trino conformance suite: `tests/conformance/*.slt`, sqllogictest files whose expected
//! results are Trino's documented ones, run through a real cluster (a scheduler and two
//! executors) over the test lake and a small events table.
//!
//! Values are shown as Trino shows them where the display differs from Arrow's: timestamps as
//! `2023-06-01 10:00:00.000`, NULL as `NULL`, the empty string as `(empty)`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use glaux_client::GlauxClient;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::harness::*;

/// The events the suite queries: 120 rows two hours apart from 2023-05-30, three event names in
/// turn, JSON payloads with a session id (`s0`..`s4`), an OS and a value.
fn events() -> RecordBatch {
    const NAMES: [&str; 3] = ["anonymous_visited", "signed_up", "purchased"];
    let start = 1_685_404_800_000_000i64; // 2023-05-30 00:00:00 UTC
    let rows = 0..120i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.clone())),
        Arc::new(StringArray::from_iter_values(rows.clone().map(|i| NAMES[(i % 3) as usize]))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.clone().map(|i| start + i * 7_200_000_000))),
        Arc::new(StringArray::from_iter_values(rows.map(|i| {
            let os = ["ios", "android"][(i % 2) as usize];
            format!(r#"{{"session_id": "s{}", "os": "{os}", "value": {i}, "tags": ["t{}", "x"]}}"#, i % 5, i % 3)
        }))),
    ];
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("tstamp", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("payload", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(Arc::new(schema), columns).expect("events batch")
}

struct Cluster {
    client: GlauxClient,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct QueryError(String);

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

fn display_options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f %Z"))
        .with_date_format(Some("%Y-%m-%d"))
}

/// A row whose cells hold several lines (`EXPLAIN`'s plans) as one row per line, the first line
/// of each cell in the first, with what changes from run to run masked: executor addresses (free
/// ports), query ids, times and DataFusion's metrics.
fn lines_of(cells: &[String]) -> Vec<Vec<String>> {
    if !cells.iter().any(|c| c.contains('\n')) {
        return vec![cells.to_vec()];
    }
    let split: Vec<Vec<&str>> = cells.iter().map(|c| c.lines().collect()).collect();
    let height = split.iter().map(Vec::len).max().unwrap_or(0);
    (0..height)
        .map(|i| split.iter().map(|lines| lines.get(i).map_or_else(|| "(empty)".to_string(), |l| mask(l))).collect())
        .collect()
}

fn mask(line: &str) -> String {
    let mut line = match (line.find("metrics=["), line.rfind(']')) {
        (Some(start), Some(end)) if end > start => format!("{}metrics=[..]{}", &line[..start], &line[end + 1..]),
        _ => line.to_string(),
    };
    // The lake: a temporary directory (`/tmp/.tmpA8VOzz`, wherever TMPDIR puts it).
    while let Some(at) = line.find("/.tmp") {
        let start = line[..at].rfind([' ', '[']).map_or(0, |s| s + 1);
        let end = line[at + 1..].find('/').map_or(line.len(), |e| at + 1 + e);
        line.replace_range(start..end, "<lake>");
    }
    let words: Vec<&str> = line.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        let previous = if i > 0 { words[i - 1] } else { "" };
        out.push(if word.starts_with("127.0.0.1:") {
            let end = word.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':')).unwrap_or(word.len());
            format!("<executor>{}", &word[end..])
        } else if previous == "Query" && word.ends_with(':') {
            "<query>:".to_string()
        } else if next.starts_with("ms") && word.chars().all(|c| c.is_ascii_digit()) {
            "<n>".to_string()
        } else {
            word.to_string()
        });
    }
    out.join(" ")
}

#[async_trait]
impl sqllogictest::AsyncDB for Cluster {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let output = self.client.query(sql).await.map_err(|e| QueryError(e.to_string()))?;
        let Some(schema) = output.schema.filter(|s| !s.fields().is_empty()) else {
            return Ok(DBOutput::StatementComplete(0));
        };
        let types = schema.fields().iter().map(|f| column_type(f.data_type())).collect();
        let options = display_options();
        let mut rows = Vec::new();
        for batch in &output.batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueryError(e.to_string()))?;
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = formatters
                    .iter()
                    .map(|f| match f.value(row).to_string() {
                        text if text.is_empty() => "(empty)".to_string(),
                        // Trino names the zone; Arrow shows UTC as an offset.
                        text => text.replace(" +00:00", " UTC"),
                    })
                    .collect();
                rows.extend(lines_of(&cells));
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "glaux"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trino_conformance_suite() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    write_parquet(&lake.join("events/events.parquet"), &events());
    client
        .query(&format!("CREATE EXTERNAL TABLE events_json STORED AS PARQUET LOCATION '{}/events/'", lake.display()))
        .await?;
    // Columns named in mixed case by the files, read by their lower-case names, whether the
    // table's columns come from the files or are declared.
    let mixed = RecordBatch::try_from_iter([
        ("OrderCount", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ("Name", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
    ])?;
    write_parquet(&lake.join("mixed_case/part-0.parquet"), &mixed);
    client
        .query(&format!("CREATE EXTERNAL TABLE mixed_case STORED AS PARQUET LOCATION '{}/mixed_case/'", lake.display()))
        .await?;
    let declared = format!(
        "CREATE EXTERNAL TABLE mixed_declared (ordercount bigint, name string) STORED AS PARQUET LOCATION '{}/mixed_case/'",
        lake.display()
    );
    client.query(&declared).await?;
    // Orders with an array of rows: (sku, qty) items.
    let items = arrow::array::StructArray::from(vec![
        (Arc::new(Field::new("sku", DataType::Utf8, true)), Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
        (
            Arc::new(Field::new("qty", DataType::Int32, true)),
            Arc::new(arrow::array::Int32Array::from(vec![1, 2])) as ArrayRef,
        ),
    ]);
    let item_field = Arc::new(Field::new_list_field(arrow::array::Array::data_type(&items).clone(), true));
    let lists = arrow::array::ListArray::try_new(
        item_field,
        arrow::buffer::OffsetBuffer::new(vec![0, 2, 2, 2].into()),
        Arc::new(items),
        Some(arrow::buffer::NullBuffer::from(vec![true, true, false])),
    )?;
    let orders = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ("items", Arc::new(lists) as ArrayRef),
    ])?;
    write_parquet(&lake.join("orders/part-0.parquet"), &orders);
    client
        .query(&format!("CREATE EXTERNAL TABLE orders STORED AS PARQUET LOCATION '{}/orders/'", lake.display()))
        .await?;

    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&directory)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "slt"));
    files.sort();
    assert!(files.len() >= 5, "conformance files in {}", directory.display());
    let mut failures = Vec::new();
    for file in &files {
        let url = cluster.url();
        let mut runner = sqllogictest::Runner::new(move || {
            let url = url.clone();
            async move { Ok(Cluster { client: GlauxClient::connect(&url).await.map_err(|e| QueryError(e.to_string()))? }) }
        });
        // The `I`/`T`/`R` of each record are checked: integers, text, floats and decimals.
        runner.with_column_validator(sqllogictest::strict_column_validator);
        // Every record runs, so one run reports every difference.
        for record in sqllogictest::parse_file(file)? {
            if let Err(e) = runner.run_async(record).await {
                failures.push(format!("{}", e.display(false)));
            }
        }
    }
    assert!(failures.is_empty(), "{} conformance failures:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}
