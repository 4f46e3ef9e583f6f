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

    // A statement that hits a bug (a panic, injected) while planning or while producing its
    // rows fails alone.
    assert_error(&mut client, "SELECT glaux_fault_panic_planning()", &["hit a bug while planning"]).await;
    assert_still_serving(&mut client).await;
    assert_error(&mut client, "SELECT glaux_fault_panic()", &["hit a bug while running"]).await;
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

/// The gRPC status code a statement's `GetFlightInfo` fails with.
async fn flight_code(cluster: &TestCluster, sql: &str) -> tonic::Code {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    use prost::Message;
    let channel =
        Channel::from_shared(format!("http://{}", cluster.url())).expect("url").connect().await.expect("connect");
    let mut flight = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let command = CommandStatementQuery { query: sql.to_string(), transaction_id: None };
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    match flight.get_flight_info(descriptor).await {
        Ok(_) => panic!("{sql} should fail"),
        Err(status) => status.code(),
    }
}

/// Errors reach Flight SQL clients with the gRPC code of their kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_carry_the_grpc_code_of_their_kind() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    cluster.with_lake().await?;
    let cases = [
        ("SELEC 1", tonic::Code::InvalidArgument),
        ("SELECT no_such_column FROM sales", tonic::Code::NotFound),
        ("SELECT * FROM no_such_table", tonic::Code::NotFound),
        ("USE no_such_db", tonic::Code::NotFound),
        ("CREATE EXTERNAL TABLE sales STORED AS PARQUET LOCATION '/tmp/'", tonic::Code::AlreadyExists),
        ("COPY sales TO '/tmp/x.parquet'", tonic::Code::Unimplemented),
        ("CREATE EXTERNAL TABLE etc (a INT) STORED AS PARQUET LOCATION 'file:///etc/'", tonic::Code::PermissionDenied),
        ("SELECT glaux_fault_panic_planning()", tonic::Code::Internal),
    ];
    for (sql, code) in cases {
        assert_eq!(flight_code(&cluster, sql).await, code, "{sql}");
    }
    Ok(())
}
