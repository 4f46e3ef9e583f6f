//! The command line: what each subcommand takes (`*Args`, as clap parses it) and how it becomes
//! the servers' configs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use glaux_client::GlauxClient;
use glaux_proto::ClusterSecret;
use glaux_scheduler::SchedulerConfig;
use glaux_storage::{S3Config, StorageConfig};

#[derive(Parser)]
#[command(name = "glaux", version, about = "Distributed SQL over a data lake")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one object per line, with
    /// the statement's `query_id` in its span) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GLAUX_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    /// A TOML file setting any role's flags: top-level keys for every role, `[scheduler]`,
    /// `[executor]`, ... for one (flags beat the environment, which beats the file).
    #[arg(long, global = true, env = "GLAUX_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum ConfigAction {
    /// Prints ROLE's effective configuration (`--config`/`GLAUX_CONFIG`, the environment and
    /// these flags), each value with where it came from, secrets redacted.
    Show {
        role: String,
        /// The role's flags, as they would be given to it.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Scheduler and executors in one process, talking over loopback gRPC/Flight.
    Standalone(StandaloneArgs),
    /// The scheduler: Flight SQL for clients, cluster membership for executors.
    Scheduler(SchedulerArgs),
    /// An executor that joins a scheduler.
    Executor(ExecutorArgs),
    /// The SQL shell.
    Shell(ShellArgs),
    /// Declares a table over a location, inferring its format, columns and partition keys, and
    /// prints what it found.
    Crawl(CrawlArgs),
    /// GETs a plain-HTTP URL (an `/health` or `/ready`) and fails unless it answers 2xx: a
    /// container's health check.
    Probe {
        #[arg(default_value = crate::probe::DEFAULT_URL, env = "GLAUX_PROBE_URL")]
        url: String,
    },
    /// The configuration files and flags make: `glaux config show ROLE [FLAGS]`.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// A standalone cluster over a generated events lake, with the shell open on it.
    Demo(StandaloneArgs),
    /// TPC-H or TPC-DS on a standalone cluster and on single-process DataFusion side by side, and Flight
    /// SQL latency; prints medians and the Glaux/DataFusion ratio.
    Bench(BenchArgs),
    /// Reads a password from stdin and prints its Argon2id hash, for a `--users` file line
    /// `name:hash`.
    HashPassword,
    /// Access keys for Athena's API: `create USER` issues one (its secret is printed once),
    /// `delete ID` revokes one. Kept in the scheduler's catalog.
    AccessKey(AccessKeyArgs),
}

#[derive(Args)]
pub(crate) struct AccessKeyArgs {
    #[command(subcommand)]
    pub(crate) action: AccessKeyAction,
}

#[derive(Subcommand)]
pub(crate) enum AccessKeyAction {
    /// Issues an access key for USER (a user of the scheduler's --users file).
    Create {
        user: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Revokes the access key ID.
    Delete {
        id: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

/// How clients reach the scheduler: the PostgreSQL port, users, TLS.
#[derive(Args, Clone)]
pub(crate) struct DoorArgs {
    /// Also serve the PostgreSQL wire protocol here (for JDBC, ODBC and psql), e.g. 127.0.0.1:5432.
    #[arg(long)]
    pub(crate) postgres_addr: Option<SocketAddr>,
    /// Also serve HTTP here: Athena's API (boto3, PyAthena), e.g. 127.0.0.1:8080. With --users,
    /// requests are signed with access keys (`glaux access-key create USER`). The same port serves
    /// `/metrics` (Prometheus), `/health` and `/ready` (probes) without credentials.
    #[arg(long)]
    pub(crate) http_addr: Option<SocketAddr>,
    /// File of Flight SQL users, one `name:argon2-hash` per line (`glaux hash-password`). Without
    /// it clients need no password, and the scheduler serves on loopback addresses only.
    #[arg(long, env = "GLAUX_USERS_FILE")]
    pub(crate) users: Option<PathBuf>,
    /// PEM certificate chain: serve Flight SQL and PostgreSQL clients over TLS only (with --tls-key).
    #[arg(long, env = "GLAUX_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "GLAUX_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Take passwords without TLS on non-loopback addresses (refused unless given).
    #[arg(long)]
    pub(crate) allow_insecure_auth: bool,
    /// Open connections per client door at most.
    #[arg(long, default_value_t = glaux_scheduler::DoorLimits::default().max_connections)]
    pub(crate) max_connections: usize,
    /// Requests per second from one client address at most (bursts of twice that).
    #[arg(long, default_value_t = glaux_scheduler::DoorLimits::default().requests_per_second)]
    pub(crate) max_requests_per_second: u32,
    /// Statements one user may run at once.
    #[arg(long, default_value_t = glaux_scheduler::DoorLimits::default().statements_per_user)]
    pub(crate) max_statements_per_user: usize,
    /// Statements the scheduler runs at once in all.
    #[arg(long, default_value_t = glaux_scheduler::DoorLimits::default().statements)]
    pub(crate) max_statements: usize,
    /// Seconds the scheduler answers a table prefix's listing from the last one (0: every query
    /// lists). Files written by other programs show up after this; statements that change the
    /// catalog (e.g. MSCK REPAIR TABLE) list afresh at once.
    #[arg(long, default_value_t = glaux_scheduler::DEFAULT_LISTING_CACHE_TTL.as_secs())]
    pub(crate) listing_cache_seconds: u64,
    /// Bytes each written file aims at (CTAS, INSERT, UNLOAD, OPTIMIZE): a writer starts a new
    /// file once its files hold about this much (0: one file per partition and writer).
    #[arg(long, default_value_t = glaux_scheduler::DEFAULT_TARGET_FILE_SIZE)]
    pub(crate) target_file_size: u64,
    /// A query whose scans are estimated to produce at most this many bytes (Arrow bytes of the
    /// columns read) runs whole on one executor, as one task: no rows move between executors
    /// (0: spread every query over the executors).
    #[arg(long, env = "GLAUX_SMALL_QUERY_BYTES", default_value_t = glaux_scheduler::DEFAULT_SMALL_QUERY_BYTES)]
    pub(crate) small_query_bytes: u64,
    /// What a query does when it loses an executor: `query` plans it again while no row has gone
    /// out; `task` keeps every stage's output on its executor's disk so that whatever a lost
    /// executor took with it runs again elsewhere, at any moment. A workgroup may choose another.
    #[arg(long, default_value = "query", value_parser = parse_retry_policy)]
    pub(crate) retry_policy: glaux_scheduler::RetryPolicy,
    /// Days the query history (`system.runtime.queries`) keeps a finished statement's record.
    #[arg(long, default_value_t = glaux_scheduler::history::Retention::default().days)]
    pub(crate) history_days: u32,
    /// Finished statements' records the query history keeps at most (the oldest go first).
    #[arg(long, default_value_t = glaux_scheduler::history::Retention::default().count)]
    pub(crate) history_max: usize,
}

impl DoorArgs {
    /// The scheduler configuration with these doors.
    pub(crate) fn apply(&self, mut config: SchedulerConfig) -> anyhow::Result<SchedulerConfig> {
        if let Some(path) = &self.users {
            let users = glaux_scheduler::Users::load(path).map_err(anyhow::Error::msg)?;
            config = config.with_users(std::sync::Arc::new(users));
        }
        if let Some(addr) = self.postgres_addr {
            config = config.with_postgres(addr);
        }
        if let Some(addr) = self.http_addr {
            config = config.with_http(addr);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.with_tls(glaux_scheduler::TlsIdentity::load(cert, key)?);
        }
        let limits = glaux_scheduler::DoorLimits {
            max_connections: self.max_connections,
            requests_per_second: self.max_requests_per_second,
            statements_per_user: self.max_statements_per_user,
            statements: self.max_statements,
        };
        Ok(config
            .with_insecure_auth(self.allow_insecure_auth)
            .with_limits(limits)
            .with_listing_cache_ttl(std::time::Duration::from_secs(self.listing_cache_seconds))
            .with_target_file_size(self.target_file_size)
            .with_small_query_bytes(self.small_query_bytes)
            .with_retry_policy(self.retry_policy)
            .with_history(glaux_scheduler::history::Retention { days: self.history_days, count: self.history_max }))
    }

    /// The files of these doors that must stay unreadable by tables.
    pub(crate) fn private_files(&self) -> [(&'static str, Option<&Path>); 2] {
        [("users file", self.users.as_deref()), ("TLS key", self.tls_key.as_deref())]
    }

    /// How clients connect and authenticate, for the start-up line.
    pub(crate) fn describe(&self) -> String {
        let tls = if self.tls_cert.is_some() { "TLS, " } else { "" };
        match &self.users {
            Some(path) => format!("{tls}clients authenticate (users from {})", path.display()),
            None => format!("{tls}no authentication (no --users; loopback only)"),
        }
    }
}

#[derive(Args, Clone)]
pub(crate) struct ClientArgs {
    /// The scheduler's Flight SQL address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) host: String,
    /// Authenticate as this user; the password comes from GLAUX_PASSWORD, else a prompt.
    #[arg(long, short = 'u')]
    pub(crate) user: Option<String>,
    /// PEM certificates to trust besides the system's (a private CA or a self-signed scheduler
    /// certificate); implies TLS. `--host grpc+tls://HOST:PORT` uses TLS with the system's roots.
    #[arg(long, env = "GLAUX_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
}

impl ClientArgs {
    pub(crate) async fn connect(&self) -> anyhow::Result<GlauxClient> {
        let mut options = glaux_client::ConnectOptions::default();
        if let Some(path) = &self.tls_ca {
            options.tls_ca = Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
        }
        if let Some(user) = &self.user {
            let password = match std::env::var("GLAUX_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    rpassword::prompt_password(format!("Password for {user}: ")).context("reading the password")?
                }
            };
            options.credentials = Some((user.clone(), password));
        }
        Ok(GlauxClient::connect_with(&self.host, &options).await?)
    }
}

#[derive(Args, Clone)]
pub(crate) struct StorageArgs {
    /// Directory under which file:// tables may live (repeatable). The first one also holds Glaux's
    /// own files (demo data, the generated cluster secret).
    #[arg(long, default_values_os_t = [default_warehouse()])]
    pub(crate) warehouse: Vec<PathBuf>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:8333 [env: AWS_ENDPOINT_URL]
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// S3 region [env: AWS_REGION]
    #[arg(long)]
    s3_region: Option<String>,
    /// Use virtual-hosted-style S3 URLs instead of path-style ones.
    #[arg(long)]
    s3_virtual_hosted_style: bool,
    /// TOML file of S3 settings: `[s3]` defaults, and `[stores.NAME]` endpoints with the buckets
    /// they serve (see the README) [env: GLAUX_STORAGE_CONFIG]
    #[arg(long)]
    pub(crate) storage_config: Option<PathBuf>,
    /// The SQLite file that holds the catalog [default: <warehouse>/.glaux/catalog.sqlite]
    #[arg(long)]
    pub(crate) catalog: Option<PathBuf>,
}

/// Mutual TLS between cluster members; all three or none.
#[derive(Args, Clone)]
pub(crate) struct ClusterTlsArgs {
    /// PEM certificate of this member, issued by --cluster-tls-ca.
    #[arg(long, requires_all = ["cluster_tls_key", "cluster_tls_ca"])]
    pub(crate) cluster_tls_cert: Option<PathBuf>,
    /// PEM private key of --cluster-tls-cert.
    #[arg(long, requires_all = ["cluster_tls_cert", "cluster_tls_ca"])]
    pub(crate) cluster_tls_key: Option<PathBuf>,
    /// PEM certificate of the CA every member's certificate must come from.
    #[arg(long, requires_all = ["cluster_tls_cert", "cluster_tls_key"])]
    pub(crate) cluster_tls_ca: Option<PathBuf>,
}

impl ClusterTlsArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Option<glaux_proto::ClusterTls>> {
        match (&self.cluster_tls_ca, &self.cluster_tls_cert, &self.cluster_tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                Ok(Some(glaux_proto::ClusterTls::load(ca, cert, key).map_err(anyhow::Error::msg)?))
            }
            _ => Ok(None),
        }
    }
}

#[derive(Args, Clone)]
pub(crate) struct SecretArgs {
    /// File holding the cluster secret shared by the scheduler and its executors.
    /// Default: GLAUX_CLUSTER_SECRET, else <warehouse>/.glaux/cluster-secret (created by the scheduler).
    #[arg(long)]
    pub(crate) cluster_secret_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub(crate) struct StandaloneArgs {
    /// Number of executors.
    #[arg(long, default_value_t = 2)]
    pub(crate) executors: usize,
    /// Where Flight SQL clients connect.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) flight_sql_addr: SocketAddr,
    /// Task slots per executor (default: available cores).
    #[arg(long)]
    pub(crate) task_slots: Option<usize>,
    /// Memory per executor, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub(crate) memory_mib: usize,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    #[command(flatten)]
    pub(crate) doors: DoorArgs,
}

#[derive(Args)]
pub(crate) struct SchedulerArgs {
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) flight_sql_addr: SocketAddr,
    /// Where executors join (`glaux executor --scheduler`). Default: the Flight SQL port, or
    /// 127.0.0.1:50052 with TLS, since executors do not speak TLS to the scheduler.
    #[arg(long)]
    pub(crate) cluster_addr: Option<SocketAddr>,
    /// On SIGTERM, how long to wait for running work (statements on a scheduler, tasks on an
    /// executor) before stopping anyway, in seconds. Ctrl-C stops at once.
    #[arg(long, default_value_t = 60)]
    pub(crate) drain_timeout: u64,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    #[command(flatten)]
    pub(crate) secret: SecretArgs,
    #[command(flatten)]
    pub(crate) cluster_tls: ClusterTlsArgs,
    #[command(flatten)]
    pub(crate) doors: DoorArgs,
}

#[derive(Args)]
pub(crate) struct ExecutorArgs {
    /// The scheduler to join, host:port (its --cluster-addr, when it has one).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(crate) scheduler: String,
    /// Where to serve Flight for the scheduler and other executors.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) bind: SocketAddr,
    /// Host name other cluster members use to reach this executor (default: the bind address).
    #[arg(long)]
    pub(crate) advertise_host: Option<String>,
    /// Also serve plain HTTP here: `/metrics` (Prometheus), `/health` and `/ready` (probes),
    /// e.g. 127.0.0.1:9101. Nothing else is served on it.
    #[arg(long)]
    pub(crate) http_addr: Option<SocketAddr>,
    #[arg(long)]
    pub(crate) task_slots: Option<usize>,
    /// Memory for running tasks, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub(crate) memory_mib: usize,
    /// Disk one query's spooled task outputs (retry policy `task`) may take on this executor, in MiB.
    #[arg(long, default_value_t = 16384)]
    pub(crate) spool_limit_mib: u64,
    /// On SIGTERM, how long to wait for running work (statements on a scheduler, tasks on an
    /// executor) before stopping anyway, in seconds. Ctrl-C stops at once.
    #[arg(long, default_value_t = 60)]
    pub(crate) drain_timeout: u64,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    #[command(flatten)]
    pub(crate) secret: SecretArgs,
    #[command(flatten)]
    pub(crate) cluster_tls: ClusterTlsArgs,
}

#[derive(Args)]
pub(crate) struct ShellArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Run these statements and exit.
    #[arg(short = 'c', long)]
    pub(crate) command: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long)]
    pub(crate) file: Option<PathBuf>,
    /// How results print: aligned, csv, tsv, json (lines) or vertical.
    #[arg(long, default_value = "aligned", value_parser = parse_format)]
    pub(crate) format: glaux_client::OutputFormat,
    /// Run statements in this workgroup (default: the user's, else `primary`).
    #[arg(long)]
    pub(crate) workgroup: Option<String>,
    /// What statements do when they lose an executor: `query` or `task` (default: the
    /// workgroup's, else the cluster's `--retry-policy`).
    #[arg(long, value_parser = parse_retry_policy)]
    pub(crate) retry_policy: Option<glaux_scheduler::RetryPolicy>,
}

pub(crate) fn parse_retry_policy(name: &str) -> Result<glaux_scheduler::RetryPolicy, String> {
    glaux_scheduler::RetryPolicy::parse(name).ok_or_else(|| format!("use {}", glaux_scheduler::RetryPolicy::NAMES))
}

pub(crate) fn parse_format(name: &str) -> Result<glaux_client::OutputFormat, String> {
    glaux_client::OutputFormat::parse(name).ok_or_else(|| format!("use one of {}", glaux_client::OutputFormat::NAMES))
}

#[derive(Args)]
pub(crate) struct CrawlArgs {
    /// Where the table's files are: s3://bucket/prefix/ or a directory under a warehouse root.
    pub(crate) location: String,
    /// The table to create, `[db.]name` (default: the location's last directory).
    #[arg(long)]
    pub(crate) table: Option<String>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// The default table name for a location: its last path segment, as an identifier.
pub(crate) fn table_name_for(location: &str) -> String {
    let last = location.trim_end_matches('/').rsplit('/').next().unwrap_or("crawled");
    let name: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) { format!("t_{name}") } else { name }
}

pub(crate) fn default_warehouse() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("warehouse"), |h| PathBuf::from(h).join(".glaux/warehouse"))
}

pub(crate) fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".glaux_history"))
}

impl StorageArgs {
    pub(crate) fn config(&self) -> anyhow::Result<StorageConfig> {
        for root in &self.warehouse {
            std::fs::create_dir_all(root).with_context(|| format!("creating warehouse {}", root.display()))?;
        }
        let s3 = S3Config {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            virtual_hosted_style: self.s3_virtual_hosted_style,
            ..S3Config::default()
        };
        let config = StorageConfig::default().with_local_roots(&self.warehouse)?.with_s3(s3);
        let file = self.storage_config.clone().or_else(|| std::env::var_os("GLAUX_STORAGE_CONFIG").map(PathBuf::from));
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                config.with_config_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            None => Ok(config),
        }
    }

    /// Refuses to start with one of Glaux's own files (the catalog, the storage config, and `others`)
    /// where a table could read it: inside a warehouse root but not in its `.glaux` directory.
    pub(crate) fn guard_private_files(
        &self,
        config: &StorageConfig,
        others: &[(&str, Option<&Path>)],
    ) -> anyhow::Result<()> {
        let catalog = self.catalog_path();
        let own = [("catalog", Some(catalog.as_path())), ("storage config", self.storage_config.as_deref())];
        for (what, file) in own.iter().chain(others) {
            if let Some(file) = file {
                config.check_private_file(what, file).map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }

    pub(crate) fn home(&self) -> &Path {
        self.warehouse.first().map_or(Path::new("."), PathBuf::as_path)
    }

    pub(crate) fn catalog_path(&self) -> PathBuf {
        self.catalog.clone().unwrap_or_else(|| self.home().join(".glaux/catalog.sqlite"))
    }
}

impl SecretArgs {
    /// The configured secret; a scheduler (`create`) generates one if there is none yet.
    pub(crate) fn load(&self, storage: &StorageArgs, create: bool) -> anyhow::Result<ClusterSecret> {
        if let Ok(secret) = std::env::var("GLAUX_CLUSTER_SECRET") {
            return ClusterSecret::try_new(secret.trim()).map_err(anyhow::Error::msg);
        }
        let path = self.cluster_secret_file.clone().unwrap_or_else(|| storage.home().join(".glaux/cluster-secret"));
        match std::fs::read_to_string(&path) {
            Ok(secret) => ClusterSecret::try_new(secret.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let secret = ClusterSecret::generate();
                write_private(&path, secret.expose())?;
                eprintln!("Generated a cluster secret in {} (executors read it from there)", path.display());
                Ok(secret)
            }
            Err(e) => bail!(
                "cannot read the cluster secret from {}: {e}; set GLAUX_CLUSTER_SECRET or --cluster-secret-file",
                path.display()
            ),
        }
    }
}

pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// `glaux bench`: TPC-H or TPC-DS on a standalone cluster and on single-process DataFusion.
#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Which benchmark: the 22 TPC-H queries, the 99 TPC-DS queries, or the write experiments
    /// (CTAS vs DataFusion's COPY, gzipped JSON vs Parquet, small files vs OPTIMIZE) on TPC-H data.
    #[arg(long, value_enum, default_value_t = Suite::Tpch)]
    pub(crate) suite: Suite,
    /// Scale factor.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) sf: f64,
    /// Where the generated data lives (generated once) [default: <warehouse>/<suite>/sf<SF>]
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Timed runs of each query on each engine, after one warm-up run.
    #[arg(long, default_value_t = 3)]
    pub(crate) iterations: usize,
    /// Only these queries (1-22 or 1-99, repeatable).
    #[arg(long)]
    pub(crate) query: Vec<usize>,
    /// Round trips for the latency measurements.
    #[arg(long, default_value_t = 200)]
    pub(crate) latency_iterations: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Also run each query on Glaux with retry policy `task`, right after its run with `query`,
    /// and report what keeping every stage's output costs.
    #[arg(long)]
    pub(crate) task_retries: bool,
    /// Run DataFusion without hash-join dynamic filters, to see what they are worth to it (only
    /// broadcast-build joins' filters cross Glaux's shuffles).
    #[arg(long)]
    pub(crate) reference_without_join_filters: bool,
    /// After timing, print each query's `EXPLAIN ANALYZE` on Glaux and on DataFusion, to compare
    /// where their time goes, operator by operator (use with `--query`)
    #[arg(long)]
    pub(crate) explain_analyze: bool,
    #[command(flatten)]
    pub(crate) cluster: StandaloneArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Suite {
    Tpch,
    Tpcds,
    Writes,
}
