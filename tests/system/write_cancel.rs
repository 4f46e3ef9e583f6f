//! A write cancelled by its client (`CancelFlightInfo`, what the shell's Ctrl-C sends) or losing
//! an executor while its tasks write: no table and no file left, or (a lost executor, survivors
//! re-running its tasks) every row exactly once, on a local warehouse and on S3.

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
    // On S3 a staged file shows only once its upload completes (about 40 s alone on a 2-core
    // machine, over a minute beside the other tests): the bound only catches a write that hangs.
    let started = Instant::now();
    while listed().await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(240), "the write staged nothing");
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
        async move { files_under(&location) }
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

/// Three executor processes and a scheduler (the real binary) over `warehouse`; one executor is
/// killed while a CTAS into `location` writes. The statement either completes on the survivors
/// with every row exactly once, or fails leaving no table and no file. Never a partial table.
async fn killed_executor_mid_write<F, Fut>(
    warehouse: &tempfile::TempDir,
    location: &str,
    envs: &[(&str, &str)],
    listed: F,
) -> TestResult
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    use glaux_client::GlauxClient;

    use crate::binary::spawn_until;

    let lake = write_lake(warehouse.path());
    let root = warehouse.path().display().to_string();
    let mut envs = envs.to_vec();
    envs.push(("GLAUX_CLUSTER_SECRET", "0123456789abcdef0123456789abcdef"));
    let scheduler_args = ["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &root];
    let (_scheduler, addr) = spawn_until(&scheduler_args, &envs, "Flight SQL on ").await;
    let mut executors = Vec::new();
    for _ in 0..3 {
        let args = ["executor", "--scheduler", &addr, "--warehouse", &root, "--task-slots", "1"];
        executors.push(spawn_until(&args, &envs, "serving on ").await);
    }
    let mut client = GlauxClient::connect(&addr).await?;
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        client.query(&ddl).await?;
    }
    // The executors print their address before they register: wait until a query runs (on a
    // loaded machine registration can lag the first statement).
    let started = Instant::now();
    while client.query("SELECT count(*) FROM sales").await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the executors never joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = REGIONS.len() * DAYS.len() * FILES_PER_PARTITION * ROWS_PER_FILE * 300;
    let sql = format!(
        "CREATE TABLE pairs WITH (format = 'JSON', write_compression = 'NONE', external_location = '{location}') AS \
         SELECT a.id AS a, b.id AS b FROM sales a CROSS JOIN (SELECT id FROM sales WHERE id < 300) b"
    );
    let mut writing = tokio::task::JoinSet::new();
    writing.spawn(async move {
        let written = client.query(&sql).await;
        (client, written)
    });
    let started = Instant::now();
    while listed().await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the write staged nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut killed, _) = executors.remove(0);
    killed.kill().await?;
    let (mut client, written) = writing.join_next().await.expect("the statement's task")?;
    match written {
        Ok(written) => {
            assert_eq!(rows_of(&written.batches), [total.to_string()]);
            let counted = client.query("SELECT count(*), sum(a), sum(b) FROM pairs").await?;
            let ids = (REGIONS.len() * DAYS.len() * FILES_PER_PARTITION * ROWS_PER_FILE) as u64;
            let (sum_a, sum_b) = (300 * ids * (ids - 1) / 2, ids * 300 * 299 / 2);
            assert_eq!(rows_of(&counted.batches), [format!("{total} | {sum_a} | {sum_b}")], "every row exactly once");
            assert!(listed().await.iter().all(|f| !f.contains("_glaux_staging")), "nothing staged is left");
        }
        Err(error) => {
            assert!(error.to_string().contains("lost executor"), "{error}");
            assert!(client.query("SELECT count(*) FROM pairs").await.is_err(), "no table");
            let started = Instant::now();
            while !listed().await.is_empty() {
                assert!(started.elapsed() < Duration::from_secs(15), "files are left: {:?}", listed().await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

/// Every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_executor_never_leaves_a_partial_write_on_a_local_warehouse() -> TestResult {
    let warehouse = tempfile::tempdir()?;
    let location = warehouse.path().join("pairs");
    let listed = || {
        let location = location.clone();
        async move { files_under(&location) }
    };
    killed_executor_mid_write(&warehouse, &format!("{}/", location.display()), &[], listed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_executor_never_leaves_a_partial_write_on_s3() -> TestResult {
    use futures::TryStreamExt;
    use object_store::path::Path as ObjectPath;

    use crate::s3::{BUCKET, run_prefix, s3_config, test_bucket};

    let s3 = s3_config();
    let bucket = test_bucket(&s3)?;
    let prefix = run_prefix();
    let path = ObjectPath::from(format!("{prefix}/pairs"));
    let listed = || {
        let (bucket, path) = (std::sync::Arc::clone(&bucket), path.clone());
        async move {
            let listed: Vec<_> = bucket.list(Some(&path)).try_collect().await.expect("list the bucket");
            listed.into_iter().map(|m| m.location.to_string()).collect::<Vec<_>>()
        }
    };
    let (endpoint, key, secret) = (
        s3.endpoint.clone().unwrap_or_default(),
        s3.access_key_id.clone().unwrap_or_default(),
        s3.secret_access_key.clone().unwrap_or_default(),
    );
    let envs = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let warehouse = tempfile::tempdir()?;
    killed_executor_mid_write(&warehouse, &format!("s3://{BUCKET}/{prefix}/pairs/"), &envs, listed).await
}
