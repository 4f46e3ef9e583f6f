//! The events workload from the catalog issue, in a real S3-compatible store: the same events as
//! gzipped JSON lines and as Parquet under `events_raw/{json,parquet}/name=<event>/d=<day>/`,
//! declared with Athena DDL, registered with `MSCK REPAIR TABLE`, and queried by event name and
//! month. Both formats answer alike and read only the chosen name's partitions; Parquet reads
//! far fewer bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::harness::*;
use crate::s3::{BUCKET, run_prefix, s3_config, test_bucket};

const NAMES: [&str; 3] = ["anonymous_visited", "signed_up", "purchased"];
const DAYS: [&str; 4] = ["2023-05-30", "2023-05-31", "2023-06-01", "2023-06-02"];
const EVENTS_PER_PARTITION: i64 = 2000;

/// One partition's events: (tstamp as micros, tstamp as Athena writes it, payload, payload_md5).
fn events(name: &str, day: &str) -> Vec<(i64, String, String, String)> {
    let midnight =
        chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("day").and_hms_opt(0, 0, 0).expect("midnight");
    let mut state = name.len() as u64 * 7919 + day.len() as u64;
    (0..EVENTS_PER_PARTITION)
        .map(|i| {
            let time = midnight + chrono::Duration::seconds(i * 43);
            let os = ["ios", "android", "linux"][(i % 3) as usize];
            let payload = format!(r#"{{"dvce_os": "{os}", "session_id": "{name}-{day}-{}"}}"#, i % 50);
            let md5: String = (0..4)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    format!("{:08x}", state >> 32)
                })
                .collect();
            let micros = time.and_utc().timestamp_micros();
            (micros, time.format("%Y-%m-%d %H:%M:%S%.6f").to_string(), payload, md5)
        })
        .collect()
}

fn json_gz(name: &str, events: &[(i64, String, String, String)]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for (_, tstamp, payload, md5) in events {
        let line = serde_json::json!({ "name": name, "tstamp": tstamp, "payload": payload, "payload_md5": md5 });
        writeln!(encoder, "{line}").expect("gzip in memory");
    }
    encoder.finish().expect("gzip in memory")
}

fn parquet(events: &[(i64, String, String, String)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("tstamp", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("payload", DataType::Utf8, true),
        Field::new("payload_md5", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.0))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.2.as_str()))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.3.as_str()))),
    ];
    RecordBatch::try_new(schema, columns).expect("events batch")
}

/// Parquet as Athena's CTAS and Spark write it: Snappy-compressed.
fn snappy_parquet(batch: &RecordBatch) -> Vec<u8> {
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
    bytes
}

fn athena_ddl(table: &str, location: &str, storage: &str) -> String {
    format!(
        "CREATE EXTERNAL TABLE {table} (tstamp timestamp, payload string, payload_md5 string)
         PARTITIONED BY (name string, d string) {storage} LOCATION '{location}'"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_lake_in_s3_as_json_and_parquet() -> TestResult {
    let s3 = s3_config();
    let bucket = test_bucket(&s3)?;
    let prefix = run_prefix();
    let cluster = TestCluster::builder().s3(s3).start().await?;
    let local = cluster.warehouse().join("events_parquet");
    // Bytes of each (format, name) and of every object, to check what the queries read.
    let mut bytes: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut one_partition_json = 0;
    for name in NAMES {
        for day in DAYS {
            let events = events(name, day);
            let json = json_gz(name, &events);
            let parquet_file = snappy_parquet(&parquet(&events));
            *bytes.entry(("json", name)).or_default() += json.len() as u64;
            *bytes.entry(("parquet", name)).or_default() += parquet_file.len() as u64;
            if (name, day) == ("signed_up", "2023-06-01") {
                one_partition_json = json.len() as u64;
            }
            let partition = format!("name={name}/d={day}");
            let key = format!("{prefix}/events_raw/json/{partition}/events-1-{day}-14-27-52-0a1b.json.gz");
            bucket.put(&ObjectPath::from(key), json.into()).await?;
            let key = format!("{prefix}/events_raw/parquet/{partition}/part-0.snappy.parquet");
            bucket.put(&ObjectPath::from(key), parquet_file.into()).await?;
            write_parquet(&local.join(&partition).join("part-0.parquet"), &parquet(&events));
        }
    }
    let json_total: u64 = NAMES.iter().map(|n| bytes[&("json", *n)]).sum();

    let mut client = cluster.client().await;
    let base = format!("s3://{BUCKET}/{prefix}/events_raw");
    client
        .query(&athena_ddl(
            "events_json",
            &format!("{base}/json/"),
            "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'",
        ))
        .await?;
    client
        .query(&athena_ddl(
            "events_parquet",
            &format!("{base}/parquet/"),
            "ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe' STORED AS PARQUET",
        ))
        .await?;
    for table in ["events_json", "events_parquet"] {
        // CREATE registered the layout's partitions: MSCK has nothing to add.
        let repair = client.query(&format!("MSCK REPAIR TABLE {table}")).await?;
        assert_eq!(repair.rows(), 0, "{:?}", rows_of(&repair.batches));
        assert_eq!(client.query(&format!("SHOW PARTITIONS {table}")).await?.rows(), NAMES.len() * DAYS.len());
    }
    assert_eq!(
        rows_of(&client.query("SHOW PARTITIONS events_json").await?.batches)[0],
        "name=anonymous_visited/d=2023-05-30"
    );

    // Single-node DataFusion over local copies of the Parquet files is the reference.
    let reference = datafusion::prelude::SessionContext::new();
    reference
        .sql(&format!(
            "CREATE EXTERNAL TABLE events_parquet (tstamp TIMESTAMP, payload VARCHAR, payload_md5 VARCHAR, name VARCHAR, d VARCHAR)
             STORED AS PARQUET PARTITIONED BY (name, d) LOCATION '{}/'",
            local.display()
        ))
        .await?
        .collect()
        .await?;
    let query = |table: &str| {
        format!(
            "SELECT date_trunc('day', tstamp) AS day, count(*) AS visits FROM {table}
             WHERE name = 'anonymous_visited' AND date_trunc('month', tstamp) = TIMESTAMP '2023-06-01 00:00:00'
             GROUP BY 1 ORDER BY 1"
        )
    };
    let parquet_run = assert_same_as_datafusion(&mut client, &reference, &query("events_parquet")).await;
    let json_run = client.query(&query("events_json")).await?;
    assert_eq!(rows_of(&json_run.batches), rows_of(&parquet_run.batches));
    assert_eq!(
        rows_of(&json_run.batches),
        vec!["2023-06-01T00:00:00 | 2000", "2023-06-02T00:00:00 | 2000"],
        "two June days of one event"
    );

    let json = json_run.stats.expect("stats");
    let parquet_stats = parquet_run.stats.expect("stats");
    for stats in [&json, &parquet_stats] {
        assert_eq!((stats.partitions_read, stats.partitions_total), (4, 12), "only the chosen name: {stats:?}");
    }
    let chosen_json = bytes[&("json", "anonymous_visited")];
    assert!(json.scan.bytes_scanned >= chosen_json * 9 / 10, "{json:?} vs {chosen_json}");
    assert!(json.scan.bytes_scanned <= chosen_json * 11 / 10, "JSON reads the chosen name's files only: {json:?}");
    assert!(parquet_stats.scan.bytes_scanned <= bytes[&("parquet", "anonymous_visited")], "{parquet_stats:?}");
    assert!(
        parquet_stats.scan.bytes_scanned * 2 < json.scan.bytes_scanned,
        "Parquet reads one column: {} vs JSON {}",
        parquet_stats.scan.bytes_scanned,
        json.scan.bytes_scanned
    );

    // One partition of twelve reads about a twelfth of the bytes.
    let all = client.query("SELECT count(*) FROM events_json").await?;
    assert_eq!(rows_of(&all.batches), vec![(NAMES.len() * DAYS.len() * EVENTS_PER_PARTITION as usize).to_string()]);
    let all = all.stats.expect("stats");
    let one = client.query("SELECT count(*) FROM events_json WHERE name = 'signed_up' AND d = '2023-06-01'").await?;
    assert_eq!(rows_of(&one.batches), vec![EVENTS_PER_PARTITION.to_string()]);
    let one = one.stats.expect("stats");
    assert_eq!((one.partitions_read, one.partitions_total), (1, 12));
    assert!(all.scan.bytes_scanned >= json_total * 9 / 10, "{all:?} vs {json_total}");
    assert!(
        one.scan.bytes_scanned >= one_partition_json * 9 / 10 && one.scan.bytes_scanned <= one_partition_json * 11 / 10,
        "{one:?}"
    );
    assert!(one.scan.bytes_scanned * 6 < all.scan.bytes_scanned, "{one:?} vs {all:?}");

    // The query of Athena's tutorial, unchanged: distinct sessions a day in June.
    let tutorial = r#"WITH
    junes_anonymous_visits AS (
        SELECT *
        FROM events_json
        WHERE name = 'anonymous_visited'
            AND DATE_TRUNC('month', tstamp) = date('2023-06-01')
    ),
    extracted AS (
        SELECT DISTINCT
            date_trunc('day', tstamp) AS day,
            json_extract_scalar(payload, '$.session_id') AS session_id
        FROM junes_anonymous_visits
    ),
    groupped AS (
        SELECT
            day,
            COUNT(*)
        FROM extracted
        GROUP BY 1
    )
SELECT * FROM groupped ORDER BY 1;"#;
    let sessions = client.query(tutorial).await?;
    assert_eq!(rows_of(&sessions.batches), vec!["2023-06-01T00:00:00 | 50", "2023-06-02T00:00:00 | 50"]);
    let sessions = sessions.stats.expect("stats");
    assert_eq!((sessions.partitions_read, sessions.partitions_total), (4, 12), "{sessions:?}");

    let explain = rows_of(&client.query(&format!("EXPLAIN {}", query("events_json"))).await?.batches).join("\n");
    assert!(explain.contains("Scan default.events_json: partitions 4 of 12 (catalog), files 4"), "{explain}");

    // The talk's conversion: the gzipped JSON lines rewritten by a CTAS as partitioned Snappy
    // Parquet in S3, answering as the Parquet DataFusion read does, reading far fewer bytes.
    let converted = client
        .query(&format!(
            "CREATE TABLE events_converted WITH (format = 'PARQUET', write_compression = 'SNAPPY', \
             external_location = 's3://{BUCKET}/{prefix}/events_converted/', partitioned_by = ARRAY['name', 'd']) \
             AS SELECT tstamp, payload, payload_md5, name, d FROM events_json"
        ))
        .await?;
    assert_eq!(
        rows_of(&converted.batches),
        vec![(NAMES.len() * DAYS.len() * EVENTS_PER_PARTITION as usize).to_string()]
    );
    let converted_run = client.query(&query("events_converted")).await?;
    assert_eq!(rows_of(&converted_run.batches), rows_of(&parquet_run.batches));
    let converted_stats = converted_run.stats.expect("stats");
    assert_eq!((converted_stats.partitions_read, converted_stats.partitions_total), (4, 12), "{converted_stats:?}");
    assert!(converted_stats.scan.bytes_scanned * 2 < json.scan.bytes_scanned, "{converted_stats:?} vs {json:?}");
    Ok(())
}
