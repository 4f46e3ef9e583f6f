//! `ClusterState`: the executors the scheduler can use, and the gRPC service that keeps it current.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glaux_proto::generated::scheduler_cluster_server::SchedulerCluster;
use glaux_proto::generated::{HeartbeatRequest, HeartbeatResponse, RegisterExecutorRequest, RegisterExecutorResponse};
use glaux_proto::{ExecutorAddr, ExecutorId};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorInfo {
    pub id: ExecutorId,
    /// Where it serves Flight and its control service.
    pub addr: ExecutorAddr,
    pub task_slots: u32,
}

#[derive(Debug)]
struct Member {
    info: ExecutorInfo,
    last_seen: Instant,
}

/// Alive executors, ordered by id so that planning is deterministic.
#[derive(Debug)]
pub struct ClusterState {
    members: Mutex<BTreeMap<ExecutorId, Member>>,
    timeout: Duration,
    alive: watch::Sender<usize>,
}

impl ClusterState {
    pub fn new(timeout: Duration) -> Self {
        Self { members: Mutex::new(BTreeMap::new()), timeout, alive: watch::Sender::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ExecutorId, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, count: usize) {
        self.alive.send_replace(count);
    }

    pub fn register(&self, info: ExecutorInfo) {
        let count = {
            let mut members = self.lock();
            tracing::info!(executor = %info.id, addr = %info.addr, slots = info.task_slots, "executor joined");
            members.insert(info.id.clone(), Member { info, last_seen: Instant::now() });
            members.len()
        };
        self.publish(count);
    }

    /// Returns false if the executor is unknown (it must register again).
    pub fn heartbeat(&self, id: &ExecutorId) -> bool {
        match self.lock().get_mut(id) {
            Some(member) => {
                member.last_seen = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Drops executors that missed their heartbeats; returns them.
    pub fn expire(&self) -> Vec<ExecutorInfo> {
        let (dropped, count) = {
            let mut members = self.lock();
            let stale: Vec<ExecutorId> = members
                .iter()
                .filter(|(_, m)| m.last_seen.elapsed() > self.timeout)
                .map(|(id, _)| id.clone())
                .collect();
            let dropped: Vec<ExecutorInfo> = stale.iter().filter_map(|id| members.remove(id)).map(|m| m.info).collect();
            (dropped, members.len())
        };
        for info in &dropped {
            tracing::warn!(executor = %info.id, addr = %info.addr, "executor missed its heartbeats; dropped");
        }
        if !dropped.is_empty() {
            self.publish(count);
        }
        dropped
    }

    /// Drops the executor serving at `addr` (a query found it unreachable); true if it was a
    /// member. If it is still alive, its next heartbeat makes it register again.
    pub fn remove(&self, addr: &ExecutorAddr) -> bool {
        let (removed, count) = {
            let mut members = self.lock();
            let before = members.len();
            members.retain(|_, m| m.info.addr != *addr);
            (members.len() < before, members.len())
        };
        if removed {
            tracing::warn!(%addr, "executor unreachable; dropped");
            self.publish(count);
        }
        removed
    }

    pub fn alive(&self) -> Vec<ExecutorInfo> {
        self.lock().values().map(|m| m.info.clone()).collect()
    }

    /// Waits until at least `n` executors are alive.
    pub async fn wait_for_executors(&self, n: usize) {
        let mut alive = self.alive.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = alive.wait_for(|count| *count >= n).await;
    }
}

/// The `SchedulerCluster` service: converts and delegates to [`ClusterState`].
pub struct ClusterService {
    pub state: Arc<ClusterState>,
    pub heartbeat_interval: Duration,
    /// The scheduler's public key for task tokens, handed to each executor that registers.
    pub task_key: Vec<u8>,
}

/// Task slots an executor may claim at most.
pub const MAX_TASK_SLOTS: u32 = 1024;

#[tonic::async_trait]
impl SchedulerCluster for ClusterService {
    async fn register_executor(
        &self,
        request: Request<RegisterExecutorRequest>,
    ) -> Result<Response<RegisterExecutorResponse>, Status> {
        let registration =
            request.into_inner().executor.ok_or_else(|| Status::invalid_argument("registration without executor"))?;
        if registration.executor_id.is_empty() {
            return Err(Status::invalid_argument("an executor id is required"));
        }
        let addr = ExecutorAddr::parse(&registration.endpoint).map_err(Status::invalid_argument)?;
        self.state.register(ExecutorInfo {
            id: ExecutorId::from(registration.executor_id),
            addr,
            // An executor's word bounds how many tasks it is given at once; a huge number would
            // let one member draw every task of every query.
            task_slots: registration.task_slots.clamp(1, MAX_TASK_SLOTS),
        });
        Ok(Response::new(RegisterExecutorResponse {
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            task_key: self.task_key.clone(),
        }))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let id = ExecutorId::from(request.into_inner().executor_id);
        let known = self.state.heartbeat(&id);
        Ok(Response::new(HeartbeatResponse { reregister: !known }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_executors_expire() {
        let state = ClusterState::new(Duration::from_millis(0));
        let id = ExecutorId::from("e1".to_string());
        let addr = ExecutorAddr::parse("127.0.0.1:1").unwrap();
        state.register(ExecutorInfo { id: id.clone(), addr, task_slots: 2 });
        assert_eq!(state.alive().len(), 1);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(state.expire().len(), 1);
        assert!(state.alive().is_empty());
        assert!(!state.heartbeat(&id));
    }
}
