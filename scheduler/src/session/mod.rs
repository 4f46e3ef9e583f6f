//! The scheduler's DataFusion session: catalog, planning options, object stores, and the
//! functions it plans with (Glaux's, Trino's types and casts, PostgreSQL clients' session
//! functions in `postgres_functions.rs`).

#[cfg(feature = "fault-injection")]
mod fault_injection;
mod not_in;
mod pg_catalog_shape;
mod postgres_functions;

pub(crate) use not_in::{KEYS as NOT_IN_KEYS, ON_COUNTS as NOT_IN_ON_COUNTS, ON_OUTER as NOT_IN_ON_OUTER};
pub use pg_catalog_shape::ShapedPgCatalog;

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use glaux_proto::ClusterChannels;
use glaux_storage::{LakeObjectStores, ListingCache};

use datafusion::common::config::TableParquetOptions;

use glaux_catalog::{Catalog, DEFAULT_CATALOG, DEFAULT_DATABASE, Lake, LakeCatalogProvider, SqliteCatalog};

use crate::config::SchedulerConfig;
use crate::error::SchedulerError;

/// Opens the configured catalog over the configured storage.
pub fn open_lake(config: &SchedulerConfig) -> Result<Lake, SchedulerError> {
    let catalog = match &config.catalog_path {
        Some(path) => SqliteCatalog::open(path),
        None => SqliteCatalog::in_memory(),
    }?;
    Ok(Lake::try_new(Arc::new(catalog), config.storage.clone())?)
}

/// What the scheduler's listing cache may hold, estimated (about 200,000 files' listings).
const LISTING_CACHE_BYTES: usize = 32 << 20;

pub fn scheduler_session(
    config: &SchedulerConfig,
    channels: Arc<ClusterChannels>,
    catalog: Arc<dyn Catalog>,
) -> Result<SessionContext, SchedulerError> {
    // Tables are listed on every query, as Athena does: DataFusion's cache of listings would hide
    // files written after a table's first query.
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    // Listings are kept by the stores instead, for a short TTL and per bucket (DataFusion's cache
    // keys listings by path alone, and keeps them until the table is dropped).
    // With a TTL of zero it keeps nothing, and still hides the files of writes in flight.
    let listings = Arc::new(ListingCache::new(config.listing_cache_ttl, LISTING_CACHE_BYTES));
    let stores = LakeObjectStores::new(config.storage.clone()).with_listing_cache(Arc::clone(&listings));
    // The final stage's sorts and aggregations spill beyond the scheduler's memory limit; the
    // error for a query that cannot fit names the operators holding the most.
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(config.memory_limit_bytes),
        NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    );
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_cache_manager(caches)
        .with_object_store_registry(Arc::new(stores))
        .build_arc()
        .map_err(|e| SchedulerError::Config(format!("the scheduler's runtime: {e}")))?;
    let mut session = SessionConfig::new()
        .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_DATABASE)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_batch_size(config.batch_size)
        // Parallelism comes from spreading file groups over executors' task slots; round-robin
        // repartitioning inside a stage would only add copies.
        .with_round_robin_repartition(false)
        .with_extension(channels);
    session = session.with_extension(listings);
    session = session.with_extension(Arc::new(crate::write::TargetFileSize(config.target_file_size)));
    session = session.with_extension(Arc::new(crate::query::SmallQueryBytes(config.small_query_bytes)));
    // The cluster's retry policy; a workgroup may choose another for its statements.
    session = session.with_extension(Arc::new(config.retry_policy));
    // A join whose smaller side is estimated below these sizes broadcasts it to every task of the
    // larger side instead of shuffling both: the larger side stays where it is read, and the
    // join's dynamic filter prunes its scan, in its stage or across shuffles below (a partitioned
    // join's filter covers only its task's partitions and stays in its task). DataFusion's
    // single-process defaults (1 MiB, 128 Ki rows) weigh an in-memory repartition, far cheaper
    // than moving rows between executors.
    session.options_mut().optimizer.hash_join_single_partition_threshold = 32 * 1024 * 1024;
    session.options_mut().optimizer.hash_join_single_partition_threshold_rows = 1024 * 1024;
    // Hash joins' dynamic filters stay on: a task whose plan holds only its own partitions runs
    // them (see `planner::restrict_to_task`); executors turn them off for the other tasks.
    let parquet = &mut session.options_mut().execution.parquet;
    // Filters are evaluated inside the Parquet decoder (late materialization), ordered by cost.
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    parquet.enable_page_index = true;
    parquet.pruning = true;
    let parquet = TableParquetOptions { global: parquet.clone(), ..Default::default() };
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    ctx.register_catalog(DEFAULT_CATALOG, Arc::new(LakeCatalogProvider::new(catalog, parquet, ctx.runtime_env())));
    // pg_catalog and the functions PostgreSQL clients' catalog queries call (psql's \d, JDBC's
    // DatabaseMetaData); they read only the scheduler's catalog, so such queries run here.
    datafusion_pg_catalog::setup_pg_catalog(
        &ctx,
        DEFAULT_CATALOG,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| SchedulerError::Config(format!("pg_catalog: {e}")))?;
    pg_catalog_shape::reshape(&ctx, DEFAULT_CATALOG).map_err(|e| SchedulerError::Config(format!("pg_catalog: {e}")))?;
    postgres_functions::register(&ctx);
    // Trino's types and functions, as Athena users write them; every executor registers the
    // same functions. The type planner consults pg_catalog's (oid types) for types it leaves.
    {
        let state = ctx.state_ref();
        let mut builder = datafusion::execution::SessionStateBuilder::new_from_existing(state.read().clone());
        let pg_types = builder.type_planner().take();
        let replaced = builder.with_type_planner(Arc::new(crate::trino::TrinoTypes::new(pg_types))).build();
        *state.write() = replaced;
    }
    glaux_functions::register(&ctx);
    ctx.add_analyzer_rule(Arc::new(glaux_functions::TryRule));
    ctx.add_analyzer_rule(Arc::new(crate::trino::TrinoCasts));
    // After DataFusion's own rules: `NOT IN` as a plain anti join, which need not run as one task.
    ctx.add_optimizer_rule(Arc::new(not_in::NotInAsAntiJoin));
    #[cfg(feature = "fault-injection")]
    fault_injection::register(&ctx);
    Ok(ctx)
}
