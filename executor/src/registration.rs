//! Joining the cluster: register with the scheduler, then heartbeat until shut down.

use std::sync::Arc;
use std::time::Duration;

use glaux_proto::ClusterChannels;
use glaux_proto::generated::{ExecutorRegistration, HeartbeatRequest, RegisterExecutorRequest};
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
    /// Where the scheduler's task-token key goes once registered.
    pub task_key: TokenKey,
    /// Whether the scheduler knows this executor (registered, and its last heartbeat answered).
    pub registered: Arc<std::sync::atomic::AtomicBool>,
}

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
                    self.registered.store(true, std::sync::atomic::Ordering::Relaxed);
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

    pub async fn run(self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.heartbeat_forever() => {}
        }
    }

    async fn heartbeat_forever(&self) {
        let mut interval = self.register().await;
        loop {
            tokio::time::sleep(interval).await;
            let expired = self.tasks.expire();
            if expired > 0 {
                tracing::info!(expired, "dropped tasks whose output nobody read");
            }
            let request = HeartbeatRequest {
                executor_id: self.registration.executor_id.clone(),
                running_tasks: self.tasks.len() as u32,
            };
            let response = match self.channels.scheduler(&self.scheduler) {
                Ok(mut client) => client.heartbeat(request).await.map(|r| r.into_inner()),
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            let answered = response.is_ok();
            match response {
                Ok(r) if r.reregister => {
                    self.registered.store(false, std::sync::atomic::Ordering::Relaxed);
                    interval = self.register().await;
                }
                Ok(_) => {}
                Err(status) => tracing::warn!(scheduler = %self.scheduler, "heartbeat failed: {}", status.message()),
            }
            self.registered.store(answered, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
