//! Authorization: roles and grants, checked on every statement on both doors (Flight SQL through
//! Glaux's client, PostgreSQL through psql), column grants, metadata that shows only what a user
//! may see, location grants, grant options and prepared statements that belong to their creator.

use glaux_client::GlauxClient;

use crate::harness::*;

const PASSWORD: &str = "pw";

async fn as_user(cluster: &TestCluster, user: &str) -> GlauxClient {
    GlauxClient::connect_as(&cluster.url(), user, PASSWORD).await.expect("log in")
}

async fn denied(client: &mut GlauxClient, sql: &str, naming: &str) {
    let error = match client.query(sql).await {
        Ok(output) => panic!("{sql} should be denied, returned {:?}", rows_of(&output.batches)),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("Access Denied") && error.contains(naming), "{sql}: {error}");
}

/// psql as `user`, printing SQLSTATEs (`VERBOSITY=verbose`).
async fn psql_as(port: u16, user: &str, sql: &str) -> (bool, String) {
    let output = tokio::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", "default", "-X", "-qAt"])
        .args(["-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .expect("run psql");
    (output.status.success(), crate::postgres::text(&output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_decide_what_each_user_may_read_change_and_see_on_both_doors() -> TestResult {
    let hash = glaux_scheduler::hash_password(PASSWORD)?;
    let users = glaux_scheduler::Users::parse(&format!("root:{hash}:admin\nana:{hash}\nbob:{hash}\n"))?;
    let cluster = TestCluster::builder().executors(1).users(users).postgres().start().await?;
    let port = cluster.scheduler.postgres_addr().ok_or("no PostgreSQL port")?.port();
    let mut root = as_user(&cluster, "root").await;
    let lake = write_lake(cluster.warehouse());
    for ddl in lake_ddl(&format!("{}/", lake.display())) {
        root.query(&ddl).await?;
    }
    root.query("CREATE DATABASE finance").await?;
    let mut ana = as_user(&cluster, "ana").await;
    let mut bob = as_user(&cluster, "bob").await;

    // Nothing granted: no reads, and nothing to see, on either door.
    denied(&mut ana, "SELECT count(*) FROM sales", "ana has no SELECT privilege on table default.sales").await;
    let (ok, said) = psql_as(port, "ana", "SELECT count(*) FROM sales").await;
    assert!(!ok && said.contains("42501") && said.contains("table default.sales"), "{said}");
    assert!(rows_of(&ana.query("SHOW TABLES").await?.batches).is_empty());
    assert!(!rows_of(&ana.query("SHOW DATABASES").await?.batches).iter().any(|d| d == "finance"));
    assert!(ana.tables().await?.iter().all(|t| t[1] == "pg_catalog" || t[1] == "information_schema"));
    let (_, said) = psql_as(port, "ana", "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'sales'").await;
    assert_eq!(said.trim(), "0", "pg_catalog shows ana nothing");

    // A table grant: ana reads it, through both doors, and sees it in the metadata.
    root.query("GRANT SELECT ON TABLE sales TO USER ana").await?;
    assert_eq!(rows_of(&ana.query("SELECT count(*) FROM sales").await?.batches), vec!["18000"]);
    let (ok, said) = psql_as(port, "ana", "SELECT count(*) FROM sales WHERE region = 'eu'").await;
    assert!(ok && said.trim() == "6000", "{said}");
    assert_eq!(rows_of(&ana.query("SHOW TABLES").await?.batches), vec!["sales"]);
    let (_, said) =
        psql_as(port, "ana", "SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'r' ORDER BY 1").await;
    assert!(said.lines().any(|l| l == "sales") && !said.lines().any(|l| l == "regions"), "{said}");
    denied(&mut ana, "SELECT * FROM regions", "table default.regions").await;

    // Column grants: bob sees the granted columns only; SELECT * returns them; another column
    // is a permission error naming it.
    root.query("GRANT SELECT (id, qty) ON TABLE sales TO USER bob").await?;
    let output = bob.query("SELECT * FROM sales ORDER BY id LIMIT 1").await?;
    let columns: Vec<String> = output.batches[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(columns, vec!["id", "qty"]);
    denied(&mut bob, "SELECT sum(amount) FROM sales", "column amount of table default.sales").await;
    let described = rows_of(
        &bob.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'sales' ORDER BY 1")
            .await?
            .batches,
    );
    assert_eq!(described, vec!["id", "qty"]);
    let (ok, said) = psql_as(port, "bob", "SELECT amount FROM sales LIMIT 1").await;
    assert!(!ok && said.contains("42501") && said.contains("column amount"), "{said}");
    assert_eq!(rows_of(&bob.query("SHOW COLUMNS FROM sales").await?.batches), vec!["id", "qty"]);
    let (_, said) = psql_as(
        port,
        "bob",
        "SELECT attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c \
         ON a.attrelid = c.oid WHERE c.relname = 'sales' AND a.attnum > 0 ORDER BY attnum",
    )
    .await;
    assert_eq!(said.lines().collect::<Vec<_>>(), vec!["id", "qty"], "pg_attribute shows bob his columns only");

    // DDL needs its privileges: DROP, CREATE on the database and a location grant.
    denied(&mut ana, "DROP TABLE sales", "DROP privilege on table default.sales").await;
    let location = format!("{}/regions/", lake.display());
    let create = format!("CREATE EXTERNAL TABLE ana_regions STORED AS PARQUET LOCATION '{location}'");
    denied(&mut ana, &create, "CREATE privilege on database default").await;
    root.query("GRANT CREATE ON DATABASE default TO USER ana").await?;
    denied(&mut ana, &create, "LOCATION privilege on location").await;
    root.query(&format!("GRANT LOCATION '{}/' TO USER ana", lake.display())).await?;
    ana.query(&create).await?;
    denied(&mut ana, "MSCK REPAIR TABLE sales", "ALTER privilege on table default.sales").await;
    denied(&mut ana, "CREATE DATABASE mine", "only an admin").await;

    // Roles: a database grant to a role reaches its members.
    denied(&mut bob, "CREATE ROLE analysts", "only an admin").await;
    root.query("CREATE ROLE analysts").await?;
    root.query("GRANT SELECT ON DATABASE default TO ROLE analysts").await?;
    root.query("GRANT analysts TO USER bob").await?;
    let output = bob.query("SELECT count(*), count(amount) FROM sales JOIN regions ON region = name").await?;
    assert_eq!(rows_of(&output.batches).len(), 1);
    assert_eq!(rows_of(&bob.query("SHOW CURRENT ROLES").await?.batches), vec!["analysts"]);
    assert_eq!(rows_of(&root.query("SHOW ROLES").await?.batches), vec!["analysts"]);
    let grants = rows_of(&bob.query("SHOW GRANTS FOR USER bob").await?.batches);
    assert_eq!(grants.len(), 2, "bob's two column grants: {grants:?}");
    denied(&mut ana, "SHOW GRANTS FOR USER bob", "only an admin").await;

    // WITH GRANT OPTION: ana may pass SELECT on sales on, and nothing else.
    root.query("GRANT SELECT ON TABLE sales TO USER ana WITH GRANT OPTION").await?;
    root.query("REVOKE analysts FROM USER bob").await?;
    denied(&mut ana, "GRANT DROP ON TABLE sales TO USER bob", "may not grant DROP").await;
    ana.query("GRANT SELECT ON TABLE sales TO USER bob").await?;
    assert_eq!(rows_of(&bob.query("SELECT count(amount) FROM sales").await?.batches).len(), 1);
    denied(&mut bob, "SELECT * FROM regions", "table default.regions").await;

    // Prepared statements belong to their creator.
    ana.query("PREPARE mine FROM SELECT count(*) FROM sales WHERE qty > ?").await?;
    assert_eq!(rows_of(&ana.query("EXECUTE mine USING 100").await?.batches), vec!["0"]);
    denied(&mut bob, "EXECUTE mine USING 1", "belongs to another user").await;
    denied(&mut bob, "PREPARE mine FROM SELECT 1", "belongs to another user").await;
    denied(&mut bob, "DEALLOCATE PREPARE mine", "belongs to another user").await;

    // The same rules on the PostgreSQL door (SQLSTATE 42501 for each refusal).
    for (user, sql, naming) in [
        ("ana", "DROP TABLE sales", "DROP privilege on table default.sales"),
        ("ana", "MSCK REPAIR TABLE sales", "ALTER privilege on table default.sales"),
        ("ana", "CREATE DATABASE mine", "only an admin"),
        ("bob", "CREATE ROLE auditors", "only an admin"),
        ("ana", "GRANT DROP ON TABLE sales TO USER bob", "may not grant DROP"),
        ("bob", "SELECT * FROM regions", "table default.regions"),
        ("bob", "EXECUTE mine USING 1", "belongs to another user"),
        ("bob", "DEALLOCATE PREPARE mine", "belongs to another user"),
        ("ana", "SHOW GRANTS FOR USER bob", "only an admin"),
    ] {
        let (ok, said) = psql_as(port, user, sql).await;
        assert!(!ok && said.contains("42501") && said.contains(naming), "{user}: {sql}: {said}");
    }
    let (ok, said) = psql_as(port, "ana", "GRANT SELECT ON TABLE sales TO USER bob").await;
    assert!(ok, "a grant option works on this door too: {said}");

    // Revoked, it is gone at once, even for a statement planned before the revoke: `DoGet` does
    // not run what `GetFlightInfo` planned (and authorized) once grants changed.
    let planned = ana.submit("SELECT count(*) FROM sales").await?;
    assert_eq!(rows_of(&ana.collect(&planned).await?.batches), vec!["18000"], "a kept plan runs");
    let planned = ana.submit("SELECT count(*) FROM sales").await?;
    root.query("REVOKE SELECT ON TABLE sales FROM USER ana").await?;
    let error = ana.collect(&planned).await.expect_err("planned before the revoke, run after it");
    assert!(error.to_string().contains("table default.sales"), "{error}");
    denied(&mut ana, "SELECT count(*) FROM sales", "table default.sales").await;
    Ok(())
}
