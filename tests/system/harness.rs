//! `TestCluster` and test data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use glaux_client::{GlauxClient, QueryOutput};
use glaux_executor::{Executor, ExecutorConfig};
use glaux_proto::ClusterSecret;
use glaux_scheduler::{Scheduler, SchedulerConfig};
use glaux_storage::StorageConfig;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A scheduler and executors in this process, over real loopback gRPC. Stops on drop.
pub struct TestCluster {
    pub scheduler: Scheduler,
    pub executors: Vec<Executor>,
    pub secret: ClusterSecret,
    warehouse: PathBuf,
    _owned_warehouse: Option<tempfile::TempDir>,
}

pub struct TestClusterBuilder {
    warehouse: Option<PathBuf>,
    catalog: Option<PathBuf>,
    executors: usize,
    task_slots: usize,
    heartbeat: Duration,
    s3: Option<glaux_storage::S3Config>,
    storage_file: Option<String>,
    executor_memory: usize,
    users: Option<std::sync::Arc<glaux_scheduler::Users>>,
    postgres: bool,
    http: bool,
    tls: Option<glaux_scheduler::TlsIdentity>,
    limits: Option<glaux_scheduler::DoorLimits>,
    listing_cache_ttl: Option<Duration>,
    target_file_size: Option<u64>,
    small_query_bytes: u64,
}

impl TestCluster {
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder {
            warehouse: None,
            catalog: None,
            executors: 2,
            task_slots: 2,
            heartbeat: Duration::from_millis(200),
            s3: None,
            storage_file: None,
            executor_memory: 512 << 20,
            users: None,
            postgres: false,
            http: false,
            tls: None,
            limits: None,
            listing_cache_ttl: None,
            target_file_size: None,
            // Test data is small: without this, no test query would spread over the executors.
            small_query_bytes: 0,
        }
    }

    pub fn url(&self) -> String {
        self.scheduler.addr().to_string()
    }

    pub async fn client(&self) -> GlauxClient {
        GlauxClient::connect(&self.url()).await.expect("connect to the test scheduler")
    }

    pub fn warehouse(&self) -> &Path {
        &self.warehouse
    }

    /// Writes the test lake into the warehouse and declares its tables; returns the lake's
    /// directory and the client that declared them.
    pub async fn with_lake(&self) -> Result<(PathBuf, GlauxClient), Box<dyn std::error::Error>> {
        let lake = write_lake(self.warehouse());
        let mut client = self.client().await;
        for ddl in lake_ddl(&format!("{}/", lake.display())) {
            client.query(&ddl).await?;
        }
        Ok((lake, client))
    }
}

impl TestClusterBuilder {
    /// Memory each executor's tasks may hold (512 MiB unless told).
    pub fn executor_memory(mut self, bytes: usize) -> Self {
        self.executor_memory = bytes;
        self
    }

    pub fn executors(mut self, n: usize) -> Self {
        self.executors = n;
        self
    }

    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Use this directory as the warehouse (and keep it) instead of a fresh temporary one.
    pub fn warehouse(mut self, dir: &Path) -> Self {
        self.warehouse = Some(dir.to_path_buf());
        self
    }

    /// Keep the catalog in this SQLite file instead of in memory.
    pub fn catalog(mut self, path: &Path) -> Self {
        self.catalog = Some(path.to_path_buf());
        self
    }

    pub fn s3(mut self, s3: glaux_storage::S3Config) -> Self {
        self.s3 = Some(s3);
        self
    }

    /// Also serve PostgreSQL clients (on a free loopback port).
    /// Also serve Athena's API over HTTP (on a free loopback port).
    pub fn http(mut self) -> Self {
        self.http = true;
        self
    }

    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// Serve clients over TLS with this identity.
    pub fn tls(mut self, identity: glaux_scheduler::TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Flight SQL clients must authenticate as one of these.
    pub fn users(mut self, users: glaux_scheduler::Users) -> Self {
        self.users = Some(std::sync::Arc::new(users));
        self
    }

    /// The doors' limits (connections, request rates, statements at once).
    pub fn limits(mut self, limits: glaux_scheduler::DoorLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// How long the scheduler keeps listings (its default unless told).
    /// Queries whose scans produce at most `bytes` run whole on one executor (0, unless told:
    /// every query spreads, as test data is small).
    pub fn small_query_bytes(mut self, bytes: u64) -> Self {
        self.small_query_bytes = bytes;
        self
    }

    pub fn target_file_size(mut self, bytes: u64) -> Self {
        self.target_file_size = Some(bytes);
        self
    }

    pub fn listing_cache_ttl(mut self, ttl: Duration) -> Self {
        self.listing_cache_ttl = Some(ttl);
        self
    }

    /// Storage config file text (named stores), applied after [`Self::s3`].
    pub fn storage_file(mut self, text: &str) -> Self {
        self.storage_file = Some(text.to_string());
        self
    }

    pub async fn start(self) -> Result<TestCluster, Box<dyn std::error::Error>> {
        let (warehouse, owned) = match self.warehouse.clone() {
            Some(dir) => (dir, None),
            None => {
                let temp = tempfile::tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut storage = StorageConfig::default().with_local_roots(std::slice::from_ref(&warehouse))?;
        if let Some(s3) = self.s3 {
            storage = storage.with_s3(s3);
        }
        if let Some(text) = &self.storage_file {
            storage = storage.with_config_file(text)?;
        }
        let secret = ClusterSecret::generate();
        let mut config = SchedulerConfig::new(secret.clone())
            .with_storage(storage.clone())
            .with_heartbeat(self.heartbeat)
            .with_compute(compute());
        if let Some(catalog) = &self.catalog {
            config = config.with_catalog_path(catalog);
        }
        if let Some(users) = self.users {
            config = config.with_users(users);
        }
        if self.postgres {
            config = config.with_postgres(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        if self.http {
            config = config.with_http(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        if let Some(tls) = self.tls {
            config = config.with_tls(tls);
        }
        if let Some(limits) = self.limits {
            config = config.with_limits(limits);
        }
        if let Some(bytes) = self.target_file_size {
            config = config.with_target_file_size(bytes);
        }
        config = config.with_small_query_bytes(self.small_query_bytes);
        if let Some(ttl) = self.listing_cache_ttl {
            config = config.with_listing_cache_ttl(ttl);
        }
        let scheduler = Scheduler::start(config).await?;
        let mut executors = Vec::new();
        for _ in 0..self.executors {
            let config = ExecutorConfig::new(scheduler.cluster_addr().to_string(), secret.clone())
                .with_storage(storage.clone())
                .with_task_slots(self.task_slots)
                .with_memory_limit(self.executor_memory)
                .with_compute(compute());
            executors.push(Executor::start(config).await?);
        }
        tokio::time::timeout(Duration::from_secs(20), scheduler.cluster().wait_for_executors(self.executors)).await?;
        Ok(TestCluster { scheduler, executors, secret, warehouse, _owned_warehouse: owned })
    }
}

/// The runtime test clusters run plans on, as the binary's do (`glaux_proto::Compute`): one for
/// the whole test binary, apart from each test's own.
fn compute() -> glaux_proto::Compute {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().thread_name("test-compute").enable_all().build().expect("threads")
    });
    glaux_proto::Compute::new(runtime.handle().clone())
}

/// Waits until no executor holds a task or reserved memory; how long that took.
pub async fn executors_idle(cluster: &TestCluster, limit: Duration) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let idle = async {
        while cluster.executors.iter().any(|e| e.installed_tasks() > 0 || e.memory_reserved() > 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(limit, idle).await.map_err(|_| {
        let held: Vec<(usize, String)> =
            cluster.executors.iter().map(|e| (e.installed_tasks(), e.memory_report())).collect();
        format!("executors still hold (tasks, bytes) {held:?} after {limit:?}")
    })?;
    Ok(started.elapsed())
}

pub const REGIONS: [&str; 3] = ["eu", "us", "apac"];
pub const DAYS: [&str; 3] = ["2024-01-01", "2024-01-02", "2024-01-03"];
pub const FILES_PER_PARTITION: usize = 2;
pub const ROWS_PER_FILE: usize = 1000;
pub const ROWS_PER_GROUP: usize = 100;
/// Pages of 20 rows, so that the page index has something to prune within a row group.
pub const ROWS_PER_PAGE: usize = 20;

fn sales_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item", DataType::Utf8, true),
        Field::new("qty", DataType::Int32, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

/// One file of the sales table: ids `first..first+ROWS_PER_FILE`, sorted, in row groups of
/// `ROWS_PER_GROUP` so that row-group statistics can prune on `id`.
pub fn sales_batch(first: i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + ROWS_PER_FILE as i64).collect();
    let items = ["apple", "pear", "fig", "kiwi", "plum", "lime", "date"];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from_iter(
            ids.iter().map(|i| if i % 37 == 0 { None } else { Some(items[(i % 7) as usize]) }),
        )),
        Arc::new(Int32Array::from_iter(ids.iter().map(|i| Some((i * 13 % 50) as i32)))),
        Arc::new(Float64Array::from_iter(
            ids.iter().map(|i| if i % 101 == 0 { None } else { Some((i * 7919 % 100_000) as f64 / 100.0) }),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter(
            ids.iter().map(|i| Some(1_704_067_200_000_000 + i * 61_000_000)),
        )),
    ];
    RecordBatch::try_new(sales_schema(), columns).expect("valid sales batch")
}

pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().expect("file in a directory")).expect("create dir");
    let file = std::fs::File::create(path).expect("create parquet file");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties())).expect("parquet writer");
    writer.write(batch).expect("write batch");
    writer.close().expect("close parquet");
}

pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_data_page_row_count_limit(ROWS_PER_PAGE)
        .set_write_batch_size(ROWS_PER_PAGE)
        .build()
}

/// Files of the Hive-partitioned sales table (`region=<r>/day=<d>/part-<n>.parquet`), as
/// (relative path, contents).
pub fn sales_files() -> Vec<(String, RecordBatch)> {
    let mut files = Vec::new();
    let mut first = 0;
    for region in REGIONS {
        for day in DAYS {
            for n in 0..FILES_PER_PARTITION {
                files.push((format!("region={region}/day={day}/part-{n}.parquet"), sales_batch(first)));
                first += ROWS_PER_FILE as i64;
            }
        }
    }
    files
}

/// Writes the sales table and a small `regions` dimension table under `root`.
pub fn write_lake(root: &Path) -> PathBuf {
    let sales = root.join("sales");
    for (path, batch) in sales_files() {
        write_parquet(&sales.join(path), &batch);
    }
    let regions = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("active", DataType::Boolean, false),
            Field::new("manager", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["eu", "us", "apac", "mars"])),
            Arc::new(BooleanArray::from(vec![true, true, false, true])),
            Arc::new(StringArray::from(vec![Some("ana"), None, Some("kim"), Some("zed")])),
        ],
    )
    .expect("regions batch");
    write_parquet(&root.join("regions/regions.parquet"), &regions);
    root.to_path_buf()
}

/// DDL for the lake written by [`write_lake`] at `location` (a path or URL ending in '/').
pub fn lake_ddl(location: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE EXTERNAL TABLE sales (id BIGINT NOT NULL, item VARCHAR, qty INT, amount DOUBLE, ts TIMESTAMP, \
             region VARCHAR, day VARCHAR) STORED AS PARQUET PARTITIONED BY (region, day) LOCATION '{location}sales/'"
        ),
        format!("CREATE EXTERNAL TABLE regions STORED AS PARQUET LOCATION '{location}regions/'"),
    ]
}

/// Single-node DataFusion over the same files: the reference every distributed result is checked against.
pub async fn reference_context(root: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for ddl in lake_ddl(&format!("{}/", root.display())) {
        ctx.sql(&ddl).await.expect("reference DDL").collect().await.expect("reference DDL runs");
    }
    ctx
}

/// Rows rendered as text, for comparison.
pub fn rows_of(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter")).collect();
        for row in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join(" | "));
        }
    }
    rows
}

/// Runs `sql` on the cluster and on the reference; panics with both results if they differ.
/// Results are compared in order when the query has a top-level ORDER BY, as multisets otherwise.
pub async fn assert_same_as_datafusion(client: &mut GlauxClient, reference: &SessionContext, sql: &str) -> QueryOutput {
    let output = client.query(sql).await.unwrap_or_else(|e| panic!("Glaux failed on {sql}: {e}"));
    let expected = reference
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("DataFusion failed on {sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("DataFusion failed on {sql}: {e}"));
    let mut actual_rows = rows_of(&output.batches);
    let mut expected_rows = rows_of(&expected);
    let ordered = has_top_level_order_by(sql);
    if !ordered {
        actual_rows.sort();
        expected_rows.sort();
    }
    assert_eq!(actual_rows, expected_rows, "distributed result differs from DataFusion for: {sql}");
    output
}

/// True if `sql` ends in an ORDER BY of its own (not one inside parentheses, like a window's).
fn has_top_level_order_by(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    let mut depth = 0i32;
    for (i, c) in upper.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            'O' if depth == 0 && upper[i..].starts_with("ORDER BY") => return true,
            _ => {}
        }
    }
    false
}

/// A one-partition task (task 0 of stage 1 of `query`) as the scheduler would send it, with this
/// plan and run token: for tests that call an executor as the scheduler (or as an impostor).
pub fn task_definition(query: &str, plan: Vec<u8>, run_token: Vec<u8>) -> glaux_proto::generated::TaskDefinition {
    glaux_proto::generated::TaskDefinition {
        query_id: query.to_string(),
        stage_id: 1,
        task_id: 0,
        partitions: vec![0],
        plan,
        scan_codecs: vec![],
        reads_per_partition: 1,
        plan_partitions: vec![],
        dynamic_filters: false,
        analyze: false,
        run_token,
        spool: false,
    }
}

/// `sql` on Glaux and `reference_sql` on DataFusion return the same rows (as multisets).
pub async fn assert_same_as_datafusion_pair(
    client: &mut GlauxClient,
    reference: &SessionContext,
    sql: &str,
    reference_sql: &str,
) {
    let mut actual = rows_of(&client.query(sql).await.expect("Glaux runs it").batches);
    let mut expected = rows_of(&reference.sql(reference_sql).await.expect("plans").collect().await.expect("runs"));
    actual.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(actual, expected, "{sql}");
}
