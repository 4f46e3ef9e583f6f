//! The catalog: databases and tables survive a scheduler restart, and DDL keeps it consistent.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_survives_a_restart() -> TestResult {
    let warehouse = tempfile::tempdir()?;
    let catalog = warehouse.path().join(".glaux/catalog.sqlite");
    let lake = write_lake(warehouse.path());
    let reference = reference_context(&lake).await;
    {
        let cluster = TestCluster::builder().warehouse(warehouse.path()).catalog(&catalog).start().await?;
        let mut client = cluster.client().await;
        for ddl in lake_ddl(&format!("{}/", lake.display())) {
            client.query(&ddl).await?;
        }
        client.query("CREATE DATABASE archive").await?;
        client
            .query(&format!(
                "CREATE EXTERNAL TABLE archive.old_sales STORED AS PARQUET PARTITIONED BY (region, day) LOCATION '{}/sales/'",
                lake.display()
            ))
            .await?;
        client.query("CREATE DATABASE IF NOT EXISTS scratch").await?;
        client.query("CREATE DATABASE IF NOT EXISTS scratch").await?;
        client.query("DROP DATABASE scratch").await?;
        let error = client.query("CREATE DATABASE x LOCATION 's3://b/x/'").await.unwrap_err().to_string();
        assert!(error.contains("LOCATION is not supported"), "{error}");
        let error = client.query("DROP DATABASE archive").await.unwrap_err().to_string();
        assert!(error.contains("not empty"), "{error}");
        let error = client.query("CREATE EXTERNAL TABLE regions STORED AS PARQUET LOCATION '/x/'").await.unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        client.query("CREATE EXTERNAL TABLE IF NOT EXISTS regions STORED AS PARQUET LOCATION '/x/'").await?;
    }
    // A new scheduler (and executors) on the same catalog file sees everything.
    let cluster = TestCluster::builder().warehouse(warehouse.path()).catalog(&catalog).start().await?;
    let mut client = cluster.client().await;
    assert_same_as_datafusion(&mut client, &reference, "SELECT region, count(*), sum(qty) FROM sales GROUP BY region")
        .await;
    let output = client.query("SELECT count(*) FROM archive.old_sales WHERE region = 'eu'").await?;
    assert_eq!(rows_of(&output.batches), vec!["6000"]);
    let output = client.query("SELECT count(*) FROM \"archive\".\"old_sales\"").await?;
    assert_eq!(rows_of(&output.batches), vec!["18000"]);
    let show = |rows: glaux_client::QueryOutput| rows_of(&rows.batches);
    assert_eq!(show(client.query("SHOW DATABASES").await?), vec!["archive", "default"]);
    assert_eq!(show(client.query("SHOW SCHEMAS LIKE 'arch*'").await?), vec!["archive"]);
    assert_eq!(show(client.query("SHOW TABLES").await?), vec!["regions", "sales"]);
    assert_eq!(show(client.query("SHOW TABLES IN archive").await?), vec!["old_sales"]);
    assert_eq!(show(client.query("SHOW TABLES 'reg*|x*'").await?), vec!["regions"]);

    let describe = show(client.query("DESCRIBE archive.old_sales").await?);
    assert_eq!(describe.len(), 7, "{describe:?}");
    assert!(describe[0].starts_with("id | Int64"), "{describe:?}");
    assert!(describe[6].starts_with("day | Utf8"), "{describe:?}");
    assert_eq!(
        show(client.query("SHOW COLUMNS FROM sales").await?),
        vec!["id", "item", "qty", "amount", "ts", "region", "day"]
    );
    assert_eq!(show(client.query("SHOW COLUMNS IN old_sales FROM archive").await?).len(), 7);
    client.query("DROP TABLE IF EXISTS no_such_table").await?;
    let error = client.query("DROP TABLE no_such_table").await.unwrap_err().to_string();
    assert!(error.contains("no_such_table"), "{error}");

    let partitions = show(client.query("SHOW PARTITIONS sales").await?);
    assert_eq!(partitions.len(), REGIONS.len() * DAYS.len());
    assert_eq!(partitions[0], "region=apac/day=2024-01-01");
    let error = client.query("SHOW PARTITIONS regions").await.unwrap_err().to_string();
    assert!(error.contains("not partitioned"), "{error}");

    // SHOW CREATE TABLE gives DDL that recreates the table.
    let ddl = show(client.query("SHOW CREATE TABLE archive.old_sales").await?).join("\n");
    assert!(ddl.starts_with("CREATE EXTERNAL TABLE archive.old_sales"), "{ddl}");
    assert!(ddl.contains("PARTITIONED BY (region, day)"), "{ddl}");
    client.query("DROP TABLE archive.old_sales").await?;
    client.query(&ddl).await?;
    let output = client.query("SELECT count(*) FROM archive.old_sales WHERE day = '2024-01-03'").await?;
    assert_eq!(rows_of(&output.batches), vec!["6000"]);

    // Quoted partition keys name the same directories as bare ones.
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE quoted (\"id\" BIGINT, \"region\" VARCHAR, \"day\" VARCHAR) STORED AS PARQUET \
             PARTITIONED BY (\"region\", \"day\") LOCATION '{}/sales/'",
            lake.display()
        ))
        .await?;
    let output = client.query("SELECT count(*) FROM quoted WHERE region = 'us'").await?;
    assert_eq!(rows_of(&output.batches), vec!["6000"]);

    client.query("DROP DATABASE archive CASCADE").await?;
    let error = client.query("SELECT * FROM archive.old_sales").await.unwrap_err().to_string();
    assert!(error.contains("old_sales"), "{error}");
    Ok(())
}
