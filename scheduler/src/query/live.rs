//! Every statement running on this scheduler, by its id, whatever door it came through, so its
//! page can ask its executors how its stages progress. Who may look is decided by the caller
//! (the statement's history record must be visible to them); this only finds the running query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use glaux_proto::QueryId;

use super::stats::{ProgressProbe, ProgressSlot};

#[derive(Default)]
pub struct LiveQueries {
    /// Each running statement's progress slot, and the number of the run that put it there.
    running: Mutex<HashMap<String, (u64, ProgressSlot)>>,
    runs: AtomicU64,
}

/// Keeps a statement listed while it runs; dropping it (the statement's result dropped) ends it.
pub struct Live {
    queries: Arc<LiveQueries>,
    id: String,
    run: u64,
}

impl LiveQueries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, ProgressSlot)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists statement `id` as running; its query's probe appears in `progress` once launched.
    pub fn enter(self: &Arc<Self>, id: &QueryId, progress: &ProgressSlot) -> Live {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id.to_string(), (run, progress.clone()));
        Live { queries: Arc::clone(self), id: id.to_string(), run }
    }

    /// The progress probe of statement `id`, if it runs and its query is launched.
    pub fn probe(&self, id: &str) -> Option<ProgressProbe> {
        self.lock().get(id).and_then(|(_, slot)| slot.get())
    }

    /// How many statements are listed.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut running = self.queries.lock();
        // A later run of the same id (a re-used id) stays listed.
        if running.get(&self.id).is_some_and(|(run, _)| *run == self.run) {
            running.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_a_statement_while_it_runs() {
        let queries = Arc::new(LiveQueries::default());
        let id = QueryId::from("q1".to_string());
        let first = queries.enter(&id, &ProgressSlot::default());
        assert_eq!(queries.count(), 1);
        assert!(queries.probe("q1").is_none(), "no probe before its query is launched");
        let second = queries.enter(&id, &ProgressSlot::default());
        drop(first);
        assert_eq!(queries.count(), 1, "the later run of the id is still listed");
        drop(second);
        assert_eq!(queries.count(), 0);
    }
}
