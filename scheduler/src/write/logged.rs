//! Writes into tables whose own log says which files are theirs (Delta).

use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use glaux_proto::{WriteCompression, WriteFormat};

use super::{Published, StagedWrite};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryRunner, QueryStatsHandle};

impl StagedWrite {
    /// Runs `plan` into this write as [`Self::run`] does, for a table whose own log says which
    /// files are its (Delta): once the files are in place the journal keeps them, then `log`
    /// commits them to the table's log. A crash between the two leaves files no version names
    /// (what VACUUM removes), never a version naming deleted files; a `log` that fails removes them.
    pub async fn run_logged(
        mut self,
        queries: &QueryRunner,
        state: &SessionState,
        plan: &LogicalPlan,
        format: (WriteFormat, WriteCompression),
        progress: &ProgressSlot,
        log: impl AsyncFnOnce(&Published) -> Result<(), SchedulerError>,
    ) -> Result<(u64, QueryStatsHandle), SchedulerError> {
        let written = async {
            let (reports, stats) = self.reports(queries, state, plan, format, progress).await?;
            let published = self.publish(&reports).await?;
            self.catalog.record_write_targets(&self.id(), &[], &[])?;
            log(&published).await?;
            self.commit(|| Ok(())).await?;
            Ok((published.rows, stats))
        }
        .await;
        self.discard().await;
        written
    }
}
