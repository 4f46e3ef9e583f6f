//! Query executions of Athena's API: each statement runs in the background after
//! `StartQueryExecution` returns its id, writes its result to `<OutputLocation>/<id>.csv` (as one
//! upload, completed only when the last row is written: a failed or stopped query leaves no
//! file), and keeps its state for `GetQueryExecution` and its file for `GetQueryResults`.
//!
//! Kept in memory, the most recent [`KEPT`] executions (a running one is never dropped).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
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

    fn finished(self) -> bool {
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
}

impl Execution {
    pub(super) fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// Ids, newest first.
    pub(super) fn ids(&self) -> Vec<String> {
        self.kept().order.iter().rev().cloned().collect()
    }

    /// Starts `request` in the background; its id (the earlier one for a token seen before).
    pub(super) fn start(self: &Arc<Self>, request: Request) -> Result<String, SchedulerError> {
        if let Some(token) = &request.token
            && let Some(id) = self.kept().tokens.get(token)
        {
            return Ok(id.clone());
        }
        let id = execution_id();
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
            }),
            stop: CancellationToken::new(),
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
        let engine = Arc::clone(&self.engine);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while running.try_join_next().is_some() {}
        running.spawn(async move { run(&engine, &execution).await });
        Ok(id)
    }

    /// Stops an execution that has not finished (a finished one stays as it ended).
    pub(super) fn stop(&self, id: &str) -> bool {
        let Some(execution) = self.get(id) else { return false };
        execution.stop.cancel();
        true
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

/// An id shaped like Athena's (a random UUID).
fn execution_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// Plans and runs the statement, writing its rows to its result file.
async fn run(engine: &QueryEngine, execution: &Execution) {
    let started = Instant::now();
    execution.update(|s| s.state = State::Running);
    let stop = &execution.stop;
    let cancelled = || execution.end(State::Cancelled, Some(CANCELLED.into()));
    let planned = tokio::select! {
        planned = engine.plan(&execution.sql, &execution.session) => planned,
        () = stop.cancelled() => return cancelled(),
    };
    let planned = match planned {
        Ok(planned) => planned,
        Err(error) => return execution.end(State::Failed, Some(error.to_string())),
    };
    let (kind, schema) = (planned.kind(), planned.schema());
    let planning_ms = started.elapsed().as_millis() as u64;
    execution.update(|s| {
        s.kind = kind;
        s.columns = results::column_info(&schema);
        s.planning_ms = planning_ms;
    });
    let progress = ProgressSlot::default();
    let result = tokio::select! {
        result = engine.run(planned, &progress) => result,
        () = stop.cancelled() => return cancelled(),
    };
    let result = match result {
        Ok(result) => result,
        Err(error) => return execution.end(State::Failed, Some(error.to_string())),
    };
    let mut writer = BufWriter::new(Arc::clone(&execution.store), execution.path.clone());
    let (mut update_count, mut rows) = (None, 0);
    let outcome = write(execution, kind, &schema, result.batches, &mut writer, (&mut update_count, &mut rows)).await;
    let stats = result.stats.snapshot();
    execution.update(|s| {
        s.update_count = update_count;
        s.rows = rows;
        s.bytes_scanned = stats.scan.bytes_scanned;
        s.engine_ms = started.elapsed().as_millis() as u64;
    });
    match outcome {
        Ok(()) => execution.end(State::Succeeded, None),
        Err(reason) => {
            let _ = writer.abort().await;
            execution.end(if execution.stop.is_cancelled() { State::Cancelled } else { State::Failed }, Some(reason));
        }
    }
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
    (update_count, rows): (&mut Option<u64>, &mut u64),
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
    writer.shutdown().await.map_err(failed)
}
