//! A write cancelled by its client (`CancelFlightInfo`) while its tasks write: no table, and no
//! file left, on a local warehouse and on S3.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::harness::*;

/// Starts a CTAS of 324 million rows into `location`, cancels it once `listed` shows it writing,
/// and checks that it leaves nothing.
async fn cancelled_write_leaves_nothing<F, Fut>(cluster: &TestCluster, location: &str, listed: F) -> TestResult
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let (_, mut client) = cluster.with_lake().await?;
    let sql = format!(
        "CREATE TABLE huge WITH (format = 'JSON', write_compression = 'NONE', external_location = '{location}') AS \
         SELECT a.id AS a, b.id AS b FROM sales a CROSS JOIN sales b"
    );
    let info = client.submit(&sql).await?;
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
    while listed().await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the write staged nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(client.cancel(info).await?, "the write was running");
    let outcome = tokio::time::timeout(Duration::from_secs(10), reading.join_next()).await?.ok_or("no reader")??;
    let error = outcome.expect_err("a cancelled write ends with an error");
    assert!(error.contains("cancelled"), "{error}");
    // The executors stop, and everything staged goes.
    executors_idle(cluster, Duration::from_secs(10)).await?;
    let started = Instant::now();
    loop {
        let left = listed().await;
        if left.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{} objects are left, e.g. {:?}", left.len(), left[0]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still nothing a moment later: no task wrote after the cleanup.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(listed().await, Vec::<String>::new(), "a file appeared after the cleanup");
    assert!(client.query("SELECT count(*) FROM huge").await.is_err(), "no table was registered");
    let output = client.query("SELECT count(*) FROM sales").await?;
    assert_eq!(rows_of(&output.batches), ["18000"], "the cluster serves on");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_write_leaves_nothing_on_a_local_warehouse() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let location = cluster.warehouse().join("huge");
    let listed = || {
        let location = location.clone();
        async move {
            let mut files = Vec::new();
            let mut dirs = vec![location];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if entry.path().is_dir() {
                        dirs.push(entry.path());
                    } else {
                        files.push(entry.path().display().to_string());
                    }
                }
            }
            files
        }
    };
    cancelled_write_leaves_nothing(&cluster, &format!("{}/", location.display()), listed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_write_leaves_nothing_on_s3() -> TestResult {
    use futures::TryStreamExt;
    use object_store::path::Path as ObjectPath;

    use crate::s3::{BUCKET, run_prefix, s3_config, test_bucket};

    let s3 = s3_config();
    let bucket = test_bucket(&s3)?;
    let prefix = run_prefix();
    let cluster = TestCluster::builder().s3(s3).start().await?;
    let path = ObjectPath::from(format!("{prefix}/huge"));
    let listed = || {
        let (bucket, path) = (std::sync::Arc::clone(&bucket), path.clone());
        async move {
            let listed: Vec<_> = bucket.list(Some(&path)).try_collect().await.expect("list the bucket");
            listed.into_iter().map(|m| m.location.to_string()).collect::<Vec<_>>()
        }
    };
    cancelled_write_leaves_nothing(&cluster, &format!("s3://{BUCKET}/{prefix}/huge/"), listed).await
}
