//! `RootedLocalStore`: the local file system, confined to the warehouse roots.
//!
//! The scheduler checks a table's location when the table is declared; this store checks every path
//! again when it is touched, so a plan that reaches an executor cannot read `/etc/passwd` either.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub struct RootedLocalStore {
    inner: LocalFileSystem,
    roots: Vec<Path>,
}

impl RootedLocalStore {
    /// `roots` must be canonical absolute paths.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        let roots = roots.iter().filter_map(|r| Path::from_absolute_path(r).ok()).collect();
        Self { inner: LocalFileSystem::new(), roots }
    }

    fn check(&self, path: &Path) -> Result<()> {
        let allowed =
            !path.parts().any(|p| p.as_ref() == "..") && self.roots.iter().any(|root| path.prefix_matches(root));
        if allowed {
            Ok(())
        } else {
            Err(object_store::Error::PermissionDenied {
                path: path.to_string(),
                source: "outside the configured warehouse roots".into(),
            })
        }
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
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let roots = self.roots.clone();
        let checked = locations.map(move |location| {
            let location = location?;
            let store = RootedLocalStore { inner: LocalFileSystem::new(), roots: roots.clone() };
            store.check(&location).map(|()| location)
        });
        self.inner.delete_stream(checked.boxed())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match prefix.map(|p| self.check(p)) {
            Some(Ok(())) => self.inner.list(prefix),
            Some(Err(e)) => stream::once(async { Err(e) }).boxed(),
            None => stream::once(async { Err(listing_everything()) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        match prefix {
            Some(p) => {
                self.check(p)?;
                self.inner.list_with_delimiter(prefix).await
            }
            None => Err(listing_everything()),
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }
}

fn listing_everything() -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: "/".to_string(),
        source: "listing the whole file system is not allowed".into(),
    }
}
