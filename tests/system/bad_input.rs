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
    // Errors whose text would be huge (here it quotes a 100 kB value, while planning and on the
    // executors) arrive cut to a bounded length: a gRPC status travels in an HTTP/2 trailer, and
    // an oversized one broke the connection ("h2 protocol error") instead of reporting the error.
    for sql in
        ["SELECT CAST(repeat('y', 100000) AS INT)", "SELECT CAST(concat(item, repeat('x', 100000)) AS INT) FROM sales"]
    {
        let error = client.query(sql).await.expect_err("a failed cast").to_string();
        assert!(error.contains("Cannot cast") && error.contains("more bytes)"), "{}", &error[..error.len().min(300)]);
        assert!(error.len() < 2 * glaux_proto::MAX_STATUS_MESSAGE_BYTES, "{} bytes", error.len());
        assert_still_serving(&mut client).await;
    }

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

/// This process's resident memory, in bytes (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kb.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// `bytes` with a few of them changed, or cut short: a valid message made invalid.
fn mutate(rng: &mut rand::rngs::StdRng, bytes: &[u8]) -> Vec<u8> {
    use rand::Rng;
    let mut mutated = bytes.to_vec();
    for _ in 0..rng.random_range(1..4) {
        if mutated.is_empty() {
            break;
        }
        let at = rng.random_range(0..mutated.len());
        mutated[at] = rng.random();
    }
    if rng.random_bool(0.3) {
        mutated.truncate(rng.random_range(0..=mutated.len()));
    }
    mutated
}

fn random_bytes(rng: &mut rand::rngs::StdRng, most: usize) -> Vec<u8> {
    use rand::Rng;
    let length = rng.random_range(0..most);
    (0..length).map(|_| rng.random()).collect()
}

/// Writes `bytes` on a fresh connection to `addr` and hangs up (reading a little of any answer).
async fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket.write_all(bytes).await?;
        socket.shutdown().await?;
        let mut answer = [0u8; 256];
        let _ = socket.read(&mut answer).await;
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), exchange).await;
}

/// Writes `bytes` on a fresh connection to `addr` and reads the whole answer (as text).
async fn raw_answer(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket.write_all(bytes).await?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await {
        Ok(Ok(answer)) => answer,
        other => format!("no answer: {other:?}"),
    }
}

/// A PostgreSQL frontend message: type byte, length, body.
fn pg_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// 10,000 generated malformed or mutated requests against the Flight SQL port, the PostgreSQL
/// port and an executor's port (random bytes, HTTP/2 garbage, mutated startup and query messages,
/// huge lengths, mutated Flight SQL commands, tickets, statement handles and task plans): no
/// server dies, memory stays bounded, and a well-formed client is served after each batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_malformed_requests_harm_nothing() -> TestResult {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, TicketStatementQuery};
    use arrow_flight::{FlightDescriptor, Ticket};
    use glaux_proto::generated::executor_control_client::ExecutorControlClient;
    use glaux_proto::generated::{LaunchTasksRequest, TaskOutputTicket};
    use glaux_proto::{QueryId, StageId, TaskId, TokenPurpose};
    use prost::Message;
    use rand::{Rng, SeedableRng};

    let limits = glaux_scheduler::DoorLimits {
        requests_per_second: 1_000_000,
        max_connections: 4096,
        ..glaux_scheduler::DoorLimits::default()
    };
    let cluster = TestCluster::builder().executors(1).postgres().http().limits(limits).start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    let flight_addr = cluster.scheduler.addr();
    let pg_addr = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?;
    let http_addr = cluster.scheduler.http_addr().ok_or("no HTTP port")?;
    let athena = |target: &str, body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: {http_addr}\r\nX-Amz-Target: AmazonAthena.{target}\r\nContent-Type: \
             application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/athena/\
             aws4_request, SignedHeaders=host, Signature=00\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let start = athena(
        "StartQueryExecution",
        r#"{"QueryString": "SELECT 1", "ResultConfiguration": {"OutputLocation": "/x/"}}"#,
    );
    let executor_addr: std::net::SocketAddr = cluster.executors[0].endpoint().as_str().parse()?;
    let flight = Channel::from_shared(format!("http://{flight_addr}"))?.connect().await?;
    let executor = Channel::from_shared(format!("http://{executor_addr}"))?.connect().await?;
    let auth = glaux_proto::ClusterAuth::attach(cluster.secret.clone());
    let signer = std::sync::Arc::clone(cluster.scheduler.task_signer());

    // Valid messages to mutate.
    let statement = CommandStatementQuery { query: "SELECT count(*) FROM sales".into(), transaction_id: None };
    let command = statement.as_any().encode_to_vec();
    let info = FlightServiceClient::new(flight.clone())
        .get_flight_info(FlightDescriptor::new_cmd(command.clone()))
        .await?
        .into_inner();
    let ticket = info.endpoint.first().and_then(|e| e.ticket.clone()).ok_or("no ticket")?.ticket.to_vec();
    let reference = datafusion::prelude::SessionContext::new();
    let plan = reference.sql("SELECT 1 AS x, 'a' AS y").await?.create_physical_plan().await?;
    let encoded = glaux_proto::encode_plan(plan)?;
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(b"user\0ana\0database\0default\0\0");
    let startup = [((startup.len() + 4) as u32).to_be_bytes().to_vec(), startup].concat();
    let query = pg_message(b'Q', b"SELECT count(*) FROM sales\0");

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x61_75_78);
    let before = resident_bytes();
    let mut peak = before;
    for batch in 0..10 {
        for i in 0..1000 {
            match i % 10 {
                0 => send_raw(flight_addr, &random_bytes(&mut rng, 512)).await,
                1 if rng.random_bool(0.5) => send_raw(http_addr, &random_bytes(&mut rng, 512)).await,
                1 => send_raw(pg_addr, &random_bytes(&mut rng, 512)).await,
                2 => send_raw(executor_addr, &random_bytes(&mut rng, 512)).await,
                3 => {
                    // HTTP/2's preface, then garbage frames (some with huge lengths).
                    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
                    bytes.extend_from_slice(&[0xff, 0xff, 0xff, rng.random(), 0, 0, 0, 0, 1]);
                    bytes.extend(random_bytes(&mut rng, 256));
                    let target = if rng.random_bool(0.5) { flight_addr } else { executor_addr };
                    send_raw(target, &bytes).await;
                }
                4 if rng.random_bool(0.5) => send_raw(http_addr, &mutate(&mut rng, &start)).await,
                4 => {
                    // A mutated startup, then a mutated query.
                    let bytes = [mutate(&mut rng, &startup), mutate(&mut rng, &query)].concat();
                    send_raw(pg_addr, &bytes).await;
                }
                5 => {
                    // A valid startup, then a message claiming a huge length.
                    let kind = *[b'Q', b'P', b'B', b'p', b'X'].get(rng.random_range(0..5)).unwrap_or(&b'Q');
                    let mut bytes = startup.clone();
                    bytes.push(kind);
                    bytes.extend_from_slice(&rng.random_range(0x1000_0000u32..=u32::MAX).to_be_bytes());
                    bytes.extend(random_bytes(&mut rng, 64));
                    send_raw(pg_addr, &bytes).await;
                }
                6 => {
                    let command = mutate(&mut rng, &command);
                    let _ = FlightServiceClient::new(flight.clone())
                        .get_flight_info(FlightDescriptor::new_cmd(command))
                        .await;
                }
                7 => {
                    // A mutated ticket, or a ticket whose statement handle is mutated.
                    let bytes = if rng.random_bool(0.5) {
                        mutate(&mut rng, &ticket)
                    } else {
                        let handle = mutate(&mut rng, &ticket[ticket.len().saturating_sub(40)..]);
                        TicketStatementQuery { statement_handle: handle.into() }.as_any().encode_to_vec()
                    };
                    let _ = FlightServiceClient::new(flight.clone()).do_get(Ticket { ticket: bytes.into() }).await;
                }
                8 => {
                    // A task with a valid token and a mutated plan, on the executor.
                    let query = QueryId::from(format!("fuzz-{batch}-{i}"));
                    let run_token = signer.sign(TokenPurpose::Run, &query, StageId(1), TaskId(0));
                    let task = task_definition(query.as_str(), mutate(&mut rng, &encoded.bytes), run_token);
                    let _ = ExecutorControlClient::with_interceptor(executor.clone(), auth.clone())
                        .launch_tasks(LaunchTasksRequest { tasks: vec![task] })
                        .await;
                    let _ = ExecutorControlClient::with_interceptor(executor.clone(), auth.clone())
                        .cancel_query(glaux_proto::generated::CancelQueryRequest { query_id: query.to_string() })
                        .await;
                }
                _ => {
                    let valid = TaskOutputTicket {
                        query_id: "q".into(),
                        stage_id: 1,
                        task_id: 0,
                        partition: 0,
                        compress: true,
                        read_token: signer.sign(
                            TokenPurpose::Read,
                            &QueryId::from("q".to_string()),
                            StageId(1),
                            TaskId(0),
                        ),
                        client_schema: Vec::new(),
                        dynamic_filters: Vec::new(),
                    };
                    let bytes = mutate(&mut rng, &valid.encode_to_vec());
                    let _ = FlightServiceClient::with_interceptor(executor.clone(), auth.clone())
                        .do_get(Ticket { ticket: bytes.into() })
                        .await;
                }
            }
        }
        // After each batch: every door serves a well-formed client.
        let output = client.query("SELECT count(*) FROM sales").await?;
        assert_eq!(rows_of(&output.batches), vec!["18000"], "after batch {batch}");
        let psql = crate::postgres::psql(pg_addr.port(), None, &["-At", "-c", "SELECT count(*) FROM regions"]).await;
        assert_eq!(
            String::from_utf8_lossy(&psql.stdout).trim(),
            "4",
            "after batch {batch}: {}",
            crate::postgres::text(&psql)
        );
        let listed = raw_answer(http_addr, &athena("ListQueryExecutions", "{}")).await;
        assert!(
            listed.starts_with("HTTP/1.1 200") && listed.contains("QueryExecutionIds"),
            "after batch {batch}: {listed}"
        );
        peak = peak.max(resident_bytes());
    }
    // Memory stayed bounded: nothing a bad request sent was kept.
    let grown = peak.saturating_sub(before);
    assert!(grown < 512 << 20, "resident memory grew by {} MiB", grown >> 20);
    Ok(())
}

/// A `DoPut` update whose statement returns rows reads and drops them as they come: the scheduler
/// never gathers a result it will not send.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_that_returns_rows_is_streamed_not_gathered() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    let channel = Channel::from_shared(format!("http://{}", cluster.url()))?.connect().await?;
    let mut client = FlightSqlServiceClient::new(channel);
    let before = resident_bytes();
    // About 400 MB of text if it were kept.
    let sql = "SELECT arrow_cast(repeat('x', 120) || CAST(value AS VARCHAR), 'Utf8') AS line FROM generate_series(1, 3000000)";
    client.execute_update(sql.to_string(), None).await?;
    // The whole test process's memory, which the tests running beside it and the compute
    // runtime's threads share: well under the 390 MB a gathered result would hold.
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 300 << 20, "resident memory grew by {} MiB", grown >> 20);
    Ok(())
}
