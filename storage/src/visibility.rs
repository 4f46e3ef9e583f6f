//! Which files the scheduler's listings show while writes commit.
//!
//! A write moves its files into a table's location one by one; until it commits, those files are
//! hidden from every listing of the scheduler's stores (which is how queries find files), and the
//! commit itself (registering new partitions and revealing the files) happens while no query is
//! between listing files and finishing its plan ([`Visibility::planning`] and
//! [`Visibility::committing`]). A query sees all of a write's files or none.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use object_store::path::Path;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
pub struct Visibility {
    /// Object URLs (`s3://bucket/key`, `file:///path`) each write keeps hidden, by write id.
    hidden: Mutex<HashMap<String, HashSet<String>>>,
    /// Whether anything is hidden: listings skip the lookup when nothing is.
    any: AtomicBool,
    gate: RwLock<()>,
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

    /// Held by a query from its first listing to its finished plan.
    pub async fn planning(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Held by a write while it makes its files and partitions visible.
    pub async fn committing(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }
}
