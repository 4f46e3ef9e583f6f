//! Removing what a write leaves: its staging location, the files it moved into a table that
//! never took them, and its record in the catalog's journal, when it fails, is dropped, or (after
//! the scheduler died) at the next start.

use std::sync::Arc;
use std::time::Duration;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::SessionState;
use futures::{StreamExt, TryStreamExt, stream};
use glaux_catalog::{Catalog, PendingWrite};
use glaux_proto::QueryId;
use glaux_storage::{ListingCache, Visibility};
use object_store::ObjectStore;
use object_store::path::Path;

/// Deletes `doomed` and everything under `staging` (on a local file system, its directories
/// too), then forgets the write in the catalog's journal.
pub(super) async fn remove(parts: Parts, staging: ListingTableUrl, doomed: Vec<Path>, query: QueryId) {
    if remove_failed(&parts, &staging, doomed, &query).await {
        end_write(&parts.1, &query);
    }
}

/// When a failed write's staging location is swept again: its other tasks may still be ending
/// (an executor finishing a file as its input ends), after the first removal.
const SWEEPS: [Duration; 4] =
    [Duration::from_secs(1), Duration::from_secs(3), Duration::from_secs(10), Duration::from_secs(30)];

/// Deletes `doomed` (files it moved, or files it replaced) and its staging location, and shows
/// what it hid; whether nothing failed. Its journal record stays.
pub(super) async fn remove_failed(
    parts: &Parts,
    staging: &ListingTableUrl,
    doomed: Vec<Path>,
    query: &QueryId,
) -> bool {
    let (store, _, visibility) = parts;
    let clean = delete_staged(store, staging, doomed, query).await;
    // Files it moved are gone, or the table holds them (and they were shown when it committed);
    // files it replaced are gone.
    if let Some(visibility) = visibility {
        visibility.forget(&query.to_string());
    }
    clean
}

/// Sweeps a failed write's staging location again at each of [`SWEEPS`] (files its tasks
/// finished after [`remove_failed`]), then forgets its journal record (until then a restart
/// removes them too).
pub(super) async fn sweep_failed(parts: Parts, staging: ListingTableUrl, query: QueryId) {
    let mut clean = false;
    for delay in SWEEPS {
        tokio::time::sleep(delay).await;
        clean = delete_staged(&parts.0, &staging, Vec::new(), &query).await;
    }
    if clean {
        end_write(&parts.1, &query);
    }
}

/// Forgets a write whose files are all where they belong.
fn end_write(catalog: &Arc<dyn Catalog>, query: &QueryId) {
    if let Err(e) = catalog.end_write(&query.to_string()) {
        tracing::warn!(%query, error = %e, "forgetting a finished write");
    }
}

/// How long files a write replaced are kept for the queries planned before it: after that they
/// are deleted even if such a query still runs (it fails reading them).
const RETIRED_KEPT_AT_MOST: Duration = Duration::from_secs(3600);

/// Removes what a committed write staged and, once no query planned before its commit (epochs
/// before `epoch`) runs, the files it replaced.
pub(super) async fn retire(parts: Parts, staging: ListingTableUrl, retired: Vec<Path>, epoch: u64, query: QueryId) {
    if let Some(visibility) = &parts.2 {
        let unused = visibility.unused_before(epoch);
        if tokio::time::timeout(RETIRED_KEPT_AT_MOST, unused).await.is_err() {
            tracing::warn!(%query, "queries still read files a write replaced an hour ago; deleting them");
        }
    }
    tracing::debug!(%query, files = retired.len(), "deleting the files a write replaced");
    remove(parts, staging, retired, query).await;
}

/// What removing a write's files needs: the store, the catalog's journal, the listings' view.
pub(super) type Parts = (Arc<dyn ObjectStore>, Arc<dyn Catalog>, Option<Arc<Visibility>>);

/// Removes what a write left when the scheduler died: for each write the catalog's journal still
/// holds, its staging location and either the files it was moving into a table that never took
/// them or, if the table took them, the files they replace.
///
/// The files a write was moving are hidden from listings at once ([`hide_unfinished`]), before
/// the scheduler serves; this removes them in the background.
pub(crate) async fn recover(state: &SessionState, catalog: &Arc<dyn Catalog>, unfinished: Vec<PendingWrite>) {
    let visibility = state.config().get_extension::<ListingCache>().map(|c| Arc::clone(c.visibility()));
    for write in unfinished {
        let query = QueryId::from(write.id.clone());
        let store = ListingTableUrl::parse(&write.staging)
            .and_then(|staging| Ok((state.runtime_env().object_store(staging.object_store())?, staging)));
        let (store, staging) = match store {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(%query, error = %e, staging = %write.staging, "cannot reach what an unfinished write left");
                continue;
            }
        };
        let doomed: Vec<Path> = doomed(&write)
            .iter()
            .filter_map(|target| ListingTableUrl::parse(target).ok())
            .filter(|url| url.object_store() == staging.object_store())
            .map(|url| url.prefix().clone())
            .collect();
        tracing::info!(%query, files = doomed.len(), staging = %write.staging, "removing what an unfinished write left");
        remove((store, Arc::clone(catalog), visibility.clone()), staging, doomed, query).await;
    }
}

/// Hides the files unfinished writes were moving into tables, until [`recover`] removes them.
pub(crate) fn hide_unfinished(state: &SessionState, unfinished: &[PendingWrite]) {
    if let Some(cache) = state.config().get_extension::<ListingCache>() {
        for write in unfinished {
            cache.visibility().hide(&write.id, doomed(write).iter().cloned());
        }
    }
}

/// The object URLs an unfinished write leaves to delete.
fn doomed(write: &PendingWrite) -> &[String] {
    if write.committed() { &write.retired } else { &write.targets }
}

/// Deletes `doomed` and everything under `staging`; whether nothing failed.
async fn delete_staged(
    store: &Arc<dyn ObjectStore>,
    staging: &ListingTableUrl,
    mut doomed: Vec<Path>,
    query: &QueryId,
) -> bool {
    let mut clean = true;
    match store.list(Some(staging.prefix())).try_collect::<Vec<_>>().await {
        Ok(staged) => doomed.extend(staged.into_iter().map(|m| m.location)),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => {
            tracing::warn!(%query, error = %e, "listing a write's staging location to remove it");
            clean = false;
        }
    }
    let deleted = store.delete_stream(stream::iter(doomed.into_iter().map(Ok)).boxed());
    let failures: Vec<_> = deleted.filter_map(|r| async move { r.err() }).collect().await;
    for failure in failures.iter().filter(|e| !matches!(e, object_store::Error::NotFound { .. })) {
        tracing::warn!(%query, error = %failure, "removing a write's file");
        clean = false;
    }
    // Object stores have no directories; a file system keeps the empty ones.
    if let Some(dir) = url::Url::parse(staging.as_str()).ok().and_then(|u| u.to_file_path().ok()) {
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%query, error = %e, "removing a write's staging directory");
        }
        // `_glaux_staging` itself, unless another statement stages there too.
        if let Some(parent) = dir.parent() {
            let _ = tokio::fs::remove_dir(parent).await;
        }
    }
    clean
}
