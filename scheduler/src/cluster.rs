//! `ClusterState`: the executors the scheduler can use, and the gRPC service that keeps it current.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A member as the console shows it.
#[derive(Clone, Debug)]
pub struct MemberView {
    pub info: ExecutorInfo,
    pub draining: bool,
    /// Tasks installed on it at its last heartbeat.
    pub running_tasks: u32,
    pub memory_limit: u64,
    /// Bytes of its memory pool its tasks held at its last heartbeat.
    pub memory_used: u64,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
}

#[derive(Debug)]
struct Member {
    info: ExecutorInfo,
    last_seen: Instant,
    /// It is stopping: no new query is planned on it.
    draining: bool,
    /// Placements (queries being planned and launched) that include it.
    pending: u32,
    running_tasks: u32,
    memory_limit: u64,
    memory_used: u64,
}

/// What an executor's heartbeat says of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Beat {
    /// It is stopping (for good: it registers anew, as a new process, to take tasks again).
    pub draining: bool,
    pub running_tasks: u32,
    pub memory_used: u64,
}

/// Alive executors, ordered by id so that planning is deterministic.
#[derive(Debug)]
pub struct ClusterState {
    members: Mutex<BTreeMap<ExecutorId, Member>>,
    timeout: Duration,
    alive: watch::Sender<usize>,
    /// Executors queries found unreachable: dropped, or kept because they answered the scheduler.
    losses: [AtomicU64; 2],
}

impl ClusterState {
    pub fn new(timeout: Duration) -> Self {
        Self { members: Mutex::new(BTreeMap::new()), timeout, alive: watch::Sender::new(0), losses: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ExecutorId, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, count: usize) {
        self.alive.send_replace(count);
    }

    pub fn register(&self, info: ExecutorInfo) {
        self.register_with_memory(info, 0);
    }

    /// Registers an executor whose tasks may hold `memory_limit` bytes.
    pub fn register_with_memory(&self, info: ExecutorInfo, memory_limit: u64) {
        let count = {
            let mut members = self.lock();
            tracing::info!(executor = %info.id, addr = %info.addr, slots = info.task_slots, "executor joined");
            let member = Member {
                info,
                last_seen: Instant::now(),
                draining: false,
                pending: 0,
                running_tasks: 0,
                memory_limit,
                memory_used: 0,
            };
            members.insert(member.info.id.clone(), member);
            members.len()
        };
        self.publish(count);
    }

    /// Returns false if the executor is unknown (it must register again).
    pub fn heartbeat(&self, id: &ExecutorId) -> bool {
        self.beat(id, Beat::default()).is_some()
    }

    /// A heartbeat: the placements that may still put tasks on the executor, or `None` if it is
    /// unknown (it must register again).
    pub fn beat(&self, id: &ExecutorId, beat: Beat) -> Option<u32> {
        let mut members = self.lock();
        let member = members.get_mut(id)?;
        member.last_seen = Instant::now();
        member.running_tasks = beat.running_tasks;
        member.memory_used = beat.memory_used;
        if beat.draining && !member.draining {
            member.draining = true;
            tracing::info!(executor = %member.info.id, addr = %member.info.addr, "executor draining: no new query is planned on it");
        }
        Some(member.pending)
    }

    /// The executor left the cluster on its own (after draining).
    pub fn leave(&self, id: &ExecutorId) {
        let (left, count) = {
            let mut members = self.lock();
            (members.remove(id), members.len())
        };
        if let Some(member) = left {
            tracing::info!(executor = %member.info.id, addr = %member.info.addr, "executor left the cluster");
            self.publish(count);
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

    /// A query found the executor at `addr` unreachable, and the scheduler's own call to it then
    /// `answered` or not. If it answered, only a link between members broke (the member that
    /// reported the loss cannot reach it): it stays a member, and the query leaves it out on its
    /// own. Otherwise it is dropped ([`Self::remove`]).
    pub fn found_lost(&self, addr: &ExecutorAddr, answered: bool) {
        self.losses[usize::from(answered)].fetch_add(1, Ordering::Relaxed);
        if answered {
            tracing::warn!(%addr, "executor reported unreachable by a member answers the scheduler; kept");
        } else {
            self.remove(addr);
        }
    }

    /// Executors queries found unreachable: (dropped, kept because they answered the scheduler).
    pub fn losses(&self) -> (u64, u64) {
        (self.losses[0].load(Ordering::Relaxed), self.losses[1].load(Ordering::Relaxed))
    }

    /// Drops the executor serving at `addr`; true if it was a member. If it is still alive, its
    /// next heartbeat makes it register again.
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

    /// Every member, draining or not (what a running query may still read from).
    pub fn alive(&self) -> Vec<ExecutorInfo> {
        self.lock().values().map(|m| m.info.clone()).collect()
    }

    /// Members that take new work (not draining).
    pub fn schedulable(&self) -> Vec<ExecutorInfo> {
        self.lock().values().filter(|m| !m.draining).map(|m| m.info.clone()).collect()
    }

    /// Every member with what its heartbeats said.
    pub fn members(&self) -> Vec<MemberView> {
        self.lock()
            .values()
            .map(|m| MemberView {
                info: m.info.clone(),
                draining: m.draining,
                running_tasks: m.running_tasks,
                memory_limit: m.memory_limit,
                memory_used: m.memory_used,
                last_seen_ms: m.last_seen.elapsed().as_millis() as u64,
            })
            .collect()
    }

    /// Members draining now.
    pub fn draining(&self) -> usize {
        self.lock().values().filter(|m| m.draining).count()
    }

    /// The members that take new work, held for a query until its tasks are installed (drop the
    /// placement then): a draining executor does not leave while a placement made before it
    /// drained may still put tasks on it. `excluded`: members the query was found unable to use.
    pub fn place(self: &Arc<Self>, excluded: &[ExecutorAddr]) -> Placement {
        let mut members = self.lock();
        let executors: Vec<ExecutorInfo> = members
            .values_mut()
            .filter(|m| !m.draining && !excluded.contains(&m.info.addr))
            .map(|m| {
                m.pending += 1;
                m.info.clone()
            })
            .collect();
        Placement { cluster: Arc::clone(self), executors }
    }

    /// Waits until at least `n` executors are alive.
    pub async fn wait_for_executors(&self, n: usize) {
        let mut alive = self.alive.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = alive.wait_for(|count| *count >= n).await;
    }
}

/// Executors chosen for one query's tasks (see [`ClusterState::place`]).
pub struct Placement {
    cluster: Arc<ClusterState>,
    pub executors: Vec<ExecutorInfo>,
}

impl Drop for Placement {
    fn drop(&mut self) {
        let mut members = self.cluster.lock();
        for info in &self.executors {
            if let Some(member) = members.get_mut(&info.id) {
                member.pending = member.pending.saturating_sub(1);
            }
        }
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
        let info = ExecutorInfo {
            id: ExecutorId::from(registration.executor_id),
            addr,
            // An executor's word bounds how many tasks it is given at once; a huge number would
            // let one member draw every task of every query.
            task_slots: registration.task_slots.clamp(1, MAX_TASK_SLOTS),
        };
        self.state.register_with_memory(info, registration.memory_limit_bytes);
        Ok(Response::new(RegisterExecutorResponse {
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            task_key: self.task_key.clone(),
        }))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let id = ExecutorId::from(request.executor_id);
        if request.leaving {
            self.state.leave(&id);
            return Ok(Response::new(HeartbeatResponse { reregister: false, pending_placements: 0 }));
        }
        let beat = Beat {
            draining: request.draining,
            running_tasks: request.running_tasks,
            memory_used: request.memory_used_bytes,
        };
        let pending = self.state.beat(&id, beat);
        Ok(Response::new(HeartbeatResponse { reregister: pending.is_none(), pending_placements: pending.unwrap_or(0) }))
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

    #[test]
    fn a_draining_executor_takes_no_new_placement_and_counts_the_earlier_ones() {
        let state = Arc::new(ClusterState::new(Duration::from_secs(60)));
        let (a, b) = (ExecutorId::from("a".to_string()), ExecutorId::from("b".to_string()));
        state.register(ExecutorInfo {
            id: a.clone(),
            addr: ExecutorAddr::parse("127.0.0.1:1").unwrap(),
            task_slots: 1,
        });
        state.register(ExecutorInfo {
            id: b.clone(),
            addr: ExecutorAddr::parse("127.0.0.1:2").unwrap(),
            task_slots: 1,
        });
        let before = state.place(&[]);
        assert_eq!(before.executors.len(), 2);
        assert_eq!(
            state.beat(&a, Beat { draining: true, ..Beat::default() }),
            Some(1),
            "the placement made before it drained"
        );
        let after = state.place(&[]);
        assert_eq!(after.executors.iter().map(|e| &e.id).collect::<Vec<_>>(), vec![&b]);
        assert_eq!(state.schedulable().len(), 1);
        assert_eq!(state.alive().len(), 2, "a draining executor still serves running queries");
        drop(before);
        assert_eq!(state.beat(&a, Beat::default()), Some(0), "draining is for good; nothing pending");
        assert_eq!(state.schedulable().len(), 1);
        state.leave(&a);
        assert_eq!(state.alive().len(), 1);
        assert_eq!(
            state.beat(&a, Beat { draining: true, ..Beat::default() }),
            None,
            "a member that left registers anew"
        );
    }
}
