//! Executors run only what their scheduler sends: without the cluster credential, nothing. Flight
//! SQL clients authenticate when users are configured, and speak TLS when it is configured.

use arrow_flight::Ticket;
use arrow_flight::flight_service_client::FlightServiceClient;
use glaux_proto::generated::executor_control_client::ExecutorControlClient;
use glaux_proto::generated::scheduler_cluster_client::SchedulerClusterClient;
use glaux_proto::generated::{ExecutorRegistration, LaunchTasksRequest, RegisterExecutorRequest, TaskOutputTicket};
use glaux_proto::{ClusterAuth, ClusterSecret};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executors_and_scheduler_reject_callers_without_the_cluster_secret() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    let executor = format!("http://{}", cluster.executors[0].endpoint());
    let channel = Channel::from_shared(executor)?.connect().await?;
    let launch = LaunchTasksRequest { tasks: vec![task_definition("q", b"not even a plan".to_vec(), Vec::new())] };

    // No credential.
    let status = ExecutorControlClient::new(channel.clone()).launch_tasks(launch.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    let ticket = TaskOutputTicket {
        query_id: "q".into(),
        stage_id: 1,
        task_id: 0,
        partition: 0,
        compress: false,
        read_token: Vec::new(),
        client_schema: Vec::new(),
        dynamic_filters: Vec::new(),
    };
    let status = FlightServiceClient::new(channel.clone())
        .do_get(Ticket { ticket: ticket.encode_to_vec().into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");

    // A wrong credential.
    let wrong = ClusterAuth::attach(ClusterSecret::generate());
    let status = ExecutorControlClient::with_interceptor(channel.clone(), wrong.clone())
        .launch_tasks(launch.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");

    // The right secret alone is not enough: a task runs only with the scheduler's token for it.
    let right = ClusterAuth::attach(cluster.secret.clone());
    let status =
        ExecutorControlClient::with_interceptor(channel.clone(), right).launch_tasks(launch).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");

    // Nobody joins the cluster without the secret either.
    let scheduler = Channel::from_shared(format!("http://{}", cluster.url()))?.connect().await?;
    let registration = RegisterExecutorRequest {
        executor: Some(ExecutorRegistration {
            executor_id: "rogue".into(),
            endpoint: "127.0.0.1:1".into(),
            task_slots: 8,
            memory_limit_bytes: 0,
        }),
    };
    let status =
        SchedulerClusterClient::with_interceptor(scheduler, wrong).register_executor(registration).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    assert_eq!(cluster.scheduler.cluster().alive().len(), 1);

    // A member's word on its task slots is bounded: a huge claim cannot draw every task.
    let scheduler = Channel::from_shared(format!("http://{}", cluster.url()))?.connect().await?;
    let greedy = RegisterExecutorRequest {
        executor: Some(ExecutorRegistration {
            executor_id: "greedy".into(),
            endpoint: "127.0.0.1:1".into(),
            task_slots: u32::MAX,
            memory_limit_bytes: 0,
        }),
    };
    SchedulerClusterClient::with_interceptor(scheduler, ClusterAuth::attach(cluster.secret.clone()))
        .register_executor(greedy)
        .await?;
    let slots = cluster.scheduler.cluster().alive().iter().find(|e| e.id.to_string() == "greedy").map(|e| e.task_slots);
    assert_eq!(slots, Some(1024));
    cluster.scheduler.cluster().remove(&glaux_proto::ExecutorAddr::parse("127.0.0.1:1")?);

    // And the cluster still answers queries.
    let mut client = cluster.client().await;
    assert_eq!(rows_of(&client.query("SELECT 40 + 2").await?.batches), vec!["42"]);
    Ok(())
}

/// With users configured, Flight SQL clients hand-shake with a user name and password for a token;
/// anything else is refused, and the executors (on the same port, with the cluster secret) work on.
/// Without users, the scheduler will not serve a non-loopback address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flight_sql_clients_authenticate_when_users_are_configured() -> TestResult {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use base64::Engine;

    let hash = glaux_scheduler::hash_password("correct horse")?;
    let users = glaux_scheduler::Users::parse(&format!("# analysts\nana:{hash}:admin\n"))?;
    let cluster = TestCluster::builder().executors(1).users(users).start().await?;
    let url = cluster.url();

    let mut anonymous = glaux_client::GlauxClient::connect(&url).await?;
    let error = anonymous.query("SELECT 1").await.expect_err("no credentials");
    assert!(error.to_string().contains("authentication required"), "{error}");
    let error = glaux_client::GlauxClient::connect_as(&url, "ana", "wrong").await.expect_err("wrong password");
    assert!(error.to_string().contains("wrong user name or password"), "{error}");
    let error = glaux_client::GlauxClient::connect_as(&url, "eve", "correct horse").await.expect_err("unknown user");
    assert!(error.to_string().contains("wrong user name or password"), "{error}");

    // The token works for statements, fetching and cancelling.
    let mut ana = glaux_client::GlauxClient::connect_as(&url, "ana", "correct horse").await?;
    let lake = write_lake(cluster.warehouse());
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        ana.query(&ddl).await?;
    }
    assert_eq!(rows_of(&ana.query("SELECT count(*) FROM sales").await?.batches), vec!["18000"]);
    let info = ana.submit("SELECT count(*) FROM sales").await?;
    assert!(!ana.cancel(info).await?, "nothing runs yet, but the call is let through");

    let channel = tonic::transport::Channel::from_shared(format!("http://{url}"))?.connect().await?;
    let mut forged = FlightSqlServiceClient::new(channel.clone());
    forged.set_token("00ff".into());
    let error = forged.execute("SELECT 1".into(), None).await.expect_err("forged token");
    assert!(error.to_string().contains("unknown or expired"), "{error}");
    // Basic credentials on every call work too (clients that never hand-shake).
    let mut basic = FlightSqlServiceClient::new(channel);
    let credentials = base64::engine::general_purpose::STANDARD.encode("ana:correct horse");
    basic.set_header("authorization", format!("Basic {credentials}"));
    let info = basic.execute("SELECT 2 AS two".into(), None).await?;
    assert_eq!(info.endpoint.len(), 1);

    // No users and a non-loopback address: refused before binding anything.
    let open =
        glaux_scheduler::SchedulerConfig::new(glaux_proto::ClusterSecret::generate()).with_bind("0.0.0.0:0".parse()?);
    let error = glaux_scheduler::Scheduler::start(open).await.err().ok_or("started without authentication")?;
    assert!(error.to_string().contains("without client authentication"), "{error}");
    Ok(())
}

/// A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM.
fn self_signed() -> Result<(String, String), Box<dyn std::error::Error>> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_speak_tls_to_both_doors_when_it_is_configured() -> TestResult {
    let (cert, key) = self_signed()?;
    // A key that is not the certificate's is refused at start, naming the problem.
    let (_, other_key) = self_signed()?;
    let mismatched = glaux_scheduler::TlsIdentity::from_pem(cert.clone().into_bytes(), other_key.into_bytes());
    assert!(mismatched.unwrap_err().to_string().contains("does not fit"));
    let garbage = glaux_scheduler::TlsIdentity::from_pem(b"not a certificate".to_vec(), key.clone().into_bytes());
    assert!(garbage.is_err());

    let identity = glaux_scheduler::TlsIdentity::from_pem(cert.clone().into_bytes(), key.into_bytes())?;
    let hash = glaux_scheduler::hash_password("s3cret")?;
    let users = glaux_scheduler::Users::parse(&format!("ana:{hash}:admin\n"))?;
    let cluster = TestCluster::builder().postgres().users(users).tls(identity).start().await?;
    // Executors joined on a port of their own; clients speak TLS on the Flight SQL port.
    assert_ne!(cluster.scheduler.cluster_addr(), cluster.scheduler.addr());
    let url = format!("grpc+tls://localhost:{}", cluster.scheduler.addr().port());
    let options = glaux_client::ConnectOptions {
        tls_ca: Some(cert.clone().into_bytes()),
        credentials: Some(("ana".into(), "s3cret".into())),
    };
    let mut client = glaux_client::GlauxClient::connect_with(&url, &options).await?;
    let lake = write_lake(cluster.warehouse());
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        client.query(&ddl).await?;
    }
    let output = client.query("SELECT region, count(*) FROM sales GROUP BY region ORDER BY region").await?;
    assert_eq!(rows_of(&output.batches), vec!["apac | 6000", "eu | 6000", "us | 6000"]);
    assert!(output.stats.as_ref().is_some_and(|s| s.tasks >= 2), "the query ran on the executors: {:?}", output.stats);

    // In the clear, or trusting only the system's roots, nothing gets through.
    let plain = glaux_client::GlauxClient::connect_as(&cluster.url(), "ana", "s3cret").await;
    let error = plain.err().ok_or("a plaintext client was served")?.to_string();
    assert!(error.contains("does the server speak TLS?"), "{error}");
    let untrusted = glaux_client::ConnectOptions { tls_ca: None, ..options.clone() };
    let error = glaux_client::GlauxClient::connect_with(&url, &untrusted).await.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // psql verifies the certificate over TLS; without TLS it is refused before sending a password.
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();
    let ca = cluster.warehouse().join("ca.pem");
    std::fs::write(&ca, &cert)?;
    let psql = |sslmode: &str| {
        let connection = format!(
            "host=localhost port={port} user=ana dbname=default sslmode={sslmode} sslrootcert={} connect_timeout=10",
            ca.display()
        );
        tokio::process::Command::new("psql")
            .args([connection.as_str(), "-X", "-At", "-c", "SELECT count(*) FROM regions"])
            .env("PGPASSWORD", "s3cret")
            .output()
    };
    let output = psql("verify-full").await?;
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "4", "{}", text(&output));
    let output = psql("disable").await?;
    assert!(!output.status.success() && text(&output).contains("only TLS"), "{}", text(&output));
    Ok(())
}

/// Per-task tokens: an executor runs only tasks the scheduler signed for exactly themselves, and
/// serves a task's output only with that task's read token; forged, expired, other-task and
/// other-purpose tokens are refused, even with the cluster secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executors_need_the_schedulers_token_for_each_task() -> TestResult {
    use glaux_proto::generated::TaskTokenClaims;
    use glaux_proto::{QueryId, StageId, TaskId, TaskSigner, TokenPurpose};

    let cluster = TestCluster::builder().executors(2).start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    let signer = cluster.scheduler.task_signer();
    let channel = Channel::from_shared(format!("http://{}", cluster.executors[0].endpoint()))?.connect().await?;
    let auth = ClusterAuth::attach(cluster.secret.clone());
    let query = QueryId::from("q-token".to_string());
    let launch = |token: Vec<u8>| LaunchTasksRequest {
        tasks: vec![task_definition(query.as_str(), b"not even a plan".to_vec(), token)],
    };
    let expired = signer.sign_claims(&TaskTokenClaims {
        purpose: TokenPurpose::Run as u32,
        query_id: query.to_string(),
        stage_id: 1,
        task_id: 0,
        expires_unix_ms: 1,
    });
    let refused = [
        ("no token", Vec::new(), "no task token"),
        (
            "a forged token",
            TaskSigner::generate()?.sign(TokenPurpose::Run, &query, StageId(1), TaskId(0)),
            "not signed",
        ),
        ("another task's token", signer.sign(TokenPurpose::Run, &query, StageId(1), TaskId(1)), "another task"),
        ("an expired token", expired, "expired"),
        ("a read token", signer.sign(TokenPurpose::Read, &query, StageId(1), TaskId(0)), "another purpose"),
    ];
    for (what, token, says) in refused {
        let status = ExecutorControlClient::with_interceptor(channel.clone(), auth.clone())
            .launch_tasks(launch(token))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status}");
        assert!(status.message().contains(says), "{what}: {status}");
    }
    // The scheduler's token for this very task gets through to plan decoding, which refuses garbage.
    let token = signer.sign(TokenPurpose::Run, &query, StageId(1), TaskId(0));
    let status = ExecutorControlClient::with_interceptor(channel.clone(), auth.clone())
        .launch_tasks(launch(token))
        .await
        .expect_err("garbage plan");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");

    // Task output: only with that task's read token.
    let ticket = |token: Vec<u8>| TaskOutputTicket {
        query_id: query.to_string(),
        stage_id: 1,
        task_id: 0,
        partition: 0,
        compress: false,
        read_token: token,
        client_schema: Vec::new(),
        dynamic_filters: Vec::new(),
    };
    let flight = || FlightServiceClient::with_interceptor(channel.clone(), auth.clone());
    for (what, token) in [
        ("no token", Vec::new()),
        ("another task's", signer.sign(TokenPurpose::Read, &query, StageId(1), TaskId(1))),
        ("a run token", signer.sign(TokenPurpose::Run, &query, StageId(1), TaskId(0))),
        ("a client's read token", signer.sign(TokenPurpose::ClientRead, &query, StageId(1), TaskId(0))),
        ("a forged one", TaskSigner::generate()?.sign(TokenPurpose::Read, &query, StageId(1), TaskId(0))),
    ] {
        let status = flight().do_get(Ticket { ticket: ticket(token).encode_to_vec().into() }).await.expect_err(what);
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status}");
    }
    let token = signer.sign(TokenPurpose::Read, &query, StageId(1), TaskId(0));
    let status = flight().do_get(Ticket { ticket: ticket(token).encode_to_vec().into() }).await.expect_err("none");
    assert_eq!(status.code(), Code::NotFound, "the right token gets as far as the (absent) task: {status}");

    // Queries, with their stages reading each other across both executors, still run.
    let output = client.query("SELECT region, count(*) FROM sales GROUP BY region ORDER BY region").await?;
    assert_eq!(rows_of(&output.batches), vec!["apac | 6000", "eu | 6000", "us | 6000"]);
    Ok(())
}
