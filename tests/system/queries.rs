//! Distributed results equal single-node DataFusion's, over a Hive-partitioned Parquet lake.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use glaux_client::GlauxClient;

use crate::harness::*;

const QUERIES: &[&str] = &[
    "SELECT count(*) FROM sales",
    "SELECT count(*), sum(qty), min(id), max(id) FROM sales",
    "SELECT region, count(*), sum(qty), round(avg(amount), 6) FROM sales GROUP BY region",
    "SELECT * FROM sales WHERE id < 50 ORDER BY id",
    "SELECT item, max(amount), min(ts) FROM sales WHERE day = '2024-01-02' GROUP BY item",
    "SELECT id, amount FROM sales WHERE region = 'eu' AND amount > 900 ORDER BY id LIMIT 20",
    "SELECT region, day, count(DISTINCT item) FROM sales GROUP BY region, day",
    "SELECT s.region, r.manager, count(*) FROM sales s JOIN regions r ON s.region = r.name WHERE r.active GROUP BY s.region, r.manager",
    "SELECT r.name, count(s.id) FROM regions r LEFT JOIN sales s ON s.region = r.name AND s.qty > 45 GROUP BY r.name",
    "SELECT item, sum(qty) FROM sales GROUP BY item ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT id FROM sales WHERE id < 10 UNION ALL SELECT id FROM sales WHERE id > 17990",
    "SELECT id, region, row_number() OVER (PARTITION BY region ORDER BY id) AS rn FROM sales WHERE id % 500 = 0",
    "SELECT count(*) FROM sales WHERE amount > (SELECT avg(amount) FROM sales)",
    "SELECT day, count(*) FILTER (WHERE item IS NULL), sum(CASE WHEN amount IS NULL THEN 1 ELSE 0 END) FROM sales GROUP BY day ORDER BY day",
    "SELECT date_trunc('hour', ts) AS h, count(*) FROM sales WHERE region = 'us' GROUP BY 1 ORDER BY 1 LIMIT 10",
    "SELECT upper(item), length(item), id FROM sales WHERE id BETWEEN 5000 AND 5010 ORDER BY id",
    "SELECT 1 + 1 AS two, 'x' AS x",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(n, s) ORDER BY n",
    "SELECT count(*) FROM sales WHERE region IN ('eu', 'apac') AND day >= '2024-01-02'",
    // A union of shuffled aggregations: DataFusion interleaves its inputs, which must stay
    // hash-partitioned alike inside every task (TPC-DS q33, q56, q60 have this shape).
    "SELECT item, sum(q) FROM (SELECT item, sum(qty) AS q FROM sales WHERE region = 'eu' GROUP BY item \
     UNION ALL SELECT item, sum(qty) AS q FROM sales WHERE region = 'us' GROUP BY item \
     UNION ALL SELECT item, sum(qty) AS q FROM sales WHERE region = 'apac' GROUP BY item) GROUP BY item ORDER BY item",
    // NOT IN over nullable columns (`session/not_in.rs` plans it as a plain anti join): a NULL in
    // the subquery leaves nothing, a NULL outer value goes unless the subquery is empty.
    "SELECT count(*) FROM sales WHERE item NOT IN (SELECT item FROM sales WHERE id < 100)",
    "SELECT item, count(*) FROM sales WHERE item NOT IN (SELECT item FROM sales WHERE id < 100 AND item <> 'fig') \
     GROUP BY item ORDER BY item",
    "SELECT item IS NULL, count(*) FROM sales WHERE item NOT IN (SELECT item FROM sales WHERE id < 0) GROUP BY 1 ORDER BY 1",
    "SELECT region, count(*) FROM sales WHERE region NOT IN (SELECT name FROM regions WHERE active) GROUP BY region ORDER BY region",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_results_match_datafusion() -> TestResult {
    for executors in [2, 3] {
        let cluster = TestCluster::builder().executors(executors).start().await?;
        let (lake, mut client) = cluster.with_lake().await?;
        let reference = reference_context(&lake).await;
        for sql in QUERIES {
            assert_same_as_datafusion(&mut client, &reference, sql).await;
        }
        // The scans really ran on the executors: every executor got a share of a full scan.
        let output = client.query("SELECT sum(qty) FROM sales").await?;
        let stats = output.stats.expect("the scheduler sends statistics after the last batch");
        assert_eq!(stats.stages, 1);
        assert_eq!(stats.tasks, executors as u64, "the scan is spread over every executor");
        assert!(stats.scan.bytes_scanned > 0);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_draws_the_stage_tree_with_exchanges() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let sql = "SELECT region, sum(qty) FROM sales GROUP BY region";
    let output = client.query(&format!("EXPLAIN {sql}")).await?;
    let text = rows_of(&output.batches).join("\n");
    // The scheduler only reads the final stage; the final aggregation runs on the executors, after
    // a hash shuffle of the partial aggregates between them.
    let (scheduler, executors) = text.split_once("  Stage ").ok_or(format!("no executor stage:\n{text}"))?;
    assert!(scheduler.contains("Stage 0 (scheduler)") && !scheduler.contains("AggregateExec"), "{text}");
    assert!(executors.starts_with("2: gather of 4 partitions, 2 tasks on 2 executors"), "{text}");
    assert!(text.contains("    Stage 1: shuffle into 4 partitions, 2 tasks on 2 executors, files: 18"), "{text}");
    assert!(text.contains("StageReaderExec: stage=1, partitions=4, each merging 2 tasks"), "{text}");
    // The scan's 18 files in its 4 groups (one per partition) are summarized, not listed, unless
    // VERBOSE; the bytes are the files' sizes on disk.
    let bytes: u64 = sales_files().iter().map(|(path, _)| file_size(&lake.join("sales").join(path))).sum();
    let summary = format!("files: 18 ({}) in 4 groups", glaux_proto::format_bytes(bytes));
    assert!(text.contains(&summary) && !text.contains(".parquet"), "{summary} not in\n{text}");
    let verbose = rows_of(&client.query(&format!("EXPLAIN VERBOSE {sql}")).await?.batches).join("\n");
    assert!(verbose.matches(".parquet").count() >= 18 && !verbose.contains("files: 18 ("), "{verbose}");
    let result = client.query(sql).await?;
    assert_eq!(result.rows(), 3);
    // Through the same stages, no rows at all (TPC-H Q11 at SF 10 is such a query).
    let none = client.query("SELECT region, sum(qty) FROM sales WHERE qty < -1 GROUP BY region").await?;
    assert_eq!(none.rows(), 0);
    let stats = result.stats.ok_or("no statistics")?;
    assert_eq!((stats.stages, stats.tasks), (2, 4));
    assert!(stats.scan.bytes_scanned > 0, "the scan's bytes reach the client through both stages");
    Ok(())
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or_else(|e| panic!("{}: {e}", path.display()), |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_is_listed_through_flight_sql() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    let lake = write_lake(cluster.warehouse());
    let mut client = cluster.client().await;
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        client.execute_update(&ddl).await?;
    }
    let tables = client.tables().await?;
    let names: Vec<&str> = tables.iter().filter(|t| t[1] == "default").map(|t| t[2].as_str()).collect();
    assert!(names.contains(&"sales") && names.contains(&"regions"), "{tables:?}");
    let output = client.query("SELECT count(*) FROM glaux.default.regions").await?;
    assert_eq!(rows_of(&output.batches), vec!["4"]);
    client.query("DROP TABLE regions").await?;
    assert!(client.query("SELECT * FROM regions").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_analyze_shows_what_each_stage_and_task_did() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    let output = client.query("EXPLAIN ANALYZE SELECT region, sum(qty) FROM sales GROUP BY region").await?;
    let rows = rows_of(&output.batches);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let text = &rows[0];
    assert!(text.starts_with("Plan with Metrics | Query "), "{text}");
    assert!(text.contains(": 3 rows in ") && text.contains("2 stages, 4 tasks; data scanned"), "{text}");
    assert!(text.contains("Stage 1: shuffle into 4 partitions, 2 tasks"), "{text}");
    // Every task of both stages reported: its rows, time, spills, bytes, and its operators' metrics.
    assert_eq!(text.matches("output rows ").count(), 4, "{text}");
    assert!(!text.contains("no report"), "{text}");
    assert!(text.contains("RepartitionExec") && text.contains("metrics=[output_rows="), "{text}");
    let scanned: Vec<&str> = text.lines().filter(|l| l.contains("output rows ")).collect();
    assert!(scanned.iter().any(|l| !l.ends_with("scanned 0 B")), "the scan stage reports its bytes: {scanned:?}");
    // The executors forget the query once it ran (in the background: its accounts came with it).
    executors_idle(&cluster, std::time::Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_that_stops_reading_early_still_reports_data_scanned() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    // The final merge stops after 3 rows, before it reads the tasks' trailers: their statistics
    // come from the trailers already received when its readers are dropped, or else when the
    // scheduler cancels the tasks.
    for _ in 0..3 {
        let output = client.query("SELECT id, item FROM sales ORDER BY qty DESC, id LIMIT 3").await?;
        assert_eq!(output.rows(), 3);
        let stats = output.stats.ok_or("no statistics")?;
        // Every task's scan is accounted for: all 18 files, all 180 row groups (most of them
        // skipped thanks to the top-k's dynamic filter), and the bytes they read.
        assert_eq!(stats.scan.files_scanned, 18, "{stats:?}");
        assert_eq!(stats.scan.row_groups_pruned + stats.scan.row_groups_matched, 180, "{stats:?}");
        assert!(stats.scan.bytes_scanned > 0, "{stats:?}");
    }
    // The query left nothing behind: freed at once when the scheduler asked the executors, in
    // the background when every account came with the rows (tasks that all ended before the merge
    // stopped reading).
    executors_idle(&cluster, std::time::Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_read_to_its_end_has_every_tasks_account_with_its_results() -> TestResult {
    let cluster = TestCluster::builder().http().start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    let metrics = cluster.scheduler.http_addr().ok_or("no HTTP port")?.to_string();
    let endings = async |accounts: &str| -> f64 {
        let Some((200, text)) = crate::hosts::http_get(&metrics, "/metrics").await else { return f64::NAN };
        let name = format!("glaux_query_endings_total{{accounts=\"{accounts}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    let (trailers, asked) = (endings("trailers").await, endings("executors").await);
    // Two stages (scans' partial aggregates shuffled to the final ones), 4 tasks on 2 executors:
    // each task's account travels down the trailers, through the other stage, to the scheduler.
    let output = client.query("SELECT region, day, count(*), sum(qty) FROM sales GROUP BY region, day").await?;
    assert_eq!(output.rows(), 9);
    let stats = output.stats.ok_or("no statistics")?;
    assert_eq!((stats.stages, stats.tasks), (2, 4), "{stats:?}");
    // Every scan is accounted for, once: the lake's 18 files of 10 row groups each.
    assert_eq!(stats.scan.files_scanned, 18, "{stats:?}");
    assert_eq!((stats.scan.row_groups_matched, stats.scan.row_groups_pruned), (180, 0), "{stats:?}");
    assert!(stats.scan.bytes_scanned > 0, "{stats:?}");
    assert_eq!(endings("trailers").await, trailers + 1.0, "the executors were not asked");
    assert_eq!(endings("executors").await, asked);
    // Its tasks are freed in the background.
    executors_idle(&cluster, std::time::Duration::from_secs(10)).await?;
    // A LIMIT stops reading before the trailers come: the executors are asked, and account alike
    // (unless every task had ended before the merge stopped: the readers then take the trailers
    // already received as they are dropped).
    let output = client.query("SELECT id, item FROM sales ORDER BY qty DESC, id LIMIT 3").await?;
    let stats = output.stats.ok_or("no statistics")?;
    assert_eq!(stats.scan.files_scanned, 18, "{stats:?}");
    let ended = endings("executors").await + endings("trailers").await;
    assert_eq!(ended, asked + trailers + 2.0, "the LIMIT query's ending was not counted");
    Ok(())
}

/// One `id` column of `ids`.
fn ids_batch(ids: Vec<i64>) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(Int64Array::from(ids))])
}

/// Writes a one-file table `name` of `ids` in the lake, declares it on the cluster and on a
/// reference DataFusion over the same lake, and returns the reference.
async fn declare_ids(
    lake: &std::path::Path,
    client: &mut glaux_client::GlauxClient,
    name: &str,
    ids: Vec<i64>,
) -> Result<datafusion::prelude::SessionContext, Box<dyn std::error::Error>> {
    write_parquet(&lake.join(format!("{name}/{name}.parquet")), &ids_batch(ids)?);
    let ddl = format!("CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/{name}/'", lake.display());
    client.query(&ddl).await?;
    let reference = reference_context(lake).await;
    reference.sql(&ddl).await?.collect().await?;
    Ok(reference)
}

/// A broadcast join's dynamic filter reaches the scan below a shuffle: the aggregation's input
/// stage reads only the row groups that can hold the picked ids, as it would in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_filters_cross_shuffles_to_the_scans_below() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = declare_ids(&lake, &mut client, "picks", vec![5, 6]).await?;

    let sql = "SELECT t.id, t.total FROM (SELECT id, sum(qty) AS total FROM sales GROUP BY id) t \
               JOIN picks p ON t.id = p.id";
    let explain = rows_of(&client.query(&format!("EXPLAIN {sql}")).await?.batches).join("\n");
    assert!(explain.contains("shuffle"), "the scan is below a shuffle: {explain}");
    let output = assert_same_as_datafusion(&mut client, &reference, sql).await;
    assert_eq!(output.rows(), 2);
    let stats = output.stats.ok_or("no statistics")?;
    // Ids 5 and 6 lie in one row group of 100 ids; without the filter all 180 of `sales` are
    // read (the rest counted here are `picks`' own, read by each task of the join's stage).
    assert!(stats.scan.row_groups_pruned >= 179 && stats.scan.row_groups_matched <= 3, "{stats:?}");
    Ok(())
}

/// A broadcast join whose build keys are too many for DataFusion's own `IN` list (150) but few
/// enough to send, spread over the whole range of the probe side: bounds prune nothing there, and
/// the hash-table lookup that would cannot travel, so the keys cross the shuffle as an `IN` list
/// and the scan below drops every other row as it decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_filters_cross_shuffles_as_the_build_keys() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = declare_ids(&lake, &mut client, "spread", (0..300).map(|k| k * 60 + 7).collect()).await?;

    let sql = "SELECT t.id, t.total FROM (SELECT id, sum(qty) AS total FROM sales GROUP BY id) t \
               JOIN spread p ON t.id = p.id";
    let explain = rows_of(&client.query(&format!("EXPLAIN {sql}")).await?.batches).join("\n");
    assert!(explain.contains("shuffle") && explain.contains("mode=CollectLeft"), "{explain}");
    let output = assert_same_as_datafusion(&mut client, &reference, sql).await;
    assert_eq!(output.rows(), 300);
    let stats = output.stats.ok_or("no statistics")?;
    // Every row group of 100 ids holds one or two of the keys, so none is pruned; the 18,000 rows
    // of `sales` less the 300 that match are dropped by the page index (the bounds' share) or in
    // the decoder. With bounds alone (7 to 17,947) 59 would be: 40 and 19.
    assert!(stats.scan.pushdown_rows_pruned + stats.scan.page_rows_pruned >= 17_700, "{stats:?}");
    Ok(())
}

/// A partitioned join (the statistics of a partitioned table are unknown, so nothing is
/// broadcast) filters its probe side twice: each join task's reader under it sends its
/// partition's share of the filter to the shuffle tasks it reads, whose scans drop the rows bound
/// for that partition that its share rejects (a share that comes late lets its partition's rows
/// through), and the reader drops in each partition the rows that partition's share rejects. So of
/// the 18,000 rows of `sales`, only the few hundred that match reach the join.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_join_filters_drop_rows_where_the_join_reads_them() -> TestResult {
    let sql = "SELECT s.region, count(*), sum(s.qty) FROM (SELECT id FROM sales WHERE qty = 7 AND region = 'eu') p \
               JOIN sales s ON s.id = p.id GROUP BY s.region";
    sales_probe_side_filtered(sql, 1, 17_000.0).await
}

/// The same with build keys spread over the probe side's whole range (1,500 ids, 7 to 17,995):
/// each share's bounds prune nothing and its lookup into the join's table cannot travel, so it
/// crosses the shuffle with its partition's build keys as an `IN` list (about 375 in each of the
/// join's 4 partitions, more than DataFusion's own lists take), and the scans below drop what the
/// bounds let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_join_shares_carry_their_build_keys() -> TestResult {
    let sql = "SELECT s.region, count(*), sum(s.qty) FROM (SELECT id FROM sales WHERE id % 12 = 7) p \
               JOIN sales s ON s.id = p.id GROUP BY s.region";
    // 16,500 of the 18,000 rows do not match.
    sales_probe_side_filtered(sql, 3, 16_000.0).await
}

/// [`probe_side_filtered`] over the lake's `sales`, each join task keeping its partitions' build
/// keys as `IN` lists.
async fn sales_probe_side_filtered(sql: &str, groups: usize, removed: f64) -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let analyzed = probe_side_filtered(&mut client, &reference, sql, groups, removed).await?;
    let kept = analyzed.lines().filter(|l| l.contains("BuildKeysExec: keys=[") && !l.contains("too many"));
    assert!(kept.filter(|l| !l.contains("bloom")).count() >= 2, "{analyzed}");
    Ok(())
}

/// With more build keys than an `IN` list takes (25,000 of 100,000 ids, about 6,250 in each of
/// the join's 4 partitions, anywhere in the probe side's range), each share crosses the shuffle
/// with a Bloom filter of its partition's keys, and the scans below drop most of the 75,000 rows
/// that cannot match.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_join_shares_carry_a_bloom_filter_of_many_keys() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    for part in 0..4_i64 {
        let ids = Int64Array::from((part * 25_000..(part + 1) * 25_000).collect::<Vec<_>>());
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(ids)])?;
        write_parquet(&lake.join(format!("numbers/part={part}/ids.parquet")), &batch);
    }
    let reference = reference_context(&lake).await;
    // Partitioned: its statistics are unknown, so the join does not broadcast it.
    let ddl = format!(
        "CREATE EXTERNAL TABLE numbers (id BIGINT NOT NULL, part VARCHAR) STORED AS PARQUET PARTITIONED BY (part) \
         LOCATION '{}/numbers/'",
        lake.display()
    );
    client.query(&ddl).await?;
    reference.sql(&ddl).await?.collect().await?;
    let sql = "SELECT n.part, count(*), sum(n.id) FROM (SELECT id FROM numbers WHERE id % 4 = 1) p \
               JOIN numbers n ON n.id = p.id GROUP BY n.part";
    let analyzed = probe_side_filtered(&mut client, &reference, sql, 4, 70_000.0).await?;
    let blooms = analyzed.lines().filter(|l| l.contains("BuildKeysExec: keys=[bloom of "));
    assert!(blooms.count() >= 2, "{analyzed}");
    // Each shuffle task runs once the first share reaches it: at least that partition's quarter
    // of its 37,500 rows that cannot match, less the few the filter lets through.
    let routed = analyzed.lines().filter(|l| l.contains("DataSourceExec") && l.contains("bloom("));
    assert!(sum_of(routed, "pushdown_rows_pruned=") > 15_000.0, "{analyzed}");
    Ok(())
}

/// A partitioned join's filter held by scans two shuffles down (TPC-H q18's shape: the `IN`
/// subquery's orders, the orders scan under the join of customers with orders): the task of the
/// shuffle in between gets the shares and passes them on to the scans it reads, which drop most
/// of the 39,000 orders the subquery did not keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_join_shares_pass_through_a_shuffle_without_scans() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let orders = Arc::new(Schema::new(vec![
        Field::new("o_id", DataType::Int64, false),
        Field::new("o_cust", DataType::Int64, false),
    ]));
    for part in 0..4_i64 {
        let ids: Vec<i64> = (part * 10_000..(part + 1) * 10_000).collect();
        let custs = Int64Array::from(ids.iter().map(|id| id % 1_000).collect::<Vec<_>>());
        let batch = RecordBatch::try_new(Arc::clone(&orders), vec![Arc::new(Int64Array::from(ids)), Arc::new(custs)])?;
        write_parquet(&lake.join(format!("orders_t/part={part}/o.parquet")), &batch);
    }
    let customers = Arc::new(Schema::new(vec![Field::new("c_id", DataType::Int64, false)]));
    for part in 0..2_i64 {
        let ids = Int64Array::from((part * 500..(part + 1) * 500).collect::<Vec<_>>());
        write_parquet(
            &lake.join(format!("cust_t/part={part}/c.parquet")),
            &RecordBatch::try_new(Arc::clone(&customers), vec![Arc::new(ids)])?,
        );
    }
    // Partitioned tables: their statistics are unknown, so no join broadcasts.
    create_in_both(&mut client, &reference, &lake, &[
        "CREATE EXTERNAL TABLE orders_t (o_id BIGINT NOT NULL, o_cust BIGINT NOT NULL, part VARCHAR) STORED AS PARQUET \
         PARTITIONED BY (part) LOCATION 'LAKE/orders_t/'",
        "CREATE EXTERNAL TABLE cust_t (c_id BIGINT NOT NULL, part VARCHAR) STORED AS PARQUET PARTITIONED BY (part) \
         LOCATION 'LAKE/cust_t/'",
    ])
    .await?;
    let sql = "SELECT count(*), sum(o.o_id) FROM (SELECT o_id FROM orders_t WHERE o_id % 40 = 7) p \
               JOIN (SELECT o_id FROM cust_t c JOIN orders_t o ON c.c_id = o.o_cust) o ON o.o_id = p.o_id";
    let explain = rows_of(&client.query(&format!("EXPLAIN {sql}")).await?.batches).join("\n");
    assert_eq!(explain.matches("mode=Partitioned").count(), 2, "{explain}");
    assert_same_as_datafusion(&mut client, &reference, sql).await;
    let analyzed = rows_of(&client.query(&format!("EXPLAIN ANALYZE {sql}")).await?.batches).join("\n");
    // The orders scan under the customers join (not the subquery's, which filters on its own).
    let probed = analyzed.lines().filter(|l| l.contains("DataSourceExec") && l.contains("projection=[o_id, o_cust"));
    // The shuffle task in between runs once the first share reaches it and passes on what it has
    // when it reads the orders (after building on the customers): at least a quarter of the
    // 39,000 rows that cannot match are dropped in the scan, less the matches.
    let pruned = sum_of(probed, "pushdown_rows_pruned=");
    assert!(pruned > 9_000.0, "{pruned} pruned in the orders scans: {analyzed}");
    Ok(())
}

/// A broadcast join in the final stage, which the scheduler runs (TPC-H q22's shape: its build
/// side filtered by a scalar subquery stays there), with too many build keys for `IN` lists: the
/// probe side's stage gets them as a Bloom filter, and its scan drops most of the orders of
/// customers the join does not keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broadcast_join_on_the_scheduler_sends_its_build_keys() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let ids: Vec<i64> = (0..20_000).collect();
    let customers = RecordBatch::try_from_iter([
        ("c_id", Arc::new(Int64Array::from(ids.clone())) as _),
        ("c_bal", Arc::new(Int64Array::from(ids.iter().map(|id| id % 100).collect::<Vec<_>>())) as _),
    ])?;
    write_parquet(&lake.join("cust_b/c.parquet"), &customers);
    let custs = (0..100_000_i64).map(|id| id % 40_000).collect::<Vec<_>>();
    write_parquet(
        &lake.join("orders_b/o.parquet"),
        &RecordBatch::try_from_iter([("o_cust", Arc::new(Int64Array::from(custs)) as _)])?,
    );
    create_in_both(
        &mut client,
        &reference,
        &lake,
        &[
            "CREATE EXTERNAL TABLE cust_b STORED AS PARQUET LOCATION 'LAKE/cust_b/'",
            "CREATE EXTERNAL TABLE orders_b STORED AS PARQUET LOCATION 'LAKE/orders_b/'",
        ],
    )
    .await?;
    // 10,000 customers kept (c_bal 50-99), each with orders, so the answer is 0 rows counted. Of
    // the orders, 30,000 are theirs; the bounds alone (customers 50 to 19,999) let through 60,000.
    let sql = "SELECT count(*), sum(c_id) FROM cust_b c WHERE c_bal > (SELECT avg(c_bal) FROM cust_b) \
               AND NOT EXISTS (SELECT 1 FROM orders_b o WHERE o.o_cust = c.c_id)";
    let output = assert_same_as_datafusion(&mut client, &reference, sql).await;
    assert_eq!(output.rows(), 1);
    let analyzed = rows_of(&client.query(&format!("EXPLAIN ANALYZE {sql}")).await?.batches).join("\n");
    let scheduler = analyzed.split("Stage 1").next().unwrap_or_default();
    assert!(
        scheduler.contains("mode=CollectLeft") && scheduler.contains("BuildKeysExec: keys=[bloom of "),
        "{analyzed}"
    );
    let probed = analyzed.lines().filter(|l| l.contains("DataSourceExec") && l.contains("bloom(o_cust"));
    let kept = sum_of(probed, "output_rows=");
    assert!((30_000.0..33_000.0).contains(&kept), "{kept} orders left the scan: {analyzed}");
    Ok(())
}

/// Runs `sql` (a partitioned join of a table with itself, grouped into `groups` rows), compares
/// it with DataFusion and checks that more than `removed` of the probe side's rows were pruned in
/// the scans below its shuffle or dropped where the join reads them; the EXPLAIN ANALYZE.
async fn probe_side_filtered(
    client: &mut GlauxClient,
    reference: &SessionContext,
    sql: &str,
    groups: usize,
    removed: f64,
) -> Result<String, Box<dyn std::error::Error>> {
    let explain = rows_of(&client.query(&format!("EXPLAIN {sql}")).await?.batches).join("\n");
    assert!(explain.contains("mode=Partitioned") && explain.contains("join filters=1"), "{explain}");
    let output = assert_same_as_datafusion(client, reference, sql).await;
    assert_eq!(output.rows(), groups);
    let analyzed = rows_of(&client.query(&format!("EXPLAIN ANALYZE {sql}")).await?.batches).join("\n");
    let dropped = sum_of(analyzed.lines(), "join_filter_rows_dropped=");
    // The probe side's scans hold the shares, routed as the shuffle above them sends rows.
    let routed = analyzed.lines().filter(|l| l.contains("DataSourceExec") && l.contains("CASE hash_repartition % "));
    let pruned = sum_of(routed, "pushdown_rows_pruned=");
    // Each shuffle task runs once the first share reaches it: at least that partition's quarter
    // of its rows, less the matches, goes in the scan.
    assert!(pruned > 3_000.0, "{pruned} pruned in the scans: {analyzed}");
    assert!(pruned + dropped > removed, "{pruned} pruned, {dropped} dropped: {analyzed}");
    Ok(analyzed)
}

/// Runs each of `ddls` (`LAKE` standing for the lake's directory) on Glaux and on the reference.
async fn create_in_both(
    client: &mut GlauxClient,
    reference: &SessionContext,
    lake: &std::path::Path,
    ddls: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    for ddl in ddls {
        let ddl = ddl.replace("LAKE", &lake.display().to_string());
        client.query(&ddl).await?;
        reference.sql(&ddl).await?.collect().await?;
    }
    Ok(())
}

/// The sum of `metric` over `lines` of an EXPLAIN ANALYZE.
fn sum_of<'a>(lines: impl Iterator<Item = &'a str>, metric: &str) -> f64 {
    lines
        .flat_map(|line| line.split(metric).skip(1))
        .map(|rest| human_count(rest.split([',', ']']).next().unwrap_or_default()))
        .sum()
}

/// A count as DataFusion's metrics show it: `123`, `17.66 K`, `7.50 M`.
fn human_count(text: &str) -> f64 {
    let text = text.trim();
    let (number, scale) = match text.split_once(' ') {
        Some((n, "K")) => (n, 1e3),
        Some((n, "M")) => (n, 1e6),
        _ => (text, 1.0),
    };
    number.parse::<f64>().unwrap_or(0.0) * scale
}

/// A broadcast join's filter reaches the build side of a broadcast join below it. That build side
/// is a gathered stage, and the `CoalescePartitionsExec` reading it starts at once: its reader
/// must wait for the join above to build its table before it opens the stage, or the stage runs
/// unfiltered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_filters_reach_a_gathered_build_side_below() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let ids = |range: std::ops::Range<i64>| -> Result<RecordBatch, arrow::error::ArrowError> {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(range.collect::<Vec<_>>()))],
        )
    };
    // Two files each, so each is read as two partitions and gathered for its join.
    write_parquet(&lake.join("dims/a.parquet"), &ids(0..5_000)?);
    write_parquet(&lake.join("dims/b.parquet"), &ids(5_000..10_000)?);
    write_parquet(&lake.join("facts/a.parquet"), &ids(0..20_000)?);
    write_parquet(&lake.join("facts/b.parquet"), &ids(20_000..40_000)?);
    write_parquet(&lake.join("few/few.parquet"), &ids(5..7)?);
    let reference = reference_context(&lake).await;
    for table in ["dims", "facts", "few"] {
        let ddl = format!("CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{}/{table}/'", lake.display());
        client.query(&ddl).await?;
        reference.sql(&ddl).await?.collect().await?;
    }

    let sql = "SELECT f.id FROM few p JOIN (SELECT d.id FROM dims d JOIN facts f ON d.id = f.id) f ON p.id = f.id";
    let explain = rows_of(&client.query(&format!("EXPLAIN {sql}")).await?.batches).join("\n");
    assert!(explain.matches("mode=CollectLeft").count() >= 2 && explain.contains("broadcast"), "{explain}");
    let output = assert_same_as_datafusion(&mut client, &reference, sql).await;
    assert_eq!(output.rows(), 2);
    let stats = output.stats.ok_or("no statistics")?;
    // Ids 5 and 6 lie in the first row group of `dims/a` and of `facts/a`; the `b` files are
    // skipped whole, and the 49 + 199 other row groups of the `a` files are pruned. Opened before
    // the upper join's filter, `dims` would be read whole (100 row groups), and so would the 100
    // row groups of `facts` its ids span.
    assert!(stats.scan.row_groups_matched <= 6 && stats.scan.row_groups_pruned >= 248, "{stats:?}");
    Ok(())
}

/// Executors keep footers and page indexes, and the scheduler keeps each file's statistics,
/// across queries; a file another writer replaces in place (new size and time) is read anew:
/// `count(*)`, answered from statistics alone, and a scan that prunes pages both see its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_replaced_in_place_is_not_answered_from_caches() -> TestResult {
    // Listings are not kept, so the next query lists the replaced file's new size at once.
    let cluster = TestCluster::builder().listing_cache_ttl(std::time::Duration::ZERO).start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    declare_ids(&lake, &mut client, "swapped", (1..=300).collect()).await?;
    // Twice: the second run is answered with what the first left in the caches.
    for _ in 0..2 {
        assert_eq!(swapped_answers(&mut client).await?, ["300 | 45150", "50"]);
    }

    write_parquet(&lake.join("swapped/swapped.parquet"), &ids_batch((1..=500).collect())?);
    assert_eq!(swapped_answers(&mut client).await?, ["500 | 125250", "250"]);
    Ok(())
}

async fn swapped_answers(client: &mut glaux_client::GlauxClient) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    for sql in ["SELECT count(*), sum(id) FROM swapped", "SELECT count(*) FROM swapped WHERE id > 250"] {
        found.push(rows_of(&client.query(sql).await?.batches).join(" "));
    }
    Ok(found)
}

/// `NOT IN` keeps its NULL checks (a second read of the subquery, joined with every outer row)
/// only where a file may hold a NULL: over keys every Parquet footer says hold none it is a plain
/// anti join; one NULL among the subquery's keys leaves nothing, as SQL says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn not_in_checks_for_nulls_only_where_the_files_may_hold_one() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    declare_ids(&lake, &mut client, "listed", vec![3, 5, 7]).await?;
    let holes = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![Some(3), None])) as _)])?;
    write_parquet(&lake.join("holes/h.parquet"), &holes);
    let reference = declare_ids(&lake, &mut client, "outer_ids", (0..100).collect()).await?;
    for name in ["listed", "holes"] {
        let ddl = format!("CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/{name}/'", lake.display());
        if name == "holes" {
            client.query(&ddl).await?;
        }
        reference.sql(&ddl).await?.collect().await?;
    }
    for (inner, checked, left) in [("listed", false, "97 | 4935"), ("holes", true, "0 | NULL")] {
        let sql = format!("SELECT count(*), sum(id) FROM outer_ids WHERE id NOT IN (SELECT id FROM {inner})");
        let explain = rows_of(&client.query(&format!("EXPLAIN {sql}")).await?.batches).join("\n");
        let distributed = explain.split("distributed_plan").nth(1).unwrap_or_default();
        assert_eq!(distributed.contains("__glaux_not_in_keys"), checked, "{explain}");
        let output = assert_same_as_datafusion(&mut client, &reference, &sql).await;
        assert_eq!(rows_of(&output.batches), [left], "{inner}");
    }
    Ok(())
}
