//! The real `glaux` binary, run the way a user runs it.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::*;

pub(crate) const GLAUX: &str = env!("CARGO_BIN_EXE_glaux");

/// Spawns `glaux args...` and returns it with the address it printed after `marker`.
pub(crate) async fn spawn_until(args: &[&str], envs: &[(&str, &str)], marker: &str) -> (Child, String) {
    spawn_in(Command::new(GLAUX), args, envs, marker).await
}

/// [`spawn_until`], with `glaux` started by `command` (`ip netns exec NS glaux`, say).
pub(crate) async fn spawn_in(
    mut command: Command,
    args: &[&str],
    envs: &[(&str, &str)],
    marker: &str,
) -> (Child, String) {
    let mut child = command
        .args(args)
        // Test data is small: every query spreads over the executors, as these tests count on.
        .env("GLAUX_SMALL_QUERY_BYTES", "0")
        .envs(envs.iter().copied())
        .env("GLAUX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn glaux");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.expect("read glaux output") {
            if let Some(rest) = line.split(marker).nth(1) {
                let word = rest.split_whitespace().next().unwrap_or("");
                return word.trim_end_matches('.').to_string();
            }
        }
        panic!("glaux exited without printing '{marker}'");
    };
    let addr = tokio::time::timeout(Duration::from_secs(60), find).await.expect("glaux started in time");
    // The pipe stays open with the child: a line printed later must not meet a closed pipe.
    child.stdout = Some(lines.into_inner().into_inner());
    (child, addr)
}

pub(crate) async fn shell(host: &str, sql: &str) -> std::process::Output {
    Command::new(GLAUX).args(["shell", "--host", host, "-c", sql]).output().await.expect("run glaux shell")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glaux_binary_runs_standalone_scheduler_executor_and_shell() -> TestResult {
    let warehouse = tempfile::tempdir()?;
    let lake = write_lake(warehouse.path());
    let warehouse_arg = warehouse.path().display().to_string();
    let ddl = lake_ddl(&format!("{}/", lake.display())).join(";\n");

    // glaux standalone + glaux shell -c.
    let (mut standalone, addr) = spawn_until(
        &["standalone", "--executors", "2", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &warehouse_arg],
        &[],
        "Flight SQL on ",
    )
    .await;
    let output =
        shell(&addr, &format!("{ddl};\nSELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region;"))
            .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("| apac   | 6000 |"), "{stdout}");
    assert!(stdout.contains("3 rows in set. Run time:"), "{stdout}");
    assert!(stdout.contains("Data scanned:"), "{stdout}");

    // glaux crawl declares a table from the files alone and prints what it found.
    let sales = format!("{}/sales/", lake.display());
    let output = Command::new(GLAUX).args(["crawl", &sales, "--table", "crawled", "--host", &addr]).output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("CREATE EXTERNAL TABLE default.crawled ("), "{stdout}");
    assert!(stdout.contains("PARTITIONED BY (region, day)"), "{stdout}");
    assert!(stdout.contains("-- 9 partitions registered: region=apac/day=2024-01-01, "), "{stdout}");
    let output = shell(&addr, "SELECT count(*) FROM crawled WHERE region = 'eu'").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Data scanned:") && stdout.contains("(3 of 9 partitions)"), "{stdout}");

    let output = shell(&addr, "SELEC 1").await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Error"));
    standalone.kill().await?;

    // glaux scheduler and glaux executor as separate processes, sharing a secret.
    let secret = [("GLAUX_CLUSTER_SECRET", "0123456789abcdef0123456789abcdef")];
    let catalog = warehouse.path().join(".glaux/second-catalog.sqlite").display().to_string();
    let (_scheduler, addr) = spawn_until(
        &["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &warehouse_arg, "--catalog", &catalog],
        &secret,
        "Flight SQL on ",
    )
    .await;
    let (_executor, _) =
        spawn_until(&["executor", "--scheduler", &addr, "--warehouse", &warehouse_arg], &secret, "serving on ").await;
    // DDL needs no executor; the query does, and the executor registers right after it starts
    // serving: give it a few tries.
    let output = shell(&addr, &ddl).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut last = None;
    for _ in 0..50 {
        let output = shell(&addr, "SELECT sum(qty) FROM sales WHERE region = 'eu'").await;
        if output.status.success() {
            last = Some(output);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = last.expect("the separate scheduler and executor answer a query");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 row in set"), "{stdout}");
    Ok(())
}

/// Executors as real processes, killed mid-query: a query that has returned nothing yet is planned
/// again on the survivors and completes; one whose rows are already streaming fails within 10 s,
/// naming the lost executor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_executors_never_hang_a_query() -> TestResult {
    let warehouse = tempfile::tempdir()?;
    let lake = write_lake(warehouse.path());
    let warehouse_arg = warehouse.path().display().to_string();
    let secret = [("GLAUX_CLUSTER_SECRET", "fedcba9876543210fedcba9876543210")];
    let (_scheduler, addr) = spawn_until(
        &["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &warehouse_arg],
        &secret,
        "Flight SQL on ",
    )
    .await;
    let mut executors = Vec::new();
    for _ in 0..3 {
        let args = ["executor", "--scheduler", &addr, "--warehouse", &warehouse_arg, "--task-slots", "1"];
        executors.push(spawn_until(&args, &secret, "serving on ").await);
    }
    let mut client = glaux_client::GlauxClient::connect(&addr).await?;
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        client.query(&ddl).await?;
    }
    // The answer, from single-node DataFusion on the same files.
    let sql = "SELECT region, sum(qty) AS qty FROM sales GROUP BY region ORDER BY region";
    let reference = reference_context(&lake).await;
    let expected = rows_of(&reference.sql(sql).await?.collect().await?);
    assert_eq!(expected.len(), 3);
    // Wait until all three executors take part in queries.
    let mut on_three = false;
    for _ in 0..100 {
        let output = client.query(sql).await?;
        assert_eq!(rows_of(&output.batches), expected);
        if output.stats.as_ref().is_some_and(|s| s.tasks >= 6) {
            on_three = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(on_three, "three executors joined and the query ran on them");

    // Killed before the next query: the scheduler does not know yet (heartbeats have not lapsed),
    // plans tasks for it, finds it gone and re-runs the query on the other two.
    let (mut first, _) = executors.remove(0);
    first.kill().await?;
    let started = std::time::Instant::now();
    let output = client.query(sql).await?;
    assert_eq!(rows_of(&output.batches), expected);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(output.stats.map(|s| s.tasks), Some(4), "the re-run used the two survivors");

    // Killed while rows stream to the client: those rows cannot be taken back, so the query fails,
    // within 10 s, naming the executor.
    let info = client.submit("SELECT a.id, b.id FROM sales a CROSS JOIN sales b").await?;
    let mut stream = client.fetch(&info.endpoint[0]).await?;
    stream.next().await.ok_or("no first message")??;
    let (mut second, lost) = executors.remove(0);
    second.kill().await?;
    let killed = std::time::Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e.to_string(),
                None => return "the stream ended without an error".to_string(),
            }
        }
    })
    .await?;
    assert!(error.contains(&format!("lost executor {lost}")), "{error}");
    assert!(killed.elapsed() < Duration::from_secs(10));

    // The survivor serves the next query.
    let output = client.query(sql).await?;
    assert_eq!(rows_of(&output.batches), expected);
    Ok(())
}

/// An executor killed while a scan streams to the client: its scan task runs again on the
/// survivor, which skips the rows already returned, and the client gets every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_scan_tasks_run_again_on_survivors() -> TestResult {
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;
    use arrow_flight::decode::DecodedPayload;

    const FILES: i64 = 4;
    const ROWS: i64 = 400_000;
    let warehouse = tempfile::tempdir()?;
    let dir = warehouse.path().join("wide");
    std::fs::create_dir_all(&dir)?;
    for file in 0..FILES {
        // Much more than the flow-control windows between the processes hold, so that the killed
        // executor still has rows to send.
        let ids: Vec<i64> = (file * ROWS..(file + 1) * ROWS).collect();
        let notes = StringArray::from_iter_values(ids.iter().map(|i| format!("row {i:012} of a table wide enough")));
        let batch = arrow::array::RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as arrow::array::ArrayRef),
            ("note", Arc::new(notes) as arrow::array::ArrayRef),
        ])?;
        let path = dir.join(format!("part-{file}.parquet"));
        let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path)?, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
    }
    let warehouse_arg = warehouse.path().display().to_string();
    let secret = [("GLAUX_CLUSTER_SECRET", "00112233445566778899aabbccddeeff")];
    let (_scheduler, addr) = spawn_until(
        &["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &warehouse_arg],
        &secret,
        "Flight SQL on ",
    )
    .await;
    let mut executors = Vec::new();
    for _ in 0..2 {
        let args = ["executor", "--scheduler", &addr, "--warehouse", &warehouse_arg, "--task-slots", "1"];
        executors.push(spawn_until(&args, &secret, "serving on ").await);
    }
    let mut client = glaux_client::GlauxClient::connect(&addr).await?;
    client.query(&format!("CREATE EXTERNAL TABLE wide STORED AS PARQUET LOCATION '{}/'", dir.display())).await?;
    let even = "SELECT count(*) FROM wide WHERE id % 2 = 0";
    let mut both_executors = false;
    for _ in 0..100 {
        if client.query(even).await?.stats.is_some_and(|s| s.tasks >= 2) {
            both_executors = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(both_executors, "both executors joined");

    let info = client.submit("SELECT id, note FROM wide").await?;
    let mut stream = client.fetch(&info.endpoint[0]).await?;
    let mut seen = vec![false; (FILES * ROWS) as usize];
    let (mut returned, mut stats) = (0, None);
    let mut killed = false;
    while let Some(message) = stream.next().await {
        let message = message?;
        if let Some(query) = glaux_proto::QueryStats::from_json(&message.app_metadata()) {
            stats = Some(query);
        }
        if let DecodedPayload::RecordBatch(batch) = message.payload {
            for id in batch.column(0).as_primitive::<Int64Type>().values() {
                let slot = seen.get_mut(*id as usize).ok_or("id out of range")?;
                assert!(!*slot, "row {id} returned twice");
                *slot = true;
            }
            returned += batch.num_rows();
            if !killed && returned > 0 {
                executors.remove(0).0.kill().await?;
                killed = true;
            }
        }
    }
    assert_eq!(returned, seen.len(), "every row once");
    assert_eq!(stats.map(|s| s.tasks_rerun), Some(1), "the lost executor's task ran again");

    // The survivor serves the next query.
    let output = client.query(even).await?;
    assert_eq!(output.batches[0].column(0).as_primitive::<Int64Type>().value(0), FILES * ROWS / 2);
    Ok(())
}

/// `glaux shell` scripts: meta commands, output formats, `\o`, `\timing`, and the exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_meta_commands_and_output_formats() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    let (_, _client) = cluster.with_lake().await?;
    let url = cluster.url();
    let out_file = cluster.warehouse().join("regions.jsonl");
    let script = format!(
        "\\dt\n\\d regions\n\\format csv\nSELECT name, manager FROM regions ORDER BY name LIMIT 2;\n\\timing off\n\
         \\o {}\n\\format json\nSELECT name FROM regions ORDER BY name;\n\\o\n\\x\nSELECT name, active FROM regions ORDER BY name LIMIT 1;\n",
        out_file.display()
    );
    let file = cluster.warehouse().join("script.sql");
    std::fs::write(&file, script)?;
    let output =
        Command::new(GLAUX).args(["shell", "--host", &url, "-f", &file.display().to_string()]).output().await?;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // \dt and \d
    assert!(stdout.contains("tab_name") && stdout.contains("| regions ") && stdout.contains("| sales "), "{stdout}");
    assert!(stdout.contains("column_name") && stdout.contains("| manager "), "{stdout}");
    // CSV on stdout, its summary on stderr with the timing; then \timing off drops the run time.
    assert!(stdout.contains("name,manager\napac,"), "{stdout}");
    assert!(stderr.contains("2 rows in set. Run time:"), "{stderr}");
    assert!(stderr.contains("4 rows in set.\n"), "{stderr}");
    // \o wrote JSON lines to the file, and only there.
    let written = std::fs::read_to_string(&out_file)?;
    assert_eq!(written.lines().next(), Some("{\"name\":\"apac\"}"), "{written}");
    assert_eq!(written.lines().count(), 4, "{written}");
    assert!(!stdout.contains("{\"name\""), "{stdout}");
    // \x: one record per block.
    assert!(stdout.contains("-[ RECORD 1 ]") && stdout.contains("active | "), "{stdout}");

    // --format from the command line; an unknown meta command fails the script.
    let output = Command::new(GLAUX)
        .args(["shell", "--host", &url, "--format", "tsv", "-c", "SELECT 'a\tb' AS t, 1 AS n"])
        .output()
        .await?;
    assert_eq!(String::from_utf8_lossy(&output.stdout), "t\tn\na\\tb\t1\n");
    let output = Command::new(GLAUX).args(["shell", "--host", &url, "-c", "\\nonsense"]).output().await?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown command \\nonsense"));
    Ok(())
}

/// The audit log: one line per statement on the `glaux::audit` target, on both doors, with the
/// user, client address, door, statement kind, objects, outcome and data scanned, and never the
/// statement's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_leaves_one_audit_line_without_its_text() -> TestResult {
    let warehouse = tempfile::tempdir()?;
    let private = tempfile::tempdir()?;
    let lake = write_lake(warehouse.path());
    let hash = glaux_scheduler::hash_password("pw")?;
    let users = private.path().join("users");
    std::fs::write(&users, format!("ana:{hash}:admin\nbob:{hash}\n"))?;
    let log = private.path().join("stderr.log");
    let mut child = Command::new(GLAUX)
        .args(["standalone", "--executors", "1", "--flight-sql-addr", "127.0.0.1:0"])
        .args(["--postgres-addr", "127.0.0.1:0", "--warehouse", &warehouse.path().display().to_string()])
        .arg("--users")
        .arg(&users)
        .env("GLAUX_LOG", "warn,glaux::audit=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
    let (mut flight, mut postgres) = (None, None);
    while flight.is_none() || postgres.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await??.ok_or("glaux exited")?;
        let after = |marker: &str| {
            line.split(marker)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(|w| w.trim_end_matches('.').to_string())
        };
        flight = flight.or_else(|| after("Flight SQL on "));
        postgres = postgres.or_else(|| after("PostgreSQL on "));
    }
    let (flight, postgres) = (flight.ok_or("no Flight SQL address")?, postgres.ok_or("no PostgreSQL address")?);
    let as_user = |user: &'static str, sql: String| {
        let flight = flight.clone();
        async move {
            Command::new(GLAUX)
                .args(["shell", "--host", &flight, "-u", user, "-c", &sql])
                .env("GLAUX_PASSWORD", "pw")
                .output()
                .await
        }
    };
    let ddl = lake_ddl(&format!("{}/", lake.display())).join(";\n");
    assert!(as_user("ana", ddl).await?.status.success());
    let output = as_user("ana", "SELECT count(*) FROM sales WHERE item = 'hunter2-literal'".into()).await?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = as_user("bob", "SELECT count(*) FROM regions".into()).await?;
    assert!(!output.status.success());
    let port = postgres.rsplit(':').next().ok_or("port")?.parse::<u16>()?;
    let output = tokio::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "ana", "-d", "default", "-X", "-At"])
        .args(["-c", "SELECT count(*) FROM regions"])
        .env("PGPASSWORD", "pw")
        .output()
        .await?;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "4");
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().await?;

    let text = std::fs::read_to_string(&log)?;
    let audit: Vec<&str> = text.lines().filter(|l| l.contains("glaux::audit")).collect();
    let find = |parts: &[&str]| audit.iter().find(|l| parts.iter().all(|p| l.contains(p))).copied();
    let read = find(&["user=\"ana\"", "door=\"shell\"", "objects=default.sales", "outcome=\"finished\""])
        .ok_or(format!("no audit line for ana's read in:\n{}", audit.join("\n")))?;
    assert!(
        read.contains("client=127.0.0.1") && read.contains("statement") && read.contains("bytes_scanned="),
        "{read}"
    );
    let refused = find(&["user=\"bob\"", "objects=default.regions", "outcome=\"refused\"", "PermissionDenied"]);
    assert!(refused.is_some(), "bob's refusal is audited:\n{}", audit.join("\n"));
    assert!(find(&["user=\"ana\"", "door=\"postgres\"", "objects=default.regions"]).is_some(), "{}", audit.join("\n"));
    assert!(find(&["statement=\"create_table\"", "objects=default.sales"]).is_some(), "{}", audit.join("\n"));
    assert!(!text.contains("hunter2-literal"), "statement text never reaches the log");
    Ok(())
}

/// A CA, and a certificate it issued for localhost and 127.0.0.1 (PEM: CA, certificate, key).
fn cluster_ca() -> Result<(String, String, String), Box<dyn std::error::Error>> {
    ca_and_member(&["localhost", "127.0.0.1"])
}

/// A CA, and a certificate it issued for `names` (PEM: CA, certificate, key).
pub(crate) fn ca_and_member(names: &[&str]) -> Result<(String, String, String), Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let member_key = KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(ToString::to_string).collect();
    let member = CertificateParams::new(names)?.signed_by(&member_key, &issuer)?;
    Ok((ca.pem(), member.pem(), member_key.serialize_pem()))
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// With cluster TLS, scheduler and executors (real processes) talk over mutual TLS, and nothing
/// without a certificate from the cluster's CA can join or call, even with the cluster secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_members_need_a_certificate_from_the_cluster_ca() -> TestResult {
    use glaux_proto::generated::executor_control_client::ExecutorControlClient;
    use glaux_proto::generated::scheduler_cluster_client::SchedulerClusterClient;
    use glaux_proto::generated::{CancelQueryRequest, ExecutorRegistration, RegisterExecutorRequest};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let warehouse = tempfile::tempdir()?;
    let lake = write_lake(warehouse.path());
    let warehouse_arg = warehouse.path().display().to_string();
    let keys = tempfile::tempdir()?;
    let (ca, cert, key) = cluster_ca()?;
    let (_, rogue_cert, rogue_key) = cluster_ca()?;
    let file = |name: &str, text: &str| {
        let path = keys.path().join(name);
        std::fs::write(&path, text).map(|()| path.display().to_string())
    };
    let (ca_file, cert_file, key_file) = (file("ca.pem", &ca)?, file("member.pem", &cert)?, file("member.key", &key)?);
    let tls = ["--cluster-tls-ca", &ca_file, "--cluster-tls-cert", &cert_file, "--cluster-tls-key", &key_file];
    let secret_text = "00112233445566778899aabbccddeeff";
    let secret = [("GLAUX_CLUSTER_SECRET", secret_text)];
    let cluster_addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["scheduler", "--flight-sql-addr", "127.0.0.1:0", "--warehouse", &warehouse_arg];
    args.extend(["--cluster-addr", &cluster_addr]);
    args.extend(tls);
    let (_scheduler, addr) = spawn_until(&args, &secret, "Flight SQL on ").await;
    let mut args = vec!["executor", "--scheduler", &cluster_addr, "--warehouse", &warehouse_arg];
    args.extend(["--task-slots", "2"]);
    args.extend(tls);
    let (_executor, executor_addr) = spawn_until(&args, &secret, "serving on ").await;
    let (_second, second_addr) = spawn_until(&args, &secret, "serving on ").await;

    // The cluster works over mutual TLS, executors reading each other's output too (a shuffle
    // for the grouping, then a join against it).
    let ddl = lake_ddl(&format!("{}/", lake.display())).join(";\n");
    assert!(shell(&addr, &ddl).await.status.success());
    let shuffled = "SELECT s.region, s.n FROM (SELECT region, count(*) AS n FROM sales GROUP BY region) s \
                    JOIN regions r ON s.region = r.name WHERE s.region = 'eu'";
    // Both executors have joined once the plan puts tasks on each.
    let mut planned_on_both = false;
    for _ in 0..50 {
        let explain = shell(&addr, &format!("EXPLAIN {shuffled}")).await;
        let text = String::from_utf8_lossy(&explain.stdout);
        if text.contains(&executor_addr) && text.contains(&second_addr) {
            planned_on_both = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(planned_on_both, "the plan never used both executors");
    let mut answered = None;
    for _ in 0..50 {
        let output = shell(&addr, shuffled).await;
        if output.status.success() {
            answered = Some(String::from_utf8_lossy(&output.stdout).to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = answered.ok_or("the cluster did not answer over mutual TLS")?;
    assert!(answered.contains("6000"), "{answered}");

    // Anyone else, even with the secret: in the clear, with TLS but no certificate, or with a
    // certificate from another CA.
    let auth = glaux_proto::ClusterAuth::attach(glaux_proto::ClusterSecret::try_new(secret_text)?);
    let registration = RegisterExecutorRequest {
        executor: Some(ExecutorRegistration {
            executor_id: "rogue".into(),
            endpoint: "127.0.0.1:1".into(),
            task_slots: 8,
            memory_limit_bytes: 0,
        }),
    };
    let trust = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    let attempts = [
        ("in the clear", format!("http://{cluster_addr}"), None),
        ("without a certificate", format!("https://{cluster_addr}"), Some(trust.clone())),
        (
            "with another CA's certificate",
            format!("https://{cluster_addr}"),
            Some(trust.clone().identity(Identity::from_pem(&rogue_cert, &rogue_key))),
        ),
    ];
    for (how, url, tls) in attempts {
        let mut endpoint = Endpoint::from_shared(url)?.connect_timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let refused = match endpoint.connect().await {
            Err(_) => true,
            Ok(channel) => SchedulerClusterClient::with_interceptor(channel, auth.clone())
                .register_executor(registration.clone())
                .await
                .is_err(),
        };
        assert!(refused, "a member {how} joined the cluster");
        // The executors' port refuses them the same way.
        let url = format!("http://{executor_addr}");
        if let Ok(channel) = Endpoint::from_shared(url)?.connect().await {
            let call = ExecutorControlClient::with_interceptor(channel, auth.clone())
                .cancel_query(CancelQueryRequest { query_id: "q".into() })
                .await;
            assert!(call.is_err(), "an executor answered a call {how}");
        }
    }
    // Even a member's certificate and the secret run nothing on the executor process without the
    // scheduler's token for the task: a forged one is refused.
    let member = trust.identity(Identity::from_pem(&cert, &key));
    let channel = Endpoint::from_shared(format!("https://{executor_addr}"))?.tls_config(member)?.connect().await?;
    let query = glaux_proto::QueryId::from("forged".to_string());
    let forged = glaux_proto::TaskSigner::generate()?.sign(
        glaux_proto::TokenPurpose::Run,
        &query,
        glaux_proto::StageId(1),
        glaux_proto::TaskId(0),
    );
    let task = task_definition(query.as_str(), Vec::new(), forged);
    let status = ExecutorControlClient::with_interceptor(channel, auth.clone())
        .launch_tasks(glaux_proto::generated::LaunchTasksRequest { tasks: vec![task] })
        .await
        .expect_err("a forged token ran a task");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    assert!(status.message().contains("not signed"), "{status}");

    // And the cluster still answers.
    let output = shell(&addr, "SELECT count(*) FROM regions").await;
    assert!(output.status.success() && String::from_utf8_lossy(&output.stdout).contains('4'));
    Ok(())
}
