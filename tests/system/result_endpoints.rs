//! Large results read from the executors: with `x-glaux-endpoints: executors`, a query whose
//! final stage is a plain gather answers `GetFlightInfo` with one endpoint per gathered
//! partition on the executor producing it; a plain Flight client (no cluster credential) reads
//! them in parallel and gets DataFusion's rows; the query ends on the executors once every
//! endpoint is read or the statement is cancelled, and holds its user's statement place until
//! then. Everything else still gets the one endpoint on the scheduler.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{CancelFlightInfoRequest, FlightClient, FlightInfo, Ticket};
use futures::TryStreamExt;
use glaux_proto::generated::TaskOutputTicket;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

const ENDPOINTS: &str = glaux_scheduler::ENDPOINTS_HEADER;

async fn channel(address: &str) -> Channel {
    Channel::from_shared(format!("http://{address}")).expect("url").connect().await.expect("connect")
}

async fn flight_sql(cluster: &TestCluster, endpoints: &str) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel(&cluster.url()).await);
    client.set_header(ENDPOINTS, endpoints);
    client
}

/// Reads one endpoint at its location as a client would: a plain Flight client, no credential.
async fn read_at(
    location: &str,
    ticket: Ticket,
) -> Result<(Vec<RecordBatch>, arrow::datatypes::SchemaRef), tonic::Status> {
    let address = location.strip_prefix("grpc+tcp://").expect("a grpc+tcp location");
    let mut client = FlightClient::new(channel(address).await);
    let mut stream = client.do_get(ticket).await.map_err(status)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await.map_err(status)? {
        batches.push(batch);
    }
    let schema = stream.schema().cloned().expect("the stream announced a schema");
    Ok((batches, schema))
}

fn status(error: arrow_flight::error::FlightError) -> tonic::Status {
    match error {
        arrow_flight::error::FlightError::Tonic(status) => *status,
        other => tonic::Status::unknown(other.to_string()),
    }
}

fn locations(info: &FlightInfo) -> Vec<String> {
    info.endpoint.iter().map(|e| e.location.first().map(|l| l.uri.clone()).unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_results_are_read_from_the_executors_in_parallel() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, _) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let sql = "SELECT id, item, qty, region FROM sales WHERE qty > 2";
    let mut client = flight_sql(&cluster, "executors").await;
    let info = client.execute(sql.to_string(), None).await?;

    // One endpoint per gathered partition, each on an executor, unordered.
    let executors: Vec<String> = cluster.executors.iter().map(|e| format!("grpc+tcp://{}", e.endpoint())).collect();
    let places = locations(&info);
    assert!(places.len() >= 2, "{places:?}");
    assert!(places.iter().all(|p| executors.contains(p)), "{places:?} not all among {executors:?}");
    assert!(executors.iter().all(|e| places.contains(e)), "every executor serves part of the result: {places:?}");
    assert!(!info.ordered);
    let announced = info.clone().try_decode_schema()?;

    // Read in parallel, each stream carrying exactly the announced schema.
    let reads = info
        .endpoint
        .iter()
        .zip(&places)
        .map(|(endpoint, place)| read_at(place, endpoint.ticket.clone().expect("a ticket")));
    let mut rows = Vec::new();
    for read in futures::future::join_all(reads).await {
        let (batches, schema) = read?;
        assert_eq!(schema.as_ref(), &announced);
        rows.extend(rows_of(&batches));
    }
    let expected = reference.sql(sql).await?.collect().await?;
    let mut expected = rows_of(&expected);
    rows.sort();
    expected.sort();
    assert_eq!(rows.len(), expected.len());
    assert_eq!(rows, expected);

    // Read to the end: the query ends on every executor, and its tickets read nothing more.
    executors_idle(&cluster, Duration::from_secs(10)).await?;
    let (endpoint, place) = (&info.endpoint[0], &places[0]);
    let ticket = endpoint.ticket.clone().expect("a ticket");
    let again = read_at(place, ticket.clone()).await.expect_err("the query has ended");
    assert_eq!(again.code(), Code::NotFound, "{again}");

    // A ticket is good for its own task only, and only as a client's: without the announced
    // schema it is a member's read, which needs the cluster credential.
    let mut other_task = TaskOutputTicket::decode(ticket.ticket.clone())?;
    other_task.task_id += 1;
    let refused = read_at(place, Ticket { ticket: other_task.encode_to_vec().into() }).await.expect_err("other task");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    let mut as_member = TaskOutputTicket::decode(ticket.ticket)?;
    as_member.client_schema.clear();
    let refused = read_at(place, Ticket { ticket: as_member.encode_to_vec().into() }).await.expect_err("members only");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");

    // A final sort (or anything above the gather) and catalog queries come through the scheduler.
    for sql in ["SELECT id FROM sales WHERE qty > 2 ORDER BY id", "SELECT count(*) FROM sales", "SHOW TABLES"] {
        let info = client.execute(sql.to_string(), None).await?;
        assert_eq!(locations(&info), vec![String::new()], "{sql}");
    }
    let mut scheduler = flight_sql(&cluster, "scheduler").await;
    assert_eq!(locations(&scheduler.execute(sql.to_string(), None).await?), vec![String::new()]);
    let mut unknown = flight_sql(&cluster, "everywhere").await;
    let refused = unknown.execute(sql.to_string(), None).await.expect_err("unknown placement");
    assert!(refused.to_string().contains(ENDPOINTS), "{refused}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_read_from_the_executors_holds_its_place_until_cancelled() -> TestResult {
    let limits = glaux_scheduler::DoorLimits { statements_per_user: 1, ..Default::default() };
    let cluster = TestCluster::builder().limits(limits).start().await?;
    cluster.with_lake().await?;
    let mut client = flight_sql(&cluster, "executors").await;
    let info = client.execute("SELECT id, item FROM sales".to_string(), None).await?;
    assert!(locations(&info).iter().all(|l| l.starts_with("grpc+tcp://")));

    // Unread, it is still running: the user's one place is taken.
    let busy = client.execute("SELECT id FROM sales".to_string(), None).await.expect_err("one statement at a time");
    assert!(busy.to_string().contains("the most at once"), "{busy}");

    // Cancelled, it ends on every executor, its endpoints read nothing, and the place is free.
    let mut plain = FlightClient::new(channel(&cluster.url()).await);
    let cancelled = plain.cancel_flight_info(CancelFlightInfoRequest::new(info.clone())).await?;
    assert_eq!(cancelled.status(), arrow_flight::CancelStatus::Cancelled);
    executors_idle(&cluster, Duration::from_secs(10)).await?;
    let endpoint = &info.endpoint[0];
    let gone = read_at(&endpoint.location[0].uri, endpoint.ticket.clone().expect("a ticket")).await;
    assert_eq!(gone.expect_err("cancelled").code(), Code::NotFound);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match client.execute("SELECT id FROM sales".to_string(), None).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("the most at once"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("the place was not freed: {e}").into()),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_executor_ends_a_result_read_from_the_executors() -> TestResult {
    let limits = glaux_scheduler::DoorLimits { statements_per_user: 1, ..Default::default() };
    let mut cluster = TestCluster::builder().limits(limits).heartbeat(Duration::from_millis(100)).start().await?;
    cluster.with_lake().await?;
    let mut client = flight_sql(&cluster, "executors").await;
    let info = client.execute("SELECT id, item FROM sales".to_string(), None).await?;
    let lost = cluster.executors.remove(0);
    let address = format!("grpc+tcp://{}", lost.endpoint());
    assert!(locations(&info).contains(&address), "{:?}", locations(&info));
    let mut lost = lost;
    lost.shutdown();
    lost.stopped().await;

    // Once the cluster drops it, the query ends on the survivor and the user's place is free.
    executors_idle(&cluster, Duration::from_secs(10)).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let info = loop {
        match client.execute("SELECT id FROM sales".to_string(), None).await {
            Ok(info) => break info,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("the most at once"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("the place was not freed: {e}").into()),
        }
    };
    // The next query runs on the survivor alone.
    let survivor = format!("grpc+tcp://{}", cluster.executors[0].endpoint());
    assert!(locations(&info).iter().all(|l| l == &survivor), "{:?}", locations(&info));
    Ok(())
}
