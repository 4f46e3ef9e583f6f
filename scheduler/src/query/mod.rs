//! The life of a query on the cluster: planned for the executors alive, cut into stages, its
//! tasks launched, its final stage run here while the client reads, planned again if an executor
//! is lost before any row went out, and ended on every executor when its stream ends or is
//! dropped.
//!
//! - `run.rs`: [`QueryRunner`]: plan, launch, run, re-plan; the plans `EXPLAIN [ANALYZE]` shows.
//! - `physical.rs`: DataFusion's physical plan, made once; a small query optimized as for one process.
//! - `launch.rs`: a task's definition, and installing tasks on an executor.
//! - `guard.rs`: ending a query's tasks when its stream ends or is dropped.
//! - `stats.rs`: the statistics and progress of a running query.
//! - `stage_progress.rs`: a query's tasks summed per stage, for its page.
//! - `live.rs`: every running statement by its id, for its page.
//! - `rerun.rs`: running a lost storage-only task of the final gather again elsewhere.
//! - `recovery.rs`: retry policy `task`: running again whatever a lost executor took with it.
//! - `endpoints.rs`: a result its client reads from the executors (a plain final gather).

mod endpoints;
mod guard;
mod launch;
mod live;
mod not_in_nulls;
mod physical;
mod recovery;
mod rerun;
mod run;
mod stage_progress;
mod stats;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use datafusion::common::Result as DfResult;
use futures::{Stream, stream};
use glaux_proto::QueryId;

pub use endpoints::AtExecutors;
pub use guard::cancel_abandoned;
pub use live::LiveQueries;
pub use run::QueryRunner;
pub use stage_progress::{StageProgress, by_stage, progress_json};
pub use stats::{ProgressProbe, ProgressSlot, QueryStatsHandle};

use crate::error::SchedulerError;

/// What a query does when it loses an executor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Plan the query again without it, while no row has gone out; after that, only a lost task
    /// of the final gather that reads storage alone runs again. Exchanges stream: nothing is kept.
    #[default]
    Query,
    /// Every task keeps its whole output on its executor's disk before it is read, and the final
    /// stage reads each task whole before passing rows on, so whatever a lost executor took with
    /// it runs again elsewhere, at any moment of the query (`recovery.rs`).
    Task,
}

impl RetryPolicy {
    pub const NAMES: &'static str = "'query' or 'task'";

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "query" => Some(Self::Query),
            "task" => Some(Self::Task),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Task => "task",
        }
    }
}

/// `SchedulerConfig::small_query_bytes`, in the session's config: queries whose scans produce at
/// most this many bytes run whole as one task on one executor (0: never).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SmallQueryBytes(pub u64);

/// The small-query bound for a query planned in `state`.
fn small_query_bytes(state: &datafusion::execution::SessionState) -> u64 {
    state.config().get_extension::<SmallQueryBytes>().map_or(0, |s| s.0)
}

/// Batches of a running statement, and the statistics to send after them.
pub struct QueryResult {
    pub query: QueryId,
    /// The result schema as plans produce it (dictionaries are hydrated on the way to clients).
    pub schema: SchemaRef,
    pub batches: Pin<Box<dyn Stream<Item = DfResult<RecordBatch>> + Send>>,
    pub stats: QueryStatsHandle,
}

impl QueryResult {
    /// The result of a statement that ran here whole.
    pub fn finished(query: QueryId, schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        QueryResult {
            query: query.clone(),
            schema,
            batches: Box::pin(stream::iter(batches.into_iter().map(Ok))),
            stats: QueryStatsHandle::local(query, rows),
        }
    }

    /// A one-column result of text rows.
    pub fn text(query: QueryId, schema: SchemaRef, rows: Vec<String>) -> Result<Self, SchedulerError> {
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(rows))])
            .map_err(|e| SchedulerError::plan(e.into()))?;
        Ok(Self::finished(query, schema, vec![batch]))
    }

    /// A result with no columns and no rows (DDL).
    pub fn empty(query: QueryId) -> Self {
        Self::finished(query, Arc::new(arrow::datatypes::Schema::empty()), Vec::new())
    }
}
