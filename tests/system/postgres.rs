//! The PostgreSQL wire protocol with the real `psql`: queries over the lake, `\dt` and `\d`, what
//! psqlODBC sends on connect, transactions, passwords, and garbage on the port.

use std::process::Output;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::harness::*;

async fn psql(port: u16, password: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new("psql");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "ana", "-d", "default", "-X", "-v", "ON_ERROR_STOP=1"]);
    command.args(args).env("PGCONNECT_TIMEOUT", "10");
    match password {
        Some(password) => command.env("PGPASSWORD", password),
        None => command.env_remove("PGPASSWORD"),
    };
    command.output().await.expect("run psql (apt install postgresql-client)")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_queries_the_lake_and_describes_tables() -> TestResult {
    let cluster = TestCluster::builder().postgres().start().await?;
    let (_, mut client) = cluster.with_lake().await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();

    // The same query through Flight SQL and through psql (unaligned, comma-separated).
    let sql = "SELECT region, count(*) AS n, sum(qty) AS q FROM sales GROUP BY region ORDER BY region";
    let expected: Vec<String> = rows_of(&client.query(sql).await?.batches).into_iter().map(|r| r.replace(" | ", ",")).collect();
    let output = psql(port, None, &["-At", "-F", ",", "-c", sql]).await;
    assert!(output.status.success(), "{}", text(&output));
    let got: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(String::from).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got, expected);

    // \dt and \d run psql's own catalog queries.
    let output = psql(port, None, &["-c", "\\dt"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("sales") && text(&output).contains("regions"), "{}", text(&output));
    let output = psql(port, None, &["-c", "\\d regions"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("manager") && text(&output).contains("text"), "{}", text(&output));

    // What psqlODBC sends on connect, and transactions around a statement.
    let connect = "SET DateStyle = 'ISO';SET extra_float_digits = 2;show transaction_isolation";
    let output = psql(port, None, &["-At", "-c", connect]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("read committed"), "{}", text(&output));
    let output = psql(port, None, &["-At", "-c", "select oid, typbasetype from pg_type where typname = 'lo'"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let output =
        psql(port, None, &["-At", "-c", "BEGIN", "-c", "SELECT count(*) FROM sales WHERE region = 'eu'", "-c", "ROLLBACK"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("6000"), "{}", text(&output));

    // Bad SQL is an error; garbage bytes end that connection only; the next client is served.
    let output = psql(port, None, &["-c", "SELEC 1"]).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("ERROR"), "{}", text(&output));
    let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    garbage.write_all(b"\x00\x00\x00\x08garbage!\xff\xff\xff\xff not postgres at all").await?;
    drop(garbage);
    let output = psql(port, None, &["-At", "-c", "SELECT 40 + 2"]).await;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42", "{}", text(&output));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_needs_the_password_when_users_are_configured() -> TestResult {
    let hash = glaux_scheduler::hash_password("s3cret")?;
    let users = glaux_scheduler::Users::parse(&format!("ana:{hash}\n"))?;
    let cluster = TestCluster::builder().executors(1).postgres().users(users).start().await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();
    let output = psql(port, Some("wrong"), &["-c", "SELECT 1"]).await;
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).to_lowercase().contains("password"), "{}", text(&output));
    let output = psql(port, Some("s3cret"), &["-At", "-c", "SELECT 1"]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    Ok(())
}
