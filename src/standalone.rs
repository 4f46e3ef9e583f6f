//! A scheduler and its executors in one process (`glaux standalone`, `glaux demo`, `glaux bench`).

use std::time::Duration;

use anyhow::Context;
use glaux_executor::{Executor, ExecutorConfig};
use glaux_proto::ClusterSecret;
use glaux_scheduler::{Scheduler, SchedulerConfig};

use crate::args::StandaloneArgs;

/// A scheduler and its executors in this process.
pub(crate) struct Standalone {
    pub(crate) scheduler: Scheduler,
    _executors: Vec<Executor>,
}

pub(crate) async fn start_standalone(args: &StandaloneArgs) -> anyhow::Result<Standalone> {
    let storage = args.storage.config()?;
    args.storage.guard_private_files(&storage, &args.doors.private_files())?;
    let secret = ClusterSecret::generate();
    let config = SchedulerConfig::new(secret.clone())
        .with_bind(args.flight_sql_addr)
        .with_storage(storage.clone())
        .with_catalog_path(args.storage.catalog_path())
        .with_compute(crate::compute());
    let scheduler = Scheduler::start(args.doors.apply(config)?).await?;
    let mut executors = Vec::new();
    for _ in 0..args.executors {
        let mut config = ExecutorConfig::new(scheduler.cluster_addr().to_string(), secret.clone())
            .with_storage(storage.clone())
            .with_memory_limit(args.memory_mib << 20)
            .with_compute(crate::compute());
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
