//! Delta Lake tables written by another engine (the `deltalake` package from PyPI, delta-rs)
//! read by Glaux: every version's rows and the history compared with what that package reads,
//! partitions and file statistics pruning before anything is read, locally and on S3.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use glaux_client::GlauxClient;
use object_store::ObjectStore;

use crate::harness::*;
use crate::s3::{BUCKET, run_prefix, s3_config, test_bucket};

/// What the `deltalake` package read back from the table it wrote.
pub(crate) struct Written {
    /// Rows of each version as `id | name | qty | day`, by id.
    pub(crate) versions: BTreeMap<u64, Vec<String>>,
    /// `(version, operation)`, oldest first.
    pub(crate) history: Vec<(u64, String)>,
}

/// Runs `delta_rs.py` (see that script): `write` makes the table at `uri`, `read` reads it.
pub(crate) fn delta_rs(mode: &str, uri: &str, storage_options: Option<&serde_json::Value>) -> Written {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/delta_rs.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(mode).arg(uri);
    if let Some(options) = storage_options {
        command.arg(options.to_string());
    }
    let output = command.output().expect("python3 runs (pip install deltalake pyarrow; .ci/run does)");
    assert!(output.status.success(), "delta_rs.py {mode} failed: {}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("delta_rs.py prints JSON");
    let versions = json["versions"]
        .as_object()
        .expect("versions")
        .iter()
        .map(|(v, rows)| {
            let rows = rows.as_array().expect("rows").iter().map(|r| r.as_str().expect("row").to_string()).collect();
            (v.parse().expect("version"), rows)
        })
        .collect();
    let history = json["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|entry| (entry[0].as_u64().expect("version"), entry[1].as_str().expect("operation").to_string()))
        .collect();
    Written { versions, history }
}

/// Glaux appends two rows (one in a new partition, one in the null partition) and delta-rs reads
/// them back in a new version whose history says WRITE; Glaux reads it as delta-rs does.
async fn assert_insert_reads_back(client: &mut GlauxClient, uri: &str, options: Option<&serde_json::Value>) {
    let before = delta_rs("read", uri, options);
    let inserted =
        rows(client, "INSERT INTO reviews VALUES (20, 'joy', 200, '2024-02-01'), (21, NULL, 210, NULL)").await;
    assert_eq!(inserted, ["2"]);
    let after = delta_rs("read", uri, options);
    let latest = before.versions.keys().last().copied().unwrap_or_default();
    let mut expected = before.versions[&latest].clone();
    expected.extend(["20 | joy | 200 | 2024-02-01".to_string(), "21 | NULL | 210 | NULL".to_string()]);
    expected.sort_by_key(|row| row.split(" | ").next().and_then(|id| id.parse::<i64>().ok()));
    assert_eq!(after.versions.get(&(latest + 1)), Some(&expected), "delta-rs reads Glaux's append");
    assert_eq!(after.history.last(), Some(&(latest + 1, "WRITE".to_string())));
    assert_versions_and_history(client, "reviews", &after).await;
    // The log's statistics of the new files prune as delta-rs's do.
    let output = client.query("SELECT name FROM reviews WHERE id = 20").await.expect("runs");
    assert_eq!(rows_of(&output.batches), ["joy"]);
    assert_eq!(output.stats.map(|s| s.files_planned), Some(1));
}

/// A table delta-rs writes (`delta_rs.py` `mode`) under the warehouse's `dir`, declared in Glaux as
/// `name`: its location's URI, what delta-rs read, and the client that declared it.
async fn delta_rs_table(
    cluster: &TestCluster,
    mode: &str,
    dir: &str,
    name: &str,
) -> Result<(String, Written, GlauxClient), Box<dyn std::error::Error>> {
    let uri = cluster.warehouse().join(dir).display().to_string();
    let written = delta_rs(mode, &uri, None);
    let mut client = cluster.client().await;
    let sql = format!("CREATE EXTERNAL TABLE {name} LOCATION '{uri}' TBLPROPERTIES ('table_type' = 'DELTA')");
    client.query(&sql).await?;
    Ok((uri, written, client))
}

async fn rows(client: &mut GlauxClient, sql: &str) -> Vec<String> {
    rows_of(&client.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).batches)
}

async fn error_of(client: &mut GlauxClient, sql: &str) -> String {
    client.query(sql).await.err().unwrap_or_else(|| panic!("{sql} ran")).to_string()
}

/// Every version read through Glaux (the latest plainly, each one by time travel) equals what
/// the `deltalake` package reads, and so does the history.
async fn assert_versions_and_history(client: &mut GlauxClient, table: &str, written: &Written) {
    let select = format!("SELECT id, name, qty, day FROM {table}");
    let latest = written.versions.values().last().expect("a version");
    assert_eq!(&rows(client, &format!("{select} ORDER BY id")).await, latest, "latest version of {table}");
    for (version, expected) in &written.versions {
        let sql = format!("{select} FOR VERSION AS OF {version} ORDER BY id");
        assert_eq!(&rows(client, &sql).await, expected, "version {version} of {table}");
    }
    let history = rows(client, &format!("SELECT version, operation FROM \"{table}$history\" ORDER BY version")).await;
    let expected: Vec<String> = written.history.iter().map(|(v, op)| format!("{v} | {op}")).collect();
    assert_eq!(history, expected, "history of {table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delta_table_written_by_delta_rs_reads_at_every_version_with_pruning() -> TestResult {
    let cluster = TestCluster::builder().executors(2).start().await?;
    let location = cluster.warehouse().join("reviews");
    let uri = location.display().to_string();
    let written = delta_rs("write", &uri, None);
    let mut client = cluster.client().await;
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE reviews LOCATION '{}' TBLPROPERTIES ('table_type' = 'DELTA')",
            location.display()
        ))
        .await?;
    assert_versions_and_history(&mut client, "reviews", &written).await;

    // Columns and partition keys come from the log.
    let columns = rows(&mut client, "DESCRIBE reviews").await;
    assert_eq!(columns, ["id | Int64 | YES", "name | Utf8 | YES", "qty | Int64 | YES", "day | Utf8 | YES"]);
    let partitions = rows(&mut client, "SHOW PARTITIONS reviews").await;
    assert_eq!(
        partitions,
        ["day=2024-01-01", "day=2024-01-02", "day=2024-01-03", "day=2024-01-04", "day=__HIVE_DEFAULT_PARTITION__"]
    );
    let show = rows(&mut client, "SHOW CREATE TABLE reviews").await.join("\n");
    assert!(show.contains("TBLPROPERTIES ('table_type' = 'DELTA')"), "{show}");

    // A partition predicate reads one partition's files; a predicate on a data column reads the
    // files whose statistics can hold it (id 8 is in one file of the five).
    let output = client.query("SELECT sum(qty) FROM reviews WHERE day = '2024-01-03'").await?;
    assert_eq!(rows_of(&output.batches), ["120"]);
    let stats = output.stats.ok_or("no statistics")?;
    assert_eq!((stats.partitions_read, stats.partitions_total), (1, 5), "{stats:?}");
    let output = client.query("SELECT name FROM reviews WHERE id = 8").await?;
    assert_eq!(rows_of(&output.batches), ["hal"]);
    let stats = output.stats.ok_or("no statistics")?;
    assert_eq!(stats.files_planned, 1, "{stats:?}");
    let nulls = rows(&mut client, "SELECT id FROM reviews WHERE day IS NULL").await;
    assert_eq!(nulls, ["6"]);
    let explain = rows(&mut client, "EXPLAIN SELECT count(*) FROM reviews WHERE qty > 45").await.join("\n");
    assert!(explain.contains("Stage 1") && explain.contains("DataSourceExec"), "scanned by executor tasks: {explain}");

    // Time travel by timestamp: now is the latest version; before the first commit there is none.
    let now =
        rows(&mut client, "SELECT count(*) FROM reviews FOR TIMESTAMP AS OF current_timestamp r WHERE r.qty > 0").await;
    assert_eq!(now, [written.versions.values().last().map_or(0, Vec::len).to_string()]);
    let error =
        error_of(&mut client, "SELECT * FROM reviews FOR TIMESTAMP AS OF TIMESTAMP '2001-01-01 00:00:00'").await;
    assert!(error.contains("no version committed at or before"), "{error}");
    let error = error_of(&mut client, "SELECT * FROM reviews FOR VERSION AS OF 99").await;
    assert!(error.contains("has no version 99"), "{error}");
    let properties = rows(&mut client, "SELECT key FROM \"reviews$properties\"").await;
    assert!(properties.contains(&"delta.minReaderVersion".to_string()), "{properties:?}");

    assert_insert_reads_back(&mut client, &uri, None).await;

    // The crawler knows a Delta table by its log, without the property.
    client.query(&format!("CREATE EXTERNAL TABLE crawled LOCATION '{}'", location.display())).await?;
    assert_eq!(rows(&mut client, "SELECT count(*) FROM crawled").await, ["9"]);

    // What does not apply is refused, by name.
    for (sql, expected) in [
        ("MSCK REPAIR TABLE reviews", "its partitions are the ones its transaction log lists"),
        ("SELECT * FROM \"reviews$nothing\"", "not found"),
        (
            "CREATE EXTERNAL TABLE ice LOCATION '/tmp' TBLPROPERTIES ('table_type' = 'ICEBERG')",
            "Iceberg tables are not supported yet",
        ),
        ("CREATE TABLE ice WITH (table_type = 'ICEBERG') AS SELECT 1 AS x", "Iceberg tables are not supported yet"),
        (
            "CREATE EXTERNAL TABLE cols (id bigint) LOCATION '/tmp' TBLPROPERTIES ('table_type' = 'DELTA')",
            "come from its transaction log",
        ),
    ] {
        let error = error_of(&mut client, sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
    }
    // A table that is not a Delta table has no versions.
    let (_, mut lake_client) = cluster.with_lake().await?;
    let error = error_of(&mut lake_client, "SELECT * FROM sales FOR VERSION AS OF 1").await;
    assert!(error.contains("is not a Delta table"), "{error}");
    let empty = cluster.warehouse().join("not_delta");
    std::fs::create_dir_all(&empty)?;
    let sql = format!("CREATE EXTERNAL TABLE nd LOCATION '{}' TBLPROPERTIES ('table_type' = 'DELTA')", empty.display());
    let error = error_of(&mut client, &sql).await;
    assert!(error.contains("no Delta table at"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delta_table_in_s3_reads_at_every_version() -> TestResult {
    let s3 = s3_config();
    let prefix = run_prefix();
    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": s3.endpoint.clone().unwrap_or_default(),
        "AWS_ACCESS_KEY_ID": s3.access_key_id.clone().unwrap_or_default(),
        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key.clone().unwrap_or_default(),
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        // One writer here: delta-rs may commit without a lock.
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    });
    let uri = format!("s3://{BUCKET}/{prefix}/reviews");
    let written = delta_rs("write", &uri, Some(&options));
    let cluster = TestCluster::builder().s3(s3.clone()).start().await?;
    let mut client = cluster.client().await;
    client
        .query(&format!("CREATE EXTERNAL TABLE reviews LOCATION '{uri}/' TBLPROPERTIES ('table_type' = 'DELTA')"))
        .await?;
    assert_versions_and_history(&mut client, "reviews", &written).await;
    let output = client.query("SELECT sum(qty) FROM reviews WHERE day = '2024-01-02'").await?;
    assert_eq!(rows_of(&output.batches), ["71"]);
    let stats = output.stats.ok_or("no statistics")?;
    assert!(stats.scan.bytes_scanned > 0, "data scanned is reported: {stats:?}");
    assert_insert_reads_back(&mut client, &uri, Some(&options)).await;
    // A Delta table created in S3 by Glaux, read by delta-rs.
    let copy = format!("s3://{BUCKET}/{prefix}/copy/");
    let sql = format!("CREATE TABLE copy WITH (table_type = 'DELTA', location = '{copy}') AS SELECT * FROM reviews");
    client.query(&sql).await?;
    let read = delta_rs("read", &copy, Some(&options));
    let latest = rows(&mut client, "SELECT id, name, qty, day FROM reviews ORDER BY id").await;
    assert_eq!(read.versions.get(&0), Some(&latest));
    let bucket = test_bucket(&s3)?;
    let log = bucket.list_with_delimiter(Some(&format!("{prefix}/reviews/_delta_log").into())).await?;
    assert!(log.objects.len() >= written.versions.len(), "the log is in S3: {:?}", log.objects);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clients_appending_at_once_both_land_in_versions_of_their_own() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (uri, written, mut client) = delta_rs_table(&cluster, "write", "events", "reviews").await?;
    const EACH: i64 = 6;
    let append = |first: i64| {
        let cluster = &cluster;
        async move {
            let mut client = cluster.client().await;
            for id in first..first + EACH {
                let sql = format!("INSERT INTO reviews VALUES ({id}, 'c', {id}, '2024-03-0{}')", id % 3 + 1);
                client.query(&sql).await.map_err(|e| format!("{sql}: {e}"))?;
            }
            Ok::<_, String>(())
        }
    };
    let (a, b) = tokio::join!(append(100), append(200));
    a?;
    b?;
    let before = written.versions.values().last().map_or(0, Vec::len) as i64;
    let count = rows(&mut client, "SELECT count(*), count(DISTINCT id) FROM reviews WHERE id >= 100").await;
    assert_eq!(count, [format!("{0} | {0}", 2 * EACH)]);
    assert_eq!(rows(&mut client, "SELECT count(*) FROM reviews").await, [(before + 2 * EACH).to_string()]);
    // One version per statement, none lost, and delta-rs reads the same table.
    let after = delta_rs("read", &uri, None);
    let latest = written.versions.keys().last().copied().unwrap_or_default();
    assert_eq!(after.versions.keys().last().copied(), Some(latest + 2 * EACH as u64));
    assert_eq!(after.versions.values().last().map(Vec::len), Some((before + 2 * EACH) as usize));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_as_makes_a_delta_table_any_delta_reader_reads() -> TestResult {
    let cluster = TestCluster::builder().executors(2).start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let ctas = "CREATE TABLE sales_delta WITH (table_type = 'DELTA', partitioning = ARRAY['region']) AS \
                SELECT id, item, qty, amount, ts, day, region FROM sales";
    let written = rows(&mut client, ctas).await;
    let total = rows_of(&reference.sql("SELECT count(*) FROM sales").await?.collect().await?);
    assert_eq!(written, total);
    let check = "SELECT region, day, count(*), count(item), sum(qty), round(sum(amount), 2), min(ts), max(id) FROM {} \
                 GROUP BY region, day";
    let (delta, sales) = (check.replace("{}", "sales_delta"), check.replace("{}", "sales"));
    assert_same_as_datafusion_pair(&mut client, &reference, &delta, &sales).await;
    // Version 0 holds the rows; the table is partitioned by region in its log; delta-rs reads
    // the same rows (ids and quantities summed there).
    let history = rows(&mut client, "SELECT version, operation FROM \"sales_delta$history\"").await;
    assert_eq!(history, ["0 | CREATE TABLE"]);
    assert_eq!(rows(&mut client, "SHOW PARTITIONS sales_delta").await, ["region=apac", "region=eu", "region=us"]);
    let location = cluster.warehouse().join("default/sales_delta");
    let script = "import sys, json, pyarrow.compute as pc; from deltalake import DeltaTable; \
                  t = DeltaTable(sys.argv[1]).to_pyarrow_table(); \
                  print(json.dumps([t.num_rows, pc.sum(t['id']).as_py(), pc.sum(t['qty']).as_py()]), flush=True); \
                  import os; os._exit(0)";
    let output = Command::new("python3").args(["-c", script]).arg(&location).output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: Vec<i64> = serde_json::from_slice(&output.stdout)?;
    let expected = rows_of(&reference.sql("SELECT count(*), sum(id), sum(qty) FROM sales").await?.collect().await?);
    assert_eq!(vec![read.iter().map(i64::to_string).collect::<Vec<_>>().join(" | ")], expected);

    // WITH NO DATA makes an empty version 0 that INSERT fills.
    client.query("CREATE TABLE few WITH (table_type = 'DELTA') AS SELECT id, item FROM sales WITH NO DATA").await?;
    assert_eq!(rows(&mut client, "SELECT count(*) FROM few").await, ["0"]);
    assert_eq!(rows(&mut client, "INSERT INTO few SELECT id, item FROM sales WHERE id < 10").await, ["10"]);
    assert_eq!(rows(&mut client, "SELECT count(*), sum(id) FROM few").await, ["10 | 45"]);
    let history = rows(&mut client, "SELECT version, operation FROM \"few$history\" ORDER BY version").await;
    assert_eq!(history, ["0 | CREATE TABLE", "1 | WRITE"]);
    // A Delta table is Parquet, never bucketed; its location must be empty.
    for (sql, expected) in [
        ("CREATE TABLE j WITH (table_type = 'DELTA', format = 'JSON') AS SELECT 1 AS x", "a Delta table is Parquet"),
        ("CREATE TABLE again WITH (table_type = 'DELTA', location = '{few}') AS SELECT 1 AS x", "is not empty"),
    ] {
        let sql = sql.replace("{few}", &cluster.warehouse().join("default/few").display().to_string());
        let error = error_of(&mut client, &sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_and_update_rewrite_files_and_delta_rs_reads_the_result() -> TestResult {
    let cluster = TestCluster::builder().executors(2).start().await?;
    let (uri, written, mut client) = delta_rs_table(&cluster, "write", "reviews", "reviews").await?;
    let mut expected = written.versions.values().last().cloned().unwrap_or_default();
    // Version 4 holds ids 3..=9 (see delta_rs.py). A GDPR erasure: two customers' rows.
    assert_eq!(rows(&mut client, "DELETE FROM reviews WHERE id IN (3, 8)").await, ["2"]);
    expected.retain(|row| !row.starts_with("3 |") && !row.starts_with("8 |"));
    // A correction across partitions, one row moving partition, NULLs kept.
    assert_eq!(rows(&mut client, "UPDATE reviews SET qty = qty + 1, day = '2024-01-05' WHERE id = 5").await, ["1"]);
    assert_eq!(rows(&mut client, "UPDATE reviews SET name = upper(name) WHERE qty > 60").await, ["2"]);
    for row in &mut expected {
        let parts: Vec<&str> = row.split(" | ").collect();
        let (id, name, qty, day) = (parts[0], parts[1], parts[2], parts[3]);
        let qty_n: i64 = qty.parse().unwrap_or_default();
        *row = match id {
            "5" => format!("5 | {name} | {} | 2024-01-05", qty_n + 1),
            _ if qty_n > 60 => format!("{id} | {} | {qty} | {day}", name.to_uppercase()),
            _ => row.clone(),
        };
    }
    let read = delta_rs("read", &uri, None);
    let latest = read.versions.keys().last().copied().unwrap_or_default();
    assert_eq!(read.versions.get(&latest), Some(&expected), "delta-rs reads what Glaux rewrote");
    let operations: Vec<&str> = read.history.iter().rev().take(3).map(|(_, op)| op.as_str()).collect();
    assert_eq!(operations, ["UPDATE", "UPDATE", "DELETE"]);
    assert_versions_and_history(&mut client, "reviews", &read).await;
    // The version before the bad UPDATE is still there to travel back to.
    let before = rows(
        &mut client,
        &format!("SELECT id, name, qty, day FROM reviews FOR VERSION AS OF {} ORDER BY id", latest - 1),
    )
    .await;
    assert_eq!(Some(&before), read.versions.get(&(latest - 1)));

    // Nothing matched: nothing committed. Hive tables are refused, as Athena refuses them.
    assert_eq!(rows(&mut client, "DELETE FROM reviews WHERE id = 12345").await, ["0"]);
    assert_eq!(delta_rs("read", &uri, None).versions.len(), read.versions.len());
    let (_, mut lake_client) = cluster.with_lake().await?;
    let error = error_of(&mut lake_client, "DELETE FROM sales WHERE id = 1").await;
    assert!(error.contains("works on Delta tables"), "{error}");
    // DELETE without WHERE empties the table, as a new version.
    let all = rows(&mut client, "SELECT count(*) FROM reviews").await;
    assert_eq!(rows(&mut client, "DELETE FROM reviews").await, all);
    assert_eq!(rows(&mut client, "SELECT count(*) FROM reviews").await, ["0"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_of_the_same_rows_never_lose_one() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (_, _, mut client) = delta_rs_table(&cluster, "write", "reviews", "reviews").await?;
    let start: i64 = rows(&mut client, "SELECT qty FROM reviews WHERE id = 4").await.join("").parse()?;
    // Eight clients each add one to the same row at once: every success must show, and every
    // failure must say it lost to a concurrent commit.
    let bump = || {
        let cluster = &cluster;
        async move {
            let mut client = cluster.client().await;
            client.query("UPDATE reviews SET qty = qty + 1 WHERE id = 4").await.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    let outcomes = futures::future::join_all((0..8).map(|_| bump())).await;
    let succeeded = outcomes.iter().filter(|o| o.is_ok()).count() as i64;
    for failure in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(failure.contains("concurrent") || failure.contains("onflict"), "{failure}");
    }
    assert!(succeeded >= 1);
    let end: i64 = rows(&mut client, "SELECT qty FROM reviews WHERE id = 4").await.join("").parse()?;
    assert_eq!(end, start + succeeded, "no update lost ({succeeded} succeeded, {outcomes:?})");
    assert_eq!(rows(&mut client, "SELECT count(*) FROM reviews WHERE id = 4").await, ["1"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimize_bin_packs_small_files_into_one_version_that_changes_no_rows() -> TestResult {
    let cluster = TestCluster::builder().executors(2).start().await?;
    let (uri, written, mut client) = delta_rs_table(&cluster, "small", "clicks", "clicks").await?;
    let all = "SELECT id, name, qty, day FROM clicks ORDER BY id";
    let before = rows(&mut client, all).await;
    assert_eq!(Some(&before), written.versions.values().last());
    let files = |sql: &'static str| {
        let cluster = &cluster;
        async move {
            let output = cluster.client().await.query(sql).await.expect("runs");
            output.stats.map(|s| s.files_planned).unwrap_or_default()
        }
    };
    assert_eq!(files("SELECT count(*) FROM clicks WHERE qty >= 0").await, 200);
    // One partition first (Athena's syntax), then the rest (Trino's).
    let rewritten = rows(&mut client, "OPTIMIZE clicks REWRITE DATA USING BIN_PACK WHERE day = '2024-05-01'").await;
    assert_eq!(rewritten, ["100"]);
    assert_eq!(files("SELECT count(*) FROM clicks WHERE day = '2024-05-01' AND qty >= 0").await, 1);
    assert_eq!(files("SELECT count(*) FROM clicks WHERE day = '2024-05-02' AND qty >= 0").await, 100);
    assert_eq!(rows(&mut client, "ALTER TABLE clicks EXECUTE optimize").await, ["100"]);
    assert_eq!(files("SELECT count(*) FROM clicks WHERE qty >= 0").await, 2);
    assert_eq!(rows(&mut client, all).await, before, "the same rows");
    // Nothing small left: nothing to do, no version.
    assert_eq!(rows(&mut client, "ALTER TABLE clicks EXECUTE optimize").await, ["0"]);
    let read = delta_rs("latest", &uri, None);
    assert_eq!(read.versions.values().last(), Some(&before), "delta-rs reads the same rows");
    let operations: Vec<&str> = read.history.iter().rev().take(3).map(|(_, op)| op.as_str()).collect();
    assert_eq!(operations, ["OPTIMIZE", "OPTIMIZE", "WRITE"]);
    // The version before holds the old files, which stay until a VACUUM.
    let latest = read.versions.keys().last().copied().unwrap_or_default();
    let old = format!("SELECT id, name, qty, day FROM clicks FOR VERSION AS OF {} ORDER BY id", latest - 2);
    assert_eq!(rows(&mut client, &old).await, before);
    let error = error_of(&mut client, "OPTIMIZE clicks REWRITE DATA USING BIN_PACK WHERE qty > 3").await;
    assert!(error.contains("only the partition columns"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_with_columns_makes_an_empty_delta_table() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let mut client = cluster.client().await;
    // Athena's form: partitions named among the columns; and Hive's: declared with their type.
    client
        .query(
            "CREATE TABLE events (id bigint, kind string, day date) PARTITIONED BY (day) \
             TBLPROPERTIES ('table_type' = 'DELTA')",
        )
        .await?;
    let location = cluster.warehouse().join("elsewhere");
    client
        .query(&format!(
            "CREATE TABLE other (id int) PARTITIONED BY (region string) LOCATION '{}' \
             TBLPROPERTIES ('table_type' = 'DELTA')",
            location.display()
        ))
        .await?;
    assert_eq!(
        rows(&mut client, "DESCRIBE events").await,
        ["id | Int64 | YES", "kind | Utf8 | YES", "day | Date32 | YES"]
    );
    assert_eq!(rows(&mut client, "SELECT count(*) FROM events").await, ["0"]);
    assert_eq!(rows(&mut client, "INSERT INTO events VALUES (1, 'a', DATE '2024-06-01'), (2, 'b', NULL)").await, ["2"]);
    assert_eq!(rows(&mut client, "SHOW PARTITIONS events").await, ["day=2024-06-01", "day=__HIVE_DEFAULT_PARTITION__"]);
    assert_eq!(rows(&mut client, "INSERT INTO other VALUES (7, 'eu')").await, ["1"]);
    // delta-rs reads both.
    let script = "import sys, json; from deltalake import DeltaTable; \
                  t = [DeltaTable(u) for u in sys.argv[1:]]; \
                  print(json.dumps([[x.version(), x.metadata().partition_columns, x.to_pyarrow_table().num_rows] for x in t]), flush=True); \
                  import os; os._exit(0)";
    let events = cluster.warehouse().join("default/events");
    let output = Command::new("python3").args(["-c", script]).arg(&events).arg(&location).output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(read, serde_json::json!([[1, ["day"], 2], [1, ["region"], 1]]));
    // A table whose log is gone: the other tables still list with their columns; reading it
    // says why it cannot be read.
    std::fs::remove_dir_all(&location)?;
    let listed = rows(&mut client, "SELECT DISTINCT table_name FROM information_schema.columns ORDER BY 1").await;
    assert_eq!(listed, ["events", "other"]);
    let error = error_of(&mut client, "SELECT * FROM other").await;
    assert!(error.contains("Delta"), "{error}");
    assert_eq!(rows(&mut client, "SELECT count(*) FROM events").await, ["2"]);
    for (sql, expected) in [
        ("CREATE TABLE events (id bigint) TBLPROPERTIES ('table_type' = 'DELTA')", "already exists"),
        ("CREATE TABLE h (id bigint) TBLPROPERTIES ('format' = 'parquet')", "creates Delta tables"),
        (
            "CREATE TABLE p (id bigint) PARTITIONED BY (nope) TBLPROPERTIES ('table_type' = 'DELTA')",
            "not a declared column",
        ),
    ] {
        let error = error_of(&mut client, sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vacuum_deletes_what_no_version_in_its_retention_needs() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let mut client = cluster.client().await;
    client
        .query("CREATE TABLE kept (id bigint, day string) PARTITIONED BY (day) TBLPROPERTIES ('table_type' = 'DELTA')")
        .await?;
    for id in 0..4 {
        client.query(&format!("INSERT INTO kept VALUES ({id}, 'd{}')", id % 2)).await?;
    }
    client.query("ALTER TABLE kept EXECUTE optimize").await?;
    let location = cluster.warehouse().join("default/kept");
    let parquet_files = || -> usize {
        let mut count = 0;
        for day in ["day=d0", "day=d1"] {
            count += std::fs::read_dir(location.join(day)).map_or(0, |d| d.count());
        }
        count
    };
    assert_eq!(parquet_files(), 6, "4 written, 2 compacted, none deleted");
    // Delta's safety: the default retention (7 days) keeps them; a shorter one is refused until
    // the table's own Delta retention is lowered.
    assert_eq!(rows(&mut client, "VACUUM kept").await, ["0"]);
    client.query("ALTER TABLE kept SET TBLPROPERTIES ('vacuum_max_snapshot_age_seconds' = '0')").await?;
    let error = error_of(&mut client, "VACUUM kept").await;
    assert!(error.contains("minimum retention for vacuum is configured to be greater than 168 hours"), "{error}");
    assert_eq!(parquet_files(), 6);
    client
        .query("ALTER TABLE kept SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 0 seconds')")
        .await?;
    assert_eq!(rows(&mut client, "VACUUM kept").await, ["4"]);
    assert_eq!(parquet_files(), 2);
    assert_eq!(rows(&mut client, "SELECT count(*), sum(id) FROM kept").await, ["4 | 6"]);
    let properties = rows(&mut client, "SELECT key, value FROM \"kept$properties\" WHERE key LIKE 'vacuum%'").await;
    assert_eq!(properties, ["vacuum_max_snapshot_age_seconds | 0"]);
    // The version before OPTIMIZE named the deleted files: time travel there now fails.
    assert!(client.query("SELECT count(*) FROM kept FOR VERSION AS OF 4").await.is_err());
    for (sql, expected) in [
        ("ALTER TABLE kept SET TBLPROPERTIES ('vacuum_max_snapshot_age_seconds' = 'soon')", "number of seconds"),
        ("ALTER TABLE kept SET TBLPROPERTIES ('aws.secret_key' = 'x')", "looks like a credential"),
        ("ALTER TABLE kept SET TBLPROPERTIES 'k' = 'v'", "SET TBLPROPERTIES takes"),
    ] {
        let error = error_of(&mut client, sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
    }
    let (_, mut lake_client) = cluster.with_lake().await?;
    let error = error_of(&mut lake_client, "VACUUM sales").await;
    assert!(error.contains("works on Delta tables"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_a_deletion_vector_deletes_are_not_read_and_rewrites_drop_them() -> TestResult {
    let cluster = TestCluster::builder().executors(2).start().await?;
    let uri = cluster.warehouse().join("dv").display().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/delta_rs.py");
    let output = Command::new("python3").arg(script).args(["dv", &uri]).output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let expected = ["0", "1", "3", "4", "6", "7", "8", "9"];
    let by_delta_rs: Vec<String> = read["ids"].as_array().ok_or("ids")?.iter().map(|v| v.to_string()).collect();
    assert_eq!(by_delta_rs, expected, "delta-rs applies the deletion vector");
    let mut client = cluster.client().await;
    client.query(&format!("CREATE EXTERNAL TABLE dv LOCATION '{uri}' TBLPROPERTIES ('table_type' = 'DELTA')")).await?;
    assert_eq!(rows(&mut client, "SELECT id FROM dv ORDER BY id").await, expected);
    // Counted from the rows, not from the log's row count (which includes the deleted rows).
    assert_eq!(rows(&mut client, "SELECT count(*), sum(qty) FROM dv").await, ["8 | 380"]);
    assert_eq!(rows(&mut client, "SELECT id FROM dv WHERE id BETWEEN 2 AND 6 ORDER BY id LIMIT 2").await, ["3", "4"]);
    assert_eq!(rows(&mut client, "SELECT id FROM dv FOR VERSION AS OF 0 WHERE id = 2").await, ["2"]);
    // Rewriting the file keeps the deleted rows deleted; MERGE names rows under the vector.
    assert_eq!(rows(&mut client, "UPDATE dv SET name = 'seven' WHERE id = 7").await, ["1"]);
    let merge = "MERGE INTO dv USING (SELECT 8 AS id) s ON dv.id = s.id WHEN MATCHED THEN DELETE";
    assert_eq!(rows(&mut client, merge).await, ["1"]);
    let after = rows(&mut client, "SELECT id, name FROM dv ORDER BY id").await;
    assert_eq!(after, ["0 | n0", "1 | n1", "3 | n3", "4 | n4", "6 | n6", "7 | seven", "9 | n9"]);
    Ok(())
}
