//! The `glaux` binary: scheduler, executor, both at once, the shell, and the demo.

mod args;
mod bench;
mod config_file;
mod demo;
mod probe;
mod standalone;
mod stop;

use args::{AccessKeyAction, Cli, Command, ConfigAction, LogFormat, history_file, table_name_for};
use standalone::start_standalone;
use stop::Stop;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use glaux_client::{GlauxClient, Shell, ShellOptions};
use glaux_executor::{Executor, ExecutorConfig};
use glaux_scheduler::{Scheduler, SchedulerConfig};

fn init_logging(default: &str, format: LogFormat) {
    // The Delta kernel logs every snapshot it builds at info: a line per query naming a Delta
    // table is noise in a server's log (GLAUX_LOG can ask for it).
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLAUX_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},buoyant_kernel=warn,deltalake_core=warn"))
    });
    let lines = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => lines.init(),
        LogFormat::Json => lines.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let init_logging = |default| init_logging(default, cli.log_format);
    match cli.command {
        Command::Standalone(args) => {
            init_logging("info");
            let cluster = start_standalone(&args).await?;
            if let Some(addr) = cluster.scheduler.postgres_addr() {
                println!("Glaux standalone: PostgreSQL on {addr}.");
            }
            if let Some(addr) = cluster.scheduler.http_addr() {
                let scheme = if args.doors.tls_cert.is_some() { "https" } else { "http" };
                println!("Glaux standalone: Athena API on {scheme}://{addr}.");
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
            let mut private = args.doors.private_files().to_vec();
            private.push(("cluster secret file", args.secret.cluster_secret_file.as_deref()));
            private.push(("cluster TLS key", args.cluster_tls.cluster_tls_key.as_deref()));
            args.storage.guard_private_files(&storage, &private)?;
            let secret = args.secret.load(&args.storage, true)?;
            let mut config = SchedulerConfig::new(secret)
                .with_bind(args.flight_sql_addr)
                .with_storage(storage)
                .with_catalog_path(args.storage.catalog_path())
                .with_cluster_tls(args.cluster_tls.load()?)
                .with_compute(compute());
            let own_port = args.doors.tls_cert.is_some() || args.cluster_tls.cluster_tls_cert.is_some();
            let tls_default = own_port.then(|| SocketAddr::from(([127, 0, 0, 1], 50052)));
            if let Some(addr) = args.cluster_addr.or(tls_default) {
                config = config.with_cluster_bind(addr);
            }
            let mut scheduler = Scheduler::start(args.doors.apply(config)?).await?;
            if let Some(addr) = scheduler.postgres_addr() {
                println!("Glaux scheduler: PostgreSQL on {addr}.");
            }
            if let Some(addr) = scheduler.http_addr() {
                let scheme = if args.doors.tls_cert.is_some() { "https" } else { "http" };
                println!("Glaux scheduler: Athena API on {scheme}://{addr}.");
            }
            if scheduler.cluster_addr() != scheduler.addr() {
                println!("Glaux scheduler: executors join on {}.", scheduler.cluster_addr());
            }
            println!("Glaux scheduler: Flight SQL on {} ({}). Ctrl-C stops.", scheduler.addr(), args.doors.describe());
            if let Stop::Terminate = stop::until_stop(scheduler.stopped()).await? {
                let timeout = Duration::from_secs(args.drain_timeout);
                match stop::unless_forced(scheduler.drain(timeout)).await? {
                    Some(drained) => tracing::info!(
                        running = drained.running,
                        cancelled = drained.cancelled,
                        "stopped after the running statements"
                    ),
                    None => tracing::warn!("stopped at once: a second signal came while draining"),
                }
            }
            scheduler.shutdown();
            Ok(true)
        }
        Command::Executor(args) => {
            init_logging("info");
            let storage = args.storage.config()?;
            args.storage.guard_private_files(
                &storage,
                &[
                    ("cluster secret file", args.secret.cluster_secret_file.as_deref()),
                    ("cluster TLS key", args.cluster_tls.cluster_tls_key.as_deref()),
                ],
            )?;
            let secret = args.secret.load(&args.storage, false)?;
            let mut config = ExecutorConfig::new(args.scheduler, secret)
                .with_bind(args.bind)
                .with_advertise_host(args.advertise_host)
                .with_http(args.http_addr)
                .with_storage(storage)
                .with_memory_limit(args.memory_mib << 20)
                .with_spool_limit(args.spool_limit_mib << 20)
                .with_tls(args.cluster_tls.load()?)
                .with_compute(compute());
            if let Some(slots) = args.task_slots {
                config = config.with_task_slots(slots);
            }
            let mut executor = Executor::start(config).await?;
            println!("Glaux executor {}: serving on {}. Ctrl-C stops.", executor.id(), executor.endpoint());
            if let Some(addr) = executor.http_addr() {
                println!("Metrics and probes: http://{addr}/metrics, /health, /ready");
            }
            if let Stop::Terminate = stop::until_stop(executor.stopped()).await? {
                match stop::unless_forced(executor.drain(Duration::from_secs(args.drain_timeout))).await? {
                    Some(0) => tracing::info!("left the cluster after its tasks ended"),
                    Some(left) => tracing::warn!(tasks = left, "left the cluster at the drain timeout"),
                    None => tracing::warn!("stopped at once: a second signal came while draining"),
                }
            }
            executor.shutdown();
            Ok(true)
        }
        Command::Shell(args) => {
            init_logging("warn");
            let mut client = args.client.connect().await?;
            // The shell's statements show as the shell's in the query history.
            client.set_header(glaux_client::CLIENT_HEADER, "shell");
            if let Some(policy) = &args.retry_policy {
                client.set_header(glaux_client::RETRY_POLICY_HEADER, policy.name());
            }
            if let Some(workgroup) = &args.workgroup {
                client.set_header(glaux_client::WORKGROUP_HEADER, workgroup);
            }
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
        Command::AccessKey(args) => {
            match args.action {
                AccessKeyAction::Create { user, storage } => {
                    let catalog = storage.catalog_path();
                    let key = glaux_scheduler::issue_access_key(&catalog, &user)?;
                    println!("Access key for {user} (catalog {}):", catalog.display());
                    println!("aws_access_key_id = {}", key.id);
                    println!("aws_secret_access_key = {}", key.secret);
                    println!("The secret is not shown again.");
                }
                AccessKeyAction::Delete { id, storage } => {
                    let catalog = storage.catalog_path();
                    if !glaux_scheduler::revoke_access_key(&catalog, &id)? {
                        bail!("no access key {id} in {}", catalog.display());
                    }
                    println!("Access key {id} revoked.");
                }
            }
            Ok(true)
        }
        Command::Probe { url } => probe::probe(&url).await,
        Command::Config { action: ConfigAction::Show { role, flags } } => {
            print!("{}", config_file::show(cli.config.as_deref(), &role, &flags)?);
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

/// The runtime this process's scheduler and executors run plans on, apart from the one `main`
/// runs on (which then only answers the network): see `glaux_proto::Compute`. Made on first use,
/// with a thread per core, it lasts as long as the process.
pub(crate) fn compute() -> glaux_proto::Compute {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("glaux-compute")
            .enable_all()
            .build()
            .expect("threads for the compute runtime")
    });
    glaux_proto::Compute::new(runtime.handle().clone())
}

/// mimalloc: see its line in `Cargo.toml`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    glaux_proto::use_ring_for_tls();
    let configured = match config_file::apply(std::env::args_os().collect()) {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("glaux: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(Cli::parse_from(configured.argv)).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("glaux: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
