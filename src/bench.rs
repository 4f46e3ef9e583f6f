//! `glaux bench`: TPC-H or TPC-DS on a standalone Glaux cluster and on single-process DataFusion,
//! side by side on the same files and settings, plus Flight SQL round-trip latency.

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{SessionConfig, SessionContext};
use glaux_bench::{runner, tpcds, tpch, writes};
use glaux_client::GlauxClient;

use crate::args::{BenchArgs, Suite};
use crate::standalone::start_standalone;

pub async fn run(mut args: BenchArgs) -> anyhow::Result<bool> {
    // A bench cluster of its own: any free port, and a catalog apart from the user's.
    args.cluster.flight_sql_addr = "127.0.0.1:0".parse()?;
    let home = args.cluster.storage.home().to_path_buf();
    let SuiteSpec { name, dir, tables, queries, ddl, lookup } = spec(args.suite);
    let data = args.data.clone().unwrap_or_else(|| home.join(format!("{dir}/sf{}", args.sf)));
    // The last table is written last: its presence says the data is complete.
    if !data.join(tables[tables.len() - 1]).exists() {
        eprintln!("Generating {name} SF {} in {} ...", args.sf, data.display());
        match args.suite {
            Suite::Tpch | Suite::Writes => tpch::generate(&data, args.sf, (args.sf.ceil() as i32).clamp(1, 64) * 4),
            Suite::Tpcds => tpcds::generate(&data, args.sf),
        }
        .with_context(|| format!("generating {name} data"))?;
    }
    let catalog = home.join(".glaux/bench-catalog.sqlite");
    let _ = std::fs::remove_file(&catalog);
    args.cluster.storage.catalog = Some(catalog);
    let cluster = start_standalone(&args.cluster).await?;
    let slots: usize = cluster.scheduler.cluster().alive().iter().map(|e| e.task_slots as usize).sum();
    let mut client = GlauxClient::connect(&cluster.scheduler.addr().to_string()).await?;

    // DataFusion with the same parallelism and the same Parquet reading options as the executors.
    let mut config = SessionConfig::new().with_target_partitions(slots.max(1));
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    if args.reference_without_join_filters {
        config.options_mut().optimizer.enable_join_dynamic_filter_pushdown = false;
    }
    let reference = SessionContext::new_with_config(config);
    let location = format!("{}/", data.canonicalize()?.display());
    for ddl in ddl(&location) {
        client.query(&ddl).await?;
        reference.sql(&ddl).await?.collect().await?;
    }
    if args.suite == Suite::Writes {
        return write_experiments(&args, &mut client, &reference, &data, &home).await;
    }
    let queries: Vec<(String, String)> = queries
        .iter()
        .enumerate()
        .filter(|(i, _)| args.query.is_empty() || args.query.contains(&(i + 1)))
        .map(|(i, sql)| (format!("q{}", i + 1), sql.to_string()))
        .collect();
    eprintln!(
        "{name} SF {} on {} executors ({slots} task slots) vs DataFusion (target_partitions {slots}), {} runs each",
        args.sf, args.cluster.executors, args.iterations
    );
    let timings = runner::compare(&mut client, &reference, &queries, args.iterations, args.task_retries).await;
    println!("{}", runner::render(&timings));
    if args.explain_analyze {
        for (name, sql) in &queries {
            let explain = format!("EXPLAIN ANALYZE {sql}");
            println!("== {name} on Glaux ==");
            print_plans(&client.query(&explain).await?.batches);
            println!("== {name} on DataFusion ==");
            print_plans(&reference.sql(&explain).await?.collect().await?);
        }
    }

    // Latency: the smallest query, and a lookup in one partition of a partitioned table.
    let select_one =
        runner::latency(&mut client, "SELECT 1", args.latency_iterations).await.map_err(anyhow::Error::msg)?;
    let by_key = data.join(lookup.table);
    if !by_key.exists() {
        let copy = format!(
            "COPY (SELECT * FROM {}) TO '{}/' STORED AS PARQUET PARTITIONED BY ({})",
            lookup.source,
            by_key.display(),
            lookup.key
        );
        reference.sql(&copy).await?.collect().await?;
    }
    client
        .query(&format!("CREATE EXTERNAL TABLE {} LOCATION '{}/'", lookup.table, by_key.canonicalize()?.display()))
        .await?;
    let lookup = runner::latency(&mut client, lookup.sql, args.latency_iterations).await.map_err(anyhow::Error::msg)?;
    println!("latency over Flight SQL ({} round trips each):", args.latency_iterations);
    println!("  SELECT 1                  p50 {:.2} ms, p99 {:.2} ms", select_one.0, select_one.1);
    println!("  one-partition lookup      p50 {:.2} ms, p99 {:.2} ms", lookup.0, lookup.1);

    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "benchmark": dir,
            "scale_factor": args.sf,
            "executors": args.cluster.executors,
            "task_slots": slots,
            "iterations": args.iterations,
            "queries": timings,
            "latency_ms": {
                "select_1": { "p50": select_one.0, "p99": select_one.1 },
                "partition_lookup": { "p50": lookup.0, "p99": lookup.1 },
            },
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(timings.iter().all(|t| t.error.is_none()))
}

/// The plan text of `EXPLAIN` results: each row's last column (Glaux's one `plan` column,
/// DataFusion's `plan` after its `plan_type`).
fn print_plans(batches: &[RecordBatch]) {
    for batch in batches {
        let Some(plans) = batch.columns().last() else { continue };
        match ArrayFormatter::try_new(plans.as_ref(), &FormatOptions::default()) {
            Ok(formatter) => (0..plans.len()).for_each(|row| println!("{}", formatter.value(row))),
            Err(e) => println!("(unprintable plan: {e})"),
        }
    }
}

/// The write experiments (`glaux_bench::writes`), in a scratch directory under the warehouse.
async fn write_experiments(
    args: &BenchArgs,
    client: &mut GlauxClient,
    reference: &SessionContext,
    data: &std::path::Path,
    home: &std::path::Path,
) -> anyhow::Result<bool> {
    let scratch = home.join(format!("bench-writes/sf{}", args.sf));
    eprintln!(
        "TPC-H SF {} writes on {} executors, {} runs each, in {}",
        args.sf,
        args.cluster.executors,
        args.iterations,
        scratch.display()
    );
    let timings =
        writes::run(client, reference, data, &scratch, args.iterations).await.map_err(|e| anyhow::anyhow!(e))?;
    println!("{}", writes::render(&timings));
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "benchmark": "writes",
            "scale_factor": args.sf,
            "executors": args.cluster.executors,
            "iterations": args.iterations,
            "writes": timings,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(true)
}

/// What differs between the suites.
struct SuiteSpec {
    name: &'static str,
    /// Where its data goes under the warehouse, and its name in the JSON report.
    dir: &'static str,
    tables: &'static [&'static str],
    queries: &'static [&'static str],
    ddl: fn(&str) -> Vec<String>,
    lookup: Lookup,
}

/// A lookup in one partition of a small table copied partitioned, for the latency measurement.
struct Lookup {
    source: &'static str,
    key: &'static str,
    table: &'static str,
    sql: &'static str,
}

fn spec(suite: Suite) -> SuiteSpec {
    match suite {
        Suite::Tpch | Suite::Writes => SuiteSpec {
            name: "TPC-H",
            dir: "tpch",
            tables: &tpch::TABLES,
            queries: &tpch::QUERIES,
            ddl: tpch::ddl,
            lookup: Lookup {
                source: "nation",
                key: "n_regionkey",
                table: "nation_by_region",
                sql: "SELECT n_name FROM nation_by_region WHERE n_regionkey = '3' AND n_nationkey = 7",
            },
        },
        Suite::Tpcds => SuiteSpec {
            name: "TPC-DS",
            dir: "tpcds",
            tables: &tpcds::TABLES,
            queries: &tpcds::QUERIES,
            ddl: tpcds::ddl,
            lookup: Lookup {
                source: "date_dim",
                key: "d_year",
                table: "date_dim_by_year",
                sql: "SELECT d_date FROM date_dim_by_year WHERE d_year = '2000' AND d_date_sk = 2451545",
            },
        },
    }
}
