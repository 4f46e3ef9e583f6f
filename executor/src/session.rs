//! The DataFusion session every task of this executor runs in.

use std::sync::Arc;

use std::num::NonZeroUsize;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use glaux_proto::{ClusterChannels, LocalOutputs};
use glaux_storage::LakeObjectStores;

use crate::config::ExecutorConfig;
use crate::error::ExecutorError;

/// The memory all tasks of an executor share.
pub type ExecutorMemory = TrackConsumersPool<FairSpillPool>;

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
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::clone(&pool) as _)
        .with_object_store_registry(Arc::new(LakeObjectStores::new(config.storage.clone())))
        .build_arc()
        .map_err(ExecutorError::Session)?;
    let mut session =
        SessionConfig::new().with_target_partitions(1).with_extension(channels).with_extension(Arc::new(local));
    // A task holds only some partitions of its stage: its scans must not steal files that belong
    // to partitions other executors run.
    session.options_mut().execution.enable_file_stream_work_stealing = false;
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    // The functions the scheduler plans with, so fragments that call them decode here.
    glaux_functions::register(&ctx);
    Ok((ctx, pool))
}
