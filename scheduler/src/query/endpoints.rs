//! Results read from the executors: when a query's final stage is a plain gather, a client that
//! can read a `FlightInfo`'s endpoints at other locations reads each gathered partition straight
//! from the executor producing it, in parallel, and no row passes through the scheduler.
//!
//! The query runs as usual up to its last executor stage; instead of running the gather here,
//! [`QueryRunner::run_at_executors`] answers with one [`ResultEndpoint`] per gathered partition (a
//! ticket with a client-read token for exactly that task), and a [`QueryResult`] with no rows that
//! ends once the client has read every endpoint, so that whoever holds it (the door, in the
//! background) holds the query's place among its user's statements and writes its audit line
//! then. The query then ends on every executor as any other does (its statistics collected), or
//! when nothing has moved for [`IDLE_LIMIT`] (a client that stopped reading), or when the result
//! is dropped (a cancelled statement).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, stream};
use glaux_proto::generated::{QueryProgressRequest, TaskOutputTicket};
use glaux_proto::{ClusterChannels, ExecutorAddr, QueryId, StageId, StageReaderExec, TokenPurpose};

use super::QueryResult;
use super::guard::guarded;
use super::launch::drop_unless_it_answers;
use super::physical::physical_plan;
use super::run::{QueryRunner, distributed_plan};
use super::stats::{ProgressProbe, ProgressSlot, QueryStatsHandle};
use crate::cluster::ClusterState;
use crate::error::{ErrorKind, SchedulerError};

/// How long a query whose results are read from the executors may sit with nothing read and
/// nothing computed before it is ended (its client stopped reading, or never started).
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// How often the executors are asked how far the client has read, at most.
const POLL_LIMIT: Duration = Duration::from_secs(1);

/// How long one executor's answer is waited for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// One gathered partition of a query's result, where a client reads it.
#[derive(Clone, Debug)]
pub struct ResultEndpoint {
    pub executor: ExecutorAddr,
    /// Its Flight ticket, with a client-read token; the door adds the schema the client was told.
    pub ticket: TaskOutputTicket,
}

/// A query launched for its client to read from the executors.
pub struct AtExecutors {
    pub endpoints: Vec<ResultEndpoint>,
    /// No rows: it ends when the client has read every endpoint (or stopped reading).
    pub result: QueryResult,
}

impl QueryRunner {
    /// Launches `plan` for its result to be read from the executors, if its final stage is a
    /// plain gather of an executor stage; `None` (nothing launched) otherwise, when members talk
    /// over mutual TLS (a client holds no member certificate), or when an executor turns out to
    /// be lost (it is forgotten, and the caller runs the query the usual way).
    pub async fn run_at_executors(
        &self,
        state: &SessionState,
        query: QueryId,
        plan: &LogicalPlan,
        progress: &ProgressSlot,
    ) -> Result<Option<AtExecutors>, SchedulerError> {
        // Under retry policy `task` the scheduler reads each result partition whole before a row
        // goes out, which a client reading the executors cannot do.
        let policy = state.config().get_extension::<super::RetryPolicy>().map(|p| *p).unwrap_or_default();
        if self.channels.mutual_tls() || policy == super::RetryPolicy::Task {
            return Ok(None);
        }
        let started = Instant::now();
        let placement = self.cluster.place(&[]);
        let executors = placement.executors.clone();
        let planned = physical_plan(state, plan, &executors, true).await?;
        let distributed =
            distributed_plan(query.clone(), planned.physical, &executors, planned.scans, &self.signer, planned.small)?;
        let Some(reader) = gathered(&distributed.root) else { return Ok(None) };
        let stage = reader.stage();
        let Some(tasks) = distributed.stages.iter().find(|s| s.id == stage).map(|s| s.tasks.len()) else {
            return Ok(None);
        };
        let endpoints: Vec<ResultEndpoint> = reader
            .partitions()
            .iter()
            .flatten()
            .map(|output| ResultEndpoint {
                executor: output.executor.clone(),
                ticket: TaskOutputTicket {
                    query_id: query.to_string(),
                    stage_id: stage.0,
                    task_id: output.task.0,
                    partition: output.partition,
                    compress: false,
                    read_token: self.signer.sign(TokenPurpose::ClientRead, &query, stage, output.task),
                    client_schema: Vec::new(),
                    dynamic_filters: Vec::new(),
                },
            })
            .collect();
        if endpoints.is_empty() {
            return Ok(None);
        }
        let (members, guard) = self.guard(&distributed, planned.in_use);
        if let Err(error) = self.launch(&distributed, false).await {
            let ErrorKind::LostExecutor { executor } = error.kind() else { return Err(error) };
            drop_unless_it_answers(&self.cluster, &self.channels, &executor).await;
            tracing::warn!(%query, %executor, "executor lost while launching; the result goes through the scheduler");
            return Ok(None);
        }
        tracing::debug!(%query, endpoints = endpoints.len(), "query launched; its client reads the executors");
        let schema = distributed.root.schema();
        let distributed = Arc::new(distributed);
        let stats = QueryStatsHandle {
            query: query.clone(),
            started,
            rows: Arc::default(),
            plan: Some(Arc::clone(&distributed)),
            scans: distributed.scans.clone(),
            late: Arc::default(),
            reruns: Arc::default(),
        };
        progress.set(ProgressProbe::new(&distributed, &stats, Arc::clone(&members), &self.channels));
        let watch = Watch {
            cluster: Arc::clone(&self.cluster),
            channels: Arc::clone(&self.channels),
            members,
            query: query.clone(),
            stage,
            tasks,
        };
        let rows = Arc::clone(&stats.rows);
        let read = stream::once(async move { rows.store(watch.until_read().await, Ordering::Relaxed) });
        let batches = RecordBatchStreamAdapter::new(Arc::clone(&schema), read.filter_map(|()| async { None }));
        let batches = guarded(Box::pin(batches), guard, Arc::clone(&stats.late));
        Ok(Some(AtExecutors { endpoints, result: QueryResult { query, schema, batches: Box::pin(batches), stats } }))
    }
}

/// The reader of the final stage when that stage is a plain gather (the reader alone, or
/// coalesced), each partition one task output.
fn gathered(root: &Arc<dyn ExecutionPlan>) -> Option<&StageReaderExec> {
    let node = match root.downcast_ref::<CoalescePartitionsExec>() {
        Some(coalesce) if coalesce.fetch().is_none() => coalesce.input(),
        Some(_) => return None,
        None => root,
    };
    let reader = node.downcast_ref::<StageReaderExec>()?;
    reader.partitions().iter().all(|sources| sources.len() == 1).then_some(reader)
}

/// Follows how far a client has read a query's result from its executors.
struct Watch {
    cluster: Arc<ClusterState>,
    channels: Arc<ClusterChannels>,
    members: Arc<Mutex<Vec<ExecutorAddr>>>,
    query: QueryId,
    /// The gathered stage, and its number of tasks.
    stage: StageId,
    tasks: usize,
}

/// One look at the query on its executors.
#[derive(PartialEq, Eq)]
struct Look {
    /// Every executor answered and every task of the gathered stage has had its output read.
    read: bool,
    /// Rows the gathered stage's tasks sent.
    rows: u64,
    /// What moves while the query runs (rows sent, bytes scanned, tasks done by every stage).
    moved: (u64, u64, u32),
}

impl Watch {
    /// Returns (with the rows sent) once the client has read every endpoint, when nothing has
    /// moved for [`IDLE_LIMIT`], or when one of the query's executors is lost (the client's reads
    /// from it fail; nothing re-runs a task whose output a client reads).
    async fn until_read(self) -> u64 {
        let (mut wait, mut last, mut since, mut rows) = (Duration::from_millis(10), None, Instant::now(), 0);
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(POLL_LIMIT);
            if let Some(lost) = self.lost() {
                tracing::info!(query = %self.query, executor = %lost, "executor lost while its client read the result: ending the query");
                return rows;
            }
            let look = self.look().await;
            rows = rows.max(look.rows);
            if look.read {
                return look.rows;
            }
            if last.as_ref() != Some(&look.moved) {
                (last, since) = (Some(look.moved), Instant::now());
            } else if since.elapsed() >= IDLE_LIMIT {
                tracing::info!(query = %self.query, "nothing read from the executors for {IDLE_LIMIT:?}: ending the query");
                return look.rows;
            }
        }
    }

    /// A member of the query the cluster no longer counts alive.
    fn lost(&self) -> Option<ExecutorAddr> {
        let alive: Vec<ExecutorAddr> = self.cluster.alive().into_iter().map(|e| e.addr).collect();
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.iter().find(|m| !alive.contains(m)).cloned()
    }

    async fn look(&self) -> Look {
        let executors = self.members.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let calls = executors.iter().map(|executor| async move {
            let mut client = self.channels.executor_control(executor).ok()?;
            let request =
                QueryProgressRequest { query_id: self.query.to_string(), stage_id: Some(self.stage.0), tasks: false };
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, client.query_progress(request)).await.ok()?.ok()?;
            Some(answer.into_inner())
        });
        let answers = futures::future::join_all(calls).await;
        let all_answered = answers.iter().all(Option::is_some);
        let (mut tasks, mut done, mut rows, mut moved) = (0, 0, 0, (0, 0, 0));
        for answer in answers.into_iter().flatten() {
            tasks += answer.stage_tasks as usize;
            done += answer.stage_tasks_done as usize;
            rows += answer.stage_rows_out;
            moved = (moved.0 + answer.rows_out, moved.1 + answer.bytes_scanned, moved.2 + answer.tasks_done);
        }
        Look { read: all_answered && tasks == self.tasks && done == tasks, rows, moved }
    }
}
