//! Listings kept for a short time, so that the queries of a dashboard, or a query and its repeats,
//! do not each list the same prefixes of object storage again.
//!
//! [`ListingCache`] holds the objects each `list(prefix)` returned, per store, for a TTL; the
//! stores [`crate::LakeObjectStores`] hands out with one answer `list` from it while an entry is
//! fresh. A file written by another program within the TTL of its prefix's listing is not seen
//! until the entry expires; every write through a cached store (a put, copy, rename or delete by
//! Glaux itself) and every [`ListingCache::invalidate`] (the scheduler calls it around each
//! statement that changes the catalog) empties the cache, and a listing that started before an
//! invalidation is never stored after it. Entries are bounded in bytes: a listing larger than the
//! whole budget is not kept, and the oldest entries go first when the budget is full. With a TTL
//! of zero nothing is kept. A Delta transaction log (`_delta_log/`) is never kept: its listing
//! names the table's latest version, which another program may have committed a moment ago. Listings never show the files a write keeps hidden until it commits
//! ([`Visibility`]).

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Visibility;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The directory of a Delta table's transaction log.
const TRANSACTION_LOG: &str = "_delta_log";

/// What one cached object costs beyond its path and tags (the `ObjectMeta` itself).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<ObjectMeta>();

/// Listings of object storage prefixes, fresh for a TTL and bounded in bytes.
pub struct ListingCache {
    ttl: Duration,
    max_bytes: usize,
    /// Bumped by every invalidation: a listing stores its result only if none happened since it
    /// started.
    generation: AtomicU64,
    entries: Mutex<Entries>,
    visibility: Arc<Visibility>,
    /// Listings answered from the cache, and listings that went to the store (for metrics).
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Entries {
    /// By (store, prefix).
    listings: HashMap<(String, String), Listing>,
    bytes: usize,
}

struct Listing {
    at: Instant,
    objects: Arc<Vec<ObjectMeta>>,
    bytes: usize,
}

impl fmt::Debug for ListingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListingCache").field("ttl", &self.ttl).field("max_bytes", &self.max_bytes).finish()
    }
}

impl ListingCache {
    /// A cache keeping listings for `ttl`, in at most `max_bytes` (estimated).
    pub fn new(ttl: Duration, max_bytes: usize) -> Self {
        let visibility = Arc::default();
        let (hits, misses) = (AtomicU64::new(0), AtomicU64::new(0));
        Self { ttl, max_bytes, generation: AtomicU64::new(0), entries: Mutex::default(), visibility, hits, misses }
    }

    /// Listings answered from the cache so far, and listings that were not.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// The files writes keep out of the listings of stores wrapped by this cache.
    pub fn visibility(&self) -> &Arc<Visibility> {
        &self.visibility
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Forgets every listing, including those still being listed.
    pub fn invalidate(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        *entries = Entries::default();
    }

    /// `store` with its listings answered from this cache.
    pub fn wrap(self: &Arc<Self>, store_key: String, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(CachedListings { inner: store, store_key, cache: Arc::clone(self) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &(String, String)) -> Option<Arc<Vec<ObjectMeta>>> {
        let found = self.fresh(key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn fresh(&self, key: &(String, String)) -> Option<Arc<Vec<ObjectMeta>>> {
        let mut entries = self.lock();
        let listing = entries.listings.get(key)?;
        if listing.at.elapsed() < self.ttl {
            return Some(Arc::clone(&listing.objects));
        }
        if let Some(stale) = entries.listings.remove(key) {
            entries.bytes -= stale.bytes;
        }
        None
    }

    fn put(&self, key: (String, String), generation: u64, objects: Arc<Vec<ObjectMeta>>, at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let bytes = objects.iter().map(meta_bytes).sum::<usize>() + key.0.len() + key.1.len();
        if bytes > self.max_bytes {
            return;
        }
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if let Some(old) = entries.listings.remove(&key) {
            entries.bytes -= old.bytes;
        }
        while entries.bytes + bytes > self.max_bytes {
            let Some(oldest) = entries.listings.iter().min_by_key(|(_, l)| l.at).map(|(k, _)| k.clone()) else { break };
            if let Some(gone) = entries.listings.remove(&oldest) {
                entries.bytes -= gone.bytes;
            }
        }
        entries.bytes += bytes;
        entries.listings.insert(key, Listing { at, objects, bytes });
    }
}

fn meta_bytes(meta: &ObjectMeta) -> usize {
    ENTRY_OVERHEAD
        + meta.location.as_ref().len()
        + meta.e_tag.as_ref().map_or(0, String::len)
        + meta.version.as_ref().map_or(0, String::len)
}

/// A store whose `list` answers come from a [`ListingCache`] while fresh.
#[derive(Debug)]
struct CachedListings {
    inner: Arc<dyn ObjectStore>,
    /// The store's scheme and authority (`s3://bucket`): equal prefixes of two buckets differ.
    store_key: String,
    cache: Arc<ListingCache>,
}

impl fmt::Display for CachedListings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedListings({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CachedListings {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await;
        self.cache.invalidate();
        result
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        // The object appears when the upload completes, after this call: listings made meanwhile
        // may be kept, so the cache is emptied here and the upload is not one to wait for.
        let upload = self.inner.put_multipart_opts(location, opts).await;
        self.cache.invalidate();
        upload
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let cache = Arc::clone(&self.cache);
        self.inner.delete_stream(locations).inspect(move |_| cache.invalidate()).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = (self.store_key.clone(), prefix.map(|p| p.to_string()).unwrap_or_default());
        let (visibility, store_key) = (Arc::clone(&self.cache.visibility), self.store_key.clone());
        // Hidden when the listing began stays hidden in it: a write's replaced files are deleted
        // and forgotten while a slow listing that still names them may be in flight.
        let hidden_at_start = visibility.hidden_now(&store_key);
        let shown = move |meta: &ObjectMeta| {
            !visibility.is_hidden(&store_key, &meta.location)
                && (hidden_at_start.is_empty() || !hidden_at_start.contains(&format!("{store_key}/{}", meta.location)))
        };
        // A transaction log's listing says which version is the latest: always listed anew.
        if prefix.is_some_and(|p| p.parts().any(|part| part.as_ref() == TRANSACTION_LOG)) {
            return self.inner.list(prefix).try_filter(move |m| std::future::ready(shown(m))).boxed();
        }
        if let Some(objects) = self.cache.get(&key) {
            let objects: Vec<ObjectMeta> = objects.iter().filter(|m| shown(m)).cloned().collect();
            return stream::iter(objects.into_iter().map(Ok)).boxed();
        }
        let (cache, generation, started) =
            (Arc::clone(&self.cache), self.cache.generation.load(Ordering::SeqCst), Instant::now());
        let listing = self.inner.list(prefix);
        stream::once(async move {
            match listing.try_collect::<Vec<_>>().await {
                Ok(objects) => {
                    let objects = Arc::new(objects);
                    cache.put(key, generation, Arc::clone(&objects), started);
                    let objects: Vec<ObjectMeta> = objects.iter().filter(|m| shown(m)).cloned().collect();
                    stream::iter(objects.into_iter().map(Ok)).left_stream()
                }
                Err(error) => stream::iter([Err(error)]).right_stream(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let result = self.inner.copy_opts(from, to, options).await;
        self.cache.invalidate();
        result
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let result = self.inner.rename_opts(from, to, options).await;
        self.cache.invalidate();
        result
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    async fn names(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> =
            store.list(Some(&Path::from(prefix))).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        names.sort();
        names
    }

    #[tokio::test]
    async fn listings_are_kept_until_they_expire_or_glaux_writes() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        inner.put(&Path::from("t/a.parquet"), PutPayload::from_static(b"a")).await.unwrap();
        let cache = Arc::new(ListingCache::new(Duration::from_secs(3600), 1 << 20));
        let store = cache.wrap("memory://".into(), Arc::clone(&inner));
        assert_eq!(names(store.as_ref(), "t").await, ["t/a.parquet"]);

        // Written by another program: not seen while the listing is fresh.
        inner.put(&Path::from("t/b.parquet"), PutPayload::from_static(b"b")).await.unwrap();
        assert_eq!(names(store.as_ref(), "t").await, ["t/a.parquet"]);
        // Another prefix is listed on its own.
        inner.put(&Path::from("u/x.parquet"), PutPayload::from_static(b"x")).await.unwrap();
        assert_eq!(names(store.as_ref(), "u").await, ["u/x.parquet"]);

        // Written through the cached store: every listing is forgotten.
        store.put(&Path::from("t/c.parquet"), PutPayload::from_static(b"c")).await.unwrap();
        assert_eq!(names(store.as_ref(), "t").await, ["t/a.parquet", "t/b.parquet", "t/c.parquet"]);

        inner.delete(&Path::from("t/a.parquet")).await.unwrap();
        cache.invalidate();
        assert_eq!(names(store.as_ref(), "t").await, ["t/b.parquet", "t/c.parquet"]);

        // Two buckets with the same prefix are two listings.
        let other = cache.wrap("memory://other".into(), Arc::new(InMemory::new()));
        assert!(names(other.as_ref(), "t").await.is_empty());
    }

    #[tokio::test]
    async fn a_delta_log_is_always_listed_anew() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let log = |v: u32| Path::from(format!("t/_delta_log/{v:020}.json"));
        inner.put(&log(0), PutPayload::from_static(b"{}")).await.unwrap();
        let cache = Arc::new(ListingCache::new(Duration::from_secs(3600), 1 << 20));
        let store = cache.wrap("memory://".into(), Arc::clone(&inner));
        assert_eq!(names(store.as_ref(), "t/_delta_log").await.len(), 1);
        // Committed by another program: the next listing names it.
        inner.put(&log(1), PutPayload::from_static(b"{}")).await.unwrap();
        assert_eq!(names(store.as_ref(), "t/_delta_log").await.len(), 2);
        let offset = log(0);
        let after: Vec<ObjectMeta> =
            store.list_with_offset(Some(&Path::from("t/_delta_log")), &offset).try_collect().await.unwrap();
        assert_eq!(after.iter().map(|m| m.location.clone()).collect::<Vec<_>>(), [log(1)]);
    }

    #[tokio::test]
    async fn hidden_files_are_left_out_of_listings_until_revealed() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for name in ["t/a.parquet", "t/b.parquet"] {
            inner.put(&Path::from(name), PutPayload::from_static(b"x")).await.unwrap();
        }
        for ttl in [Duration::ZERO, Duration::from_secs(3600)] {
            let cache = Arc::new(ListingCache::new(ttl, 1 << 20));
            let store = cache.wrap("memory://".into(), Arc::clone(&inner));
            cache.visibility().hide("w1", ["memory:///t/b.parquet".to_string()]);
            assert_eq!(names(store.as_ref(), "t").await, ["t/a.parquet"]);
            assert_eq!(names(store.as_ref(), "t").await, ["t/a.parquet"], "from the cache too");
            cache.visibility().reveal("w1");
            assert_eq!(names(store.as_ref(), "t").await, ["t/a.parquet", "t/b.parquet"]);
        }
    }

    #[tokio::test]
    async fn expired_listings_are_listed_again() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cache = Arc::new(ListingCache::new(Duration::ZERO, 1 << 20));
        let store = cache.wrap("memory://".into(), Arc::clone(&inner));
        assert!(names(store.as_ref(), "t").await.is_empty());
        inner.put(&Path::from("t/a.parquet"), PutPayload::from_static(b"a")).await.unwrap();
        assert_eq!(names(store.as_ref(), "t").await, ["t/a.parquet"]);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bytes() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for i in 0..20 {
            inner.put(&Path::from(format!("p{i}/file.parquet")), PutPayload::from_static(b"x")).await.unwrap();
        }
        let budget = 5 * (ENTRY_OVERHEAD + 40);
        let cache = Arc::new(ListingCache::new(Duration::from_secs(3600), budget));
        let store = cache.wrap("memory://".into(), Arc::clone(&inner));
        for i in 0..20 {
            assert_eq!(names(store.as_ref(), &format!("p{i}")).await.len(), 1);
            assert!(cache.lock().bytes <= budget);
        }
        assert!((1..20).contains(&cache.lock().listings.len()));
        // A listing larger than the whole budget is answered and not kept.
        assert_eq!(names(store.as_ref(), "").await.len(), 20);
        assert!(!cache.lock().listings.contains_key(&("memory://".to_string(), String::new())));
    }

    #[tokio::test]
    async fn a_listing_that_started_before_an_invalidation_is_not_kept() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        inner.put(&Path::from("t/a.parquet"), PutPayload::from_static(b"a")).await.unwrap();
        let cache = Arc::new(ListingCache::new(Duration::from_secs(3600), 1 << 20));
        let store = cache.wrap("memory://".into(), Arc::clone(&inner));
        let listing = store.list(Some(&Path::from("t")));
        cache.invalidate();
        assert_eq!(listing.try_collect::<Vec<_>>().await.unwrap().len(), 1);
        assert!(cache.lock().listings.is_empty());
    }
}
