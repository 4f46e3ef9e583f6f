//! The file scans of a plan subtree: where it reads storage, and how much.

use std::sync::Arc;

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;

/// The file scans of a subtree: `Some` with each scan's config if there is at least one.
pub(super) fn scan_files(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<FileScanConfig>> {
    let mut scans = Vec::new();
    collect_scans(plan, &mut scans);
    (!scans.is_empty()).then_some(scans)
}

fn collect_scans(plan: &Arc<dyn ExecutionPlan>, scans: &mut Vec<FileScanConfig>) {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = source.data_source().downcast_ref::<FileScanConfig>()
    {
        scans.push(config.clone());
    }
    for child in plan.children() {
        collect_scans(child, scans);
    }
}
