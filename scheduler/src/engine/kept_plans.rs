//! Statements planned for a client that runs them moments later: Flight SQL plans a statement at
//! `GetFlightInfo` (its schema goes back in the `FlightInfo`) and runs it at `DoGet`. The plan is
//! kept under the statement's id, so the run does not parse, authorize and optimize it again.
//!
//! A kept plan is used only by the same session (user, door, database, workgroup, parameters)
//! for the same text, at most [`KEEP_FOR`] after it was made, and once. Every statement that may
//! change the catalog or grants forgets them all ([`KeptPlans::forget_all`]), so a kept plan never
//! outlives a change it would have seen had it been planned again.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{PlannedStatement, QueryEngine};
use crate::client_session::ClientSession;
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};

/// How long a kept plan may wait for its run.
const KEEP_FOR: Duration = Duration::from_secs(30);
/// Plans kept at most; beyond, the oldest is forgotten (its run plans again).
const MAX_KEPT: usize = 256;

struct Kept<T> {
    id: String,
    sql: String,
    session: ClientSession,
    at: Instant,
    planned: T,
}

/// Plans (`T`: the engine's `PlannedStatement`) kept by statement id.
pub(crate) struct KeptPlans<T> {
    kept: Mutex<VecDeque<Kept<T>>>,
}

impl<T> Default for KeptPlans<T> {
    fn default() -> Self {
        Self { kept: Mutex::default() }
    }
}

impl<T> KeptPlans<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Kept<T>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `planned`, planned from `sql` in `session`, for the run of statement `id`.
    pub(crate) fn keep(&self, id: &str, sql: &str, session: &ClientSession, planned: T) {
        let mut kept = self.lock();
        kept.retain(|k| k.at.elapsed() < KEEP_FOR);
        if kept.len() >= MAX_KEPT {
            kept.pop_front();
        }
        let session = session.clone();
        kept.push_back(Kept { id: id.to_string(), sql: sql.to_string(), session, at: Instant::now(), planned });
    }

    /// The plan kept for statement `id`, if it was planned from `sql` in `session` and is fresh.
    pub(crate) fn take(&self, id: &str, sql: &str, session: &ClientSession) -> Option<T> {
        let mut kept = self.lock();
        let at = kept.iter().position(|k| k.id == id)?;
        let found = kept.remove(at)?;
        (found.sql == sql && found.session == *session && found.at.elapsed() < KEEP_FOR).then_some(found.planned)
    }

    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().len()
    }
}

impl QueryEngine {
    /// Plans and runs `sql` in `session`.
    pub async fn execute(
        &self,
        sql: &str,
        session: &ClientSession,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let planned = self.plan(sql, session).await?;
        self.run(planned, progress).await
    }

    /// Keeps `planned` (planned from `sql` in `session`) for statement `id`'s run moments later.
    pub fn keep_planned(&self, id: &str, sql: &str, session: &ClientSession, planned: PlannedStatement) {
        self.kept.keep(id, sql, session, planned);
    }

    /// The statement kept for `id` if it was planned from `sql` in `session` moments ago, else
    /// `sql` planned now.
    pub async fn plan_kept(
        &self,
        id: &str,
        sql: &str,
        session: &ClientSession,
    ) -> Result<PlannedStatement, SchedulerError> {
        match self.kept.take(id, sql, session) {
            Some(planned) => Ok(planned),
            None => self.plan(sql, session).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_plan_serves_its_own_session_once() {
        let kept = KeptPlans::default();
        let ana = ClientSession::default().for_user(Some("ana".into()));
        let bob = ClientSession::default().for_user(Some("bob".into()));
        kept.keep("s1", "SELECT 1", &ana, 1);
        assert_eq!(kept.take("s1", "SELECT 1", &bob), None, "another user's run plans again");
        assert_eq!(kept.count(), 0, "and the kept plan is gone");
        kept.keep("s2", "SELECT 1", &ana, 2);
        assert_eq!(kept.take("s2", "SELECT 2", &ana), None, "another text plans again");
        kept.keep("s3", "SELECT 1", &ana, 3);
        assert_eq!(kept.take("s3", "SELECT 1", &ana), Some(3));
        assert_eq!(kept.take("s3", "SELECT 1", &ana), None, "used once");
        for i in 0..MAX_KEPT + 5 {
            kept.keep(&format!("many{i}"), "SELECT 1", &ana, i);
        }
        assert_eq!(kept.count(), MAX_KEPT);
        assert_eq!(kept.take("many0", "SELECT 1", &ana), None, "the oldest went first");
        assert_eq!(kept.take("many5", "SELECT 1", &ana), Some(5));
        kept.forget_all();
        assert_eq!(kept.count(), 0);
    }
}
