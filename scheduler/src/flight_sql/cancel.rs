//! Statements running for a `DoGet`, by the id their ticket carries: `CancelFlightInfo` and
//! progress.
//!
//! Every `FlightInfo` (and prepared statement) gets a statement id in its ticket. While a `DoGet`
//! streams that statement, its id maps to a cancellation token; `CancelFlightInfo` fires it, the
//! result stream ends with a "cancelled" error, and dropping the stream cancels the query's tasks
//! on every executor. Once the query runs, the id also maps to a probe of its progress (the
//! `GlauxQueryProgress` action, which the shell's progress line polls).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::query::{ProgressProbe, ProgressSlot};

/// A statement id's runs.
struct Entry {
    token: CancellationToken,
    /// How many `DoGet`s run it (a prepared statement may run several times at once; cancelling
    /// it stops them all).
    runs: usize,
    /// The progress of the latest run.
    progress: ProgressSlot,
}

#[derive(Default)]
pub struct RunningStatements {
    running: Mutex<HashMap<String, Entry>>,
}

/// Keeps a statement registered while its result streams.
pub struct Running {
    statements: Arc<RunningStatements>,
    id: String,
    pub token: CancellationToken,
    /// Filled when the statement's query is launched.
    pub progress: ProgressSlot,
}

impl RunningStatements {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn start(self: &Arc<Self>, id: &str) -> Running {
        let mut running = self.lock();
        let entry = running.entry(id.to_string()).or_insert_with(|| Entry {
            token: CancellationToken::new(),
            runs: 0,
            progress: ProgressSlot::default(),
        });
        entry.runs += 1;
        let (token, progress) = (entry.token.clone(), entry.progress.clone());
        Running { statements: Arc::clone(self), id: id.to_string(), token, progress }
    }

    /// Cancels the running statement `id`; false if none runs.
    pub fn cancel(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(entry) => {
                entry.token.cancel();
                true
            }
            None => false,
        }
    }
}

impl RunningStatements {
    /// The progress probe of the running statement `id`, once its query runs.
    pub fn progress(&self, id: &str) -> Option<ProgressProbe> {
        self.lock().get(id).and_then(|entry| entry.progress.get())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.statements.lock();
        if let Some(entry) = running.get_mut(&self.id) {
            entry.runs -= 1;
            if entry.runs == 0 {
                running.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancels_only_running_statements_and_forgets_finished_ones() {
        let statements = Arc::new(RunningStatements::default());
        assert!(!statements.cancel("a"));
        let first = statements.start("a");
        let second = statements.start("a");
        drop(first);
        assert!(statements.cancel("a"));
        assert!(second.token.is_cancelled());
        drop(second);
        assert!(!statements.cancel("a"));
    }
}
