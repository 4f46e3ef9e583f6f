//! Compaction: `ALTER TABLE ... EXECUTE optimize` rewrites a partition's small files into one,
//! while readers see every row exactly once, and deletes the old files only after the queries
//! planned with them have ended.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;

use crate::harness::*;

const TINY_FILES: usize = 500;
const ROWS_PER_TINY_FILE: i64 = 20;

fn tiny_batch(first: i64, rows: i64) -> RecordBatch {
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)]));
    let ids: Vec<i64> = (first..first + rows).collect();
    let names = StringArray::from_iter(ids.iter().map(|i| (i % 11 != 0).then(|| format!("n{}", i % 97))));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids)), Arc::new(names)]).expect("a valid batch")
}

/// Declares `table` (`id`, `name`, partitioned by `day`) over Parquet files at `location`
/// (ending without `/`) and registers its partitions.
async fn declare(client: &mut glaux_client::GlauxClient, table: &str, location: &str) -> TestResult {
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE {table} (id BIGINT, name STRING) PARTITIONED BY (day STRING) \
             STORED AS PARQUET LOCATION '{location}/'"
        ))
        .await?;
    client.query(&format!("MSCK REPAIR TABLE {table}")).await?;
    Ok(())
}

/// The Parquet files directly in `dir`, sorted.
fn parquet_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".parquet"))
        .collect();
    files.sort();
    files
}

/// Polls until `check` holds (10 s at most).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimize_compacts_500_tiny_files_atomically_for_readers() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let mut client = cluster.client().await;
    let table = cluster.warehouse().join("events");
    // Partition a: 500 tiny files; b: three; c: one (nothing to merge it with).
    let mut first = 0;
    let mut expected = Vec::new();
    for (day, files) in [("a", TINY_FILES), ("b", 3), ("c", 1)] {
        let (start, rows) = (first, files as i64 * ROWS_PER_TINY_FILE);
        for n in 0..files {
            let path = table.join(format!("day={day}/part-{n:04}.parquet"));
            write_parquet(&path, &tiny_batch(first, ROWS_PER_TINY_FILE));
            first += ROWS_PER_TINY_FILE;
        }
        let named = (start..start + rows).filter(|i| i % 11 != 0).count();
        expected.push(format!("{day} | {rows} | {} | {named}", (start..start + rows).sum::<i64>()));
    }
    declare(&mut client, "events", &table.display().to_string()).await?;
    let per_day = "SELECT day, count(*), sum(id), count(name) FROM events GROUP BY day ORDER BY day";
    assert_eq!(rows_of(&client.query(per_day).await?.batches), expected);
    let before_b = parquet_files(&table.join("day=b"));

    // Readers run throughout: every answer has every row once, before, during and after.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (mut reader, stop, expected) = (cluster.client().await, Arc::clone(&stop), expected.clone());
        readers.spawn(async move {
            let mut answers = 0;
            while !stop.load(Ordering::SeqCst) {
                let rows = rows_of(&reader.query(per_day).await.map_err(|e| e.to_string())?.batches);
                if rows != expected {
                    return Err(format!("a reader saw {rows:?}, not {expected:?}"));
                }
                answers += 1;
            }
            Ok::<_, String>(answers)
        });
    }

    // A query planned before the compaction, still running after it: a three-way cross join
    // of partition a that would take hours.
    let slow = "SELECT count(*) FROM events x, events y, events z \
                WHERE x.day = 'a' AND y.day = 'a' AND z.day = 'a' AND x.id + y.id + z.id = -1";
    let info = client.submit(slow).await?;
    let (mut slow_reader, endpoint) = (cluster.client().await, info.endpoint[0].clone());
    let mut slow_query = tokio::task::JoinSet::new();
    slow_query.spawn(async move {
        let Ok(mut stream) = slow_reader.fetch(&endpoint).await else { return };
        while stream.next().await.is_some() {}
    });
    let running = async {
        while cluster.executors.iter().all(|e| e.installed_tasks() == 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), running).await?;
    let before_a = parquet_files(&table.join("day=a"));
    assert_eq!(before_a.len(), TINY_FILES);

    let rewritten = client.query("ALTER TABLE events EXECUTE optimize WHERE day <> 'b'").await?;
    assert_eq!(rows_of(&rewritten.batches), [(TINY_FILES as i64 * ROWS_PER_TINY_FILE).to_string()]);
    assert_eq!(rows_of(&client.query(per_day).await?.batches), expected, "right after the commit");
    let files_a = parquet_files(&table.join("day=a"));
    let new_files: Vec<&String> = files_a.iter().filter(|f| !before_a.contains(f)).collect();
    assert_eq!(new_files.len(), 1, "500 tiny files become one: {new_files:?}");
    assert_eq!(files_a.len(), TINY_FILES + 1, "the old files stay while the slow query may read them");
    assert_eq!(parquet_files(&table.join("day=b")), before_b, "the WHERE clause left b alone");
    assert_eq!(parquet_files(&table.join("day=c")).len(), 1, "a lone small file is left as it is");

    // The slow query ends (cancelled): nothing reads the old files, and they go.
    assert!(client.cancel(info).await?, "the slow query was running");
    slow_query.join_next().await;
    eventually("the replaced files are deleted", || parquet_files(&table.join("day=a")).len() == 1).await;
    assert_eq!(rows_of(&client.query(per_day).await?.batches), expected, "after the old files are gone");
    stop.store(true, Ordering::SeqCst);
    while let Some(answers) = readers.join_next().await {
        assert!(answers?? > 0, "each reader answered");
    }

    // Another reader of the file written: DataFusion reads partition a's one file alone.
    let reference = datafusion::prelude::SessionContext::new();
    let file = table.join("day=a").join(new_files[0]);
    reference.register_parquet("written", file.to_string_lossy().as_ref(), Default::default()).await?;
    let sum = reference.sql("SELECT count(*), sum(id), count(name) FROM written").await?.collect().await?;
    assert_eq!(format!("a | {}", rows_of(&sum)[0]), expected[0]);

    // Nothing left to do: a second run rewrites nothing.
    let again = client.query("ALTER TABLE events EXECUTE optimize").await?;
    assert_eq!(rows_of(&again.batches), ["60"], "only b's three files were left small");
    eventually("b's replaced files are deleted", || parquet_files(&table.join("day=b")).len() == 1).await;
    assert_eq!(rows_of(&client.query(per_day).await?.batches), expected);
    assert!(!table.join("_glaux_staging").exists(), "nothing staged is left");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimize_refuses_what_it_cannot_do_and_a_failed_one_changes_nothing() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let mut client = cluster.client().await;
    let table = cluster.warehouse().join("logs");
    for n in 0..3 {
        write_parquet(&table.join(format!("day=x/part-{n}.parquet")), &tiny_batch(n * 10, 10));
    }
    // A corrupt file among the small ones: the rewrite cannot read it.
    std::fs::write(table.join("day=x/part-9.parquet"), b"PAR1 not really parquet")?;
    declare(&mut client, "logs", &table.display().to_string()).await?;
    let before = parquet_files(&table.join("day=x"));

    let refusals = [
        ("ALTER TABLE logs EXECUTE optimize WHERE id > 3", "only the partition columns"),
        ("ALTER TABLE logs EXECUTE vacuum", "the only procedure is optimize"),
        ("ALTER TABLE logs EXECUTE optimize (file_size_threshold => 'huge')", "is not a size"),
        ("ALTER TABLE nowhere EXECUTE optimize", "nowhere"),
    ];
    for (sql, said) in refusals {
        let error = client.query(sql).await.err().ok_or(format!("{sql} ran"))?.to_string();
        assert!(error.contains(said), "{sql}: {error}");
    }
    let error = client.query("ALTER TABLE logs EXECUTE optimize").await.err().ok_or("a corrupt file was read")?;
    assert!(error.to_string().contains("part-9.parquet"), "the error names the file: {error}");
    eventually("the failed rewrite's files are removed", || !table.join("_glaux_staging").exists()).await;
    assert_eq!(parquet_files(&table.join("day=x")), before, "a failed optimize changes no file");
    // Without the corrupt file it runs.
    std::fs::remove_file(table.join("day=x/part-9.parquet"))?;
    let rewritten = client.query("ALTER TABLE logs EXECUTE optimize WHERE day = 'x'").await?;
    assert_eq!(rows_of(&rewritten.batches), ["30"]);
    eventually("the replaced files are deleted", || parquet_files(&table.join("day=x")).len() == 1).await;
    let rows = rows_of(&client.query("SELECT count(*), sum(id) FROM logs").await?.batches);
    assert_eq!(rows, [format!("30 | {}", (0..30).sum::<i64>())]);
    Ok(())
}

/// The real binary killed after a compaction committed, while a query still held the old files:
/// the next start deletes them, and every row is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_killed_before_deleting_replaced_files_deletes_them_at_the_next_start() -> TestResult {
    use crate::binary::spawn_until;

    let warehouse = tempfile::tempdir()?;
    let table = warehouse.path().join("events");
    for n in 0..50 {
        write_parquet(&table.join(format!("day=a/part-{n:02}.parquet")), &tiny_batch(n * 10, 10));
    }
    let root = warehouse.path().display().to_string();
    let args = ["standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &root];
    let (mut first, addr) = spawn_until(&args, &[], "Flight SQL on ").await;
    let mut client = glaux_client::GlauxClient::connect(&addr).await?;
    declare(&mut client, "events", &table.display().to_string()).await?;
    let slow = "SELECT count(*) FROM events x, events y, events z, events w WHERE x.id + y.id + z.id + w.id = -1";
    let info = client.submit(slow).await?;
    let (mut slow_reader, endpoint) = (glaux_client::GlauxClient::connect(&addr).await?, info.endpoint[0].clone());
    let mut slow_query = tokio::task::JoinSet::new();
    slow_query.spawn(async move {
        let Ok(mut stream) = slow_reader.fetch(&endpoint).await else { return };
        while stream.next().await.is_some() {}
    });
    // Planned once its progress shows: the query holds the 50 files from then on.
    let planned = async {
        while client.progress(&info).await.ok().flatten().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), planned).await?;
    assert_eq!(rows_of(&client.query("ALTER TABLE events EXECUTE optimize").await?.batches), ["500"]);
    assert_eq!(parquet_files(&table.join("day=a")).len(), 51, "the old files wait for the slow query");
    first.kill().await?;
    slow_query.join_next().await;

    let (mut second, addr) = spawn_until(&args, &[], "Flight SQL on ").await;
    eventually("the next start deletes the replaced files", || parquet_files(&table.join("day=a")).len() == 1).await;
    let mut client = glaux_client::GlauxClient::connect(&addr).await?;
    let rows = rows_of(&client.query("SELECT count(*), sum(id) FROM events").await?.batches);
    assert_eq!(rows, [format!("500 | {}", (0..500).sum::<i64>())]);
    second.kill().await?;
    Ok(())
}

/// On S3: tiny objects become one, the old ones are deleted, every row is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimize_compacts_tiny_objects_on_s3() -> TestResult {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::path::Path as ObjectPath;

    use crate::s3::{BUCKET, parquet_bytes, run_prefix, s3_config, test_bucket};

    let s3 = s3_config();
    let bucket = test_bucket(&s3)?;
    let prefix = run_prefix();
    for n in 0..40 {
        let path = ObjectPath::from(format!("{prefix}/events/day=a/part-{n:02}.parquet"));
        bucket.put(&path, parquet_bytes(&tiny_batch(n * 10, 10)).into()).await?;
    }
    let cluster = TestCluster::builder().s3(s3).start().await?;
    let mut client = cluster.client().await;
    declare(&mut client, "events", &format!("s3://{BUCKET}/{prefix}/events")).await?;
    let expected = [format!("400 | {}", (0..400).sum::<i64>())];
    assert_eq!(rows_of(&client.query("SELECT count(*), sum(id) FROM events").await?.batches), expected);
    let rewritten = client.query("ALTER TABLE events EXECUTE optimize (file_size_threshold => '1MB')").await?;
    assert_eq!(rows_of(&rewritten.batches), ["400"]);
    assert_eq!(rows_of(&client.query("SELECT count(*), sum(id) FROM events").await?.batches), expected);
    let under = ObjectPath::from(format!("{prefix}/events"));
    let mut objects = Vec::new();
    for _ in 0..200 {
        let listed: Vec<_> = bucket.list(Some(&under)).try_collect().await?;
        objects = listed.into_iter().map(|m| m.location.to_string()).collect();
        if objects.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(objects.len(), 1, "one object is left: {objects:?}");
    assert!(objects[0].starts_with(&format!("{prefix}/events/day=a/")) && objects[0].ends_with(".parquet"));
    Ok(())
}
