//! `RootedLocalStore`: the local file system, confined to the warehouse roots.
//!
//! The scheduler checks a table's location when the table is declared; this store checks every path
//! again when it is touched, so a plan that reaches an executor cannot read `/etc/passwd` either.
//! The check is on the **real** path (symlinks resolved), not only on the path as written: a link
//! inside a table directory that points outside every root is refused when opened and left out of
//! listings. And nothing under a [`PRIVATE_DIR`] below a root is ever table data: Glaux keeps its
//! catalog and cluster secret there.

use std::fmt;
use std::ops::Range;
use std::path::{Component, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::resolve_existing_prefix;

/// The directory name that holds Glaux's own files (catalog, cluster secret); never readable or
/// listable as table data, at any depth below a root.
pub const PRIVATE_DIR: &str = ".glaux";

/// Files checked per blocking call while filtering a listing.
const LIST_CHUNK: usize = 256;

#[derive(Debug, Clone)]
pub struct RootedLocalStore {
    inner: std::sync::Arc<LocalFileSystem>,
    roots: Vec<PathBuf>,
}

/// Why a path is refused.
enum Refusal {
    OutsideRoots,
    Private,
}

impl Refusal {
    fn error(self, path: &str) -> object_store::Error {
        let source = match self {
            Refusal::OutsideRoots => "outside the configured warehouse roots (after resolving links)",
            Refusal::Private => "Glaux's own files (a .glaux directory) are never table data",
        };
        object_store::Error::PermissionDenied { path: path.to_string(), source: source.into() }
    }
}

impl RootedLocalStore {
    /// `roots` must be canonical absolute paths.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self { inner: std::sync::Arc::new(LocalFileSystem::new()), roots }
    }

    /// Where `path` (absolute, canonical or not) sits: inside a root and not private.
    fn judge(&self, path: &std::path::Path) -> Result<(), Refusal> {
        let Some(root) = self.roots.iter().find(|root| path.starts_with(root)) else {
            return Err(Refusal::OutsideRoots);
        };
        let below = path.strip_prefix(root).unwrap_or(path);
        for component in below.components() {
            match component {
                Component::Normal(name) if name == PRIVATE_DIR => return Err(Refusal::Private),
                Component::Normal(_) | Component::CurDir => {}
                _ => return Err(Refusal::OutsideRoots),
            }
        }
        Ok(())
    }

    /// The real path of `location` (links resolved, a missing tail kept as written), if it may be
    /// touched. Does blocking file-system calls (a few `lstat`s of one path's components), on the
    /// calling thread: cheaper than a hop to the blocking pool and back, which every file
    /// operation after it takes anyway; each read of a Parquet file (footer, page index, ranges)
    /// passes here.
    fn real_path(&self, location: &Path) -> Result<Path> {
        let written = PathBuf::from(format!("/{location}"));
        self.judge(&written).map_err(|r| r.error(location.as_ref()))?;
        let real = resolve_existing_prefix(&written);
        self.judge(&real).map_err(|r| r.error(location.as_ref()))?;
        Path::from_absolute_path(&real).map_err(|e| object_store::Error::Generic { store: "local", source: e.into() })
    }

    /// Keeps the listed objects a reader may open (in roots once links are resolved, not private).
    fn allowed(&self, objects: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
        objects.into_iter().filter(|o| self.real_path(&o.location).is_ok()).collect()
    }
}

impl fmt::Display for RootedLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootedLocalStore({} roots)", self.roots.len())
    }
}

#[async_trait]
impl ObjectStore for RootedLocalStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let real = self.real_path(location)?;
        self.inner.put_opts(&real, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let real = self.real_path(location)?;
        self.inner.put_multipart_opts(&real, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let real = self.real_path(location)?;
        let mut result = self.inner.get_opts(&real, options).await?;
        // Readers know the object by the name they asked for.
        result.meta.location = location.clone();
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let real = self.real_path(location)?;
        self.inner.get_ranges(&real, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let store = self.clone();
        let checked = locations.map(move |location| store.real_path(&location?));
        self.inner.delete_stream(checked.boxed())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(prefix) = prefix else { return stream::once(async { Err(listing_everything()) }).boxed() };
        if let Err(refusal) = self.judge(&PathBuf::from(format!("/{prefix}"))) {
            let error = refusal.error(prefix.as_ref());
            return stream::once(async { Err(error) }).boxed();
        }
        let store = self.clone();
        self.inner
            .list(Some(prefix))
            .chunks(LIST_CHUNK)
            .then(move |chunk| {
                let store = store.clone();
                async move {
                    let (objects, errors): (Vec<_>, Vec<_>) = chunk.into_iter().partition(Result::is_ok);
                    let objects: Vec<ObjectMeta> = objects.into_iter().filter_map(Result::ok).collect();
                    let kept = tokio::task::spawn_blocking(move || store.allowed(objects)).await.unwrap_or_default();
                    stream::iter(errors.into_iter().chain(kept.into_iter().map(Ok)))
                }
            })
            .flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let Some(prefix) = prefix else { return Err(listing_everything()) };
        self.judge(&PathBuf::from(format!("/{prefix}"))).map_err(|r| r.error(prefix.as_ref()))?;
        let listed = self.inner.list_with_delimiter(Some(prefix)).await?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || ListResult {
            common_prefixes: listed.common_prefixes.into_iter().filter(|p| store.real_path(p).is_ok()).collect(),
            objects: store.allowed(listed.objects),
        })
        .await
        .map_err(|e| object_store::Error::Generic { store: "local", source: e.into() })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let from = self.real_path(from)?;
        let to = self.real_path(to)?;
        self.inner.copy_opts(&from, &to, options).await
    }

    /// A rename within the file system (atomic there), not a copy and a delete.
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let from = self.real_path(from)?;
        let to = self.real_path(to)?;
        self.inner.rename_opts(&from, &to, options).await
    }
}

fn listing_everything() -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: "/".to_string(),
        source: "listing the whole file system is not allowed".into(),
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    /// A root holding a table directory with a regular file, a link to a file outside every root,
    /// a link to Glaux's own directory and a link to a file in it, and that own directory.
    fn lake() -> (PathBuf, PathBuf, RootedLocalStore) {
        let base = std::env::temp_dir().join(format!("glaux-rooted-{}-{}", std::process::id(), rand_suffix()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::create_dir_all(root.join(PRIVATE_DIR)).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("t/a.csv"), "1\n").unwrap();
        std::fs::write(outside.join("secret.txt"), "outside\n").unwrap();
        std::fs::write(root.join(PRIVATE_DIR).join("cluster-secret"), "s3cr3t\n").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("t/escape.csv")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("t/escape_dir")).unwrap();
        std::os::unix::fs::symlink(root.join(PRIVATE_DIR), root.join("t/own")).unwrap();
        std::os::unix::fs::symlink(root.join(PRIVATE_DIR).join("cluster-secret"), root.join("t/b.csv")).unwrap();
        let root = root.canonicalize().unwrap();
        let store = RootedLocalStore::new(vec![root.clone()]);
        (base, root, store)
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    }

    fn path(p: &std::path::Path) -> Path {
        Path::from_absolute_path(p).unwrap()
    }

    #[tokio::test]
    async fn links_out_of_the_roots_and_glaux_files_are_never_read() {
        let (base, root, store) = lake();
        let read = |p: PathBuf| {
            let store = store.clone();
            async move { store.get(&path(&p)).await.map(|_| ()) }
        };
        assert!(read(root.join("t/a.csv")).await.is_ok());
        for refused in ["t/escape.csv", "t/escape_dir/secret.txt", "t/own/cluster-secret", "t/b.csv"] {
            let error = read(root.join(refused)).await.expect_err(refused);
            assert!(matches!(error, object_store::Error::PermissionDenied { .. }), "{refused}: {error}");
        }
        let error = read(root.join(PRIVATE_DIR).join("cluster-secret")).await.unwrap_err();
        assert!(error.to_string().contains("never table data"), "{error}");
        assert!(store.get_range(&path(&root.join("t/b.csv")), 0..2).await.is_err());

        // Listings leave them out, and listing Glaux's directory is refused outright.
        let listed: Vec<String> = store
            .list(Some(&path(&root)))
            .map(|o| o.unwrap().location.filename().unwrap_or_default().to_string())
            .collect()
            .await;
        assert_eq!(listed, vec!["a.csv".to_string()], "{listed:?}");
        let by_level = store.list_with_delimiter(Some(&path(&root.join("t")))).await.unwrap();
        let names: Vec<&str> = by_level.objects.iter().filter_map(|o| o.location.filename()).collect();
        assert_eq!(names, vec!["a.csv"]);
        assert!(by_level.common_prefixes.is_empty(), "{:?}", by_level.common_prefixes);
        assert!(store.list(Some(&path(&root.join(PRIVATE_DIR)))).next().await.unwrap().is_err());

        // Writing through a link out of the roots is refused too.
        assert!(store.put(&path(&root.join("t/escape_dir/new.csv")), "x".into()).await.is_err());
        assert!(!base.join("outside/new.csv").exists());
        std::fs::remove_dir_all(base).unwrap();
    }
}
