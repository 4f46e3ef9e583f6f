//! Statements the console runs in the background, so the page can poll their progress and cancel
//! them: each keeps its first [`MAX_ROWS`] rows as text for the results table (at most
//! [`MAX_KEPT_BYTES`] of text, each value cut at [`MAX_CELL_CHARS`]), and its stages as their
//! tasks last reported.

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
use crate::query::{ProgressSlot, StageProgress, by_stage, progress_json};

/// Rows of a result the console keeps (and shows).
pub const MAX_ROWS: usize = 1000;
/// Text kept of a result at most (fewer rows are kept if they are wide).
const MAX_KEPT_BYTES: usize = 1 << 20;
/// Characters of a value shown; longer ones are cut and marked.
const MAX_CELL_CHARS: usize = 2000;
/// Runs remembered at most, and per user; the oldest finished ones are forgotten first. With
/// [`MAX_KEPT_BYTES`] this bounds what the console holds (256 MiB of rows at worst).
const MAX_RUNS: usize = 256;
const MAX_RUNS_PER_USER: usize = 32;

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
    /// Its stages' tasks summed, as last reported (live while it runs, final once it ended).
    stage_progress: Vec<StageProgress>,
    /// `stage_progress` is what the tasks reported as they ended.
    stages_ended: bool,
    /// Bytes of text in `rows`.
    kept_bytes: usize,
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
            let finished = |r: &Arc<Run>| r.lock().state != "RUNNING";
            if runs.iter().filter(|r| r.owner == run.owner).count() >= MAX_RUNS_PER_USER
                && let Some(at) = runs.iter().position(|r| r.owner == run.owner && finished(r))
            {
                runs.remove(at);
            }
            if runs.len() >= MAX_RUNS
                && let Some(at) = runs.iter().position(finished)
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
            let RunState { rows, kept_bytes, .. } = &mut *state;
            keep_rows(rows, kept_bytes, &batch);
        }
        let stats = result.stats.snapshot();
        let ended = by_stage(&result.stats.ended_tasks());
        let mut state = self.lock();
        state.data_scanned = stats.scan.bytes_scanned;
        if !ended.is_empty() {
            state.stage_progress = ended;
            state.stages_ended = true;
        }
        Ok(())
    }

    /// What the page shows of it: state, rows, data scanned, time, progress and stages.
    pub async fn describe(&self) -> Value {
        let running = match self.progress.get() {
            Some(probe) if self.lock().state == "RUNNING" => Some((probe.planned(), by_stage(&probe.tasks().await))),
            _ => None,
        };
        let mut state = self.lock();
        let progress = running.map(|(planned, now)| {
            let progress = progress_json(planned, &now);
            // A query that ends has its tasks' last word; until then, what they say now.
            if !state.stages_ended && !now.is_empty() {
                state.stage_progress = now;
            }
            progress
        });
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
            "stage_progress": state.stage_progress.iter().map(StageProgress::to_json).collect::<Vec<_>>(),
            "progress": progress,
        })
    }
}

/// Appends `batch`'s rows as text to `rows`, up to [`MAX_ROWS`] rows and [`MAX_KEPT_BYTES`] of
/// text (counted in `kept`), each value cut at [`MAX_CELL_CHARS`].
fn keep_rows(rows: &mut Vec<Vec<Option<String>>>, kept: &mut usize, batch: &RecordBatch) {
    let room = MAX_ROWS.saturating_sub(rows.len()).min(batch.num_rows());
    if room == 0 || *kept >= MAX_KEPT_BYTES {
        return;
    }
    let options = FormatOptions::default();
    let formatters: Vec<Option<ArrayFormatter>> =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
    for row in 0..room {
        if *kept >= MAX_KEPT_BYTES {
            return;
        }
        let values: Vec<Option<String>> = batch
            .columns()
            .iter()
            .zip(&formatters)
            .map(|(column, formatter)| match formatter {
                Some(_) if column.is_null(row) => None,
                Some(formatter) => Some(cut(formatter.value(row).to_string())),
                None => Some("?".into()),
            })
            .collect();
        *kept += values.iter().flatten().map(String::len).sum::<usize>();
        rows.push(values);
    }
}

/// `value`, cut at [`MAX_CELL_CHARS`] characters with a mark saying so.
fn cut(value: String) -> String {
    match value.char_indices().nth(MAX_CELL_CHARS) {
        None => value,
        Some((end, _)) => format!("{}… ({} more characters)", &value[..end], value[end..].chars().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};

    fn batch(values: Vec<Option<String>>) -> RecordBatch {
        let column: ArrayRef = Arc::new(StringArray::from(values));
        RecordBatch::try_from_iter([("v", column)]).unwrap()
    }

    #[test]
    fn keeps_at_most_the_rows_and_text_it_may() {
        let (mut rows, mut kept) = (Vec::new(), 0);
        keep_rows(&mut rows, &mut kept, &batch(vec![Some("é".repeat(MAX_CELL_CHARS + 5)), None]));
        let first = rows[0][0].as_deref().unwrap();
        assert!(first.starts_with(&"é".repeat(MAX_CELL_CHARS)) && first.ends_with("… (5 more characters)"));
        assert_eq!(rows[1][0], None, "a null stays a null");
        // Wide rows stop at the byte budget, long before MAX_ROWS.
        let wide = batch((0..MAX_ROWS).map(|_| Some("x".repeat(MAX_CELL_CHARS))).collect());
        keep_rows(&mut rows, &mut kept, &wide);
        assert!(rows.len() < MAX_ROWS && (MAX_KEPT_BYTES..MAX_KEPT_BYTES + MAX_CELL_CHARS).contains(&kept));
        let before = rows.len();
        keep_rows(&mut rows, &mut kept, &batch(vec![Some("y".into())]));
        assert_eq!(rows.len(), before, "nothing more once the budget is spent");
        // Narrow rows stop at MAX_ROWS.
        let (mut rows, mut kept) = (Vec::new(), 0);
        for _ in 0..3 {
            keep_rows(&mut rows, &mut kept, &batch((0..MAX_ROWS / 2).map(|i| Some(i.to_string())).collect()));
        }
        assert_eq!(rows.len(), MAX_ROWS);
    }
}
