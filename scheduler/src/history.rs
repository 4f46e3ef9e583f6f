//! The query history: every statement from every door gets one record in the catalog's database
//! (user, door, workgroup, SQL, state, times, data scanned, rows), written as it is submitted,
//! starts and ends.
//!
//! Records are written by one background writer ([`History::new`]'s future), in batches gathered
//! over [`GATHER`], so a statement never waits for the catalog's disk, nor for its record's
//! account of how it ran (its plan drawn, its stages' work), which the writer renders; a read
//! ([`History::read`]) first waits until every record sent before it is written. A scheduler
//! killed outright loses at most the records of its last few tens of milliseconds; at the next
//! start, records it left unfinished are marked FAILED ("scheduler restarted"). Records older
//! than the retention's days, or beyond its count, are pruned at start and every
//! [`PRUNE_EVERY`].

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glaux_catalog::Catalog;
use glaux_catalog::history::{CANCELLED, FAILED, QUEUED, QueryFilter, QueryRecord, RUNNING, SUCCEEDED};
use glaux_proto::{QueryStats, panic_message};
use tokio::sync::{mpsc, oneshot};

use crate::error::{ErrorKind, SchedulerError};
use crate::metrics::SchedulerMetrics;
use crate::query::{ProgressProbe, ProgressSlot};

/// How often old records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Records written at most per transaction.
const BATCH: usize = 512;
/// How long the writer gathers records before a transaction (unless a read waits for them).
const GATHER: Duration = Duration::from_millis(20);
/// Why a statement ended before its end: stopped, or its client went away.
pub const ABANDONED: &str = "cancelled, or its client went away";
/// Why statements that ran when the scheduler stopped failed.
pub const RESTARTED: &str = "scheduler restarted";

/// How long records are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
    pub count: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self { days: 30, count: 100_000 }
    }
}

enum Message {
    /// A record and, once its statement ended, how its query ran: the writer renders that as
    /// the record's `stages` (the plan drawn and its tasks' work, 0.3 ms for TPC-DS q41), so the
    /// statement does not on its way to its client's last message.
    Record(Box<QueryRecord>, Option<ProgressProbe>),
    /// Answered once every record sent before it is written.
    Flush(oneshot::Sender<()>),
}

pub struct History {
    catalog: Arc<dyn Catalog>,
    sender: mpsc::UnboundedSender<Message>,
    /// Counts each statement as its record ends.
    metrics: Arc<SchedulerMetrics>,
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl History {
    /// The history kept in `catalog`: records a previous scheduler left unfinished are marked
    /// failed and old ones pruned now; the returned future writes records for as long as the
    /// scheduler serves.
    pub fn open(
        catalog: Arc<dyn Catalog>,
        retention: Retention,
        metrics: Arc<SchedulerMetrics>,
    ) -> Result<(Arc<Self>, impl Future<Output = ()> + Send + 'static), SchedulerError> {
        let failed = catalog.end_unfinished_queries(FAILED, RESTARTED, epoch_ms(SystemTime::now()))?;
        if failed > 0 {
            tracing::warn!(statements = failed, "statements running when the scheduler stopped are marked failed");
        }
        prune(catalog.as_ref(), retention);
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer = write(Arc::clone(&catalog), receiver, retention);
        Ok((Arc::new(Self { catalog, sender, metrics }), writer))
    }

    /// Sends `record` to be written (replacing an earlier record of the same id).
    pub fn record(&self, record: QueryRecord) {
        self.record_ran(record, None);
    }

    /// Like [`History::record`]; the record is written with how `ran` ran as its `stages`.
    fn record_ran(&self, record: QueryRecord, ran: Option<ProgressProbe>) {
        if record.finished() {
            self.metrics.ended(&record);
        }
        // Without a writer the scheduler is stopping: the record is lost, as at a kill.
        let _ = self.sender.send(Message::Record(Box::new(record), ran));
    }

    /// Waits until every record sent before this call is written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }

    /// Marks the records of statements still unfinished CANCELLED with `reason` (the scheduler
    /// stops without waiting for them); how many.
    pub async fn cancel_unfinished(&self, reason: &str) -> Result<usize, SchedulerError> {
        self.flush().await;
        let (catalog, reason) = (Arc::clone(&self.catalog), reason.to_string());
        let now = epoch_ms(SystemTime::now());
        let ended = tokio::task::spawn_blocking(move || catalog.end_unfinished_queries(CANCELLED, &reason, now));
        Ok(ended.await.map_err(|e| SchedulerError::Config(format!("ending the query history: {e}")))??)
    }

    /// Records matching `filter`, newest first, including every one sent before this call.
    pub async fn read(&self, filter: QueryFilter) -> Result<Vec<QueryRecord>, SchedulerError> {
        self.flush().await;
        let catalog = Arc::clone(&self.catalog);
        let read = tokio::task::spawn_blocking(move || catalog.queries(&filter));
        Ok(read.await.map_err(|e| SchedulerError::Config(format!("reading the query history: {e}")))??)
    }
}

fn prune(catalog: &dyn Catalog, retention: Retention) {
    let age = Duration::from_secs(u64::from(retention.days) * 86_400);
    let before = epoch_ms(SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH));
    match catalog.prune_queries(before, retention.count) {
        Ok(0) => {}
        Ok(pruned) => tracing::debug!(pruned, "query history pruned"),
        Err(e) => tracing::warn!("pruning the query history: {e}"),
    }
}

async fn write(catalog: Arc<dyn Catalog>, mut receiver: mpsc::UnboundedReceiver<Message>, retention: Retention) {
    let mut pruned = Instant::now();
    let mut messages = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut messages, BATCH).await > 0 {
        if !messages.iter().any(|m| matches!(m, Message::Flush(_))) {
            // A statement sends up to three records (queued, running, ended) within a few
            // milliseconds: waiting a little makes them one transaction, not three.
            tokio::time::sleep(GATHER).await;
            while messages.len() < BATCH
                && let Ok(message) = receiver.try_recv()
            {
                messages.push(message);
            }
        }
        // The latest record of each statement, in the order they were first sent.
        let mut records: Vec<(QueryRecord, Option<ProgressProbe>)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut waiting = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Record(record, ran) => match at.get(&record.id) {
                    Some(&i) => records[i] = (*record, ran),
                    None => {
                        at.insert(record.id.clone(), records.len());
                        records.push((*record, ran));
                    }
                },
                Message::Flush(done) => waiting.push(done),
            }
        }
        let due = pruned.elapsed() >= PRUNE_EVERY;
        if due {
            pruned = Instant::now();
        }
        let catalog = Arc::clone(&catalog);
        let written = tokio::task::spawn_blocking(move || {
            let records: Vec<QueryRecord> = records
                .into_iter()
                .map(|(mut record, ran)| {
                    // A drawing that hits a bug leaves this record without its stages, and the
                    // rest of the batch is written.
                    match ran.map(|probe| catch_unwind(AssertUnwindSafe(|| probe.how_it_ran()))) {
                        Some(Ok(drawn)) => record.stages = Some(drawn),
                        Some(Err(panic)) => {
                            let message = panic_message(panic.as_ref());
                            tracing::error!(query_id = %record.id, %message, "drawing how a query ran hit a bug");
                        }
                        None => {}
                    }
                    record
                })
                .collect();
            let written = if records.is_empty() { Ok(()) } else { catalog.record_queries(&records) };
            if due {
                prune(catalog.as_ref(), retention);
            }
            written
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("writing the query history: {e}"),
            Err(e) => tracing::warn!("writing the query history: {e}"),
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// One statement's record while it runs: written when it waits, starts and ends.
pub struct Tracked {
    history: Arc<History>,
    record: Mutex<QueryRecord>,
    /// When it started running.
    started: Mutex<Option<Instant>>,
    /// Where its query's progress appears, if it runs on the cluster.
    progress: Mutex<Option<ProgressSlot>>,
}

impl Tracked {
    /// A planned statement, not yet recorded.
    pub fn new(history: &Arc<History>, record: QueryRecord) -> Arc<Self> {
        Arc::new(Self {
            history: Arc::clone(history),
            record: Mutex::new(record),
            started: Mutex::new(None),
            progress: Mutex::default(),
        })
    }

    fn record(&self) -> std::sync::MutexGuard<'_, QueryRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// It waits for a place in its workgroup.
    pub fn queued(&self) {
        let mut record = self.record();
        record.state = QUEUED.into();
        self.history.record(record.clone());
    }

    /// It starts running after waiting `queue` for its place.
    pub fn running(&self, queue: Duration) {
        let mut record = self.record();
        record.state = RUNNING.into();
        record.started_ms = Some(epoch_ms(SystemTime::now()));
        record.queue_ms = queue.as_millis() as u64;
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.history.record(record.clone());
    }

    /// The statement ended: succeeded (`Ok`), failed with a reason (`Err`; a cancellation's error
    /// is recorded as CANCELLED), or was abandoned (`None`: cancelled, or its client went away).
    /// Only the first end counts.
    pub fn end(&self, outcome: Option<Result<(), (ErrorKind, String)>>, stats: Option<&QueryStats>) {
        let mut record = self.record();
        if record.finished() {
            return;
        }
        let (state, reason) = match outcome {
            Some(Ok(())) => (SUCCEEDED, None),
            Some(Err((ErrorKind::Cancelled, reason))) => (CANCELLED, Some(reason)),
            Some(Err((_, reason))) => (FAILED, Some(reason)),
            None => (CANCELLED, Some(ABANDONED.to_string())),
        };
        record.state = state.into();
        record.reason = reason;
        record.ended_ms = Some(epoch_ms(SystemTime::now()));
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(ProgressSlot::get);
        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
        record.execution_ms = started.map_or(0, |s| s.elapsed().as_millis() as u64);
        if let Some(stats) = stats {
            record.rows = stats.rows;
            record.bytes_scanned = stats.scan.bytes_scanned;
            record.tasks_rerun = stats.tasks_rerun;
        }
        self.history.record_ran(record.clone(), progress);
    }

    /// Its query's progress appears in `progress` once launched on the cluster: when it ends,
    /// how it ran (its stages, for its page) is kept with its record.
    pub fn watch(&self, progress: &ProgressSlot) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(progress.clone());
    }

    /// The statement failed (or was cancelled) with `error`.
    pub fn failed(&self, error: &SchedulerError) {
        self.end(Some(Err((error.kind(), error.to_string()))), None);
    }
}

impl Drop for Tracked {
    /// A statement dropped before it ended (its run abandoned midway) was cancelled.
    fn drop(&mut self) {
        self.end(None, None);
    }
}

/// The record of a statement that ended (failed or was cancelled: `state`) before it ran.
pub fn ended(mut record: QueryRecord, state: &str, reason: String) -> QueryRecord {
    record.state = state.into();
    record.reason = Some(reason);
    record.ended_ms = Some(epoch_ms(SystemTime::now()));
    record
}
