//! Bad input gets a clear error and harms nothing: every server keeps serving the next query.

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::StreamExt;
use tonic::transport::Channel;

use crate::harness::*;

async fn assert_error(client: &mut glaux_client::GlauxClient, sql: &str, expected: &[&str]) {
    let error = match client.query(sql).await {
        Ok(output) => panic!("{sql} should fail, returned {} rows", output.rows()),
        Err(e) => e.to_string(),
    };
    for part in expected {
        assert!(error.contains(part), "error for {sql} should mention '{part}': {error}");
    }
}

async fn assert_still_serving(client: &mut glaux_client::GlauxClient) {
    let output = client.query("SELECT count(*), sum(qty) FROM sales WHERE day = '2024-01-01'").await;
    let output = output.expect("the cluster keeps serving after a bad request");
    assert_eq!(rows_of(&output.batches).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_errors_and_harm_nothing() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    let warehouse = cluster.warehouse().display().to_string();

    assert_error(&mut client, "SELEC 1", &["SELEC"]).await;
    assert_still_serving(&mut client).await;
    assert_error(&mut client, "SELECT * FROM no_such_table", &["no_such_table", "not found"]).await;
    assert_error(&mut client, "SELECT no_such_column FROM sales", &["no_such_column"]).await;
    assert_error(
        &mut client,
        &format!("CREATE EXTERNAL TABLE m STORED AS PARQUET LOCATION '{warehouse}/missing/'"),
        &["does not exist"],
    )
    .await;
    assert_error(
        &mut client,
        "CREATE EXTERNAL TABLE etc (a INT) STORED AS PARQUET LOCATION 'file:///etc/'",
        &["outside the configured warehouse roots"],
    )
    .await;
    assert_error(&mut client, "COPY sales TO '/tmp/x.parquet'", &["not supported"]).await;
    assert_still_serving(&mut client).await;

    // A corrupt Parquet file (valid magic, garbage metadata) fails the statement that first reads
    // it, with the reason.
    let corrupt = cluster.warehouse().join("corrupt");
    std::fs::create_dir_all(&corrupt)?;
    write_parquet(&corrupt.join("good.parquet"), &sales_batch(0));
    let mut garbage = b"PAR1".to_vec();
    garbage.extend_from_slice(&[0xAB; 24]);
    garbage.extend_from_slice(&24u32.to_le_bytes());
    garbage.extend_from_slice(b"PAR1");
    std::fs::write(corrupt.join("bad.parquet"), garbage)?;
    let create = format!(
        "CREATE EXTERNAL TABLE corrupt (id BIGINT, item VARCHAR, qty INT, amount DOUBLE, ts TIMESTAMP) \
         STORED AS PARQUET LOCATION '{}/'",
        corrupt.display()
    );
    match client.query(&create).await {
        Ok(_) => assert_error(&mut client, "SELECT sum(qty) FROM corrupt", &["Parquet error"]).await,
        Err(e) => assert!(e.to_string().contains("Parquet error"), "{e}"),
    }
    assert_still_serving(&mut client).await;

    // A client that goes away mid-stream: the query stops, the next one is served.
    let channel = Channel::from_shared(format!("http://{}", cluster.url()))?.connect().await?;
    let mut raw = FlightSqlServiceClient::new(channel);
    let info = raw.execute("SELECT * FROM sales CROSS JOIN regions".to_string(), None).await?;
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut stream = raw.inner_mut().do_get(ticket).await?.into_inner();
    let first = stream.next().await.expect("a first message")?;
    assert!(!first.data_header.is_empty());
    drop(stream);
    drop(raw);
    // The abandoned query's tasks are cancelled and forgotten on every executor.
    let cleaned = async {
        while cluster.executors.iter().any(|e| e.installed_tasks() > 0) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), cleaned).await?;
    assert_still_serving(&mut client).await;
    Ok(())
}
