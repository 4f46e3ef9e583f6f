//! The audit log: one structured line per statement, on its own `tracing` target
//! ([`AUDIT_TARGET`]), whichever door it came through: its id, who (user, client address), where (door),
//! what (statement kind, objects it touches), how it ended (outcome, error kind), how long it took,
//! the rows it returned and the bytes it scanned. Never the statement's text: literals may hold
//! anything, passwords included.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::ErrorKind;
use crate::history::Tracked;
use crate::query::QueryStatsHandle;

/// The `tracing` target of audit lines (`GLAUX_LOG=glaux::audit=info` shows only them).
pub const AUDIT_TARGET: &str = "glaux::audit";

/// Which door a statement came through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Door {
    FlightSql,
    /// `glaux shell` (over Flight SQL, saying so in a header).
    Shell,
    Postgres,
    /// Athena's API (HTTP).
    Athena,
    /// The web console (`/ui`).
    Console,
    /// In-process callers (tests, `glaux bench`).
    #[default]
    Internal,
}

impl Door {
    pub fn name(self) -> &'static str {
        match self {
            Door::FlightSql => "flight_sql",
            Door::Shell => "shell",
            Door::Postgres => "postgres",
            Door::Athena => "athena",
            Door::Console => "console",
            Door::Internal => "internal",
        }
    }
}

/// Who sent a statement, and through which door.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub door: Door,
    pub address: Option<IpAddr>,
}

/// What one statement is, for its audit line.
#[derive(Clone, Debug)]
pub struct Audited {
    /// The statement's id (its history record's, and Athena's execution id).
    pub query: String,
    pub user: Option<String>,
    pub caller: Caller,
    pub kind: &'static str,
    pub objects: Vec<String>,
}

impl Audited {
    /// A statement refused or failed before it ran.
    pub fn refused(&self, error: ErrorKind, started: Instant) {
        self.line("refused", Some(&error), started, 0, 0);
    }

    fn line(&self, outcome: &str, error: Option<&ErrorKind>, started: Instant, rows: u64, bytes: u64) {
        let kind = error.map(|kind| format!("{kind:?}"));
        tracing::info!(
            target: AUDIT_TARGET,
            query_id = %self.query,
            user = self.user.as_deref().unwrap_or("-"),
            client = %self.caller.address.map_or_else(|| "-".to_string(), |a| a.to_string()),
            door = self.caller.door.name(),
            statement = self.kind,
            objects = %self.objects.join(","),
            outcome,
            error = kind.as_deref().unwrap_or("-"),
            duration_ms = started.elapsed().as_millis() as u64,
            rows,
            bytes_scanned = bytes,
            "statement"
        );
    }
}

/// Writes a running statement's audit line when its result is dropped: finished, failed, or
/// abandoned (dropped before its end: a cancel or a vanished client).
pub struct AuditOnDrop {
    audited: Audited,
    started: Instant,
    stats: QueryStatsHandle,
    /// `None` while it runs; the outcome once the result ended.
    ended: Mutex<Option<Result<(), (ErrorKind, String)>>>,
    /// Its history record, ended with the audit line.
    tracked: Arc<Tracked>,
}

impl AuditOnDrop {
    pub fn new(audited: Audited, started: Instant, stats: QueryStatsHandle, tracked: Arc<Tracked>) -> Self {
        Self { audited, started, stats, ended: Mutex::new(None), tracked }
    }

    /// The result ended (`Ok`), or failed with this error (its kind and message).
    pub fn end(&self, outcome: Result<(), (ErrorKind, String)>) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.is_none() {
            *ended = Some(outcome);
        }
    }
}

impl Drop for AuditOnDrop {
    fn drop(&mut self) {
        let stats = self.stats.snapshot();
        let ended = self.ended.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        let (outcome, error) = match &ended {
            Some(Ok(())) => ("finished", None),
            Some(Err((error, _))) => ("failed", Some(error)),
            None => ("abandoned", None),
        };
        self.audited.line(outcome, error, self.started, stats.rows, stats.scan.bytes_scanned);
        self.tracked.end(ended, Some(&stats));
    }
}
