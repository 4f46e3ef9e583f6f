//! Query executions of Athena's API: each statement runs in the background after
//! `StartQueryExecution` returns its id, writes its result to `<OutputLocation>/<id>.csv` (as one
//! upload, completed only when the last row is written: a failed or stopped query leaves no
//! file), and keeps its state for `GetQueryExecution` and its file for `GetQueryResults`.
//!
//! Kept in memory, the most recent [`KEPT`] executions (a running one is never dropped).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{FutureExt, StreamExt};
use glaux_proto::QueryId;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::results;
use crate::client_session::ClientSession;
use crate::engine::QueryEngine;
use crate::error::SchedulerError;
use crate::query::ProgressSlot;

/// Executions kept for `Get*`/`List*` calls.
const KEPT: usize = 10_000;
const CANCELLED: &str = "Query cancelled by user";
/// Bytes of CSV gathered before they are written out.
const WRITE_CHUNK: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub(super) fn name(self) -> &'static str {
        match self {
            State::Queued => "QUEUED",
            State::Running => "RUNNING",
            State::Succeeded => "SUCCEEDED",
            State::Failed => "FAILED",
            State::Cancelled => "CANCELLED",
        }
    }

    pub(super) fn finished(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// What an execution is and did so far.
#[derive(Clone, Debug)]
pub(super) struct Status {
    pub state: State,
    pub reason: Option<String>,
    pub completed: Option<SystemTime>,
    /// The statement's kind (`Statement::kind`), once planned.
    pub kind: &'static str,
    pub columns: Vec<Value>,
    /// Rows a write wrote, read from its one-row result.
    pub update_count: Option<u64>,
    pub bytes_scanned: u64,
    /// Rows written to the result file.
    pub rows: u64,
    pub planning_ms: u64,
    pub engine_ms: u64,
    /// The earlier result it returned instead of running.
    pub reused: Option<ResultFile>,
}

/// A result file: its location as clients see it, its store and its path there.
#[derive(Clone, Debug)]
pub(super) struct ResultFile {
    pub output: String,
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
}

pub(super) struct Execution {
    pub id: String,
    pub sql: String,
    pub database: String,
    pub catalog: String,
    /// The result file's location, `<OutputLocation>/<id>.csv`.
    pub output: String,
    pub submitted: SystemTime,
    pub session: ClientSession,
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    status: Mutex<Status>,
    stop: CancellationToken,
    /// Its query's progress, and whether its workgroup admitted it.
    progress: ProgressSlot,
    reuse: Option<Duration>,
}

impl Execution {
    /// Where its result is: its own file, or the earlier one it reused.
    pub(super) fn result_file(&self) -> ResultFile {
        self.status().reused.unwrap_or_else(|| ResultFile {
            output: self.output.clone(),
            store: Arc::clone(&self.store),
            path: self.path.clone(),
        })
    }

    /// Its status: QUEUED while it plans and waits for its workgroup, RUNNING once admitted.
    pub(super) fn status(&self) -> Status {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if status.state == State::Queued && self.progress.admitted() {
            status.state = State::Running;
        }
        status
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if !status.state.finished() {
            change(&mut status);
        }
    }

    fn end(&self, state: State, reason: Option<String>) {
        self.update(|status| {
            status.state = state;
            status.reason = reason;
            status.completed = Some(SystemTime::now());
        });
    }
}

/// What `StartQueryExecution` asked for, checked.
pub(super) struct Request {
    pub sql: String,
    pub database: String,
    pub catalog: String,
    pub output_dir: String,
    pub token: Option<String>,
    /// Reuse a result at most this old.
    pub reuse: Option<Duration>,
    pub session: ClientSession,
}

#[derive(Default)]
struct Kept {
    by_id: HashMap<String, Arc<Execution>>,
    /// Ids, oldest first.
    order: VecDeque<String>,
    /// `ClientRequestToken` -> id: the same token starts one execution.
    tokens: HashMap<String, String>,
}

pub(crate) struct Executions {
    engine: Arc<QueryEngine>,
    kept: Mutex<Kept>,
    running: Mutex<JoinSet<()>>,
}

impl Executions {
    pub(crate) fn new(engine: Arc<QueryEngine>) -> Self {
        Self { engine, kept: Mutex::default(), running: Mutex::default() }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<Execution>> {
        self.kept().by_id.get(id).cloned()
    }

    /// Starts `request` in the background; its id (the earlier one for a token seen before).
    pub(super) fn start(self: &Arc<Self>, request: Request) -> Result<String, SchedulerError> {
        if let Some(token) = &request.token
            && let Some(id) = self.kept().tokens.get(token)
        {
            return Ok(id.clone());
        }
        let id = QueryId::random().to_string();
        let output = format!("{}/{id}.csv", request.output_dir.trim_end_matches('/'));
        let (store, path) = self.engine.result_store(&request.session, &output)?;
        let execution = Arc::new(Execution {
            id: id.clone(),
            sql: request.sql,
            database: request.database,
            catalog: request.catalog,
            output,
            submitted: SystemTime::now(),
            session: request.session,
            store,
            path,
            status: Mutex::new(Status {
                state: State::Queued,
                reason: None,
                completed: None,
                kind: "",
                columns: Vec::new(),
                update_count: None,
                bytes_scanned: 0,
                rows: 0,
                planning_ms: 0,
                engine_ms: 0,
                reused: None,
            }),
            stop: CancellationToken::new(),
            progress: ProgressSlot::default(),
            reuse: request.reuse,
        });
        {
            let mut kept = self.kept();
            kept.by_id.insert(id.clone(), Arc::clone(&execution));
            kept.order.push_back(id.clone());
            if let Some(token) = request.token {
                kept.tokens.insert(token, id.clone());
            }
            forget_oldest(&mut kept);
        }
        self.engine.record_queued(&QueryId::from(id.clone()), &execution.sql, &execution.session);
        let engine = Arc::clone(&self.engine);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while running.try_join_next().is_some() {}
        running.spawn(async move {
            let ran = std::panic::AssertUnwindSafe(run(&engine, &execution)).catch_unwind().await;
            if let Err(panic) = ran {
                let message = glaux_proto::panic_message(panic.as_ref());
                tracing::error!(%message, "an execution of Athena's API hit a bug");
                execution.end(State::Failed, Some(format!("Glaux hit a bug: {message}")));
            }
        });
        Ok(id)
    }

    /// Stops an execution that has not finished (a finished one stays as it ended).
    pub(super) fn stop(&self, id: &str) {
        if let Some(execution) = self.get(id) {
            execution.stop.cancel();
        }
    }
}

/// Drops the oldest finished executions beyond [`KEPT`].
fn forget_oldest(kept: &mut Kept) {
    let mut at = 0;
    while kept.order.len() > KEPT && at < kept.order.len() {
        let finished = kept.by_id.get(&kept.order[at]).is_none_or(|e| e.status().state.finished());
        if finished {
            if let Some(id) = kept.order.remove(at) {
                kept.by_id.remove(&id);
                kept.tokens.retain(|_, v| *v != id);
            }
        } else {
            at += 1;
        }
    }
}

/// Plans and runs the statement, writing its rows to its result file.
async fn run(engine: &QueryEngine, execution: &Execution) {
    let started = Instant::now();
    let stop = &execution.stop;
    let cancelled = || execution.end(State::Cancelled, Some(CANCELLED.into()));
    let id = QueryId::from(execution.id.clone());
    let planned = tokio::select! {
        planned = engine.plan_as(id.clone(), &execution.sql, &execution.session) => planned,
        () = stop.cancelled() => {
            engine.record_cancelled(&id, &execution.sql, &execution.session, CANCELLED);
            return cancelled();
        }
    };
    let planned = match planned {
        Ok(planned) => planned.with_output_location(execution.output.clone()),
        Err(error) => return execution.end(State::Failed, Some(error.to_string())),
    };
    let (kind, schema, planning_ms) = (planned.kind(), planned.schema(), planned.planning_ms());
    execution.update(|s| {
        s.kind = kind;
        s.columns = results::column_info(&schema);
        s.planning_ms = planning_ms;
    });
    if let Some(max_age) = execution.reuse
        && let Some(reused) = reuse(engine, execution, &planned, max_age).await
    {
        execution.update(|s| s.reused = Some(reused));
        return execution.end(State::Succeeded, None);
    }
    let result = tokio::select! {
        result = engine.run(planned, &execution.progress) => result,
        () = stop.cancelled() => return cancelled(),
    };
    let result = match result {
        Ok(result) => result,
        Err(error) => return execution.end(State::Failed, Some(error.to_string())),
    };
    let mut writer = BufWriter::new(Arc::clone(&execution.store), execution.path.clone());
    let (mut update_count, mut rows, mut completing) = (None, 0, false);
    let counts = (&mut update_count, &mut rows, &mut completing);
    let outcome = write(execution, kind, &schema, result.batches, &mut writer, counts).await;
    let stats = result.stats.snapshot();
    execution.update(|s| {
        s.update_count = update_count;
        s.rows = rows;
        s.bytes_scanned = stats.scan.bytes_scanned;
        s.engine_ms = started.elapsed().as_millis() as u64;
    });
    // Beside the result, its columns as Athena writes them (`<id>.csv.metadata`).
    let outcome = match outcome {
        Ok(()) => {
            let metadata = results::metadata_file(&execution.id, &execution.status().columns);
            let path = Path::from(format!("{}.metadata", execution.path));
            let written = execution.store.put(&path, metadata.into()).await;
            written.map(drop).map_err(|e| format!("writing {}.metadata: {e}", execution.output))
        }
        Err(reason) => Err(reason),
    };
    match outcome {
        Ok(()) => execution.end(State::Succeeded, None),
        Err(reason) => {
            // An upload that failed to complete cannot be aborted (it is gone, or left to the
            // store's expiry of incomplete uploads).
            if !completing {
                let _ = writer.abort().await;
            }
            execution.end(if execution.stop.is_cancelled() { State::Cancelled } else { State::Failed }, Some(reason));
        }
    }
}

/// The result of an earlier run of the same query, if one is fresh and still readable: recorded
/// as this execution's.
async fn reuse(
    engine: &QueryEngine,
    execution: &Execution,
    planned: &crate::engine::PlannedStatement,
    max_age: Duration,
) -> Option<ResultFile> {
    let previous = engine.reusable(planned, max_age).await.ok()??;
    let output = previous.output_location.clone()?;
    // Read as this user may read it now, and only if it is still there.
    let (store, path) = engine.result_store(&execution.session, &output).ok()?;
    store.head(&path).await.ok()?;
    engine.record_reused(planned, &previous);
    execution.update(|s| s.rows = previous.rows);
    Some(ResultFile { output, store, path })
}

/// Writes the header and every row to `writer` and completes the upload; stops (unfinished)
/// when the execution is stopped.
async fn write(
    execution: &Execution,
    kind: &str,
    schema: &arrow::datatypes::Schema,
    mut batches: std::pin::Pin<
        Box<dyn futures::Stream<Item = datafusion::error::Result<arrow::array::RecordBatch>> + Send>,
    >,
    writer: &mut BufWriter,
    (update_count, rows, completing): (&mut Option<u64>, &mut u64, &mut bool),
) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("writing {}: {e}", execution.output);
    let mut chunk = Vec::new();
    results::header(schema, &mut chunk);
    loop {
        let batch = tokio::select! {
            batch = batches.next() => batch,
            () = execution.stop.cancelled() => return Err(CANCELLED.into()),
        };
        let Some(batch) = batch else { break };
        let batch = batch.map_err(|e| e.to_string())?;
        if super::WRITES.contains(&kind) && batch.num_rows() == 1 {
            let rows = batch.column(0).as_any().downcast_ref::<arrow::array::Int64Array>();
            *update_count = rows.and_then(|r| u64::try_from(r.value(0)).ok());
        }
        results::encode(&batch, &mut chunk).map_err(|e| e.to_string())?;
        *rows += batch.num_rows() as u64;
        if chunk.len() >= WRITE_CHUNK {
            writer.write_all(&chunk).await.map_err(failed)?;
            chunk.clear();
        }
    }
    writer.write_all(&chunk).await.map_err(failed)?;
    if execution.stop.is_cancelled() {
        return Err(CANCELLED.into());
    }
    *completing = true;
    writer.shutdown().await.map_err(failed)
}
