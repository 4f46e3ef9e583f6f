//! Writes: `CREATE TABLE AS` written by the executors' tasks, published by the scheduler, and read
//! back by Glaux and by single-node DataFusion over the files written.

use std::path::Path;

use datafusion::prelude::SessionContext;
use glaux_client::GlauxClient;

use crate::harness::*;

/// Every file under `dir`, relative to it, sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, files: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, files);
            } else {
                files.push(path.strip_prefix(base).unwrap_or(&path).display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// Waits until nothing is left under `dir`: a failed write removes its staging location at once
/// and sweeps it again after 1, 3 and 10 s for files its other tasks were still finishing
/// (`scheduler/src/write/cleanup.rs`).
async fn assert_emptied(dir: &Path) {
    let started = std::time::Instant::now();
    while !files_under(dir).is_empty() {
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?} is still there", files_under(dir));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The rows of `sql` on Glaux and of `reference_sql` on DataFusion, as sorted multisets.
async fn assert_same_rows(client: &mut GlauxClient, sql: &str, reference: &SessionContext, reference_sql: &str) {
    let mut actual = rows_of(&client.query(sql).await.unwrap_or_else(|e| panic!("Glaux failed on {sql}: {e}")).batches);
    let expected =
        reference.sql(reference_sql).await.expect("reference plans").collect().await.expect("reference runs");
    let mut expected = rows_of(&expected);
    actual.sort();
    expected.sort();
    assert!(!expected.is_empty(), "{reference_sql} returns no rows: the comparison would prove nothing");
    assert_eq!(actual, expected, "Glaux's {sql} differs from DataFusion's {reference_sql}");
}

async fn reference_reads(reference: &SessionContext, ddl: &str) {
    reference.sql(ddl).await.expect("reference DDL").collect().await.expect("reference DDL runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_as_writes_partitioned_parquet_and_text_tables() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let warehouse = cluster.warehouse().to_path_buf();

    // Partitioned Parquet at the default location: <warehouse>/<db>/<table>/.
    let written = client
        .query(
            "CREATE TABLE by_region WITH (partitioned_by = ARRAY['region']) AS \
             SELECT id, item, qty, amount, day, region FROM sales",
        )
        .await?;
    let total = REGIONS.len() * DAYS.len() * FILES_PER_PARTITION * ROWS_PER_FILE;
    assert_eq!(rows_of(&written.batches), [total.to_string()]);
    let stats = written.stats.expect("the statement's statistics");
    assert!(stats.scan.bytes_scanned > 0, "data scanned is reported: {stats:?}");
    let location = warehouse.join("default/by_region");
    let files = files_under(&location);
    assert!(files.iter().all(|f| f.starts_with("region=") && f.ends_with(".parquet")), "{files:?}");
    assert!(!location.join("_glaux_staging").exists(), "the staging location is removed");
    // Every task wrote its own files: more than one per region (a single writer would write one).
    assert!(files.len() > REGIONS.len() && stats.tasks >= 2, "{files:?} {stats:?}");
    let partitions = rows_of(&client.query("SHOW PARTITIONS by_region").await?.batches);
    assert_eq!(partitions.len(), REGIONS.len(), "{partitions:?}");
    let per_region = "SELECT region, count(*), sum(qty), min(id), max(id), count(DISTINCT day) FROM {} GROUP BY region";
    assert_same_rows(
        &mut client,
        &per_region.replace("{}", "by_region"),
        &reference,
        &per_region.replace("{}", "sales"),
    )
    .await;
    // Another reader of the files written: DataFusion, declaring them itself.
    reference_reads(
        &reference,
        &format!(
            "CREATE EXTERNAL TABLE df_by_region STORED AS PARQUET PARTITIONED BY (region) LOCATION '{}/'",
            location.display()
        ),
    )
    .await;
    assert_same_rows(
        &mut client,
        &per_region.replace("{}", "by_region"),
        &reference,
        &per_region.replace("{}", "df_by_region"),
    )
    .await;

    // Gzipped JSON lines and '|'-delimited text at given locations.
    let json = warehouse.join("out/json");
    client
        .query(&format!(
            "CREATE TABLE big_items WITH (format = 'JSON', external_location = '{}') AS \
             SELECT id, item, amount FROM sales WHERE qty > 40",
            json.display()
        ))
        .await?;
    assert!(files_under(&json).iter().all(|f| f.ends_with(".json.gz")), "{:?}", files_under(&json));
    reference_reads(
        &reference,
        &format!(
            "CREATE EXTERNAL TABLE df_big_items (id BIGINT, item VARCHAR, amount DOUBLE) STORED AS JSON \
             LOCATION '{}/' OPTIONS ('format.compression' 'gzip')",
            json.display()
        ),
    )
    .await;
    let big = "SELECT count(*), sum(id), count(item), round(sum(amount), 4) FROM {}";
    assert_same_rows(
        &mut client,
        &big.replace("{}", "big_items"),
        &reference,
        &big.replace("{}", "sales WHERE qty > 40"),
    )
    .await;
    assert_same_rows(&mut client, &big.replace("{}", "big_items"), &reference, &big.replace("{}", "df_big_items"))
        .await;

    let text = warehouse.join("out/text");
    client
        .query(&format!(
            "CREATE TABLE item_days WITH (format = 'TEXTFILE', field_delimiter = '|', write_compression = 'NONE', \
             external_location = '{}/', partitioned_by = ARRAY['day']) AS \
             SELECT item, count(*) AS n, day FROM sales WHERE item IS NOT NULL GROUP BY item, day",
            text.display()
        ))
        .await?;
    let per_day = "SELECT day, item, n FROM item_days";
    let reference_per_day = "SELECT day, item, count(*) FROM sales WHERE item IS NOT NULL GROUP BY item, day";
    assert_same_rows(&mut client, per_day, &reference, reference_per_day).await;
    let day = files_under(&text.join("day=2024-01-01"));
    let first = std::fs::read_to_string(text.join("day=2024-01-01").join(&day[0]))?;
    assert!(first.lines().all(|l| l.split('|').count() == 2), "{first}");

    // A query whose result is one sorted partition is written whole.
    let top = client.query("CREATE TABLE top_ids AS SELECT id, qty FROM sales ORDER BY id DESC LIMIT 7").await?;
    assert_eq!(rows_of(&top.batches), ["7"]);
    assert_same_rows(
        &mut client,
        "SELECT * FROM top_ids",
        &reference,
        "SELECT id, qty FROM sales ORDER BY id DESC LIMIT 7",
    )
    .await;

    // WITH NO DATA: the table and its columns, no rows; IF NOT EXISTS: nothing happens.
    client.query("CREATE TABLE empty_copy AS SELECT id, item FROM sales WITH NO DATA").await?;
    assert_eq!(rows_of(&client.query("SELECT count(*) FROM empty_copy").await?.batches), ["0"]);
    let again = client.query("CREATE TABLE IF NOT EXISTS by_region AS SELECT 1 AS x").await?;
    assert_eq!(rows_of(&again.batches), ["0"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_create_table_as_leaves_no_table_and_no_file() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (_lake, mut client) = cluster.with_lake().await?;
    let warehouse = cluster.warehouse().to_path_buf();

    // The cast fails on the executors, after some tasks may have written files.
    let failed = client.query("CREATE TABLE bad AS SELECT id, CAST(item AS INT) AS n FROM sales").await;
    assert!(failed.is_err(), "the cast of 'apple' fails");
    assert!(client.query("SELECT * FROM bad").await.is_err(), "no table was registered");
    assert_emptied(&warehouse.join("default/bad")).await;

    // Too many partitions from one task: a clear error, and nothing left (each would be an
    // open file until the task ends).
    let error = client
        .query("CREATE TABLE many WITH (partitioned_by = ARRAY['p']) AS SELECT id, CAST(id AS VARCHAR) AS p FROM sales")
        .await
        .expect_err("18,000 partitions");
    assert!(error.to_string().contains("more than 1000 partitions"), "{error}");
    assert_emptied(&warehouse.join("default/many")).await;

    // A location that holds files already is refused, and they are left alone.
    let taken = warehouse.join("taken");
    std::fs::create_dir_all(&taken)?;
    std::fs::write(taken.join("theirs.csv"), "1\n")?;
    let error = client
        .query(&format!("CREATE TABLE t WITH (external_location = '{}') AS SELECT 1 AS x", taken.display()))
        .await
        .expect_err("the location is not empty");
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(files_under(&taken), ["theirs.csv"]);

    // Bad properties and locations are clear errors.
    for (sql, message) in [
        ("CREATE TABLE t WITH (format = 'ORC') AS SELECT 1 AS x", "format 'ORC'"),
        ("CREATE TABLE t WITH (write_compression = 'BROTLI') AS SELECT 1 AS x", "BROTLI"),
        ("CREATE TABLE t WITH (format = 'JSON', write_compression = 'SNAPPY') AS SELECT 1 AS x", "for Parquet"),
        ("CREATE TABLE t WITH (partitioned_by = ARRAY['nope']) AS SELECT 1 AS x", "nope"),
        ("CREATE TABLE t WITH (partitioned_by = ARRAY['x']) AS SELECT 1 AS x, 2 AS y", "last columns"),
        ("CREATE TABLE t WITH (external_location = 'file:///etc/glaux/') AS SELECT 1 AS x", "/etc"),
        ("CREATE TABLE t WITH (bucket_count = 4) AS SELECT 1 AS x", "go together"),
        ("CREATE TABLE t WITH (bucketed_by = ARRAY['x'], bucket_count = 0) AS SELECT 1 AS x", "between 1 and"),
        ("CREATE TABLE t WITH (bucketed_by = ARRAY['y'], bucket_count = 2) AS SELECT 1 AS x", "does not return"),
        ("CREATE TABLE nodb.t AS SELECT 1 AS x", "nodb"),
        ("EXPLAIN CREATE TABLE t AS SELECT 1 AS x", "EXPLAIN its query"),
        ("EXPLAIN ANALYZE INSERT INTO sales SELECT * FROM sales", "EXPLAIN its query"),
    ] {
        let error = client.query(sql).await.expect_err(sql);
        assert!(error.to_string().contains(message), "{sql}: {error}");
    }
    assert!(client.query("SELECT * FROM t").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_as_writes_to_s3_and_a_failed_one_leaves_nothing_there() -> TestResult {
    use futures::TryStreamExt;
    use object_store::path::Path as ObjectPath;

    use crate::s3::{BUCKET, run_prefix, s3_config, test_bucket};

    let s3 = s3_config();
    let bucket = test_bucket(&s3)?;
    let prefix = run_prefix();
    let cluster = TestCluster::builder().s3(s3).start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let objects = |under: &'static str| {
        let bucket = std::sync::Arc::clone(&bucket);
        let path = ObjectPath::from(format!("{prefix}/{under}"));
        async move {
            let listed: Vec<_> = bucket.list(Some(&path)).try_collect().await.expect("list the bucket");
            let mut names: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
            names.sort();
            names
        }
    };

    let written = client
        .query(&format!(
            "CREATE TABLE s3_days WITH (write_compression = 'ZSTD', partitioned_by = ARRAY['day'], \
             external_location = 's3://{BUCKET}/{prefix}/days/') AS SELECT id, qty, region, day FROM sales"
        ))
        .await?;
    let total = REGIONS.len() * DAYS.len() * FILES_PER_PARTITION * ROWS_PER_FILE;
    assert_eq!(rows_of(&written.batches), [total.to_string()]);
    let days = objects("days").await;
    assert!(!days.is_empty());
    assert!(days.iter().all(|o| o.starts_with(&format!("{prefix}/days/day=")) && o.ends_with(".parquet")), "{days:?}");
    let per_day = "SELECT day, region, count(*), sum(qty), max(id) FROM {} GROUP BY day, region";
    assert_same_rows(&mut client, &per_day.replace("{}", "s3_days"), &reference, &per_day.replace("{}", "sales")).await;

    let failed = client
        .query(&format!(
            "CREATE TABLE s3_bad WITH (external_location = 's3://{BUCKET}/{prefix}/bad/') AS \
             SELECT id, CAST(item AS INT) AS n FROM sales"
        ))
        .await;
    assert!(failed.is_err());
    assert_eq!(objects("bad").await, Vec::<String>::new(), "no object is left behind");
    assert!(client.query("SELECT * FROM s3_bad").await.is_err());
    Ok(())
}

/// The real binary killed while a CTAS stages its files: nothing is registered, and the next start
/// on the same catalog removes what the write left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_scheduler_leaves_no_table_and_the_next_start_removes_its_files() -> TestResult {
    use std::time::{Duration, Instant};

    use crate::binary::spawn_until;

    let warehouse = tempfile::tempdir()?;
    let lake = write_lake(warehouse.path());
    let root = warehouse.path().display().to_string();
    let args = ["standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &root];
    let (mut first, addr) = spawn_until(&args, &[], "Flight SQL on ").await;
    let mut client = GlauxClient::connect(&addr).await?;
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        client.query(&ddl).await?;
    }
    // 324 million rows as plain JSON lines: files appear at once, and it is still writing when
    // the scheduler dies.
    let mut slow = tokio::task::JoinSet::new();
    slow.spawn(async move {
        client
            .query(
                "CREATE TABLE huge WITH (format = 'JSON', write_compression = 'NONE') AS \
                 SELECT a.id AS a, b.id AS b FROM sales a CROSS JOIN sales b",
            )
            .await
    });
    let location = warehouse.path().join("default/huge");
    let started = Instant::now();
    while files_under(&location).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the write staged nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await?;
    let died = slow.join_next().await.expect("the statement's task")?;
    assert!(died.is_err(), "the statement died with its scheduler");
    let left = files_under(&location);
    assert!(!left.is_empty() && left.iter().all(|f| f.starts_with("_glaux_staging/")), "{left:?}");

    let (mut second, addr) = spawn_until(&args, &[], "Flight SQL on ").await;
    let started = Instant::now();
    while !files_under(&location).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "{:?} is still there", files_under(&location));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = GlauxClient::connect(&addr).await?;
    assert!(client.query("SELECT count(*) FROM huge").await.is_err(), "no table was registered");
    second.kill().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insert_into_adds_files_and_partitions_and_touches_nothing_else() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let warehouse = cluster.warehouse().to_path_buf();

    // A partitioned Parquet table with one partition, then rows for new and existing partitions.
    client
        .query("CREATE TABLE events WITH (partitioned_by = ARRAY['region']) AS SELECT id, qty, region FROM sales WHERE region = 'eu'")
        .await?;
    let before = files_under(&warehouse.join("default/events"));
    let inserted = client.query("INSERT INTO events SELECT id, qty, region FROM sales WHERE region <> 'eu'").await?;
    let others = (REGIONS.len() - 1) * DAYS.len() * FILES_PER_PARTITION * ROWS_PER_FILE;
    assert_eq!(rows_of(&inserted.batches), [others.to_string()]);
    client.query("INSERT INTO events VALUES (999999, 5, 'eu'), (1000000, 6, 'mars')").await?;
    client.query("INSERT INTO events (region, id) VALUES ('eu', 7)").await?;
    let after = files_under(&warehouse.join("default/events"));
    assert!(before.iter().all(|f| after.contains(f)), "files already there stay");
    assert!(!after.iter().any(|f| f.contains("_glaux_staging")), "{after:?}");
    let partitions = rows_of(&client.query("SHOW PARTITIONS events").await?.batches);
    assert_eq!(partitions.len(), REGIONS.len() + 1, "{partitions:?}");
    assert_same_rows(
        &mut client,
        "SELECT region, count(*), count(qty), sum(qty), max(id) FROM events GROUP BY region",
        &reference,
        "SELECT region, count(*), count(qty), sum(qty), max(id) FROM \
         (SELECT id, qty, region FROM sales UNION ALL SELECT * FROM (VALUES (999999, 5, 'eu'), (1000000, 6, 'mars'), \
         (7, NULL, 'eu')) AS v(id, qty, region)) GROUP BY region",
    )
    .await;

    // An unpartitioned JSON table whose first file another program wrote.
    let logs = warehouse.join("logs");
    std::fs::create_dir_all(&logs)?;
    std::fs::write(logs.join("theirs"), "{\"n\": 1, \"s\": \"a\"}\n{\"n\": 2, \"s\": \"b\"}\n")?;
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE logs (n bigint, s string) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' \
             LOCATION '{}/'",
            logs.display()
        ))
        .await?;
    client.query("INSERT INTO logs VALUES (3, 'c'), (4, NULL)").await?;
    client.query("INSERT INTO logs SELECT id, item FROM sales WHERE id < 3").await?;
    assert_eq!(std::fs::read_to_string(logs.join("theirs"))?, "{\"n\": 1, \"s\": \"a\"}\n{\"n\": 2, \"s\": \"b\"}\n");
    reference_reads(
        &reference,
        &format!("CREATE EXTERNAL TABLE df_logs (n BIGINT, s VARCHAR) STORED AS JSON LOCATION '{}/'", logs.display()),
    )
    .await;
    let all = "SELECT n, s FROM {} ORDER BY n, s";
    assert_same_rows(&mut client, &all.replace("{}", "logs"), &reference, &all.replace("{}", "df_logs")).await;
    assert_eq!(rows_of(&client.query("SELECT count(*), sum(n) FROM logs").await?.batches), ["7 | 13"]);

    // A failed INSERT changes nothing; bad statements are clear errors.
    let files = files_under(&warehouse.join("default/events"));
    assert!(client.query("INSERT INTO events SELECT id, CAST(item AS INT), region FROM sales").await.is_err());
    assert_eq!(files_under(&warehouse.join("default/events")), files);
    for (sql, message) in [
        ("INSERT OVERWRITE events SELECT id, qty, region FROM sales", "OVERWRITE"),
        ("INSERT INTO nowhere VALUES (1)", "nowhere"),
        ("INSERT INTO events VALUES (1, 2)", "expected 3"),
    ] {
        let error = client.query(sql).await.expect_err(sql);
        assert!(error.to_string().contains(message), "{sql}: {error}");
    }
    assert_eq!(files_under(&warehouse.join("default/events")), files);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unload_writes_files_another_table_can_be_declared_over() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let out = cluster.warehouse().join("unloaded");
    let unloaded = client
        .query(&format!(
            "UNLOAD (SELECT id, item, region FROM sales WHERE qty > 20) TO '{}' \
             WITH (format = 'PARQUET', compression = 'GZIP', partitioned_by = ARRAY['region'])",
            out.display()
        ))
        .await?;
    let expected = rows_of(&reference.sql("SELECT count(*) FROM sales WHERE qty > 20").await?.collect().await?);
    assert_eq!(rows_of(&unloaded.batches), expected);
    assert!(files_under(&out).iter().all(|f| f.starts_with("region=") && f.ends_with(".parquet")));
    assert!(
        client.query("SHOW TABLES").await.is_ok_and(|t| !rows_of(&t.batches).iter().any(|r| r.contains("unloaded")))
    );
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE unloaded (id bigint, item string) PARTITIONED BY (region string) \
             STORED AS PARQUET LOCATION '{}/'",
            out.display()
        ))
        .await?;
    let per_region = "SELECT region, count(*), count(item), sum(id) FROM {} GROUP BY region";
    assert_same_rows(
        &mut client,
        &per_region.replace("{}", "unloaded"),
        &reference,
        &per_region.replace("{}", "(SELECT * FROM sales WHERE qty > 20)"),
    )
    .await;

    // The destination must be empty; properties are UNLOAD's.
    let again = format!("UNLOAD (SELECT 1 AS x) TO '{}'", out.display());
    assert!(client.query(&again).await.expect_err("not empty").to_string().contains("not empty"));
    let other = cluster.warehouse().join("other");
    for (sql, message) in [
        (format!("UNLOAD (SELECT 1 AS x) TO '{}' WITH (external_location = 'x')", other.display()), "UNLOAD"),
        (format!("UNLOAD (SELECT 1 AS x) TO '{}' WITH (format = 'AVRO')", other.display()), "AVRO"),
        ("UNLOAD (SELECT 1 AS x) TO 'file:///etc/x/'".to_string(), "/etc"),
        ("UNLOAD SELECT 1 TO 'x'".to_string(), "parentheses"),
    ] {
        let error = client.query(&sql).await.expect_err(&sql);
        assert!(error.to_string().contains(message), "{sql}: {error}");
    }
    assert!(files_under(&other).is_empty());
    Ok(())
}

/// Writers start new files as theirs reach the target size, in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn written_files_are_sized_toward_the_target() -> TestResult {
    const TARGET: u64 = 64 * 1024;
    let cluster = TestCluster::builder().target_file_size(TARGET).start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let check = "SELECT count(*), sum(id), count(item), max(ts) FROM {}";
    for (table, format) in [("sized_json", "JSON', write_compression = 'NONE"), ("sized_parquet", "PARQUET")] {
        client.query(&format!("CREATE TABLE {table} WITH (format = '{format}') AS SELECT * FROM sales")).await?;
        let location = cluster.warehouse().join("default").join(table);
        let sizes: Vec<u64> = files_under(&location)
            .iter()
            .map(|f| std::fs::metadata(location.join(f)).map(|m| m.len()).unwrap_or(0))
            .collect();
        let total: u64 = sizes.iter().sum();
        // A file holds at least one batch (up to 1,000 rows here), so it may pass the target by
        // one; the files together are many, not one per writer.
        assert!(sizes.iter().all(|&s| s <= 4 * TARGET), "{table}: {sizes:?}");
        assert!(sizes.len() as u64 >= total / (2 * TARGET) && sizes.len() >= 4, "{table}: {sizes:?}");
        assert_same_rows(&mut client, &check.replace("{}", table), &reference, &check.replace("{}", "sales")).await;
    }
    Ok(())
}
