//! Executors that stop heartbeating leave the cluster; queries that need one then fail clearly.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_executors_are_dropped_and_queries_fail_clearly() -> TestResult {
    let mut cluster = TestCluster::builder().executors(1).heartbeat(Duration::from_millis(100)).start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    client.query("SELECT sum(qty) FROM sales").await?;

    let mut executor = cluster.executors.remove(0);
    executor.shutdown();
    executor.stopped().await;
    // Dropped after about five missed heartbeats (0.5 s); wait up to 10 s for it.
    let dropped = async {
        while !cluster.scheduler.cluster().alive().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), dropped).await?;

    let error = client.query("SELECT sum(qty) FROM sales").await.unwrap_err().to_string();
    assert!(error.contains("none is alive"), "{error}");
    // Queries that need no executor still run.
    assert_eq!(rows_of(&client.query("SELECT 6 * 7").await?.batches), vec!["42"]);
    Ok(())
}
