//! Ways around the cluster's protections, closed: Glaux's own files and links out of the roots are
//! never table data, and statements built to be slow or deep are bounded.

use crate::harness::*;

async fn error_of(client: &mut glaux_client::GlauxClient, sql: &str) -> String {
    match client.query(sql).await {
        Ok(output) => panic!("{sql} should fail, returned {:?}", rows_of(&output.batches)),
        Err(e) => e.to_string(),
    }
}

/// The catalog and the cluster secret live in `<warehouse>/.glaux/`, inside a readable root. No
/// table reads them: not declared over that directory, not over the whole warehouse, not through
/// a link in a table's directory. Links out of the roots are not followed either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn glaux_files_and_links_out_of_the_roots_are_never_table_data() -> TestResult {
    let warehouse = tempfile::tempdir()?;
    let own = warehouse.path().join(".glaux");
    std::fs::create_dir_all(&own)?;
    std::fs::write(own.join("cluster-secret"), "the-cluster-secret\n")?;
    let cluster = TestCluster::builder()
        .warehouse(warehouse.path())
        .catalog(&own.join("catalog.sqlite"))
        .executors(1)
        .start()
        .await?;
    let mut client = cluster.client().await;
    let root = warehouse.path().display().to_string();
    let text_table = |name: &str, location: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} (l string) ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\t' \
             STORED AS TEXTFILE LOCATION '{location}'"
        )
    };

    // Declared over Glaux's directory (as written, or through a link to it): refused.
    let error = error_of(&mut client, &text_table("s", &format!("{root}/.glaux/"))).await;
    assert!(error.contains("never table data"), "{error}");
    std::os::unix::fs::symlink(&own, warehouse.path().join("innocent"))?;
    let error = error_of(&mut client, &text_table("s", &format!("{root}/innocent/"))).await;
    assert!(error.contains("never table data"), "{error}");

    // A table directory with one real file, links to the secret, the catalog and a file outside
    // every root.
    let outside = tempfile::tempdir()?;
    std::fs::write(outside.path().join("passwd"), "root:x:0:0\n")?;
    let dir = warehouse.path().join("t");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("real.txt"), "hello\n")?;
    std::os::unix::fs::symlink(own.join("cluster-secret"), dir.join("secret.txt"))?;
    std::os::unix::fs::symlink(own.join("catalog.sqlite"), dir.join("catalog.txt"))?;
    std::os::unix::fs::symlink(outside.path().join("passwd"), dir.join("passwd.txt"))?;
    std::os::unix::fs::symlink(outside.path(), dir.join("sub"))?;
    client.query(&text_table("t", &format!("{root}/t/"))).await?;
    assert_eq!(rows_of(&client.query("SELECT l FROM t").await?.batches), vec!["hello"]);

    // Over the whole warehouse: its own file only, never the catalog or the secret.
    std::fs::write(warehouse.path().join("top.txt"), "top\n")?;
    client.query(&text_table("everything", &format!("{root}/"))).await?;
    let rows = rows_of(&client.query("SELECT l FROM everything").await?.batches);
    assert_eq!(rows, vec!["top"], "{rows:?}");
    Ok(())
}

/// Properties that look like credentials are refused (without repeating the value), so they are
/// never stored where `SHOW CREATE TABLE` would show them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn table_properties_that_look_like_credentials_are_refused() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let location = format!("{}/sales/", lake.display());
    for (sql, key) in [
        (
            format!(
                "CREATE EXTERNAL TABLE leaky STORED AS PARQUET LOCATION '{location}' \
                 OPTIONS ('aws.secret_access_key' 'hunter2hunter2')"
            ),
            "aws.secret_access_key",
        ),
        (
            format!(
                "CREATE EXTERNAL TABLE leaky (id bigint) STORED AS PARQUET LOCATION '{location}' \
                 TBLPROPERTIES ('s3.session.token'='hunter2hunter2')"
            ),
            "s3.session.token",
        ),
    ] {
        let error = error_of(&mut client, &sql).await;
        assert!(error.contains(key) && error.contains("credential"), "{error}");
        assert!(!error.contains("hunter2"), "the value is never repeated: {error}");
    }
    let tables = rows_of(&client.query("SHOW TABLES").await?.batches);
    assert!(!tables.iter().any(|t| t.contains("leaky")), "{tables:?}");
    Ok(())
}

/// Passwords never cross a network in the clear unless someone says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_need_tls_on_non_loopback_addresses() -> TestResult {
    use glaux_scheduler::{Scheduler, SchedulerConfig, Users};
    let users = std::sync::Arc::new(Users::parse(&format!("ana:{}\n", glaux_scheduler::hash_password("pw")?))?);
    let config = || {
        SchedulerConfig::new(glaux_proto::ClusterSecret::generate())
            .with_users(std::sync::Arc::clone(&users))
            .with_bind("0.0.0.0:0".parse().expect("address"))
    };
    let error = Scheduler::start(config()).await.err().ok_or("served passwords in the clear")?;
    assert!(error.to_string().contains("in the clear") && error.to_string().contains("--allow-insecure-auth"));
    // The PostgreSQL port too, with Flight SQL on loopback.
    let postgres_only = config().with_bind("127.0.0.1:0".parse()?).with_postgres("0.0.0.0:0".parse()?);
    assert!(Scheduler::start(postgres_only).await.is_err());
    // Said explicitly, it serves.
    let scheduler = Scheduler::start(config().with_insecure_auth(true)).await?;
    assert!(scheduler.addr().ip().is_unspecified());
    Ok(())
}

/// Ten wrong passwords from an address, on either door, and that address is refused for a while
/// on both doors, even with the right password; the answers never say whether the user exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_are_limited_per_client_address_on_both_doors() -> TestResult {
    let hash = glaux_scheduler::hash_password("right")?;
    let users = glaux_scheduler::Users::parse(&format!("ana:{hash}\n"))?;
    let cluster = TestCluster::builder().executors(1).users(users).postgres().start().await?;
    let url = cluster.url();
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();

    let unknown = glaux_client::GlauxClient::connect_as(&url, "nobody", "x").await.err().ok_or("unknown user")?;
    let wrong = glaux_client::GlauxClient::connect_as(&url, "ana", "x").await.err().ok_or("wrong password")?;
    assert_eq!(unknown.to_string().replace("nobody", "ana"), wrong.to_string(), "the same answer for both");
    for _ in 0..4 {
        assert!(glaux_client::GlauxClient::connect_as(&url, "ana", "wrong").await.is_err());
    }
    for _ in 0..4 {
        let output = crate::postgres::psql(port, Some("wrong"), &["-c", "SELECT 1"]).await;
        assert!(!output.status.success());
    }
    // Ten failures: now the right password is refused too, on both doors.
    let error = glaux_client::GlauxClient::connect_as(&url, "ana", "right").await.err().ok_or("let in")?;
    assert!(error.to_string().contains("too many failed logins"), "{error}");
    let output = crate::postgres::psql(port, Some("right"), &["-c", "SELECT 1"]).await;
    let said = crate::postgres::text(&output);
    assert!(!output.status.success() && said.contains("too many failed logins"), "{said}");
    Ok(())
}

/// Connections beyond a door's limit are refused with a clear message, requests beyond an
/// address's rate too, and a user's statements beyond their limit; none of it stops the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doors_limit_connections_request_rates_and_statements_at_once() -> TestResult {
    let limits = glaux_scheduler::DoorLimits {
        max_connections: 3,
        requests_per_second: 20,
        statements_per_user: 1,
        statements: 8,
    };
    let cluster = TestCluster::builder().executors(1).postgres().limits(limits).start().await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();

    // Three idle connections fill the PostgreSQL door: psql is told why it cannot connect.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await?);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let output = crate::postgres::psql(port, None, &["-c", "SELECT 1"]).await;
    let said = crate::postgres::text(&output);
    assert!(!output.status.success() && said.contains("too many clients"), "{said}");
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let output = crate::postgres::psql(port, None, &["-At", "-c", "SELECT 40 + 2"]).await;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42", "{}", crate::postgres::text(&output));

    // A statement whose result the client does not read holds the user's one place.
    let mut client = cluster.client().await;
    let info = client.submit("SELECT * FROM generate_series(1, 100000000)").await?;
    let endpoint = info.endpoint.first().ok_or("no endpoint")?.clone();
    let unread = client.fetch(&endpoint).await?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut second = cluster.client().await;
    let error = second.query("SELECT 1").await.err().ok_or("a second statement ran")?;
    assert!(error.to_string().contains("statements of this user are running"), "{error}");
    drop(unread);
    let mut ran = false;
    for _ in 0..50 {
        if second.query("SELECT 1").await.is_ok() {
            ran = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ran, "the place came back when the result was dropped");

    // Requests beyond the address's rate (20/s, bursts of 40) are refused, and served again later.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut refused = None;
    for _ in 0..200 {
        if let Err(e) = second.query("SELECT 1").await {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.ok_or("no request was refused")?;
    assert!(refused.contains("too many requests"), "{refused}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(rows_of(&second.query("SELECT 7").await?.batches), vec!["7"]);
    Ok(())
}

/// Bound parameters are one row: a client that streams more bytes is refused without the
/// scheduler holding them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bound_parameters_are_bounded_in_size() -> TestResult {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray};
    let cluster = TestCluster::builder().executors(1).start().await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", cluster.url()))?.connect().await?;
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    let mut prepared = client.prepare("SELECT length($1)".to_string(), None).await?;
    let huge = RecordBatch::try_from_iter([("$1", Arc::new(StringArray::from(vec!["x".repeat(4 << 20)])) as _)])?;
    prepared.set_parameters(huge)?;
    let error = prepared.execute().await.err().ok_or("4 MiB of parameters were taken")?;
    assert!(error.to_string().contains("limited to"), "{error}");
    let small = RecordBatch::try_from_iter([("$1", Arc::new(StringArray::from(vec!["four"])) as _)])?;
    prepared.set_parameters(small)?;
    let info = prepared.execute().await?;
    assert_eq!(info.endpoint.len(), 1);
    Ok(())
}

/// A PostgreSQL `SET` takes effect, is already true, or says it was ignored; `SHOW search_path`
/// follows `USE` and `SET search_path`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_settings_take_effect_or_say_they_were_ignored() -> TestResult {
    let cluster = TestCluster::builder().executors(1).postgres().start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    client.query("CREATE DATABASE sales_db").await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();
    let run = |sql: &'static str| async move { crate::postgres::psql(port, None, &["-At", "-c", sql]).await };

    let output = run("SET statement_timeout = 5000").await;
    let said = crate::postgres::text(&output);
    assert!(output.status.success() && said.contains("WARNING") && said.contains("ignored"), "{said}");
    let output = run("SET DateStyle = 'ISO, MDY'").await;
    assert!(!crate::postgres::text(&output).contains("WARNING"), "{}", crate::postgres::text(&output));

    let output = crate::postgres::psql(
        port,
        None,
        &[
            "-qAt",
            "-c",
            "SHOW search_path",
            "-c",
            "USE sales_db",
            "-c",
            "SHOW search_path",
            "-c",
            "SET search_path TO default",
            "-c",
            "SHOW search_path",
            "-c",
            "SET search_path TO sales_db",
            "-c",
            "SHOW search_path",
        ],
    )
    .await;
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines, vec!["default", "sales_db", "default", "sales_db"], "{}", crate::postgres::text(&output));
    let output = run("SET search_path TO no_such_db").await;
    assert!(crate::postgres::text(&output).contains("does not exist"), "{}", crate::postgres::text(&output));
    let output = run("ROLLBACK").await;
    assert!(crate::postgres::text(&output).contains("undid nothing"), "{}", crate::postgres::text(&output));
    Ok(())
}
