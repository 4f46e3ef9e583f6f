//! Partitions: discovered by `MSCK REPAIR TABLE`, added and dropped by `ALTER TABLE`, or projected
//! from table properties; chosen from a query's predicates before anything is listed.

use std::time::Duration;

use glaux_client::GlauxClient;

use crate::harness::*;

fn json_lines(rows: impl IntoIterator<Item = (i64, &'static str)>) -> String {
    rows.into_iter().map(|(n, s)| format!("{{\"n\": {n}, \"s\": \"{s}\"}}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn msck_add_and_drop_partitions_on_a_multi_level_layout() -> TestResult {
    // A cluster that lists on every query (the default keeps listings for seconds: see below).
    let cluster = TestCluster::builder().listing_cache_ttl(Duration::ZERO).start().await?;
    let lake = cluster.warehouse().to_path_buf();
    let mut client = cluster.client().await;
    // Keys written in another case than declared, integer values, and two things MSCK must pass
    // over: a value that is not an integer and a directory that is not a partition.
    let logs = lake.join("logs");
    let mut n = 0;
    for (month, days) in [(5, [30, 31]), (6, [1, 2])] {
        for day in days {
            let dir = logs.join(format!("Year=2023/Month={month}/Day={day}"));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("part-0.json"), json_lines((0..10).map(|i| (n + i, "a"))))?;
            n += 10;
        }
    }
    for bad in ["Year=20x3/Month=1/Day=1", "_temporary/0/Day=1"] {
        std::fs::create_dir_all(logs.join(bad))?;
        std::fs::write(logs.join(bad).join("part-0.json"), json_lines([(999, "bad")]))?;
    }
    let create_logs = format!(
        "CREATE EXTERNAL TABLE logs (n bigint, s string) PARTITIONED BY (year int, month int, day int)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/'",
        logs.display()
    );
    client.query(&create_logs).await?;
    // CREATE registered the valid partitions; take them away to see MSCK find them.
    client
        .query(
            "ALTER TABLE logs DROP PARTITION (year = 2023, month = 5, day = 30), PARTITION (year = 2023, month = 5, day = 31),
             PARTITION (year = 2023, month = 6, day = 1), PARTITION (year = 2023, month = 6, day = 2)",
        )
        .await?;
    assert_eq!(client.query("SHOW PARTITIONS logs").await?.rows(), 0);
    let repair = rows_of(&client.query("MSCK REPAIR TABLE logs").await?.batches);
    assert_eq!(repair.iter().filter(|l| l.starts_with("Repair: Added partition")).count(), 4, "{repair:?}");
    assert!(repair.iter().any(|l| l.contains("Year=20x3") && l.contains("is not a Int32")), "{repair:?}");
    assert!(repair.iter().any(|l| l.contains("_temporary") && l.contains("expected year=")), "{repair:?}");
    assert_eq!(
        rows_of(&client.query("SHOW PARTITIONS logs").await?.batches),
        vec![
            "year=2023/month=5/day=30",
            "year=2023/month=5/day=31",
            "year=2023/month=6/day=1",
            "year=2023/month=6/day=2"
        ]
    );

    // Predicates on typed partition columns: ranges, OR, IN, casts and functions.
    for (predicate, rows, partitions) in [
        ("year = 2023 AND month = 6", 20, 2),
        ("month = 5 AND day BETWEEN 31 AND 40", 10, 1),
        ("(month = 5 AND day = 30) OR day = 2", 20, 2),
        ("day IN (1, 30, 99)", 20, 2),
        ("CAST(day AS VARCHAR) = '31'", 10, 1),
        ("make_date(year, month, day) >= DATE '2023-05-31'", 30, 3),
        ("month = 7", 0, 0),
    ] {
        let output = client.query(&format!("SELECT count(*), count(DISTINCT n) FROM logs WHERE {predicate}")).await?;
        assert_eq!(rows_of(&output.batches), vec![format!("{rows} | {rows}")], "{predicate}");
        let stats = output.stats.expect("stats");
        assert_eq!((stats.partitions_read, stats.partitions_total), (partitions, 4), "{predicate}");
    }
    // Files written into a registered partition, or into an unpartitioned table, are read by
    // the next query: this cluster keeps no listings.
    std::fs::write(logs.join("Year=2023/Month=6/Day=2/part-1.json"), json_lines([(100, "late")]))?;
    let output = client.query("SELECT count(*) FROM logs WHERE day = 2").await?;
    assert_eq!(rows_of(&output.batches), vec!["11"]);
    let flat = lake.join("flat");
    std::fs::create_dir_all(&flat)?;
    std::fs::write(flat.join("a.json"), json_lines([(1, "a")]))?;
    client
        .query(&format!("CREATE EXTERNAL TABLE flat (n bigint, s string) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/'", flat.display()))
        .await?;
    assert_eq!(rows_of(&client.query("SELECT count(*) FROM flat").await?.batches), vec!["1"]);
    std::fs::write(flat.join("b.json"), json_lines([(2, "b")]))?;
    assert_eq!(rows_of(&client.query("SELECT count(*) FROM flat").await?.batches), vec!["2"]);

    let explain = rows_of(&client.query("EXPLAIN SELECT * FROM logs WHERE month = 6").await?.batches).join("\n");
    assert!(explain.contains("Scan default.logs: partitions 2 of 4 (catalog), files 3"), "{explain}");

    // A partition anywhere, here a non-Hive `2022/12/31/` path, added with its location.
    let archive = lake.join("archive/2022/12/31");
    std::fs::create_dir_all(&archive)?;
    std::fs::write(archive.join("old.json"), json_lines([(-1, "old"), (-2, "old")]))?;
    let add = format!(
        "ALTER TABLE logs ADD PARTITION (year = 2022, month = 12, day = 31) LOCATION '{}/archive/2022/12/31/'",
        lake.display()
    );
    client.query(&add).await?;
    let error = client.query(&add).await.unwrap_err().to_string();
    assert!(error.contains("already exists"), "{error}");
    client.query(&add.replace("ADD PARTITION", "ADD IF NOT EXISTS PARTITION")).await?;
    let output = client.query("SELECT sum(n), min(s) FROM logs WHERE year = 2022").await?;
    assert_eq!(rows_of(&output.batches), vec!["-3 | old"]);
    // The default location of an added partition is its Hive directory under the table.
    client.query("ALTER TABLE logs ADD PARTITION (year = 2023, month = 5, day = 29)").await?;
    assert!(
        rows_of(&client.query("SHOW PARTITIONS logs").await?.batches).contains(&"year=2023/month=5/day=29".to_string())
    );
    assert_eq!(rows_of(&client.query("SELECT count(*) FROM logs WHERE day = 29").await?.batches), vec!["0"]);

    for (bad, expected) in [
        ("ALTER TABLE logs ADD PARTITION (year = 2022, month = 1)", "no value for partition key day"),
        ("ALTER TABLE logs ADD PARTITION (year = 2022, month = 1, day = 1, hour = 3)", "hour is not a partition key"),
        ("ALTER TABLE logs ADD PARTITION (year = 'soon', month = 1, day = 1)", "\"soon\" of year is not a Int32"),
        (
            "ALTER TABLE logs ADD PARTITION (year = 1, month = 1, day = 1) LOCATION 'file:///etc/'",
            "outside the configured warehouse roots",
        ),
        ("ALTER TABLE nowhere ADD PARTITION (year = 1)", "table default.nowhere not found"),
        ("MSCK REPAIR TABLE nowhere", "table default.nowhere not found"),
    ] {
        let error = client.query(bad).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{bad}: {error}");
    }

    client.query("ALTER TABLE logs DROP PARTITION (year = 2022, month = 12, day = 31), PARTITION (year=2023, month=5, day=29)").await?;
    assert_eq!(rows_of(&client.query("SELECT count(*) FROM logs WHERE year = 2022").await?.batches), vec!["0"]);
    let error = client.query("ALTER TABLE logs DROP PARTITION (year = 2022, month = 12, day = 31)").await.unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
    client.query("ALTER TABLE logs DROP IF EXISTS PARTITION (year = 2022, month = 12, day = 31)").await?;
    assert!(archive.join("old.json").exists(), "dropping a partition leaves its files alone");
    assert_eq!(client.query("SHOW PARTITIONS logs").await?.rows(), 4);

    // Dropping the table forgets its partitions; re-created, it registers the layout's again.
    client.query("DROP TABLE logs").await?;
    client.query(&create_logs).await?;
    assert_eq!(client.query("SHOW PARTITIONS logs").await?.rows(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projection_plans_an_hourly_layout_without_listing_it() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let lake = cluster.warehouse().to_path_buf();
    let mut client = cluster.client().await;
    // Firehose's layout: YYYY/MM/DD/HH/, gzip-less JSON for brevity; four hours of data.
    for (hour, n) in [(12, 5), (13, 10), (14, 20), (15, 40)] {
        let dir = lake.join(format!("firehose/2023/06/18/{hour:02}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join(format!("stream-1-2023-06-18-{hour}-00-00-abcd")),
            json_lines((0..n).map(|i| (i, "x"))),
        )?;
    }
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE firehose (n bigint, s string) PARTITIONED BY (dt string)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
             LOCATION '{lake}/firehose/'
             TBLPROPERTIES (
               'projection.enabled' = 'true',
               'projection.dt.type' = 'date',
               'projection.dt.format' = 'yyyy/MM/dd/HH',
               'projection.dt.range' = '2015/01/01/00,NOW',
               'projection.dt.interval' = '1',
               'projection.dt.interval.unit' = 'HOURS',
               'storage.location.template' = '{lake}/firehose/${{dt}}/')",
            lake = lake.display()
        ))
        .await?;
    let output = client
        .query("SELECT dt, count(*) FROM firehose WHERE dt >= '2023/06/18/13' AND dt < '2023/06/18/15' GROUP BY dt ORDER BY dt")
        .await?;
    assert_eq!(rows_of(&output.batches), vec!["2023/06/18/13 | 10", "2023/06/18/14 | 20"]);
    let stats = output.stats.expect("stats");
    assert_eq!(stats.partitions_read, 2);
    assert!(stats.partitions_total > 80_000, "every hour since 2015 is a partition: {stats:?}");

    // Hours with no data are simply empty; equality and IN pick exact hours.
    let output = client
        .query("SELECT count(*) FROM firehose WHERE dt IN ('2023/06/18/12', '2023/06/18/15', '2023/06/18/16')")
        .await?;
    assert_eq!(rows_of(&output.batches), vec!["45"]);
    let explain =
        rows_of(&client.query("EXPLAIN SELECT * FROM firehose WHERE dt = '2023/06/18/15'").await?.batches).join("\n");
    assert!(explain.contains("partitions 1 of") && explain.contains("(projected), files 1"), "{explain}");

    let error = client.query("SHOW PARTITIONS firehose").await.unwrap_err().to_string();
    assert!(error.contains("projection"), "{error}");
    let error = client
        .query(&format!(
            "CREATE EXTERNAL TABLE sneaky (n bigint) PARTITIONED BY (dt string)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/firehose/'
             TBLPROPERTIES ('projection.enabled' = 'true', 'projection.dt.type' = 'enum', 'projection.dt.values' = 'a',
                            'storage.location.template' = 'file:///etc/${{dt}}/')",
            lake.display()
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("outside the configured warehouse roots"), "{error}");
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE broken (n bigint) PARTITIONED BY (dt string)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/firehose/'
             TBLPROPERTIES ('projection.enabled' = 'true', 'projection.dt.type' = 'date', 'projection.dt.format' = 'yyyy-ww')",
            lake.display()
        ))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
        .expect_err("a projection that cannot work is refused when the table is created")
        .contains("weeks and weekdays are not supported")
        .then_some(())
        .ok_or("unclear projection error")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn use_chooses_the_database_of_unqualified_names() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    client.query("CREATE DATABASE web").await?;
    // Nested JSON objects are structs, read field by field.
    let clicks = lake.join("clicks");
    std::fs::create_dir_all(&clicks)?;
    std::fs::write(
        clicks.join("clicks.json"),
        "{\"actor\": {\"id\": 7, \"geo\": {\"country\": \"NZ\"}}, \"url\": \"/a\"}\n\
         {\"actor\": {\"id\": 8, \"geo\": {\"country\": \"FR\"}}, \"url\": \"/b\"}\n",
    )?;
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE web.clicks (actor struct<id:int, geo:struct<country:string>>, url string)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/'",
            clicks.display()
        ))
        .await?;

    let used = client.query("USE web").await?;
    assert_eq!(rows_of(&used.batches), vec!["web"]);
    assert_eq!(client.database(), "web");
    assert_eq!(rows_of(&client.query("SHOW TABLES").await?.batches), vec!["clicks"]);
    let output =
        client.query("SELECT actor.id, actor.geo.country, url FROM clicks WHERE actor.geo.country = 'NZ'").await?;
    assert_eq!(rows_of(&output.batches), vec!["7 | NZ | /a"]);
    // Qualified names still reach other databases; a new client starts in `default`.
    assert_eq!(rows_of(&client.query("SELECT count(*) FROM default.regions").await?.batches), vec!["4"]);
    let mut other = cluster.client().await;
    assert_eq!(rows_of(&other.query("SELECT count(*) FROM regions").await?.batches), vec!["4"]);
    let error = client.query("SELECT count(*) FROM regions").await.unwrap_err().to_string();
    assert!(error.contains("regions"), "{error}");
    let error = client.query("USE nowhere").await.unwrap_err().to_string();
    assert!(error.contains("database nowhere does not exist"), "{error}");
    assert_eq!(client.database(), "web");
    client.query("USE \"default\"").await?;
    assert_eq!(rows_of(&client.query("SELECT count(*) FROM regions").await?.batches), vec!["4"]);
    Ok(())
}

async fn count(client: &mut GlauxClient, table: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    Ok(rows_of(&client.query(&format!("SELECT count(*) FROM {table}")).await?.batches))
}

/// Listings are kept for the scheduler's TTL: a file another program writes into a listed prefix
/// shows up when the listing expires, or at once after a statement that changes the catalog;
/// with a TTL of zero every query lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_are_kept_for_their_ttl_and_forgotten_by_catalog_changes() -> TestResult {
    let cached = TestCluster::builder().executors(1).listing_cache_ttl(Duration::from_secs(3600)).start().await?;
    let listing = TestCluster::builder()
        .executors(1)
        .listing_cache_ttl(Duration::ZERO)
        .warehouse(cached.warehouse())
        .start()
        .await?;
    let logs = cached.warehouse().join("logs");
    let day = logs.join("day=1");
    std::fs::create_dir_all(&day)?;
    std::fs::write(day.join("part-0.json"), json_lines((0..10).map(|i| (i, "a"))))?;
    let flat = cached.warehouse().join("flat");
    std::fs::create_dir_all(&flat)?;
    std::fs::write(flat.join("part-0.json"), json_lines((0..10).map(|i| (i, "a"))))?;
    let (mut a, mut b) = (cached.client().await, listing.client().await);
    for client in [&mut a, &mut b] {
        client
            .query(&format!(
                "CREATE EXTERNAL TABLE logs (n bigint, s string) PARTITIONED BY (day int) \
                 ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/'",
                logs.display()
            ))
            .await?;
        client
            .query(&format!(
                "CREATE EXTERNAL TABLE flat (n bigint, s string) \
                 ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION '{}/'",
                flat.display()
            ))
            .await?;
    }
    for table in ["logs", "flat"] {
        assert_eq!(count(&mut a, table).await?, ["10"]);
    }

    // Another program adds a file to each table.
    std::fs::write(day.join("part-1.json"), json_lines((10..15).map(|i| (i, "b"))))?;
    std::fs::write(flat.join("part-1.json"), json_lines((10..15).map(|i| (i, "b"))))?;
    for table in ["logs", "flat"] {
        assert_eq!(count(&mut a, table).await?, ["10"], "{table}: the kept listing answers");
        assert_eq!(count(&mut b, table).await?, ["15"], "{table}: without a cache every query lists");
    }

    // A statement that changes the catalog forgets every listing.
    a.query("ALTER TABLE logs ADD IF NOT EXISTS PARTITION (day = 1)").await?;
    for table in ["logs", "flat"] {
        assert_eq!(count(&mut a, table).await?, ["15"], "{table}: listed afresh");
    }
    Ok(())
}
