//! Workgroups at run time: every statement runs in one (its session's: the door's choice, else
//! its user's default, else `primary`), which must exist and be enabled. A workgroup with a
//! concurrency limit admits statements first in first out (the others wait, QUEUED, their wait
//! recorded); its timeout and data scanned cutoff stop a statement that runs too long or reads too
//! much, on every executor (its result stream ends with the reason, and dropping it ends the
//! query's tasks).
//!
//! The data scanned is what the query's executors report while it runs, asked every
//! [`CUTOFF_CHECK`]: a query stops within about that much of passing its cutoff.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::common::DataFusionError;
use futures::{Stream, StreamExt};
use glaux_catalog::{Catalog, WorkGroup};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryStatsHandle, RetryPolicy};

/// The retry policy a statement runs with: its workgroup's when the workgroup enforces its
/// settings, else the one its session asked for, else its workgroup's; `None`: the cluster's.
pub fn retry_policy(
    session: &crate::client_session::ClientSession,
    workgroup: &WorkGroup,
) -> Result<Option<RetryPolicy>, SchedulerError> {
    let parse = |name: &str, whose: &str| {
        RetryPolicy::parse(name).ok_or_else(|| {
            let message = format!("unknown retry policy '{name}' ({whose}): use {}", RetryPolicy::NAMES);
            SchedulerError::refused(ErrorKind::InvalidStatement, message)
        })
    };
    let own = workgroup.settings.retry_policy.as_deref().map(|p| parse(p, "the workgroup's")).transpose()?;
    if workgroup.settings.enforce && own.is_some() {
        return Ok(own);
    }
    match session.retry_policy.as_str() {
        "" => Ok(own),
        asked => parse(asked, "the session's").map(Some),
    }
}

/// How often a running query's data scanned is compared with its workgroup's cutoff.
const CUTOFF_CHECK: Duration = Duration::from_millis(100);
/// Athena's reason for a query stopped at its workgroup's cutoff.
pub const CUTOFF_REASON: &str = "Bytes scanned limit was exceeded";

type Batches = Pin<Box<dyn Stream<Item = datafusion::error::Result<RecordBatch>> + Send>>;

pub struct WorkGroups {
    catalog: Arc<dyn Catalog>,
    /// Each limited workgroup's queue: its limit, and the places in it.
    gates: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
}

impl WorkGroups {
    pub fn new(catalog: Arc<dyn Catalog>) -> Self {
        Self { catalog, gates: Mutex::default() }
    }

    /// Workgroup `name`, if it exists and is enabled.
    pub fn resolve(&self, name: &str) -> Result<WorkGroup, SchedulerError> {
        match self.catalog.workgroup(name)? {
            None => Err(SchedulerError::refused(ErrorKind::UnknownObject, format!("WorkGroup {name} is not found."))),
            Some(workgroup) if !workgroup.enabled => {
                Err(SchedulerError::refused(ErrorKind::PermissionDenied, format!("WorkGroup {name} is disabled.")))
            }
            Some(workgroup) => Ok(workgroup),
        }
    }

    /// The queue of a workgroup with a concurrency limit. A changed limit starts a new queue:
    /// statements admitted under the old one finish there.
    fn gate(&self, workgroup: &WorkGroup) -> Option<Arc<Semaphore>> {
        let limit = workgroup.settings.max_concurrent?;
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let (known, gate) =
            gates.entry(workgroup.name.clone()).or_insert_with(|| (limit, Arc::new(Semaphore::new(limit as usize))));
        if *known != limit {
            *known = limit;
            *gate = Arc::new(Semaphore::new(limit as usize));
        }
        Some(Arc::clone(gate))
    }

    /// Waits for a place among the workgroup's running statements (`queued` is called first if
    /// the statement must wait); `None` if it has no limit.
    pub async fn admit(&self, workgroup: &WorkGroup, queued: impl FnOnce()) -> Option<OwnedSemaphorePermit> {
        let gate = self.gate(workgroup)?;
        if let Ok(permit) = Arc::clone(&gate).try_acquire_owned() {
            return Some(permit);
        }
        queued();
        // The semaphore is never closed.
        gate.acquire_owned().await.ok()
    }
}

/// What stops a running statement early: its workgroup's timeout and data scanned cutoff.
#[derive(Clone, Debug)]
pub struct Limits {
    workgroup: String,
    deadline: Option<Instant>,
    timeout: Duration,
    cutoff: Option<u64>,
}

impl Limits {
    /// The limits of `workgroup`, for a statement admitted now.
    pub fn of(workgroup: &WorkGroup) -> Self {
        let timeout = Duration::from_secs(workgroup.settings.timeout_seconds.unwrap_or(0));
        Self {
            workgroup: workgroup.name.clone(),
            deadline: workgroup.settings.timeout_seconds.map(|_| Instant::now() + timeout),
            timeout,
            cutoff: workgroup.settings.bytes_scanned_cutoff,
        }
    }

    /// Whether any limit applies.
    pub fn any(&self) -> bool {
        self.deadline.is_some() || self.cutoff.is_some()
    }

    pub fn timed_out(&self) -> SchedulerError {
        SchedulerError::refused(
            ErrorKind::ResourceLimit,
            format!(
                "Query timeout: the statement ran longer than workgroup {}'s timeout of {} s",
                self.workgroup,
                self.timeout.as_secs()
            ),
        )
    }

    fn over_cutoff(&self, cutoff: u64, scanned: u64) -> SchedulerError {
        SchedulerError::refused(
            ErrorKind::ResourceLimit,
            format!(
                "{CUTOFF_REASON}: the query scanned {scanned} bytes; workgroup {} allows {cutoff} per query",
                self.workgroup
            ),
        )
    }

    /// Runs `work`, failing it when the deadline passes first.
    pub async fn within<T>(&self, work: impl Future<Output = Result<T, SchedulerError>>) -> Result<T, SchedulerError> {
        match self.deadline {
            None => work.await,
            Some(deadline) => {
                tokio::time::timeout_at(deadline.into(), work).await.unwrap_or_else(|_| Err(self.timed_out()))
            }
        }
    }

    /// `batches` ending with the reason when the deadline passes or the query's data scanned (as
    /// `progress` finds it while it runs, and `stats` once it ended) passes the cutoff.
    pub fn enforce(&self, batches: Batches, progress: ProgressSlot, stats: QueryStatsHandle) -> Batches {
        if !self.any() {
            return batches;
        }
        let first = tokio::time::Instant::now() + CUTOFF_CHECK;
        let mut check = tokio::time::interval_at(first, CUTOFF_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let state = Enforced { batches, limits: self.clone(), progress, stats, check, ended: false };
        Box::pin(futures::stream::unfold(state, |mut state| async move {
            if state.ended {
                return None;
            }
            match state.next_item().await {
                Ok(None) => None,
                Ok(Some(item)) => Some((item, state)),
                Err(stop) => {
                    state.ended = true;
                    Some((Err(DataFusionError::External(Box::new(stop))), state))
                }
            }
        }))
    }
}

/// A result stream under its workgroup's limits.
struct Enforced {
    batches: Batches,
    limits: Limits,
    progress: ProgressSlot,
    stats: QueryStatsHandle,
    check: tokio::time::Interval,
    ended: bool,
}

impl Enforced {
    /// The next item of the result (`None` at its end), or why the statement must stop.
    async fn next_item(&mut self) -> Result<Option<datafusion::error::Result<RecordBatch>>, SchedulerError> {
        let deadline = self.limits.deadline.map(tokio::time::Instant::from);
        loop {
            tokio::select! {
                item = self.batches.next() => {
                    // A query over its cutoff fails even if it ended before a check saw it (its
                    // tasks reported what they read as it ended).
                    if item.is_none() && let Some(cutoff) = self.limits.cutoff {
                        let scanned = self.stats.snapshot().scan.bytes_scanned;
                        if scanned > cutoff {
                            return Err(self.limits.over_cutoff(cutoff, scanned));
                        }
                    }
                    return Ok(item);
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    return Err(self.limits.timed_out());
                }
                _ = self.check.tick(), if self.limits.cutoff.is_some() => {
                    if let Some(cutoff) = self.limits.cutoff {
                        over(&self.limits, &self.progress, cutoff).await?;
                    }
                }
            }
        }
    }
}

/// Fails if the query's executors scanned more than `cutoff` so far.
async fn over(limits: &Limits, progress: &ProgressSlot, cutoff: u64) -> Result<(), SchedulerError> {
    let Some(probe) = progress.get() else { return Ok(()) };
    let scanned = probe.progress().await.bytes_scanned;
    if scanned > cutoff {
        return Err(limits.over_cutoff(cutoff, scanned));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_session::ClientSession;
    use glaux_catalog::WorkGroupSettings;

    fn workgroup(policy: Option<&str>, enforce: bool) -> WorkGroup {
        WorkGroup {
            name: "etl".into(),
            description: String::new(),
            enabled: true,
            settings: WorkGroupSettings { retry_policy: policy.map(String::from), enforce, ..Default::default() },
            tags: Vec::new(),
            created_ms: 0,
        }
    }

    fn session(policy: &str) -> ClientSession {
        ClientSession { retry_policy: policy.into(), ..ClientSession::default() }
    }

    #[test]
    fn retry_policy_comes_from_an_enforcing_workgroup_then_the_session_then_the_workgroup() {
        let task = Some(RetryPolicy::Task);
        assert_eq!(retry_policy(&session(""), &workgroup(None, false)).unwrap(), None, "the cluster's");
        assert_eq!(retry_policy(&session(""), &workgroup(Some("task"), false)).unwrap(), task);
        assert_eq!(retry_policy(&session("TASK"), &workgroup(None, true)).unwrap(), task);
        assert_eq!(retry_policy(&session("query"), &workgroup(Some("task"), false)).unwrap(), Some(RetryPolicy::Query));
        assert_eq!(retry_policy(&session("query"), &workgroup(Some("task"), true)).unwrap(), task, "enforced");
        let error = retry_policy(&session("sometimes"), &workgroup(None, false)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidStatement);
        assert!(error.to_string().contains("unknown retry policy 'sometimes'"), "{error}");
    }
}
