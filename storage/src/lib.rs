//! Object-store access shared by the scheduler and the executors.
//!
//! - [`StorageConfig`]: which S3-compatible endpoints and credentials serve which buckets (default
//!   settings, and [`NamedStore`]s from the storage config file), and under which local
//!   directories (`file://` roots) tables may live.
//! - [`LakeObjectStores`]: a DataFusion [`ObjectStoreRegistry`] that creates stores on first use from
//!   that config: one S3 client per bucket, and a local file system confined to the roots.
//!
//! - [`CountingStores`]: wraps a registry to count the bytes read through it ("data scanned").
//! - [`ListingCache`]: listings kept for a short TTL by the stores of a registry that has one
//!   (the scheduler's).
//!
//! Both sides build their stores from their own config; no credential ever travels in a plan.

mod config_file;
mod counting;
mod listing_cache;
mod rooted;
mod visibility;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

pub use counting::CountingStores;
pub use listing_cache::ListingCache;
pub use rooted::{PRIVATE_DIR, RootedLocalStore};
pub use visibility::{InUse, Visibility};

/// How to reach S3 or an S3-compatible store. Unset fields fall back to the standard `AWS_*`
/// environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...).
#[derive(Clone, Default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// `https://bucket.host/` instead of `https://host/bucket/`. Off by default, as S3-compatible
    /// servers expect.
    pub virtual_hosted_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials are never printed, not even in debug logs.
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<set>"))
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<set>"))
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

/// An S3-compatible store, by name, and the buckets it serves.
#[derive(Clone, Debug)]
pub struct NamedStore {
    pub name: String,
    pub buckets: Vec<String>,
    pub s3: S3Config,
}

#[derive(Clone, Debug, Default)]
pub struct StorageConfig {
    /// Directories under which `file://` tables may live (canonical, absolute).
    local_roots: Vec<PathBuf>,
    /// Settings for buckets no named store claims.
    pub s3: S3Config,
    pub stores: Vec<NamedStore>,
    /// If set (`[s3] buckets` in the storage config), the only buckets the default settings
    /// serve: other buckets are neither declared nor read.
    pub default_buckets: Option<Vec<String>>,
}

impl StorageConfig {
    /// A config allowing local tables under `roots`, each of which must exist.
    pub fn with_local_roots(mut self, roots: &[PathBuf]) -> std::io::Result<Self> {
        for root in roots {
            let canonical = root
                .canonicalize()
                .map_err(|e| std::io::Error::new(e.kind(), format!("warehouse root {}: {e}", root.display())))?;
            self.local_roots.push(canonical);
        }
        Ok(self)
    }

    /// The directories `file://` tables may live under; the first holds Glaux's own files.
    pub fn local_roots(&self) -> &[PathBuf] {
        &self.local_roots
    }

    pub fn with_s3(mut self, s3: S3Config) -> Self {
        self.s3 = s3;
        self
    }

    /// True if this deployment may read `bucket`: a named store's, or any the default settings
    /// serve (every bucket unless `[s3] buckets` lists them).
    pub fn serves_bucket(&self, bucket: &str) -> bool {
        self.stores.iter().any(|s| s.buckets.iter().any(|b| b == bucket))
            || self.default_buckets.as_ref().is_none_or(|buckets| buckets.iter().any(|b| b == bucket))
    }

    /// The store that serves `bucket`: its name (`default` for the default settings) and settings.
    pub fn s3_for(&self, bucket: &str) -> (&str, &S3Config) {
        match self.stores.iter().find(|s| s.buckets.iter().any(|b| b == bucket)) {
            Some(store) => (&store.name, &store.s3),
            None => ("default", &self.s3),
        }
    }

    /// Checks that a table location is one this deployment may read: `s3://bucket/...`, or a
    /// `file://` path under a configured root. Returns the location as a URL ending in `/`
    /// when it names a directory.
    pub fn check_location(&self, location: &str) -> Result<Url, LocationError> {
        let url = parse_location(location)?;
        match url.scheme() {
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(LocationError::Invalid(format!("location {location} names no bucket")));
                }
                if !self.serves_bucket(bucket) {
                    return Err(LocationError::UnconfiguredBucket {
                        location: location.to_string(),
                        bucket: bucket.to_string(),
                    });
                }
                Ok(url)
            }
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| LocationError::Invalid(format!("location {location} is not a local path")))?;
                let resolved = resolve_existing_prefix(&path);
                if let Some(root) = self.local_roots.iter().find(|root| resolved.starts_with(root)) {
                    if is_private(root, &resolved) {
                        return Err(LocationError::Private(location.to_string()));
                    }
                    Ok(url)
                } else {
                    let roots: Vec<String> = self.local_roots.iter().map(|r| r.display().to_string()).collect();
                    Err(LocationError::OutsideRoots { location: location.to_string(), roots: roots.join(", ") })
                }
            }
            other => {
                Err(LocationError::UnsupportedScheme { location: location.to_string(), scheme: other.to_string() })
            }
        }
    }
}

impl StorageConfig {
    /// Refuses a file Glaux keeps to itself (catalog, cluster secret, users, keys, this config)
    /// inside a warehouse root unless it is in a `.glaux` directory there, which tables never read.
    pub fn check_private_file(&self, what: &str, file: &Path) -> Result<(), String> {
        let resolved = resolve_existing_prefix(&std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()));
        match self.local_roots.iter().find(|root| resolved.starts_with(root)) {
            Some(root) if !is_private(root, &resolved) => Err(format!(
                "the {what} {} is inside the warehouse root {}, where tables could read it: keep it outside \
                 every root, or in its {PRIVATE_DIR} directory",
                file.display(),
                root.display()
            )),
            _ => Ok(()),
        }
    }
}

/// True if `path` (under `root`) is in a `.glaux` directory below the root.
fn is_private(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root).is_ok_and(|below| below.components().any(|c| c.as_os_str() == PRIVATE_DIR))
}

/// Why a location may not hold a table.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{0}")]
    Invalid(String),
    /// A local path outside every warehouse root: the deployment does not let tables read it.
    #[error(
        "location {location} is outside the configured warehouse roots ({roots}); local tables must live under one of them"
    )]
    OutsideRoots { location: String, roots: String },
    /// A bucket the storage config does not serve (`[s3] buckets` confines the defaults).
    #[error("location {location} is in bucket {bucket}, which this deployment does not serve (see [s3] buckets)")]
    UnconfiguredBucket { location: String, bucket: String },
    #[error("unsupported location scheme '{scheme}://' in {location}: use s3:// or file://")]
    UnsupportedScheme { location: String, scheme: String },
    /// A location in (or linked into) Glaux's own directory.
    #[error("location {0} is inside Glaux's own directory ({PRIVATE_DIR}); its files are never table data")]
    Private(String),
    /// A local location that does not exist (an S3 prefix is not checked: it may be filled later).
    #[error("location {0} does not exist")]
    Missing(String),
}

/// Accepts `s3://...`, `file:///...` and plain absolute paths (taken as `file://`).
fn parse_location(location: &str) -> Result<Url, LocationError> {
    if location.starts_with('/') {
        return Url::from_file_path(location)
            .map_err(|()| LocationError::Invalid(format!("location {location} is not a valid path")));
    }
    Url::parse(location).map_err(|e| LocationError::Invalid(format!("location '{location}' is not a URL: {e}")))
}

/// Canonicalizes the longest existing prefix of `path` (so `..` and symlinks cannot step outside a
/// root), keeping the not-yet-existing rest as written.
pub(crate) fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            return rest.iter().rev().fold(canonical, |acc, part| acc.join(part));
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) if name != ".." => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            // `..` in a not-existing part, or nothing left: refuse by returning a relative path.
            _ => return PathBuf::new(),
        }
    }
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

/// Creates object stores on first use, from a [`StorageConfig`].
#[derive(Debug)]
pub struct LakeObjectStores {
    config: StorageConfig,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
    listings: Option<Arc<ListingCache>>,
}

impl LakeObjectStores {
    pub fn new(config: StorageConfig) -> Self {
        Self { config, stores: RwLock::new(HashMap::new()), listings: None }
    }

    /// The stores it creates answer listings from `cache` while they are fresh.
    pub fn with_listing_cache(mut self, cache: Arc<ListingCache>) -> Self {
        self.listings = Some(cache);
        self
    }

    fn key(url: &Url) -> String {
        format!("{}://{}", url.scheme(), url.authority())
    }

    fn create(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match url.scheme() {
            "file" => Ok(Arc::new(RootedLocalStore::new(self.config.local_roots.clone()))),
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default();
                if !self.config.serves_bucket(bucket) {
                    return Err(DataFusionError::External(Box::new(LocationError::UnconfiguredBucket {
                        location: url.to_string(),
                        bucket: bucket.to_string(),
                    })));
                }
                let (name, s3) = self.config.s3_for(bucket);
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let endpoint = s3.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                if endpoint.is_some_and(|e| e.starts_with("http://")) {
                    builder = builder.with_allow_http(true);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                if let Some(token) = &s3.session_token {
                    builder = builder.with_token(token);
                }
                builder = builder.with_virtual_hosted_style_request(s3.virtual_hosted_style);
                let store = builder.build().map_err(|e| {
                    DataFusionError::Execution(format!("cannot configure S3 bucket '{bucket}' (store {name}): {e}"))
                })?;
                Ok(Arc::new(store))
            }
            other => Err(plan_error(format!("no object store for scheme '{other}'"))),
        }
    }
}

impl ObjectStoreRegistry for LakeObjectStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.insert(Self::key(url), store)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(store) = self.stores.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(store));
        }
        let mut store = self.create(url)?;
        if let Some(cache) = &self.listings {
            store = cache.wrap(key.clone(), store);
        }
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::clone(stores.entry(key).or_insert(store)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_locations_must_be_under_a_root() {
        let root = std::env::temp_dir().join(format!("glaux-storage-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("t")).unwrap();
        let config = StorageConfig::default().with_local_roots(std::slice::from_ref(&root)).unwrap();
        let inside = format!("file://{}/t/", root.display());
        assert!(config.check_location(&inside).is_ok());
        assert!(config.check_location(&format!("{}/new/table/", root.display())).is_ok());
        assert!(config.check_location("file:///etc").is_err());
        let escape = format!("file://{}/t/../../../etc/", root.display());
        assert!(config.check_location(&escape).is_err());
        assert!(config.check_location("s3://bucket/prefix/").is_ok());
        assert!(config.check_location("hdfs://x/y").is_err());
        std::fs::create_dir_all(root.join(".glaux")).unwrap();
        let own = config.check_location(&format!("{}/.glaux/", root.display())).unwrap_err();
        assert!(matches!(own, LocationError::Private(_)), "{own}");
        std::os::unix::fs::symlink(root.join(".glaux"), root.join("t/own")).unwrap();
        assert!(config.check_location(&format!("{}/t/own/", root.display())).is_err());
        assert!(config.check_private_file("catalog", &root.join(".glaux/catalog.sqlite")).is_ok());
        assert!(config.check_private_file("catalog", &root.join("t/catalog.sqlite")).is_err());
        assert!(config.check_private_file("catalog", Path::new("/var/lib/glaux/catalog.sqlite")).is_ok());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn debug_never_prints_secrets() {
        let s3 = S3Config { secret_access_key: Some("hunter2hunter2".into()), ..Default::default() };
        assert!(!format!("{s3:?}").contains("hunter2"));
    }
}
