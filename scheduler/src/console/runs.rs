//! Statements the console runs in the background, so the page can poll their progress and cancel
//! them: each keeps its first [`MAX_ROWS`] rows as text for the results table.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client_session::ClientSession;
use crate::engine::QueryEngine;
use crate::query::ProgressSlot;

/// Rows of a result the console keeps (and shows).
pub const MAX_ROWS: usize = 1000;
/// Runs remembered at most; the oldest finished ones are forgotten first.
const MAX_RUNS: usize = 1000;

/// One statement the console runs.
pub struct Run {
    pub id: String,
    /// Who started it: only they see it.
    pub owner: Option<String>,
    pub sql: String,
    started: Instant,
    cancel: CancellationToken,
    progress: ProgressSlot,
    state: Mutex<RunState>,
}

#[derive(Default)]
struct RunState {
    /// RUNNING, SUCCEEDED, FAILED or CANCELLED.
    state: &'static str,
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    rows_returned: u64,
    data_scanned: u64,
    elapsed_ms: u64,
    error: Option<String>,
    /// The stages it ran as, once launched (`EXPLAIN`'s rendering).
    stages: Option<String>,
}

#[derive(Default)]
pub struct Runs {
    runs: Mutex<VecDeque<Arc<Run>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl Runs {
    /// Starts `sql` in `session`; its id.
    pub fn start(&self, engine: Arc<QueryEngine>, session: ClientSession, sql: String) -> String {
        let run = Arc::new(Run {
            id: glaux_proto::QueryId::random().to_string(),
            owner: session.user.clone(),
            sql,
            started: Instant::now(),
            cancel: CancellationToken::new(),
            progress: ProgressSlot::default(),
            state: Mutex::new(RunState { state: "RUNNING", ..RunState::default() }),
        });
        {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            if runs.len() >= MAX_RUNS
                && let Some(at) = runs.iter().position(|r| r.lock().state != "RUNNING")
            {
                runs.remove(at);
            }
            runs.push_back(Arc::clone(&run));
        }
        let id = run.id.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move { run.execute(&engine, &session).await });
        id
    }

    /// The run `id`, if `user` started it.
    pub fn get(&self, id: &str, user: &Option<String>) -> Option<Arc<Run>> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.iter().find(|r| r.id == id && &r.owner == user).cloned()
    }
}

impl Run {
    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    async fn execute(&self, engine: &QueryEngine, session: &ClientSession) {
        let outcome = tokio::select! {
            outcome = self.fetch(engine, session) => outcome,
            () = self.cancel.cancelled() => Err(None),
        };
        let mut state = self.lock();
        state.elapsed_ms = self.started.elapsed().as_millis() as u64;
        (state.state, state.error) = match outcome {
            Ok(()) => ("SUCCEEDED", None),
            Err(None) => ("CANCELLED", Some("cancelled".into())),
            Err(Some(error)) => ("FAILED", Some(error)),
        };
    }

    /// Runs the statement and keeps its first rows; `Err(Some(why))` if it failed.
    async fn fetch(&self, engine: &QueryEngine, session: &ClientSession) -> Result<(), Option<String>> {
        // Its history record carries the run's id: the query page finds one from the other.
        let id = glaux_proto::QueryId::from(self.id.clone());
        let planned = engine.plan_as(id, &self.sql, session).await.map_err(|e| Some(e.to_string()))?;
        let mut result = engine.run(planned, &self.progress).await.map_err(|e| Some(e.to_string()))?;
        {
            let mut state = self.lock();
            state.columns = result.schema.fields().iter().map(|f| f.name().clone()).collect();
            state.stages = result.stats.plan().map(|p| crate::planner::render_distributed_plan(p, false));
        }
        while let Some(batch) = result.batches.next().await {
            let batch = batch.map_err(|e| Some(e.to_string()))?;
            let mut state = self.lock();
            state.rows_returned += batch.num_rows() as u64;
            keep_rows(&mut state.rows, &batch);
        }
        let stats = result.stats.snapshot();
        self.lock().data_scanned = stats.scan.bytes_scanned;
        Ok(())
    }

    /// What the page shows of it: state, rows, data scanned, time, progress and stages.
    pub async fn describe(&self) -> Value {
        let progress = match self.progress.get() {
            Some(probe) if self.lock().state == "RUNNING" => {
                let p = probe.progress().await;
                Some(json!({ "tasks": p.tasks, "tasks_done": p.tasks_done, "stages": p.stages,
                             "rows": p.task_rows, "data_scanned_bytes": p.bytes_scanned }))
            }
            _ => None,
        };
        let state = self.lock();
        let elapsed =
            if state.state == "RUNNING" { self.started.elapsed().as_millis() as u64 } else { state.elapsed_ms };
        json!({
            "id": self.id,
            "sql": self.sql,
            "state": state.state,
            "columns": state.columns,
            "rows": state.rows,
            "truncated": state.rows_returned > state.rows.len() as u64,
            "rows_returned": state.rows_returned,
            "data_scanned_bytes": state.data_scanned,
            "data_scanned": glaux_proto::format_bytes(state.data_scanned),
            "elapsed_ms": elapsed,
            "error": state.error,
            "stages": state.stages,
            "progress": progress,
        })
    }
}

/// Appends `batch`'s rows as text to `rows`, up to [`MAX_ROWS`].
pub fn keep_rows(rows: &mut Vec<Vec<Option<String>>>, batch: &RecordBatch) {
    let room = MAX_ROWS.saturating_sub(rows.len()).min(batch.num_rows());
    if room == 0 {
        return;
    }
    let options = FormatOptions::default();
    let formatters: Vec<Option<ArrayFormatter>> =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
    for row in 0..room {
        let values = batch
            .columns()
            .iter()
            .zip(&formatters)
            .map(|(column, formatter)| match formatter {
                Some(_) if column.is_null(row) => None,
                Some(formatter) => Some(formatter.value(row).to_string()),
                None => Some("?".into()),
            })
            .collect();
        rows.push(values);
    }
}
