//! The write benchmarks (`glaux bench --suite writes`), on TPC-H data:
//!
//! 1. `CREATE TABLE AS` of `lineitem` into Parquet partitioned by `l_shipmode` on the cluster, vs
//!    single-process DataFusion's `COPY ... TO ... PARTITIONED BY` with the same parallelism and
//!    codec (ZSTD level 3, DataFusion's default).
//! 2. The serverless data lake talk's first experiment: the same queries over `lineitem` as
//!    gzipped JSON lines and after a CTAS converted it to Parquet partitioned by `l_shipmode`.
//! 3. Its second: a query over `orders` in 5,000 small Parquet files, then after `OPTIMIZE`.
//!
//! Everything is written under a scratch directory the caller gives (under a warehouse root), and
//! removed again except the JSON copy, which is slow to make and kept for the next run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::prelude::{SessionConfig, SessionContext};
use glaux_client::GlauxClient;
use serde::Serialize;

use crate::runner::median;

/// One measurement: timed runs on Glaux (and on DataFusion, where it has a counterpart).
#[derive(Debug, Default, Serialize)]
pub struct WriteTiming {
    pub name: String,
    pub glaux_ms: Vec<f64>,
    pub datafusion_ms: Vec<f64>,
    /// Rows Glaux wrote or returned.
    pub rows: u64,
    pub bytes_scanned: u64,
    /// Data files the measured table had.
    pub files: Option<usize>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

const LINEITEM_COLUMNS: &str = "l_orderkey, l_partkey, l_suppkey, l_linenumber, l_quantity, l_extendedprice, \
     l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate, l_commitdate, l_receiptdate, l_shipinstruct, \
     l_comment, l_shipmode";

/// The queries of the format experiment: an aggregation of every row (TPC-H Q1's shape) and a
/// selective one on the partition column.
const FORMAT_QUERIES: [(&str, &str); 2] = [
    (
        "q1-like",
        "SELECT l_returnflag, l_linestatus, count(*), sum(l_quantity), sum(l_extendedprice * (1 - l_discount)) \
         FROM {t} WHERE l_shipdate <= '1998-09-02' GROUP BY l_returnflag, l_linestatus",
    ),
    ("one-mode", "SELECT count(*), sum(l_extendedprice) FROM {t} WHERE l_shipmode = 'AIR' AND l_quantity > 45"),
];

const SMALL_FILES: usize = 5_000;
const SMALL_FILES_QUERY: &str = "SELECT o_orderpriority, count(*), sum(o_totalprice) FROM orders_small \
     WHERE o_orderdate >= DATE '1995-01-01' GROUP BY o_orderpriority";

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

async fn df_run(ctx: &SessionContext, sql: &str) -> Result<u64, Error> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows() as u64).sum())
}

/// The single number a write statement returns.
fn count_of(output: &glaux_client::QueryOutput) -> u64 {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, UInt64Type};
    let Some(batch) = output.batches.first() else { return 0 };
    let column = batch.column(0);
    column
        .as_primitive_opt::<Int64Type>()
        .map(|a| a.value(0) as u64)
        .or_else(|| column.as_primitive_opt::<UInt64Type>().map(|a| a.value(0)))
        .unwrap_or(0)
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn parquet_files(dir: &Path) -> usize {
    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    usize::from(e.path().extension().is_some_and(|x| x == "parquet"))
                }
            })
            .sum()
    }
    walk(dir)
}

/// Runs the three experiments; `reference` is DataFusion with the cluster's parallelism.
pub async fn run(
    client: &mut GlauxClient,
    reference: &SessionContext,
    data: &Path,
    scratch: &Path,
    iterations: usize,
) -> Result<Vec<WriteTiming>, Error> {
    std::fs::create_dir_all(scratch)?;
    let scratch = scratch.canonicalize()?;
    let mut timings = vec![ctas_vs_copy(client, reference, &scratch, iterations).await?];
    timings.extend(json_vs_parquet(client, reference, &scratch, iterations).await?);
    timings.extend(small_files(client, data, &scratch, iterations).await?);
    Ok(timings)
}

async fn ctas_vs_copy(
    client: &mut GlauxClient,
    reference: &SessionContext,
    scratch: &Path,
    iterations: usize,
) -> Result<WriteTiming, Error> {
    let mut timing = WriteTiming { name: "ctas lineitem".into(), ..Default::default() };
    for run in 0..=iterations {
        let (ours, theirs) = (scratch.join(format!("ctas_{run}")), scratch.join(format!("copy_{run}")));
        let started = Instant::now();
        let output = client
            .query(&format!(
                "CREATE TABLE bench_ctas_{run} WITH (write_compression = 'ZSTD', external_location = '{}/', \
                 partitioned_by = ARRAY['l_shipmode']) AS SELECT {LINEITEM_COLUMNS} FROM lineitem",
                ours.display()
            ))
            .await?;
        let glaux = ms(started);
        timing.rows = count_of(&output);
        timing.bytes_scanned = output.stats.map_or(0, |s| s.scan.bytes_scanned);
        timing.files = Some(parquet_files(&ours));
        let started = Instant::now();
        df_run(
            reference,
            &format!(
                "COPY (SELECT {LINEITEM_COLUMNS} FROM lineitem) TO '{}/' STORED AS PARQUET \
                 PARTITIONED BY (l_shipmode) OPTIONS ('format.compression' 'zstd(3)')",
                theirs.display()
            ),
        )
        .await?;
        let datafusion = ms(started);
        if run > 0 {
            timing.glaux_ms.push(glaux);
            timing.datafusion_ms.push(datafusion);
        }
        eprintln!("ctas lineitem run {run}: glaux {glaux:.0} ms, datafusion COPY {datafusion:.0} ms");
        client.query(&format!("DROP TABLE bench_ctas_{run}")).await?;
        remove(&ours);
        remove(&theirs);
    }
    Ok(timing)
}

async fn json_vs_parquet(
    client: &mut GlauxClient,
    reference: &SessionContext,
    scratch: &Path,
    iterations: usize,
) -> Result<Vec<WriteTiming>, Error> {
    let json = scratch.join("lineitem_json_gz");
    let done = json.join("_complete");
    if !done.exists() {
        remove(&json);
        eprintln!("writing lineitem as gzipped JSON lines in {} ...", json.display());
        // Dates as text and decimals as doubles: what JSON holds.
        let columns = LINEITEM_COLUMNS
            .split(", ")
            .map(|c| match c {
                "l_quantity" | "l_extendedprice" | "l_discount" | "l_tax" => format!("CAST({c} AS DOUBLE) AS {c}"),
                "l_shipdate" | "l_commitdate" | "l_receiptdate" => format!("CAST({c} AS VARCHAR) AS {c}"),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        df_run(
            reference,
            &format!(
                "COPY (SELECT {columns} FROM lineitem) TO '{}/' STORED AS JSON OPTIONS ('format.compression' 'gzip')",
                json.display()
            ),
        )
        .await?;
        std::fs::write(&done, b"")?;
    }
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE lineitem_json (l_orderkey bigint, l_partkey bigint, l_suppkey bigint, \
             l_linenumber int, l_quantity double, l_extendedprice double, l_discount double, l_tax double, \
             l_returnflag string, l_linestatus string, l_shipdate string, l_commitdate string, \
             l_receiptdate string, l_shipinstruct string, l_comment string, l_shipmode string) \
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/'",
            json.display()
        ))
        .await?;
    let parquet = scratch.join("lineitem_from_json");
    remove(&parquet);
    let started = Instant::now();
    let output = client
        .query(&format!(
            "CREATE TABLE lineitem_converted WITH (external_location = '{}/', partitioned_by = ARRAY['l_shipmode']) \
             AS SELECT {LINEITEM_COLUMNS} FROM lineitem_json",
            parquet.display()
        ))
        .await?;
    let mut timings = vec![WriteTiming {
        name: "ctas gz json to parquet".into(),
        glaux_ms: vec![ms(started)],
        rows: count_of(&output),
        bytes_scanned: output.stats.map_or(0, |s| s.scan.bytes_scanned),
        files: Some(parquet_files(&parquet)),
        ..Default::default()
    }];
    for (name, sql) in FORMAT_QUERIES {
        for table in ["lineitem_json", "lineitem_converted"] {
            let sql = sql.replace("{t}", table);
            let mut timing = WriteTiming { name: format!("{name} on {table}"), ..Default::default() };
            for run in 0..=iterations {
                let started = Instant::now();
                let output = client.query(&sql).await?;
                if run > 0 {
                    timing.glaux_ms.push(ms(started));
                }
                timing.rows = output.rows() as u64;
                timing.bytes_scanned = output.stats.map_or(0, |s| s.scan.bytes_scanned);
            }
            eprintln!("{}: {:.0} ms", timing.name, median(&timing.glaux_ms).unwrap_or(f64::NAN));
            timings.push(timing);
        }
    }
    client.query("DROP TABLE lineitem_converted").await?;
    client.query("DROP TABLE lineitem_json").await?;
    remove(&parquet);
    Ok(timings)
}

async fn small_files(
    client: &mut GlauxClient,
    data: &Path,
    scratch: &Path,
    iterations: usize,
) -> Result<Vec<WriteTiming>, Error> {
    let dir: PathBuf = scratch.join("orders_small");
    remove(&dir);
    // Written by DataFusion a few hundred rows a file, as a stream of small loads leaves them.
    let rows = count_of(&client.query("SELECT count(*) FROM orders").await?).max(1);
    let per_file = rows.div_ceil(SMALL_FILES as u64).max(1);
    let writer = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let orders = data.join("orders").canonicalize()?;
    df_run(&writer, &format!("CREATE EXTERNAL TABLE orders STORED AS PARQUET LOCATION '{}/'", orders.display()))
        .await?;
    df_run(&writer, &format!("SET datafusion.execution.batch_size = {per_file}")).await?;
    df_run(&writer, &format!("SET datafusion.execution.soft_max_rows_per_output_file = {per_file}")).await?;
    df_run(&writer, &format!("COPY (SELECT * FROM orders) TO '{}/' STORED AS PARQUET", dir.display())).await?;
    client
        .query(&format!("CREATE EXTERNAL TABLE orders_small STORED AS PARQUET LOCATION '{}/'", dir.display()))
        .await?;

    let mut timings = Vec::new();
    let measure = async |client: &mut GlauxClient, name: &str| -> Result<WriteTiming, Error> {
        let mut timing = WriteTiming { name: name.into(), files: Some(parquet_files(&dir)), ..Default::default() };
        for run in 0..=iterations {
            let started = Instant::now();
            let output = client.query(SMALL_FILES_QUERY).await?;
            if run > 0 {
                timing.glaux_ms.push(ms(started));
            }
            timing.rows = output.rows() as u64;
            timing.bytes_scanned = output.stats.map_or(0, |s| s.scan.bytes_scanned);
        }
        eprintln!(
            "{}: {:.0} ms over {:?} files",
            timing.name,
            median(&timing.glaux_ms).unwrap_or(f64::NAN),
            timing.files
        );
        Ok(timing)
    };
    timings.push(measure(client, "orders in small files").await?);
    let started = Instant::now();
    let output = client.query("ALTER TABLE orders_small EXECUTE optimize").await?;
    let optimized = WriteTiming {
        name: "optimize".into(),
        glaux_ms: vec![ms(started)],
        rows: count_of(&output),
        bytes_scanned: output.stats.map_or(0, |s| s.scan.bytes_scanned),
        files: None,
        ..Default::default()
    };
    eprintln!("optimize: {:.0} ms", optimized.glaux_ms[0]);
    timings.push(optimized);
    // The replaced files go once no query reads them: at once, here.
    for _ in 0..100 {
        if parquet_files(&dir) < SMALL_FILES / 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    timings.push(measure(client, "orders after optimize").await?);
    client.query("DROP TABLE orders_small").await?;
    remove(&dir);
    Ok(timings)
}

/// The table of the three experiments.
pub fn render(timings: &[WriteTiming]) -> String {
    let mut out = format!(
        "{:<34} {:>10} {:>14} {:>7} {:>12} {:>14} {:>7}\n",
        "write experiment", "glaux ms", "datafusion ms", "ratio", "rows", "scanned MiB", "files"
    );
    for t in timings {
        let glaux = median(&t.glaux_ms);
        let datafusion = median(&t.datafusion_ms);
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let ratio = match (glaux, datafusion) {
            (Some(g), Some(d)) if d > 0.0 => format!("{:.2}", g / d),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<34} {:>10} {:>14} {:>7} {:>12} {:>14.1} {:>7}\n",
            t.name,
            show(glaux),
            show(datafusion),
            ratio,
            t.rows,
            t.bytes_scanned as f64 / (1024.0 * 1024.0),
            t.files.map_or("-".to_string(), |f| f.to_string())
        ));
    }
    out
}
