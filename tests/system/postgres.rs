//! The PostgreSQL wire protocol with real clients: `psql` (queries over the lake, `\dt` and `\d`,
//! what psqlODBC sends on connect, transactions, passwords, garbage on the port), the PostgreSQL
//! JDBC driver and psqlODBC through pyodbc (metadata, types, prepared statements), and a client
//! that vanishes mid-result.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::harness::*;

pub(crate) async fn psql(port: u16, password: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new("psql");
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "ana",
        "-d",
        "default",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
    ]);
    command.args(args).env("PGCONNECT_TIMEOUT", "10");
    match password {
        Some(password) => command.env("PGPASSWORD", password),
        None => command.env_remove("PGPASSWORD"),
    };
    command.output().await.expect("run psql (apt install postgresql-client)")
}

pub(crate) fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_queries_the_lake_and_describes_tables() -> TestResult {
    let cluster = TestCluster::builder().postgres().start().await?;
    let (lake, _client) = cluster.with_lake().await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();

    // A query through psql (unaligned, comma-separated) gives single-node DataFusion's answer.
    let sql = "SELECT region, count(*) AS n, sum(qty) AS q FROM sales GROUP BY region ORDER BY region";
    let reference = reference_context(&lake).await;
    let expected: Vec<String> =
        rows_of(&reference.sql(sql).await?.collect().await?).into_iter().map(|r| r.replace(" | ", ",")).collect();
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
    let output = psql(
        port,
        None,
        &["-At", "-c", "BEGIN", "-c", "SELECT count(*) FROM sales WHERE region = 'eu'", "-c", "ROLLBACK"],
    )
    .await;
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

/// Errors reach PostgreSQL clients with the SQLSTATE of their kind, and a statement that hits a
/// bug (a panic, injected) fails alone: the connection and the server serve on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_carry_their_sqlstate_and_a_panic_is_one_statements_error() -> TestResult {
    let cluster = TestCluster::builder().postgres().start().await?;
    cluster.with_lake().await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();
    let cases = [
        ("SELEC 1", "42601"),
        ("SELECT no_such_column FROM sales", "42703"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT * FROM no_such_db.sales", "42P01"),
        ("USE no_such_db", "3D000"),
        ("SHOW PARTITIONS no_such_table", "42P01"),
        ("EXECUTE no_such_statement", "42704"),
        ("DEALLOCATE PREPARE no_such_statement", "42704"),
        ("CREATE EXTERNAL TABLE sales STORED AS PARQUET LOCATION '/tmp/'", "42P07"),
        ("COPY sales TO '/tmp/x.parquet'", "0A000"),
        ("CREATE EXTERNAL TABLE etc (a INT) STORED AS PARQUET LOCATION 'file:///etc/'", "42501"),
        ("SELECT glaux_fault_panic_planning()", "XX000"),
        ("SELECT glaux_fault_panic()", "XX000"),
    ];
    for (sql, sqlstate) in cases {
        let output = psql(port, None, &["-v", "VERBOSITY=verbose", "-c", sql]).await;
        assert!(!output.status.success(), "{sql}: {}", text(&output));
        assert!(text(&output).contains(&format!("ERROR:  {sqlstate}:")), "{sql}: {}", text(&output));
    }
    // A panic in one statement of a connection: the next statement on it is served.
    let script = ["-At", "-c", "SELECT glaux_fault_panic()", "-c", "SELECT count(*) FROM regions"];
    let output = psql(port, None, &script).await;
    assert!(text(&output).contains("hit a bug while running"), "{}", text(&output));
    let output = psql(
        port,
        None,
        &["-At", "-v", "ON_ERROR_STOP=0", "-c", "SELECT glaux_fault_panic_planning()", "-c", "SELECT 40 + 2"],
    )
    .await;
    assert!(text(&output).contains("hit a bug while planning"), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).trim().ends_with("42"), "{}", text(&output));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_needs_the_password_when_users_are_configured() -> TestResult {
    let hash = glaux_scheduler::hash_password("s3cret")?;
    let users = glaux_scheduler::Users::parse(&format!("ana:{hash}:admin\n"))?;
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

/// A table of the types drivers must map faithfully: decimals, dates, timestamps with and
/// without a zone, arrays, and NULLs in each.
fn write_typed_table(dir: &Path) {
    let tags = ListArray::from_iter_primitive::<Int64Type, _, _>([
        Some(vec![Some(1), Some(2), Some(3)]),
        None,
        Some(vec![Some(4)]),
    ]);
    let words = {
        let mut builder = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        builder.append_value([Some("a"), Some("b")]);
        builder.append_value(Vec::<Option<&str>>::new());
        builder.append_null();
        builder.finish()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2, 3])),
        Arc::new(
            Decimal128Array::from(vec![Some(1234), Some(-5), None]).with_precision_and_scale(10, 2).expect("decimal"),
        ),
        // 2024-02-29 and 1999-12-31, as days since the epoch.
        Arc::new(Date32Array::from(vec![Some(19782), None, Some(10956)])),
        Arc::new(TimestampMicrosecondArray::from(vec![Some(1_709_214_306_789_000), Some(0), None])),
        Arc::new(TimestampMicrosecondArray::from(vec![Some(1_709_214_306_000_000), None, None]).with_timezone("UTC")),
        Arc::new(words),
        Arc::new(tags),
        Arc::new(StringArray::from(vec![Some("hi"), None, Some("o'k")])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        Arc::new(Float64Array::from(vec![Some(0.5), None, Some(1e-7)])),
        Arc::new(Int32Array::from(vec![Some(1), None, Some(-3)])),
    ];
    let names = ["id", "price", "day", "ts", "tstz", "words", "nums", "note", "flag", "ratio", "small"];
    let batch = RecordBatch::try_from_iter(names.into_iter().zip(columns)).expect("typed batch");
    write_parquet(&dir.join("typed.parquet"), &batch);
}

/// A cluster with users, the test lake and the typed table; the PostgreSQL port, and
/// single-node DataFusion over the same lake for the answers.
async fn cluster_for_drivers() -> Result<(TestCluster, u16, SessionContext), Box<dyn std::error::Error>> {
    let hash = glaux_scheduler::hash_password("s3cret")?;
    let users = glaux_scheduler::Users::parse(&format!("ana:{hash}:admin\n"))?;
    let cluster = TestCluster::builder().postgres().users(users).start().await?;
    let lake = write_lake(cluster.warehouse());
    let mut client = glaux_client::GlauxClient::connect_as(&cluster.url(), "ana", "s3cret").await?;
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        client.query(&ddl).await?;
    }
    write_typed_table(&cluster.warehouse().join("typed"));
    client
        .query(&format!("CREATE EXTERNAL TABLE typed STORED AS PARQUET LOCATION '{}/typed/'", lake.display()))
        .await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();
    Ok((cluster, port, reference_context(&lake).await))
}

/// Single-node DataFusion's answer to `sql`, as the driver programs print rows.
async fn answer(reference: &SessionContext, sql: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    Ok(driver_rows(&reference.sql(sql).await?.collect().await?))
}

/// The lines of a driver program's report that start with `kind `, without that word.
fn lines<'a>(report: &'a str, kind: &str) -> Vec<&'a str> {
    report.lines().filter_map(|line| line.strip_prefix(kind)?.strip_prefix(' ')).collect()
}

/// Runs a driver program against `port` as user `ana`; its report, after checking that it
/// succeeded and listed the lake's tables (the driver's table metadata call).
async fn driver_report(mut command: Command, port: u16, what: &str) -> String {
    let output =
        command.args([&port.to_string(), "ana", "s3cret"]).output().await.unwrap_or_else(|e| panic!("run {what}: {e}"));
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    let tables = lines(&report, "table");
    for table in ["default.regions TABLE", "default.sales TABLE", "default.typed TABLE"] {
        assert!(tables.contains(&table), "{table} missing from {tables:?}");
    }
    report
}

/// Rows as the driver programs print them: values joined by `|`.
fn driver_rows(batches: &[RecordBatch]) -> Vec<String> {
    rows_of(batches).into_iter().map(|row| row.replace(" | ", "|")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jdbc_driver_reads_metadata_types_and_prepared_statements() -> TestResult {
    let (_cluster, port, reference) = cluster_for_drivers().await?;
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/PgJdbc.java");
    let mut java = Command::new("java");
    java.arg("-Duser.timezone=UTC").args(["-cp", "/usr/share/java/postgresql.jar"]).arg(&program);
    let report = driver_report(java, port, "java (apt install default-jdk-headless libpostgresql-jdbc-java)").await;

    // DatabaseMetaData.getTables / getColumns.
    let columns = lines(&report, "column");
    for column in [
        "regions.name text 12",
        "regions.active bool -7",
        "typed.id int8 -5",
        "typed.price numeric 2",
        "typed.day date 91",
        "typed.ts timestamp 93",
        "typed.tstz timestamptz 93",
        "typed.words _text 2003",
        "typed.ratio float8 8",
        "typed.small int4 4",
    ] {
        assert!(columns.iter().any(|c| c.starts_with(column)), "{column} missing from {columns:?}");
    }

    // ResultSetMetaData types, and the values JDBC makes of them.
    let meta = lines(&report, "meta");
    for column in [
        "price numeric 2 java.math.BigDecimal",
        "day date 91 java.sql.Date",
        "ts timestamp 93 java.sql.Timestamp",
        "tstz timestamptz 93 java.sql.Timestamp",
        "words _text 2003 java.sql.Array",
        "nums _int8 2003 java.sql.Array",
        "flag bool -7 java.lang.Boolean",
        "n int8 -5 java.lang.Long",
    ] {
        assert!(meta.contains(&column), "{column} missing from {meta:?}");
    }
    let rows = lines(&report, "row");
    let expected_regions =
        answer(&reference, "SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region").await?;
    assert_eq!(rows[..3], expected_regions[..]);
    assert_eq!(
        rows[3..6],
        [
            "1|12.34|2024-02-29|2024-02-29 13:45:06.789|2024-02-29 13:45:06.0|array[a, b]|array[1, 2, 3]|hi|true|0.5|1",
            "2|-0.05|NULL|1970-01-01 00:00:00.0|NULL|array[]|NULL|NULL|false|NULL|NULL",
            "3|NULL|1999-12-31|NULL|NULL|NULL|array[4]|o'k|NULL|1.0E-7|-3",
        ]
    );

    // The PreparedStatement, run with two sets of values, and with a date.
    let mut expected = Vec::new();
    for (region, qty) in [("eu", 40), ("us", 10)] {
        let sql = format!("SELECT count(*) AS n, sum(qty) AS q FROM sales WHERE region = '{region}' AND qty > {qty}");
        expected.extend(answer(&reference, &sql).await?);
    }
    assert_eq!(rows[6..8], expected[..]);
    assert_ne!(rows[6], rows[7]);
    assert_eq!(rows[8], "1|12.34");
    // In a transaction (autocommit off); then an error with PostgreSQL's SQLSTATE, and the
    // connection still answers.
    assert_eq!(rows[9], "4");
    let errors = lines(&report, "error");
    assert!(errors.len() == 1 && errors[0].starts_with("42P01 ") && errors[0].contains("no_such_table"), "{errors:?}");
    assert_eq!(rows[10..], ["42"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psqlodbc_through_pyodbc_lists_tables_and_columns_and_runs_queries() -> TestResult {
    let (_cluster, port, reference) = cluster_for_drivers().await?;
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/pg_odbc.py");
    let mut python = Command::new("python3");
    python.arg(&program).env("TZ", "UTC");
    let report =
        driver_report(python, port, "python3 (pip install pyodbc; apt install odbc-postgresql unixodbc)").await;

    // SQLTables and SQLColumns.
    let columns = lines(&report, "column");
    for column in [
        "regions.name text",
        "regions.manager text",
        "typed.price numeric 2",
        "typed.day date 91",
        "typed.ts timestamp 93",
        "typed.tstz timestamptz 93",
        "typed.ratio float8",
        "typed.small int4 4",
    ] {
        assert!(columns.iter().any(|c| c.starts_with(column)), "{column} missing from {columns:?}");
    }

    // Results as Python values: decimals, dates, datetimes, arrays as text, NULLs.
    let meta = lines(&report, "meta");
    for column in ["price Decimal", "day date", "ts datetime", "tstz datetime", "words str", "ratio float", "n int"] {
        assert!(meta.contains(&column), "{column} missing from {meta:?}");
    }
    let rows = lines(&report, "row");
    let expected_regions =
        answer(&reference, "SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region").await?;
    assert_eq!(rows[..3], expected_regions[..]);
    assert_eq!(
        rows[3..6],
        [
            "1|12.34|2024-02-29|2024-02-29 13:45:06.789000|2024-02-29 13:45:06|{a,b}|{1,2,3}|hi|1|0.5|1",
            "2|-0.05|NULL|1970-01-01 00:00:00|NULL|{}|NULL|NULL|0|NULL|NULL",
            "3|NULL|1999-12-31|NULL|NULL|NULL|{4}|o'k|NULL|1e-07|-3",
        ]
    );
    let expected =
        answer(&reference, "SELECT count(*) AS n, sum(qty) AS q FROM sales WHERE region = 'eu' AND qty > 40").await?;
    assert_eq!(rows[6..7], expected[..]);
    assert_eq!(rows[7], "4");
    let errors = lines(&report, "error");
    assert!(errors.len() == 1 && errors[0].contains("42P01") && errors[0].contains("no_such_table"), "{errors:?}");
    assert_eq!(rows[8..], ["42"]);
    Ok(())
}

/// Reads one backend message: its type byte and body.
async fn read_message(socket: &mut tokio::net::TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let kind = socket.read_u8().await?;
    let length = socket.read_u32().await? as usize;
    let mut body = vec![0; length.saturating_sub(4)];
    socket.read_exact(&mut body).await?;
    Ok((kind, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_client_that_vanishes_mid_result_stops_its_query() -> TestResult {
    let cluster = TestCluster::builder().postgres().start().await?;
    cluster.with_lake().await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();

    // The protocol by hand: startup, then a query of 324 million rows; read a few rows, vanish.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    startup.extend_from_slice(b"user\0ana\0database\0default\0\0");
    socket.write_u32(startup.len() as u32 + 4).await?;
    socket.write_all(&startup).await?;
    while read_message(&mut socket).await?.0 != b'Z' {}
    let query = b"SELECT a.id, b.id FROM sales a CROSS JOIN sales b\0";
    socket.write_u8(b'Q').await?;
    socket.write_u32(query.len() as u32 + 4).await?;
    socket.write_all(query).await?;
    let mut data_rows = 0;
    while data_rows < 10 {
        let (kind, body) = tokio::time::timeout(Duration::from_secs(30), read_message(&mut socket)).await??;
        assert_ne!(kind, b'E', "{}", String::from_utf8_lossy(&body));
        data_rows += usize::from(kind == b'D');
    }
    assert!(cluster.executors.iter().any(|e| e.installed_tasks() > 0), "the query runs on the executors");
    drop(socket);

    // Its tasks stop and free their memory; the next client is served.
    executors_idle(&cluster, Duration::from_secs(10)).await?;
    let output = psql(port, None, &["-At", "-c", "SELECT count(*) FROM regions"]).await;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "4", "{}", text(&output));
    Ok(())
}
