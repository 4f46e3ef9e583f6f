//! Athena (Hive) DDL as users paste it: JSON and CSV SerDes, files without extensions, Parquet.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn athena_ddl_reads_json_csv_and_parquet_tables() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;

    // Firehose-style JSON: one object per line, no file extension, Hive partitions.
    let mut expected = Vec::new();
    for (name, events) in [("signup", 40), ("visit", 160)] {
        let mut lines = String::new();
        let mut total = 0;
        for i in 0..events {
            total += i;
            lines.push_str(&format!(
                r#"{{"tstamp": "2023-06-18 14:{:02}:52.000000", "payload": "{{\"session_id\": \"s{i}\"}}", "n": {i}}}"#,
                i % 60
            ));
            lines.push('\n');
        }
        let dir = lake.join(format!("events_json/name={name}/d=2023-06-18"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("events-1-2023-06-18-14-27-52-0a1b"), lines)?;
        expected.push(format!("{name} | {events} | {total}"));
    }
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE events_json (tstamp timestamp, payload string, n int)
             PARTITIONED BY (name string, d string)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
             WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
             LOCATION '{}/events_json/'",
            lake.display()
        ))
        .await?;
    // CREATE registered the partitions there were; MSCK REPAIR TABLE finds the ones that came later.
    assert_eq!(client.query("SHOW PARTITIONS events_json").await?.rows(), 2);
    let late = lake.join("events_json/name=visit/d=2023-06-19");
    std::fs::create_dir_all(&late)?;
    std::fs::write(
        late.join("events-2"),
        "{\"tstamp\": \"2023-06-19 00:00:01.000000\", \"payload\": \"{}\", \"n\": 0}\n",
    )?;
    let output = client.query("SELECT count(*) FROM events_json WHERE d = '2023-06-19'").await?;
    assert_eq!(rows_of(&output.batches), vec!["0"], "not registered yet");
    let repair = client.query("MSCK REPAIR TABLE events_json").await?;
    assert_eq!(
        rows_of(&repair.batches),
        vec!["Repair: Added partition to metastore events_json:name=visit/d=2023-06-19"]
    );
    assert_eq!(client.query("MSCK REPAIR TABLE events_json").await?.rows(), 0, "nothing new the second time");
    let output = client.query("SELECT count(*) FROM events_json WHERE d = '2023-06-19'").await?;
    assert_eq!(rows_of(&output.batches), vec!["1"]);
    std::fs::remove_dir_all(&late)?;
    client.query("ALTER TABLE events_json DROP PARTITION (name = 'visit', d = '2023-06-19')").await?;
    let output = client.query("SELECT name, count(*), sum(n) FROM events_json GROUP BY name ORDER BY name").await?;
    assert_eq!(rows_of(&output.batches), expected);
    let output = client
        .query("SELECT count(*) FROM events_json WHERE name = 'signup' AND tstamp < TIMESTAMP '2023-06-18 14:10:00'")
        .await?;
    assert_eq!(rows_of(&output.batches), vec!["10"]);

    // A JSON table reads every file under its location, unless `glaux.file_extension` narrows it:
    // the notes beside the data are not JSON.
    let mixed = lake.join("mixed_json");
    std::fs::create_dir_all(&mixed)?;
    std::fs::write(mixed.join("events.json"), "{\"n\": 1}\n{\"n\": 2}\n")?;
    std::fs::write(mixed.join("notes.txt"), "written by hand, not JSON\n")?;
    let ddl = |name: &str, properties: &str| {
        format!(
            "CREATE EXTERNAL TABLE {name} (n int) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' \
             LOCATION '{}/mixed_json/' {properties}",
            lake.display()
        )
    };
    client.query(&ddl("narrowed", "TBLPROPERTIES ('glaux.file_extension' = '.json')")).await?;
    let output = client.query("SELECT count(*), sum(n) FROM narrowed").await?;
    assert_eq!(rows_of(&output.batches), vec!["2 | 3"]);
    client.query(&ddl("everything", "")).await?;
    assert!(client.query("SELECT sum(n) FROM everything").await.is_err(), "the notes are read as JSON");

    // CSV with a header through OpenCSVSerde, and tab-separated text through LazySimpleSerDe.
    let csv = lake.join("prices_csv");
    std::fs::create_dir_all(&csv)?;
    std::fs::write(csv.join("prices"), "item,price\napple,1.5\npear,2.25\n")?;
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE prices (item string, price double)
             ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'
             LOCATION '{}/prices_csv/' TBLPROPERTIES ('skip.header.line.count' = '1')",
            lake.display()
        ))
        .await?;
    let tsv = lake.join("stock_tsv");
    std::fs::create_dir_all(&tsv)?;
    std::fs::write(tsv.join("stock.txt"), "apple\t10\npear\t3\n")?;
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE stock (item string, units bigint)
             ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\t' STORED AS TEXTFILE LOCATION '{}/stock_tsv/'",
            lake.display()
        ))
        .await?;
    let output = client
        .query("SELECT p.item, p.price * s.units FROM prices p JOIN stock s ON p.item = s.item ORDER BY 1")
        .await?;
    assert_eq!(rows_of(&output.batches), vec!["apple | 15.0", "pear | 6.75"]);

    // Parquet declared the Athena way reads like the DataFusion-declared table.
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS default.sales_hive (
               `id` bigint, item string, qty int, amount double, ts timestamp)
             PARTITIONED BY (region string, day string)
             ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
             STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat'
               OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat'
             LOCATION '{}/sales/'
             TBLPROPERTIES ('classification' = 'parquet')",
            lake.display()
        ))
        .await?;
    client.query("MSCK REPAIR TABLE sales_hive").await?;
    let hive = client.query("SELECT region, count(*), sum(qty) FROM sales_hive WHERE day > '2024-01-01' GROUP BY region ORDER BY region").await?;
    let native = assert_same_as_datafusion(
        &mut client,
        &reference,
        "SELECT region, count(*), sum(qty) FROM sales WHERE day > '2024-01-01' GROUP BY region ORDER BY region",
    )
    .await;
    assert_eq!(rows_of(&hive.batches), rows_of(&native.batches));

    // What cannot be honoured is refused by name.
    let error = client
        .query("CREATE EXTERNAL TABLE o (a int) STORED AS ORC LOCATION '/tmp/'")
        .await
        .unwrap_err()
        .to_string()
        .to_lowercase();
    assert!(error.contains("orc") && error.contains("not supported"), "{error}");
    let error = client
        .query("CREATE EXTERNAL TABLE b (a int) CLUSTERED BY (a) INTO 4 BUCKETS STORED AS PARQUET LOCATION '/tmp/'")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("CLUSTERED is not supported"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_crawler_infers_format_columns_and_partitions() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    std::fs::write(lake.join("sales/_SUCCESS"), b"")?;
    client.query(&format!("CREATE EXTERNAL TABLE crawled LOCATION '{}/sales/'", lake.display())).await?;
    let output =
        client.query("SELECT count(*), sum(qty) FROM crawled WHERE region = 'eu' AND day = '2024-01-01'").await?;
    // The crawled table reads the files as single-node DataFusion reads the declared one.
    let reference = reference_context(&lake).await;
    let expected = reference.sql("SELECT count(*), sum(qty) FROM sales WHERE region = 'eu' AND day = '2024-01-01'");
    assert_eq!(rows_of(&output.batches), rows_of(&expected.await?.collect().await?));
    assert!(rows_of(&output.batches)[0].starts_with("2000 | "), "two files of 1000 rows");
    let ddl = rows_of(&client.query("SHOW CREATE TABLE crawled").await?.batches).join("\n");
    assert!(ddl.contains("PARTITIONED BY (region, day)") && ddl.contains("STORED AS PARQUET"), "{ddl}");

    // Files whose schemas evolved: columns are merged by name, and missing ones read as NULL.
    let evolving = lake.join("evolving");
    write_parquet(&evolving.join("v=1/old.parquet"), &sales_batch(0).project(&[0, 2])?);
    write_parquet(&evolving.join("v=2/new.parquet"), &sales_batch(5000).project(&[0, 1, 2])?);
    client.query(&format!("CREATE EXTERNAL TABLE evolving LOCATION '{}/'", evolving.display())).await?;
    let output = client.query("SELECT v, count(*), count(item) FROM evolving GROUP BY v ORDER BY v").await?;
    assert_eq!(rows_of(&output.batches), vec!["1 | 1000 | 0", "2 | 1000 | 973"]);

    let empty = lake.join("nothing_here");
    std::fs::create_dir_all(&empty)?;
    std::fs::write(empty.join("README"), b"not data")?;
    let error = client.query(&format!("CREATE EXTERNAL TABLE e LOCATION '{}/'", empty.display())).await.unwrap_err();
    assert!(error.to_string().contains("cannot tell the file format"), "{error}");
    Ok(())
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gzipped_and_concatenated_json_and_csv_are_read() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let lake = cluster.warehouse().to_path_buf();
    let mut client = cluster.client().await;

    // Firehose writes JSON objects back to back, without newlines, gzipped...
    let dir = lake.join("firehose/name=visit/d=2023-06-18");
    std::fs::create_dir_all(&dir)?;
    let objects: String = (0..50).map(|i| format!(r#"{{"n": {i}, "s": "x{i}"}}"#)).collect();
    std::fs::write(dir.join("stream-1-2023-06-18-14-27-52-abcd.gz"), gzip(&objects))?;
    std::fs::write(
        dir.join("stream-2-2023-06-18-14-29-01-ef01.gz"),
        gzip("{\"n\": 100, \"s\": \"y\"}\n{\"n\": 200, \"s\": \"z\"}\n"),
    )?;
    client
        .query(&format!(
            "CREATE EXTERNAL TABLE firehose (n int, s string) PARTITIONED BY (name string, d string)
             ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe' LOCATION '{}/firehose/'",
            lake.display()
        ))
        .await?;
    client.query("ALTER TABLE firehose ADD IF NOT EXISTS PARTITION (name = 'visit', d = '2023-06-18')").await?;
    let output = client.query("SELECT count(*), sum(n), count(DISTINCT s) FROM firehose WHERE name = 'visit'").await?;
    assert_eq!(rows_of(&output.batches), vec![format!("52 | {} | 52", (0..50).sum::<i32>() + 300)]);

    // The crawler sees gzipped CSV by its extension.
    let csv = lake.join("csv_gz");
    std::fs::create_dir_all(&csv)?;
    std::fs::write(csv.join("prices-1.csv.gz"), gzip("item,price\napple,1.5\npear,2.5\n"))?;
    // One file's prices look like integers, the other's like decimals: the crawler reads both as DOUBLE.
    std::fs::write(csv.join("prices-2.csv.gz"), gzip("item,price\nfig,4\n"))?;
    client.query(&format!("CREATE EXTERNAL TABLE prices LOCATION '{}/'", csv.display())).await?;
    let output = client.query("SELECT count(*), sum(price) FROM prices").await?;
    assert_eq!(rows_of(&output.batches), vec!["3 | 8.0"]);
    Ok(())
}
