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
        client.query("CREATE SCHEMA archive").await?;
        client
            .query(&format!(
                "CREATE EXTERNAL TABLE archive.old_sales STORED AS PARQUET PARTITIONED BY (region, day) LOCATION '{}/sales/'",
                lake.display()
            ))
            .await?;
        client.query("CREATE SCHEMA scratch").await?;
        client.query("DROP SCHEMA scratch").await?;
        let error = client.query("DROP SCHEMA archive").await.unwrap_err().to_string();
        assert!(error.contains("not empty"), "{error}");
        let error = client.query("CREATE EXTERNAL TABLE regions STORED AS PARQUET LOCATION '/x/'").await.unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        client.query("CREATE EXTERNAL TABLE IF NOT EXISTS regions STORED AS PARQUET LOCATION '/x/'").await?;
    }
    // A new scheduler (and executors) on the same catalog file sees everything.
    let cluster = TestCluster::builder().warehouse(warehouse.path()).catalog(&catalog).start().await?;
    let mut client = cluster.client().await;
    assert_same_as_datafusion(&mut client, &reference, "SELECT region, count(*), sum(qty) FROM sales GROUP BY region").await;
    let output = client.query("SELECT count(*) FROM archive.old_sales WHERE region = 'eu'").await?;
    assert_eq!(rows_of(&output.batches), vec!["6000"]);
    let output = client.query("SELECT count(*) FROM \"archive\".\"old_sales\"").await?;
    assert_eq!(rows_of(&output.batches), vec!["18000"]);
    let output = client.query("SHOW TABLES").await?;
    let tables = rows_of(&output.batches).join("\n");
    assert!(tables.contains("archive | old_sales") && tables.contains("default | regions"), "{tables}");
    assert!(!tables.contains("scratch"), "{tables}");
    client.query("DROP TABLE archive.old_sales").await?;
    client.query("DROP SCHEMA archive").await?;
    let error = client.query("SELECT * FROM archive.old_sales").await.unwrap_err().to_string();
    assert!(error.contains("old_sales"), "{error}");
    Ok(())
}
