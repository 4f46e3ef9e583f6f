//! The latest snapshot of each Delta table read recently, so that the next statement on it reads
//! only the commits since (a statement on a table of 1,000 versions replays its log from the last
//! checkpoint once, not once per statement, and each planning, write and commit opens it anew).
//!
//! A snapshot is reused only through the same object store it was read with, and only while the
//! commit file of its version is still the one it read (same modification time): a table
//! deleted and created again at the same location is read from the start. Bounded in tables and
//! in the files their snapshots hold; the least recently used go first.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

use deltalake_core::DeltaTable;
use deltalake_core::logstore::LogStoreRef;
use object_store::ObjectStoreExt;
use object_store::path::Path;

/// Tables kept at most.
const TABLES: usize = 64;
/// Files the kept snapshots may list in all (a snapshot holds each file's log entry, a few
/// hundred bytes, so about 500 MiB at most); a larger table is not kept.
const FILES: usize = 2_000_000;

static LATEST: LazyLock<Mutex<VecDeque<Kept>>> = LazyLock::new(Mutex::default);

struct Kept {
    location: String,
    table: DeltaTable,
    files: usize,
}

fn kept() -> std::sync::MutexGuard<'static, VecDeque<Kept>> {
    LATEST.lock().unwrap_or_else(|e| e.into_inner())
}

/// The kept snapshot of `location`, if it was read through `log_store`'s object store and its
/// version's commit file is unchanged.
pub(super) async fn recent(location: &str, log_store: &LogStoreRef) -> Option<DeltaTable> {
    let table = {
        let kept = kept();
        let table = kept.iter().find(|k| k.location == location)?.table.clone();
        let store = log_store.root_object_store(None);
        if !Arc::ptr_eq(&table.log_store().root_object_store(None), &store) {
            return None;
        }
        table
    };
    let state = table.snapshot().ok()?;
    let version = state.version();
    let read = state.version_timestamp(version)?;
    let commit = Path::from(format!("_delta_log/{version:020}.json"));
    let now = log_store.object_store(None).head(&commit).await.ok()?;
    (now.last_modified.timestamp_millis() == read).then_some(table)
}

/// Keeps `table` (at its latest version) for [`recent`], unless a newer snapshot of it is kept.
pub(super) fn keep(location: &str, table: &DeltaTable) {
    let Ok(state) = table.snapshot() else { return };
    let files = state.log_data().num_files();
    let mut kept = kept();
    if let Some(at) = kept.iter().position(|k| k.location == location) {
        let newer = kept[at].table.version().is_some_and(|v| Some(v) > table.version());
        if newer {
            return;
        }
        kept.remove(at);
    }
    if files > FILES {
        return;
    }
    kept.push_front(Kept { location: location.to_string(), table: table.clone(), files });
    while kept.len() > TABLES || kept.iter().map(|k| k.files).sum::<usize>() > FILES {
        kept.pop_back();
    }
}
