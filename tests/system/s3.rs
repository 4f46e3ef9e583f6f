//! Tables in S3, read through the S3 protocol from a real S3-compatible server (SeaweedFS, started
//! by `.ci/run`, which exports its endpoint and credentials as GLAUX_TEST_S3_*).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;

use crate::harness::*;

pub const BUCKET: &str = "glaux-test";

pub fn s3_config() -> glaux_storage::S3Config {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: the S3 tests need a real S3-compatible server; run `.ci/run`, which starts one")
        })
    };
    glaux_storage::S3Config {
        endpoint: Some(var("GLAUX_TEST_S3_ENDPOINT")),
        region: Some("us-east-1".into()),
        access_key_id: Some(var("GLAUX_TEST_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(var("GLAUX_TEST_S3_SECRET_ACCESS_KEY")),
        ..Default::default()
    }
}

pub fn parquet_bytes(batch: &arrow::array::RecordBatch) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(writer_properties())).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
    bytes
}

/// The test bucket, written to directly (not through Glaux) to set up data.
pub fn test_bucket(s3: &glaux_storage::S3Config) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    Ok(Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(s3.endpoint.clone().unwrap_or_default())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(s3.access_key_id.clone().unwrap_or_default())
            .with_secret_access_key(s3.secret_access_key.clone().unwrap_or_default())
            .build()?,
    ))
}

/// A key prefix of its own for each test run, so runs never see each other's objects.
pub fn run_prefix() -> String {
    format!("run-{:016x}", rand::random::<u64>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tables_in_s3_are_read_through_the_s3_protocol() -> TestResult {
    let s3 = s3_config();
    let store = test_bucket(&s3)?;
    let prefix = run_prefix();
    for (path, batch) in sales_files() {
        store.put(&ObjectPath::from(format!("{prefix}/sales/{path}")), parquet_bytes(&batch).into()).await?;
    }
    let cluster = TestCluster::builder().s3(s3).start().await?;
    let local = write_lake(cluster.warehouse());
    let reference = reference_context(&local).await;
    let mut client = cluster.client().await;
    let ddl = &lake_ddl(&format!("s3://{BUCKET}/{prefix}/"))[0];
    client.query(ddl).await?;
    for sql in [
        "SELECT count(*), sum(qty), round(sum(amount), 4) FROM sales",
        "SELECT region, day, count(*), max(id) FROM sales GROUP BY region, day",
        "SELECT * FROM sales WHERE region = 'apac' AND id % 250 = 0 ORDER BY id",
    ] {
        assert_same_as_datafusion(&mut client, &reference, sql).await;
    }
    let pruned = client.query("SELECT sum(qty) FROM sales WHERE region = 'eu' AND day = '2024-01-03'").await?;
    let stats = pruned.stats.expect("stats");
    assert_eq!(stats.files_planned, FILES_PER_PARTITION as u64);
    assert!(stats.scan.bytes_scanned > 0);

    // A bucket that does not exist is a clear error, not a hang or a crash.
    let error = client
        .query("CREATE EXTERNAL TABLE nope STORED AS PARQUET LOCATION 's3://no-such-bucket-glaux/x/'")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no-such-bucket-glaux"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn named_stores_route_each_bucket_to_its_endpoint_and_credentials() -> TestResult {
    let s3 = s3_config();
    let store = test_bucket(&s3)?;
    let prefix = run_prefix();
    for (path, batch) in sales_files().into_iter().take(2) {
        store.put(&ObjectPath::from(format!("{prefix}/sales/{path}")), parquet_bytes(&batch).into()).await?;
    }
    let endpoint = s3.endpoint.clone().unwrap_or_default();
    // The defaults cannot read the bucket; the store named for it can.
    let wrong_defaults = glaux_storage::S3Config {
        access_key_id: Some("nobody".into()),
        secret_access_key: Some("wrong-secret-value".into()),
        ..s3.clone()
    };
    let routed = format!(
        "[stores.seaweed]\nendpoint = \"{endpoint}\"\nbuckets = [\"{BUCKET}\"]\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        s3.access_key_id.clone().unwrap_or_default(),
        s3.secret_access_key.clone().unwrap_or_default()
    );
    let ddl = &lake_ddl(&format!("s3://{BUCKET}/{prefix}/"))[0];
    let cluster = TestCluster::builder().s3(wrong_defaults.clone()).storage_file(&routed).start().await?;
    let mut client = cluster.client().await;
    client.query(ddl).await?;
    let output = client.query("SELECT count(*) FROM sales").await?;
    assert_eq!(rows_of(&output.batches), vec![(2 * ROWS_PER_FILE).to_string()]);
    drop(cluster);

    let cluster = TestCluster::builder().s3(wrong_defaults).start().await?;
    let mut client = cluster.client().await;
    let error = client.query(ddl).await.unwrap_err().to_string();
    assert!(error.contains(BUCKET), "{error}");
    assert!(!error.contains("wrong-secret-value"), "secrets never appear in errors: {error}");
    Ok(())
}
