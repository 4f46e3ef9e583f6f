//! Joining the cluster: register with the scheduler, then heartbeat until shut down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use glaux_proto::ClusterChannels;
use glaux_proto::generated::{ExecutorRegistration, HeartbeatRequest, RegisterExecutorRequest};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::task_key::TokenKey;
use crate::task_table::TaskTable;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

pub struct Membership {
    pub channels: Arc<ClusterChannels>,
    pub scheduler: String,
    pub registration: ExecutorRegistration,
    pub tasks: Arc<TaskTable>,
    /// Its pool's use goes in every heartbeat.
    pub memory: Arc<crate::session::ExecutorMemory>,
    /// Where the scheduler's task-token key goes once registered.
    pub task_key: TokenKey,
    /// Whether the scheduler knows this executor (registered, and its last heartbeat answered).
    pub registered: Arc<std::sync::atomic::AtomicBool>,
    pub drain: Arc<DrainState>,
}

/// A graceful stop, shared by [`Membership`] (which tells the scheduler) and the executor
/// (which waits for it).
#[derive(Debug, Default)]
pub struct DrainState {
    draining: AtomicBool,
    /// The scheduler answered a heartbeat that said so: it plans no new query here.
    acknowledged: AtomicBool,
    /// Queries the scheduler was still placing here at its last answer.
    pending: AtomicU32,
    /// Wakes the heartbeat loop to tell the scheduler at once.
    nudge: Notify,
}

impl DrainState {
    pub fn begin(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.nudge.notify_one();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The scheduler knows this executor drains and places nothing more on it.
    pub fn placements_done(&self) -> bool {
        self.acknowledged.load(Ordering::Relaxed) && self.pending.load(Ordering::Relaxed) == 0
    }
}

/// How often a draining executor asks the scheduler whether queries are still placed on it.
const DRAIN_BEAT: Duration = Duration::from_millis(200);

impl Membership {
    /// Registers (retrying with backoff while the scheduler is unreachable) and returns the
    /// heartbeat interval the scheduler asked for.
    async fn register(&self) -> Duration {
        let mut retry = FIRST_RETRY;
        loop {
            let result = match self.channels.scheduler(&self.scheduler) {
                Ok(mut client) => client
                    .register_executor(RegisterExecutorRequest { executor: Some(self.registration.clone()) })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| s.message().to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(response) => {
                    self.task_key.set(response.task_key);
                    self.registered.store(true, Ordering::Relaxed);
                    tracing::info!(
                        executor = %self.registration.executor_id,
                        scheduler = %self.scheduler,
                        "registered with scheduler"
                    );
                    return Duration::from_millis(response.heartbeat_interval_ms.clamp(50, 60_000));
                }
                Err(message) => {
                    tracing::warn!(scheduler = %self.scheduler, "cannot register yet: {message}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Tells the scheduler this executor leaves now (best effort: a scheduler that does not hear
    /// it drops the executor when its heartbeats stop).
    pub async fn leave(channels: &ClusterChannels, scheduler: &str, executor_id: &str) {
        let request = HeartbeatRequest {
            executor_id: executor_id.to_string(),
            running_tasks: 0,
            draining: true,
            leaving: true,
            memory_used_bytes: 0,
        };
        let told = async {
            match channels.scheduler(scheduler) {
                Ok(mut client) => client.heartbeat(request).await.map(|_| ()).map_err(|s| s.message().to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        match tokio::time::timeout(Duration::from_secs(2), told).await {
            Ok(Ok(())) => tracing::info!(scheduler, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(scheduler, "could not tell the scheduler this executor leaves: {e}"),
            Err(_) => tracing::warn!(scheduler, "the scheduler did not answer this executor's leaving"),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.heartbeat_forever() => {}
        }
    }

    async fn heartbeat_forever(&self) {
        let mut interval = self.register().await;
        loop {
            let wait = if self.drain.is_draining() { interval.min(DRAIN_BEAT) } else { interval };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.drain.nudge.notified() => {}
            }
            let expired = self.tasks.expire();
            if expired > 0 {
                tracing::info!(expired, "dropped tasks whose output nobody read");
            }
            let request = HeartbeatRequest {
                executor_id: self.registration.executor_id.clone(),
                running_tasks: self.tasks.len() as u32,
                draining: self.drain.is_draining(),
                leaving: false,
                memory_used_bytes: datafusion::execution::memory_pool::MemoryPool::reserved(self.memory.as_ref())
                    as u64,
            };
            let draining = request.draining;
            let response = match self.channels.scheduler(&self.scheduler) {
                Ok(mut client) => client.heartbeat(request).await.map(|r| r.into_inner()),
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            let answered = response.is_ok();
            match response {
                // A draining executor the scheduler forgot has nothing placed on it: it does not
                // join again.
                Ok(r) if r.reregister && draining => {
                    self.drain.pending.store(0, Ordering::Relaxed);
                    self.drain.acknowledged.store(true, Ordering::Relaxed);
                }
                Ok(r) if r.reregister => {
                    self.registered.store(false, Ordering::Relaxed);
                    interval = self.register().await;
                }
                Ok(r) => {
                    self.drain.pending.store(r.pending_placements, Ordering::Relaxed);
                    self.drain.acknowledged.store(draining, Ordering::Relaxed);
                }
                Err(status) => tracing::warn!(scheduler = %self.scheduler, "heartbeat failed: {}", status.message()),
            }
            self.registered.store(answered, Ordering::Relaxed);
        }
    }
}
