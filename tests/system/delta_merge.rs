//! `MERGE` into Delta tables with Trino's semantics, concurrent `MERGE`s, and a writer killed
//! mid-statement: expected rows written here, not Glaux's earlier answers.

use std::time::{Duration, Instant};

use glaux_client::GlauxClient;

use crate::harness::*;

async fn rows(client: &mut GlauxClient, sql: &str) -> Vec<String> {
    rows_of(&client.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).batches)
}

async fn error_of(client: &mut GlauxClient, sql: &str) -> String {
    client.query(sql).await.err().unwrap_or_else(|| panic!("{sql} ran")).to_string()
}

/// A partitioned Delta table `t (id, qty, note, region)`: ids 1..=5 and one NULL id.
async fn target(client: &mut GlauxClient) {
    let sql = "CREATE TABLE t WITH (table_type = 'DELTA', partitioning = ARRAY['region']) AS \
               SELECT * FROM (VALUES (1, 10, 'a', 'eu'), (2, 20, 'b', 'eu'), (3, 30, 'c', 'us'), \
               (4, 40, 'd', 'us'), (5, 50, 'e', 'apac'), (NULL, 60, 'null id', 'eu')) AS v(id, qty, note, region)";
    assert_eq!(rows(client, sql).await, ["6"]);
}

const ALL: &str = "SELECT id, qty, note, region FROM t ORDER BY id NULLS LAST, qty";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_acts_on_each_row_with_the_first_clause_that_holds() -> TestResult {
    let cluster = TestCluster::builder().executors(2).start().await?;
    let mut client = cluster.client().await;
    target(&mut client).await;
    let merge = "MERGE INTO t USING (VALUES (1, 11, 'eu', 'upd'), (2, 0, 'eu', 'del'), (3, 33, 'eu', 'move'), \
                 (6, 66, 'us', 'new'), (7, 77, 'us', 'skip'), (NULL, 88, 'eu', 'null key')) AS s(id, qty, region, op) \
                 ON t.id = s.id \
                 WHEN MATCHED AND s.op = 'del' THEN DELETE \
                 WHEN MATCHED AND s.qty > 30 THEN UPDATE SET qty = s.qty, region = s.region, note = 'moved' \
                 WHEN MATCHED THEN UPDATE SET qty = s.qty \
                 WHEN NOT MATCHED AND s.op <> 'skip' THEN INSERT (id, qty, region) VALUES (s.id, s.qty, s.region)";
    // Three target rows acted on (1 updated, 2 deleted, 3 moved to another partition), two
    // source rows inserted (a NULL key never matches).
    assert_eq!(rows(&mut client, merge).await, ["5"]);
    assert_eq!(
        rows(&mut client, ALL).await,
        [
            "1 | 11 | a | eu",
            "3 | 33 | moved | eu",
            "4 | 40 | d | us",
            "5 | 50 | e | apac",
            "6 | 66 | NULL | us",
            "NULL | 60 | null id | eu",
            "NULL | 88 | NULL | eu",
        ]
    );
    assert_eq!(rows(&mut client, "SELECT count(*) FROM t WHERE region = 'us'").await, ["2"]);
    let history = rows(&mut client, "SELECT version, operation FROM \"t$history\" ORDER BY version").await;
    assert_eq!(history, ["0 | CREATE TABLE", "1 | MERGE"]);

    // Two source rows matching one target row: fine while no clause acts on them, Trino's error
    // (and no new version) when one does.
    let twice = "MERGE INTO t USING (VALUES (4, 'x'), (4, 'y')) AS s(id, tag) ON t.id = s.id";
    assert_eq!(rows(&mut client, &format!("{twice} WHEN MATCHED AND s.tag = 'z' THEN DELETE")).await, ["0"]);
    let error = error_of(&mut client, &format!("{twice} WHEN MATCHED THEN UPDATE SET note = s.tag")).await;
    assert!(error.contains("matched more than one source row"), "{error}");
    assert_eq!(rows(&mut client, "SELECT count(*) FROM \"t$history\"").await, ["2"]);
    assert_eq!(rows(&mut client, "SELECT note FROM t WHERE id = 4").await, ["d"]);

    // A source that is a query over other tables, values cast to the columns' types.
    client.query("CREATE TABLE corrections AS SELECT * FROM (VALUES (5, 'fixed')) AS c(id, note)").await?;
    let sql = "MERGE INTO t USING (SELECT id, note, 7 AS qty FROM corrections) c ON t.id = c.id \
               WHEN MATCHED THEN UPDATE SET note = c.note, qty = c.qty";
    assert_eq!(rows(&mut client, sql).await, ["1"]);
    assert_eq!(rows(&mut client, "SELECT id, qty, note FROM t WHERE id = 5").await, ["5 | 7 | fixed"]);

    // Clear errors, and nothing changes.
    for (sql, expected) in [
        ("MERGE INTO corrections c USING t ON c.id = t.id WHEN MATCHED THEN DELETE", "works on Delta tables"),
        ("MERGE INTO t USING corrections c ON t.id = c.id WHEN NOT MATCHED BY SOURCE THEN DELETE", "BY SOURCE"),
        ("MERGE INTO t USING corrections c ON t.nope = c.id WHEN MATCHED THEN DELETE", "nope"),
        ("MERGE INTO t USING corrections c ON t.id = c.id WHEN NOT MATCHED THEN INSERT VALUES (c.id)", "value"),
        ("MERGE INTO nowhere USING corrections c ON nowhere.id = c.id WHEN MATCHED THEN DELETE", "nowhere"),
        ("EXPLAIN MERGE INTO t USING corrections c ON t.id = c.id WHEN MATCHED THEN DELETE", "EXPLAIN its query"),
    ] {
        let error = error_of(&mut client, sql).await;
        assert!(error.contains(expected), "{sql}: {error}");
    }
    assert_eq!(rows(&mut client, "SELECT count(*) FROM \"t$history\"").await, ["3"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_merges_of_the_same_row_never_lose_one() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let mut client = cluster.client().await;
    target(&mut client).await;
    // Six clients each add one to the same row at once: every success must show, and every
    // failure must say it lost to a concurrent commit.
    let bump = || {
        let cluster = &cluster;
        async move {
            let mut client = cluster.client().await;
            let sql =
                "MERGE INTO t USING (SELECT 4 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET qty = t.qty + 1";
            client.query(sql).await.map(|_| ()).map_err(|e| e.to_string())
        }
    };
    let outcomes = futures::future::join_all((0..6).map(|_| bump())).await;
    let succeeded = outcomes.iter().filter(|o| o.is_ok()).count();
    for failure in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(failure.contains("concurrent") || failure.contains("onflict"), "{failure}");
    }
    assert!(succeeded >= 1);
    let end = rows(&mut client, "SELECT qty FROM t WHERE id = 4").await;
    assert_eq!(end, [(40 + succeeded).to_string()], "no update lost ({outcomes:?})");
    let versions = rows(&mut client, "SELECT count(*) FROM \"t$history\"").await;
    assert_eq!(versions, [(1 + succeeded).to_string()]);
    Ok(())
}

/// The real binary killed while an INSERT into a Delta table writes: the table stays at its
/// version, and the next start removes what the write staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_scheduler_leaves_a_delta_table_at_its_version() -> TestResult {
    use crate::binary::spawn_until;
    use crate::writes::files_under;

    let warehouse = tempfile::tempdir()?;
    let lake = write_lake(warehouse.path());
    let root = warehouse.path().display().to_string();
    // Files of about 1 MB: the writers close (and stage) their first files within moments.
    let args = [
        "standalone",
        "--executors",
        "2",
        "--flight-sql-addr",
        "127.0.0.1:0",
        "--warehouse",
        &root,
        "--target-file-size",
        "1000000",
    ];
    let (mut first, addr) = spawn_until(&args, &[], "Flight SQL on ").await;
    let mut client = GlauxClient::connect(&addr).await?;
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        client.query(&ddl).await?;
    }
    let created = "CREATE TABLE pairs WITH (table_type = 'DELTA') AS SELECT id AS a, id AS b FROM sales";
    assert_eq!(rows(&mut client, created).await, ["18000"]);
    let location = warehouse.path().join("default/pairs");
    let before = files_under(&location);
    // 324 million rows: still writing when the scheduler dies.
    let mut slow = tokio::task::JoinSet::new();
    slow.spawn(async move {
        client.query("INSERT INTO pairs SELECT a.id, b.id FROM sales a CROSS JOIN sales b").await.map(|_| ())
    });
    let started = Instant::now();
    while !files_under(&location).iter().any(|f| f.starts_with("_glaux_staging/")) {
        assert!(started.elapsed() < Duration::from_secs(60), "the write staged nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await?;
    assert!(slow.join_next().await.expect("the statement's task")?.is_err(), "the statement died");

    let (mut second, addr) = spawn_until(&args, &[], "Flight SQL on ").await;
    let started = Instant::now();
    while files_under(&location) != before {
        assert!(started.elapsed() < Duration::from_secs(30), "{:?} is left", files_under(&location));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = GlauxClient::connect(&addr).await?;
    assert_eq!(rows(&mut client, "SELECT count(*), count(DISTINCT a) FROM pairs").await, ["18000 | 18000"]);
    assert_eq!(rows(&mut client, "SELECT version, operation FROM \"pairs$history\"").await, ["0 | CREATE TABLE"]);
    second.kill().await?;
    Ok(())
}

/// A `DELETE` cancelled by its client while its first pass runs (a semi join with 324 million
/// candidate rows): the statement ends cancelled, the executors stop, the table keeps its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_delete_stops_and_leaves_a_delta_table_at_its_version() -> TestResult {
    use futures::StreamExt;

    let cluster = TestCluster::builder().executors(2).start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    let created = "CREATE TABLE pairs WITH (table_type = 'DELTA') AS SELECT id AS a, id AS b FROM sales";
    assert_eq!(rows(&mut client, created).await, ["18000"]);
    let sql = "DELETE FROM pairs WHERE a IN (SELECT x.id * y.id + x.qty FROM sales x CROSS JOIN sales y)";
    let info = client.submit(sql).await?;
    let (mut reader, endpoint) = (cluster.client().await, info.endpoint[0].clone());
    let mut reading = tokio::task::JoinSet::new();
    reading.spawn(async move {
        let mut stream = reader.fetch(&endpoint).await.map_err(|e| e.to_string())?;
        while let Some(message) = stream.next().await {
            message.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    let started = Instant::now();
    while cluster.executors.iter().all(|e| e.installed_tasks() == 0) {
        assert!(started.elapsed() < Duration::from_secs(30), "the DELETE never reached the executors");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.cancel(info).await?, "the DELETE was running");
    let outcome = tokio::time::timeout(Duration::from_secs(10), reading.join_next()).await?.ok_or("no reader")??;
    let error = outcome.expect_err("a cancelled DELETE ends with an error");
    assert!(error.contains("cancelled"), "{error}");
    executors_idle(&cluster, Duration::from_secs(10)).await?;
    assert_eq!(rows(&mut client, "SELECT count(*) FROM \"pairs$history\"").await, ["1"]);
    assert_eq!(rows(&mut client, "SELECT count(*) FROM pairs").await, ["18000"]);
    Ok(())
}

/// A `MERGE` of 3.5 million source rows into 3 million target rows on executors whose tasks may
/// hold 32 MiB: its joins spill rather than fail or grow the process; the rows are the ones
/// computed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_larger_than_the_executors_memory_spills_and_completes() -> TestResult {
    let cluster = TestCluster::builder().executors(2).executor_memory(32 << 20).start().await?;
    let mut client = cluster.client().await;
    let created = "CREATE TABLE big WITH (table_type = 'DELTA') AS \
                   SELECT value AS id, value * 2 AS v FROM generate_series(1, 3000000)";
    assert_eq!(rows(&mut client, created).await, ["3000000"]);
    let merge = "MERGE INTO big t USING (SELECT value AS id FROM generate_series(1, 3500000)) s ON t.id = s.id \
                 WHEN MATCHED AND s.id % 3 = 0 THEN DELETE \
                 WHEN MATCHED THEN UPDATE SET v = t.v + 1 \
                 WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, 0)";
    assert_eq!(rows(&mut client, merge).await, ["3500000"]);
    let kept: i64 = (1..=3_000_000i64).filter(|id| id % 3 != 0).map(|id| 2 * id + 1).sum();
    let expected = format!("2500000 | {kept} | 3500000");
    let sql = "SELECT count(*), sum(v), max(id) FROM big";
    assert_eq!(rows(&mut client, sql).await, [expected]);
    Ok(())
}
