//! The `glaux` binary: scheduler, executor, both at once, the shell, and the demo.

mod bench;
mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use glaux_client::{GlauxClient, Shell, ShellOptions};
use glaux_executor::{Executor, ExecutorConfig};
use glaux_proto::ClusterSecret;
use glaux_scheduler::{Scheduler, SchedulerConfig};
use glaux_storage::{S3Config, StorageConfig};

#[derive(Parser)]
#[command(name = "glaux", version, about = "Distributed SQL over a data lake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// A standalone cluster over a generated events lake, with the shell open on it.
    Demo(StandaloneArgs),
    /// TPC-H on a standalone cluster and on single-process DataFusion side by side, and Flight
    /// SQL latency; prints medians and the Glaux/DataFusion ratio.
    Bench(bench::BenchArgs),
    /// Reads a password from stdin and prints its Argon2id hash, for a `--users` file line
    /// `name:hash`.
    HashPassword,
}

/// How clients reach the scheduler: the PostgreSQL port, users, TLS.
#[derive(Args, Clone)]
struct DoorArgs {
    /// Also serve the PostgreSQL wire protocol here (for JDBC, ODBC and psql), e.g. 127.0.0.1:5432.
    #[arg(long)]
    postgres_addr: Option<SocketAddr>,
    /// File of Flight SQL users, one `name:argon2-hash` per line (`glaux hash-password`). Without
    /// it clients need no password, and the scheduler serves on loopback addresses only.
    #[arg(long, env = "GLAUX_USERS_FILE")]
    users: Option<PathBuf>,
    /// PEM certificate chain: serve Flight SQL and PostgreSQL clients over TLS only (with --tls-key).
    #[arg(long, env = "GLAUX_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "GLAUX_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl DoorArgs {
    /// The scheduler configuration with these doors.
    fn apply(&self, mut config: SchedulerConfig) -> anyhow::Result<SchedulerConfig> {
        if let Some(path) = &self.users {
            let users = glaux_scheduler::Users::load(path).map_err(anyhow::Error::msg)?;
            config = config.with_users(std::sync::Arc::new(users));
        }
        if let Some(addr) = self.postgres_addr {
            config = config.with_postgres(addr);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.with_tls(glaux_scheduler::TlsIdentity::load(cert, key)?);
        }
        Ok(config)
    }

    /// How clients connect and authenticate, for the start-up line.
    fn describe(&self) -> String {
        let tls = if self.tls_cert.is_some() { "TLS, " } else { "" };
        match &self.users {
            Some(path) => format!("{tls}clients authenticate (users from {})", path.display()),
            None => format!("{tls}no authentication (no --users; loopback only)"),
        }
    }
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// The scheduler's Flight SQL address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    host: String,
    /// Authenticate as this user; the password comes from GLAUX_PASSWORD, else a prompt.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// PEM certificates to trust besides the system's (a private CA or a self-signed scheduler
    /// certificate); implies TLS. `--host grpc+tls://HOST:PORT` uses TLS with the system's roots.
    #[arg(long, env = "GLAUX_TLS_CA")]
    tls_ca: Option<PathBuf>,
}

impl ClientArgs {
    async fn connect(&self) -> anyhow::Result<GlauxClient> {
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
struct StorageArgs {
    /// Directory under which file:// tables may live (repeatable). The first one also holds Glaux's
    /// own files (demo data, the generated cluster secret).
    #[arg(long, default_values_os_t = [default_warehouse()])]
    warehouse: Vec<PathBuf>,
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
    storage_config: Option<PathBuf>,
    /// The SQLite file that holds the catalog [default: <warehouse>/.glaux/catalog.sqlite]
    #[arg(long)]
    catalog: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct SecretArgs {
    /// File holding the cluster secret shared by the scheduler and its executors.
    /// Default: GLAUX_CLUSTER_SECRET, else <warehouse>/.glaux/cluster-secret (created by the scheduler).
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct StandaloneArgs {
    /// Number of executors.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Where Flight SQL clients connect.
    #[arg(long, default_value = "127.0.0.1:50051")]
    flight_sql_addr: SocketAddr,
    /// Task slots per executor (default: available cores).
    #[arg(long)]
    task_slots: Option<usize>,
    /// Memory per executor, in MiB.
    #[arg(long, default_value_t = 2048)]
    memory_mib: usize,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    doors: DoorArgs,
}

#[derive(Args)]
struct SchedulerArgs {
    #[arg(long, default_value = "127.0.0.1:50051")]
    flight_sql_addr: SocketAddr,
    /// Where executors join (`glaux executor --scheduler`). Default: the Flight SQL port, or
    /// 127.0.0.1:50052 with TLS, since executors do not speak TLS to the scheduler.
    #[arg(long)]
    cluster_addr: Option<SocketAddr>,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    secret: SecretArgs,
    #[command(flatten)]
    doors: DoorArgs,
}

#[derive(Args)]
struct ExecutorArgs {
    /// The scheduler to join, host:port (its --cluster-addr, when it has one).
    #[arg(long, default_value = "127.0.0.1:50051")]
    scheduler: String,
    /// Where to serve Flight for the scheduler and other executors.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Host name other cluster members use to reach this executor (default: the bind address).
    #[arg(long)]
    advertise_host: Option<String>,
    #[arg(long)]
    task_slots: Option<usize>,
    /// Memory for running tasks, in MiB.
    #[arg(long, default_value_t = 2048)]
    memory_mib: usize,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    secret: SecretArgs,
}

#[derive(Args)]
struct ShellArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Run these statements and exit.
    #[arg(short = 'c', long)]
    command: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// How results print: aligned, csv, tsv, json (lines) or vertical.
    #[arg(long, default_value = "aligned", value_parser = parse_format)]
    format: glaux_client::OutputFormat,
}

fn parse_format(name: &str) -> Result<glaux_client::OutputFormat, String> {
    glaux_client::OutputFormat::parse(name).ok_or_else(|| format!("use one of {}", glaux_client::OutputFormat::NAMES))
}

#[derive(Args)]
struct CrawlArgs {
    /// Where the table's files are: s3://bucket/prefix/ or a directory under a warehouse root.
    location: String,
    /// The table to create, `[db.]name` (default: the location's last directory).
    #[arg(long)]
    table: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

/// The default table name for a location: its last path segment, as an identifier.
fn table_name_for(location: &str) -> String {
    let last = location.trim_end_matches('/').rsplit('/').next().unwrap_or("crawled");
    let name: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) { format!("t_{name}") } else { name }
}

fn default_warehouse() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("warehouse"), |h| PathBuf::from(h).join(".glaux/warehouse"))
}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".glaux_history"))
}

impl StorageArgs {
    fn config(&self) -> anyhow::Result<StorageConfig> {
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

    fn home(&self) -> &Path {
        self.warehouse.first().map_or(Path::new("."), PathBuf::as_path)
    }

    fn catalog_path(&self) -> PathBuf {
        self.catalog.clone().unwrap_or_else(|| self.home().join(".glaux/catalog.sqlite"))
    }
}

impl SecretArgs {
    /// The configured secret; a scheduler (`create`) generates one if there is none yet.
    fn load(&self, storage: &StorageArgs, create: bool) -> anyhow::Result<ClusterSecret> {
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

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
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

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLAUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// A scheduler and its executors in this process.
struct Standalone {
    scheduler: Scheduler,
    _executors: Vec<Executor>,
}

async fn start_standalone(args: &StandaloneArgs) -> anyhow::Result<Standalone> {
    let storage = args.storage.config()?;
    let secret = ClusterSecret::generate();
    let config = SchedulerConfig::new(secret.clone())
        .with_bind(args.flight_sql_addr)
        .with_storage(storage.clone())
        .with_catalog_path(args.storage.catalog_path());
    let scheduler = Scheduler::start(args.doors.apply(config)?).await?;
    let mut executors = Vec::new();
    for _ in 0..args.executors {
        let mut config = ExecutorConfig::new(scheduler.cluster_addr().to_string(), secret.clone())
            .with_storage(storage.clone())
            .with_memory_limit(args.memory_mib << 20);
        if let Some(slots) = args.task_slots {
            config = config.with_task_slots(slots);
        }
        executors.push(Executor::start(config).await?);
    }
    tokio::time::timeout(Duration::from_secs(30), scheduler.cluster().wait_for_executors(args.executors))
        .await
        .context("executors did not register within 30 s")?;
    Ok(Standalone { scheduler, _executors: executors })
}

/// Runs until Ctrl-C or until `stopped` completes (the server failed).
async fn until_ctrl_c(stopped: impl std::future::Future<Output = ()>) -> anyhow::Result<bool> {
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        () = stopped => {}
    }
    Ok(true)
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Standalone(args) => {
            init_logging("info");
            let cluster = start_standalone(&args).await?;
            if let Some(addr) = cluster.scheduler.postgres_addr() {
                println!("Glaux standalone: PostgreSQL on {addr}.");
            }
            println!(
                "Glaux standalone: Flight SQL on {} with {} executors ({}). Ctrl-C stops.",
                cluster.scheduler.addr(),
                args.executors,
                args.doors.describe()
            );
            tokio::signal::ctrl_c().await?;
            Ok(true)
        }
        Command::Scheduler(args) => {
            init_logging("info");
            let storage = args.storage.config()?;
            let secret = args.secret.load(&args.storage, true)?;
            let mut config = SchedulerConfig::new(secret)
                .with_bind(args.flight_sql_addr)
                .with_storage(storage)
                .with_catalog_path(args.storage.catalog_path());
            let tls_default = args.doors.tls_cert.is_some().then(|| SocketAddr::from(([127, 0, 0, 1], 50052)));
            if let Some(addr) = args.cluster_addr.or(tls_default) {
                config = config.with_cluster_bind(addr);
            }
            let mut scheduler = Scheduler::start(args.doors.apply(config)?).await?;
            if let Some(addr) = scheduler.postgres_addr() {
                println!("Glaux scheduler: PostgreSQL on {addr}.");
            }
            if scheduler.cluster_addr() != scheduler.addr() {
                println!("Glaux scheduler: executors join on {}.", scheduler.cluster_addr());
            }
            println!("Glaux scheduler: Flight SQL on {} ({}). Ctrl-C stops.", scheduler.addr(), args.doors.describe());
            until_ctrl_c(scheduler.stopped()).await
        }
        Command::Executor(args) => {
            init_logging("info");
            let storage = args.storage.config()?;
            let secret = args.secret.load(&args.storage, false)?;
            let mut config = ExecutorConfig::new(args.scheduler, secret)
                .with_bind(args.bind)
                .with_advertise_host(args.advertise_host)
                .with_storage(storage)
                .with_memory_limit(args.memory_mib << 20);
            if let Some(slots) = args.task_slots {
                config = config.with_task_slots(slots);
            }
            let mut executor = Executor::start(config).await?;
            println!("Glaux executor {}: serving on {}. Ctrl-C stops.", executor.id(), executor.endpoint());
            until_ctrl_c(executor.stopped()).await
        }
        Command::Shell(args) => {
            init_logging("warn");
            let client = args.client.connect().await?;
            let options =
                ShellOptions { command: args.command, file: args.file, history: history_file(), format: args.format };
            Ok(Shell::new(client, options).run().await?)
        }
        Command::Crawl(args) => {
            init_logging("warn");
            let mut client = args.client.connect().await?;
            let table = args.table.unwrap_or_else(|| table_name_for(&args.location));
            let location = args.location.replace('\'', "''");
            client.query(&format!("CREATE EXTERNAL TABLE {table} LOCATION '{location}'")).await?;
            let ddl = client.query(&format!("SHOW CREATE TABLE {table}")).await?;
            for batch in &ddl.batches {
                let column = arrow::array::AsArray::as_string::<i32>(batch.column(0).as_ref());
                for ddl in column.iter().flatten() {
                    println!("{ddl};");
                }
            }
            // What the crawler registered: unpartitioned tables have no partitions to show.
            if let Ok(partitions) = client.query(&format!("SHOW PARTITIONS {table}")).await {
                let names: Vec<String> = partitions
                    .batches
                    .iter()
                    .flat_map(|b| {
                        arrow::array::AsArray::as_string::<i32>(b.column(0).as_ref())
                            .iter()
                            .flatten()
                            .map(String::from)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                let more = if names.len() > 5 { ", ..." } else { "" };
                println!("-- {} partitions registered: {shown}{more}", names.len());
            }
            Ok(true)
        }
        Command::HashPassword => {
            let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                rpassword::prompt_password("Password: ")?
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_string()
            };
            if password.is_empty() {
                bail!("empty password");
            }
            println!("{}", glaux_scheduler::hash_password(&password).map_err(anyhow::Error::msg)?);
            Ok(true)
        }
        Command::Bench(args) => {
            init_logging("warn");
            bench::run(args).await
        }
        Command::Demo(args) => {
            init_logging("warn");
            let lake = demo::ensure_demo_lake(args.storage.home()).await?;
            let cluster = start_standalone(&args).await?;
            let mut client = GlauxClient::connect(&cluster.scheduler.addr().to_string()).await?;
            client.query(&demo::create_table_sql(&lake)).await?;
            println!(
                "Glaux demo: table `events` over {}\nFlight SQL on {} with {} executors.\n{}",
                lake.display(),
                cluster.scheduler.addr(),
                args.executors,
                demo::EXAMPLES
            );
            let options = ShellOptions { history: history_file(), ..ShellOptions::default() };
            Ok(Shell::new(client, options).run().await?)
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("glaux: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
