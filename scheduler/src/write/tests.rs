//! What `StagedWrite` publishes, hides and removes, on a local store.

use super::*;

#[test]
fn segments_are_decoded() {
    assert_eq!(percent_decoded("k=a%2Fb%25"), "k=a/b%");
    assert_eq!(percent_decoded("k=100%"), "k=100%");
    assert_eq!(percent_decoded("k=%zz"), "k=%zz");
}

#[test]
fn staged_files_are_told_apart() {
    let location = Path::from("wh/t");
    assert!(is_staged(&Path::from("wh/t/_glaux_staging/q/0-x/a.parquet"), &location));
    assert!(!is_staged(&Path::from("wh/t/k=1/a.parquet"), &location));
    assert!(!is_staged(&Path::from("wh/other/_glaux_staging/a"), &location));
}

/// Moved files stay out of the scheduler's listings until the write commits, and appear
/// then, all at once; a journal record keeps them until the table holds them.
#[tokio::test]
async fn published_files_are_hidden_until_the_commit() {
    use arrow::array::{StringArray, UInt64Array};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use glaux_catalog::SqliteCatalog;
    use glaux_storage::{LakeObjectStores, StorageConfig};

    let root = tempfile::tempdir().unwrap();
    let storage = StorageConfig::default().with_local_roots(&[root.path().to_path_buf()]).unwrap();
    let cache = Arc::new(ListingCache::new(std::time::Duration::ZERO, 1 << 20));
    let stores = LakeObjectStores::new(storage).with_listing_cache(Arc::clone(&cache));
    let runtime = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(stores)).build_arc().unwrap();
    let state = SessionContext::new_with_config_rt(SessionConfig::new().with_extension(cache), runtime).state();
    let catalog: Arc<dyn Catalog> = Arc::new(SqliteCatalog::in_memory().unwrap());
    let location = url::Url::from_directory_path(root.path().join("t")).unwrap().to_string();
    let query = QueryId::random();

    let mut write = StagedWrite::begin(&state, &catalog, &location, &query, Vec::new()).unwrap();
    let task_dir = format!("{}0-attempt/", write.staging_url());
    let staged = url::Url::parse(&task_dir).unwrap().to_file_path().unwrap();
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("part.json"), "{}\n").unwrap();
    let report = RecordBatch::try_new(
        glaux_proto::write_report_schema(),
        vec![Arc::new(StringArray::from(vec![task_dir])), Arc::new(UInt64Array::from(vec![1u64]))],
    )
    .unwrap();

    let listed = |state: &SessionState| {
        let location = ListingTableUrl::parse(&location).unwrap();
        let store = state.runtime_env().object_store(location.object_store()).unwrap();
        async move {
            let listed: Vec<_> = store.list(Some(location.prefix())).try_collect().await.unwrap();
            listed.into_iter().map(|m| m.location.filename().unwrap_or_default().to_string()).collect::<Vec<_>>()
        }
    };
    let published = write.publish(&[report]).await.unwrap();
    assert_eq!((published.rows, published.files), (1, 1));
    assert!(root.path().join("t").join(format!("{}_part.json", query.short())).exists(), "moved into the table");
    assert_eq!(listed(&state).await, Vec::<String>::new(), "hidden before the commit");
    assert_eq!(catalog.pending_writes().unwrap()[0].targets.len(), 1, "journaled before the move");

    write.commit(|| Ok(())).await.unwrap();
    assert_eq!(listed(&state).await, [format!("{}_part.json", query.short())], "shown by the commit");
    write.discard().await;
    assert!(!root.path().join("t").join(STAGING_DIR).exists());
    assert!(catalog.pending_writes().unwrap().is_empty(), "the write is over");
}
