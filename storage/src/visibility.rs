//! Which files the scheduler's listings show while writes commit, and which files queries still
//! read after a write replaced them.
//!
//! A write moves its files into a table's location one by one; until it commits, those files are
//! hidden from every listing of the scheduler's stores (which is how queries find files), and the
//! commit itself (registering new partitions and revealing the files) happens while no query is
//! between listing files and finishing its plan ([`Visibility::planning`] and
//! [`Visibility::committing`]). A query sees all of a write's files or none.
//!
//! A write that replaces files (compaction) hides the old ones in the same commit
//! ([`Visibility::retire`]); queries planned before it may still read them, so they are deleted
//! only once every such query has ended ([`Visibility::unused_before`]): each query holds an
//! [`InUse`] from its plan to its end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use tokio::sync::{Notify, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
pub struct Visibility {
    /// Object URLs (`s3://bucket/key`, `file:///path`) each write keeps hidden, by write id.
    hidden: Mutex<HashMap<String, HashSet<String>>>,
    /// Whether anything is hidden: listings skip the lookup when nothing is.
    any: AtomicBool,
    gate: RwLock<()>,
    /// Bumped by each commit that retires files.
    epoch: AtomicU64,
    /// Queries planned and not ended, by the epoch they were planned in.
    in_use: Mutex<BTreeMap<u64, usize>>,
    ended: Notify,
    /// Object URLs each write is replacing, by write id: no two writes replace the same file.
    claimed: Mutex<HashMap<String, HashSet<String>>>,
}

/// Held by a query from its plan to its end: files retired after it was planned outlive it.
#[derive(Debug)]
pub struct InUse {
    visibility: Arc<Visibility>,
    epoch: u64,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut in_use = self.visibility.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_use.get_mut(&self.epoch) {
            *count -= 1;
            if *count == 0 {
                in_use.remove(&self.epoch);
            }
        }
        drop(in_use);
        self.visibility.ended.notify_waiters();
    }
}

impl Visibility {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.hidden.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hides `objects` (object URLs) from listings until [`Self::reveal`] of `write`.
    pub fn hide(&self, write: &str, objects: impl IntoIterator<Item = String>) {
        let mut hidden = self.lock();
        hidden.entry(write.to_string()).or_default().extend(objects);
        self.any.store(true, Ordering::SeqCst);
    }

    /// Shows (or forgets, if they were deleted) the objects `write` hid.
    pub fn reveal(&self, write: &str) {
        let mut hidden = self.lock();
        hidden.remove(write);
        self.any.store(!hidden.is_empty(), Ordering::SeqCst);
    }

    /// Whether the object at `path` of the store `store_key` (`s3://bucket`, `file://`) is hidden.
    pub fn is_hidden(&self, store_key: &str, path: &Path) -> bool {
        if !self.any.load(Ordering::SeqCst) {
            return false;
        }
        let url = format!("{store_key}/{path}");
        self.lock().values().any(|objects| objects.contains(&url))
    }

    /// The objects (URLs) of the store `store_key` hidden now: what a listing that starts now
    /// keeps hidden even if they are shown (or forgotten, once deleted) before it ends.
    pub fn hidden_now(&self, store_key: &str) -> HashSet<String> {
        if !self.any.load(Ordering::SeqCst) {
            return HashSet::new();
        }
        let prefix = format!("{store_key}/");
        self.lock().values().flatten().filter(|url| url.starts_with(&prefix)).cloned().collect()
    }

    /// Held by a query from its first listing to its finished plan.
    pub async fn planning(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Held by a write while it makes its files and partitions visible.
    pub async fn committing(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Taken by a query while it plans (under [`Self::planning`]) and held until it ends.
    pub fn in_use(self: &Arc<Self>) -> InUse {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: a commit bumps the epoch under it too.
        let epoch = self.epoch.load(Ordering::SeqCst);
        *in_use.entry(epoch).or_default() += 1;
        InUse { visibility: Arc::clone(self), epoch }
    }

    /// Hides `objects` as replaced by `write` (under [`Self::committing`]): no query planned from
    /// now on sees them. Returns the epoch to wait for with [`Self::unused_before`].
    pub fn retire(&self, write: &str, objects: impl IntoIterator<Item = String>) -> u64 {
        self.hide(write, objects);
        let _in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Waits until every query planned before the commit that returned `epoch` has ended.
    pub async fn unused_before(&self, epoch: u64) {
        loop {
            let ended = self.ended.notified();
            let busy = self.in_use.lock().unwrap_or_else(|e| e.into_inner()).range(..epoch).next().is_some();
            if !busy {
                return;
            }
            ended.await;
        }
    }

    /// Claims `objects` for `write`, which replaces them; refused (naming one) if another write
    /// claimed any of them.
    pub fn claim(&self, write: &str, objects: &[String]) -> Result<(), String> {
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(taken) = objects.iter().find(|o| claimed.values().any(|c| c.contains(*o))) {
            return Err(taken.clone());
        }
        claimed.entry(write.to_string()).or_default().extend(objects.iter().cloned());
        Ok(())
    }

    /// `write` is over: what it hid is shown (or was deleted), and what it claimed is free.
    pub fn forget(&self, write: &str) {
        self.reveal(write);
        self.claimed.lock().unwrap_or_else(|e| e.into_inner()).remove(write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Retired files wait for the queries planned before the commit, not for later ones.
    #[tokio::test]
    async fn retired_files_outlive_the_queries_planned_before() {
        let visibility = Arc::new(Visibility::default());
        let before = visibility.in_use();
        let epoch = {
            let _committing = visibility.committing().await;
            visibility.retire("w", ["file:///t/old.parquet".to_string()])
        };
        assert!(visibility.is_hidden("file://", &Path::from("t/old.parquet")));
        let after = visibility.in_use();
        let waiting = visibility.unused_before(epoch);
        tokio::pin!(waiting);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut waiting).await.is_err(), "a query reads them");
        drop(before);
        tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("the query planned before ended");
        drop(after);
    }

    #[test]
    fn a_file_is_replaced_by_one_write_at_a_time() {
        let visibility = Visibility::default();
        let files = ["file:///t/a".to_string(), "file:///t/b".to_string()];
        visibility.claim("w1", &files).unwrap();
        assert_eq!(visibility.claim("w2", &files[1..]), Err(files[1].clone()));
        visibility.forget("w1");
        visibility.claim("w2", &files[1..]).unwrap();
    }
}
