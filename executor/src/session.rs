//! The DataFusion session every task of this executor runs in.

use std::sync::Arc;

use std::num::NonZeroUsize;

use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use glaux_proto::{ClusterChannels, LocalOutputs};
use glaux_storage::LakeObjectStores;

use crate::config::ExecutorConfig;
use crate::error::ExecutorError;

/// The memory all tasks of an executor share.
pub type ExecutorMemory = TrackConsumersPool<FairSpillPool>;

/// How many sorts' merge reservations a pool holds at most, as a share of it.
const MERGES_AT_ONCE: usize = 16;

/// Pool bytes per spilled run one merge pass may read at once: a run holds about two of its
/// batches (up to a few MiB) outside what could spill, and a merge should keep to 1/8 of the pool.
const POOL_BYTES_PER_MERGED_RUN: usize = 16 << 20;

/// One context for all tasks: they share the memory pool and the object-store clients.
pub fn executor_session(
    config: &ExecutorConfig,
    channels: Arc<ClusterChannels>,
    local: LocalOutputs,
) -> Result<(SessionContext, Arc<ExecutorMemory>), ExecutorError> {
    // When memory runs out, the error names the operators that hold the most.
    let pool = Arc::new(TrackConsumersPool::new(
        FairSpillPool::new(config.memory_limit_bytes),
        NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    ));
    let fan_in = (config.memory_limit_bytes / POOL_BYTES_PER_MERGED_RUN).max(2);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::clone(&pool) as _)
        // A merge of spilled runs holds batches of each run it reads, outside what it could spill:
        // unbounded, one sort's merge takes the whole pool from the others. More runs than this
        // take more merge passes.
        .with_disk_manager_builder(DiskManagerBuilder::default().with_max_spill_merge_fan_in(fan_in))
        .with_object_store_registry(Arc::new(LakeObjectStores::new(config.storage.clone())))
        .build_arc()
        .map_err(ExecutorError::Session)?;
    let mut session =
        SessionConfig::new().with_target_partitions(1).with_extension(channels).with_extension(Arc::new(local));
    // A task holds only some partitions of its stage: its scans must not steal files that belong
    // to partitions other executors run.
    session.options_mut().execution.enable_file_stream_work_stealing = false;
    // Each sort sets aside this much, unspillable, to merge its spills; several sorts of several
    // tasks run at once, so in a small pool the default (10 MiB) would leave nothing to sort with.
    let execution = &mut session.options_mut().execution;
    execution.sort_spill_reservation_bytes =
        execution.sort_spill_reservation_bytes.min(config.memory_limit_bytes / MERGES_AT_ONCE);
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    // The functions the scheduler plans with, so fragments that call them decode here.
    glaux_functions::register(&ctx);
    Ok((ctx, pool))
}
