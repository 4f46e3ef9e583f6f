//! [`QueryEngine`]: the one narrow API every client door uses. A door turns its protocol into
//! [`ClientSession`]s and SQL, asks the engine to [`plan`](QueryEngine::plan) a statement (to
//! learn its schema and effect) and to [`run`](QueryEngine::run) it, and turns the result back
//! into its protocol. A panic while planning or running one statement is that statement's
//! error, whichever door it came through.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::CatalogProviderList;
use datafusion::common::DataFusionError;
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;
use futures::{FutureExt, Stream, StreamExt};
use glaux_catalog::history::{FAILED, QueryRecord};
use glaux_catalog::{Access, Lake};
use glaux_proto::{QueryId, contain_panics, panic_message};
use glaux_storage::ListingCache;
use tracing::Instrument;

use crate::access::GrantedCatalogs;
use crate::audit::{AuditOnDrop, Audited};
use crate::client_session::ClientSession;
use crate::error::{ErrorKind, SchedulerError, execution_kind};
use crate::history::{History, Tracked};
use crate::limits::{StatementGate, StatementPermit};
use crate::metrics::SchedulerMetrics;
use crate::query::{AtExecutors, LiveQueries, ProgressSlot, QueryResult, QueryRunner};
use crate::reuse::{ChangeMark, Changes};
use crate::statement::{Context, Effect, IngestTarget, Statement};
use crate::system_tables::WithSystem;
use crate::workgroups::{Limits, WorkGroups};

mod browse;
mod kept_plans;
mod records;

use records::new_record;

pub struct QueryEngine {
    ctx: SessionContext,
    lake: Lake,
    queries: QueryRunner,
    statements: StatementGate,
    /// Users the deployment names administrators; with no users at all, everyone is one.
    admins: Admins,
    /// pg_catalog's fixed tables, shared by every user's view of pg_catalog.
    pg_tables: Arc<PgCatalogStaticTables>,
    history: Arc<History>,
    functions: OurFunctions,
    workgroups: WorkGroups,
    /// Users' default workgroups (from the users file).
    default_workgroups: BTreeMap<String, String>,
    /// When tables last changed through this scheduler (for result reuse).
    changes: Arc<Changes>,
    /// The planning state of administrators' statements (before their database is set).
    admin_state: SessionState,
    metrics: Arc<SchedulerMetrics>,
    /// Statements running, whatever their door, for their pages.
    live: Arc<LiveQueries>,
    /// Statements planned for a run moments later (Flight SQL's `GetFlightInfo`, then `DoGet`).
    kept: kept_plans::KeptPlans<PlannedStatement>,
}

/// Who administers the cluster.
#[derive(Clone, Debug)]
pub enum Admins {
    /// No users configured (loopback only): every client is the one implicit admin.
    Everyone,
    /// These users (from the users file).
    Named(BTreeSet<String>),
}

/// A statement recognized and planned in a client's session, ready to run.
pub struct PlannedStatement {
    statement: Statement,
    session: ClientSession,
    /// The user's rights it was authorized with; it runs with the same.
    access: Arc<Access>,
    /// Its history record so far (submitted and planned).
    record: QueryRecord,
}

impl PlannedStatement {
    /// The columns of its result.
    pub fn schema(&self) -> SchemaRef {
        self.statement.family().schema()
    }

    /// Its placeholders (`$1`, `$2`, ...), typed where the statement says what they compare with.
    pub fn parameters(&self) -> SchemaRef {
        self.statement.family().parameters()
    }

    /// What kind of statement it is (`query`, `insert`, `create_table`, ...).
    pub fn kind(&self) -> &'static str {
        self.statement.kind()
    }

    /// When it runs, and what it changes.
    pub fn effect(&self) -> Effect {
        self.statement.family().effect()
    }

    /// Its id: the query's, and its history record's.
    pub fn id(&self) -> QueryId {
        QueryId::from(self.record.id.clone())
    }

    /// How long it took to plan.
    pub fn planning_ms(&self) -> u64 {
        self.record.planning_ms
    }

    /// The same statement, writing its result to `location` (recorded in its history).
    pub fn with_output_location(mut self, location: String) -> Self {
        self.record.output_location = Some(location);
        self
    }
}

impl QueryEngine {
    pub(crate) fn new(
        ctx: SessionContext,
        lake: Lake,
        queries: QueryRunner,
        statements: StatementGate,
        admins: Admins,
        history: Arc<History>,
        default_workgroups: BTreeMap<String, String>,
    ) -> Result<Self, SchedulerError> {
        let metrics = Arc::clone(queries.metrics());
        let pg_tables =
            PgCatalogStaticTables::try_new().map_err(|e| SchedulerError::Config(format!("pg_catalog tables: {e}")))?;
        let functions = OurFunctions::of(&ctx.state());
        // An administrator sees every catalog and all of the history: that state is made once
        // (rebuilding one per statement costs as much as planning a small query).
        let everything = WithSystem::wrap(Arc::clone(ctx.state().catalog_list()), Arc::clone(&history), None);
        let admin_state = with_catalogs(ctx.state(), everything, &functions);
        let workgroups = WorkGroups::new(Arc::clone(lake.catalog()));
        Ok(Self {
            ctx,
            lake,
            queries,
            statements,
            admins,
            pg_tables: Arc::new(pg_tables),
            history,
            functions,
            workgroups,
            default_workgroups,
            changes: Arc::new(Changes::new()),
            admin_state,
            metrics,
            live: Arc::default(),
            kept: kept_plans::KeptPlans::default(),
        })
    }

    /// What `/metrics` reports (the doors count failed logins into it).
    pub fn metrics(&self) -> &Arc<SchedulerMetrics> {
        &self.metrics
    }

    /// What `session`'s user may do, from the catalog's grants as they are now.
    fn access(&self, session: &ClientSession) -> Result<Arc<Access>, SchedulerError> {
        Ok(Arc::new(match (&self.admins, session.user.as_deref()) {
            (Admins::Everyone, user) => Access::admin(user),
            (Admins::Named(admins), Some(user)) => {
                Access::of(user, admins.contains(user), self.lake.catalog().as_ref())?
            }
            // A door that authenticates always names the user; without one, nothing is allowed.
            (Admins::Named(_), None) => Access::of("", false, self.lake.catalog().as_ref())?,
        }))
    }

    /// The store and path to write a statement's result file at `location` (Athena's API writes
    /// each result there), checked as every written location is: within the storage roots and
    /// buckets, and granted to `session`'s user.
    pub fn result_store(
        &self,
        session: &ClientSession,
        location: &str,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path), SchedulerError> {
        self.access(session)?.require_location(location)?;
        let url = self
            .lake
            .storage()
            .check_location(location)
            .map_err(|e| SchedulerError::from(glaux_catalog::CatalogError::from(e)))?;
        let store_url = datafusion::execution::object_store::ObjectStoreUrl::parse(&url[..url::Position::BeforePath])
            .map_err(SchedulerError::plan)?;
        let store = self.ctx.runtime_env().object_store(&store_url).map_err(SchedulerError::plan)?;
        let path = object_store::path::Path::from_url_path(url.path())
            .map_err(|e| SchedulerError::refused(ErrorKind::InvalidStatement, format!("{location}: {e}")))?;
        Ok((store, path))
    }

    /// The databases `session`'s user may see, sorted (Athena's `ListDatabases`).
    pub fn visible_databases(&self, session: &ClientSession) -> Result<Vec<String>, SchedulerError> {
        let Some(catalog) = self.catalogs(session)?.catalog(glaux_catalog::DEFAULT_CATALOG) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = catalog
            .schema_names()
            .into_iter()
            .filter(|name| self.lake.catalog().database_exists(name).unwrap_or(false))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The definitions of the tables of `database` `session`'s user may see, sorted by name
    /// (Athena's `ListTableMetadata`).
    pub fn visible_tables(
        &self,
        session: &ClientSession,
        database: &str,
    ) -> Result<Vec<glaux_catalog::TableDef>, SchedulerError> {
        let catalog = self.catalogs(session)?.catalog(glaux_catalog::DEFAULT_CATALOG);
        let Some(schema) = catalog.and_then(|c| c.schema(database)) else { return Ok(Vec::new()) };
        let mut names = schema.table_names();
        names.sort();
        let mut tables = Vec::new();
        for name in names {
            if let Some(table) = self.lake.catalog().table(database, &name)? {
                tables.push(table);
            }
        }
        Ok(tables)
    }

    /// The access key `id` (Athena's API signs requests with one), if Glaux issued it.
    pub fn access_key(&self, id: &str) -> Result<Option<glaux_catalog::AccessKey>, SchedulerError> {
        Ok(self.lake.catalog().access_key(id)?)
    }

    /// Whether a database exists (a PostgreSQL connection names one at startup).
    pub fn database_exists(&self, name: &str) -> Result<bool, SchedulerError> {
        Ok(self.lake.catalog().database_exists(name)?)
    }

    /// The catalogs, databases and tables `session`'s user may list (Flight SQL's metadata calls).
    pub fn catalogs(&self, session: &ClientSession) -> Result<Arc<dyn CatalogProviderList>, SchedulerError> {
        let all = Arc::clone(self.ctx.state_ref().read().catalog_list());
        let access = self.access(session)?;
        Ok(if access.is_admin() { all } else { GrantedCatalogs::wrap(all, access, Arc::clone(&self.pg_tables)) })
    }

    /// Recognizes and plans `sql` in `session`, and checks that its user may run it.
    pub async fn plan(&self, sql: &str, session: &ClientSession) -> Result<PlannedStatement, SchedulerError> {
        self.plan_as(QueryId::random(), sql, session).await
    }

    /// [`plan`](Self::plan), for a statement whose id its door chose (Athena's API answers with
    /// it before planning). A statement that does not plan is recorded in the history as failed.
    pub async fn plan_as(
        &self,
        id: QueryId,
        sql: &str,
        session: &ClientSession,
    ) -> Result<PlannedStatement, SchedulerError> {
        let started = Instant::now();
        let session = &self.in_workgroup(session);
        let mut record = new_record(&id, sql, session);
        // What the statement was, once recognized: for the audit line of a refusal.
        let mut recognized = None;
        let span = tracing::info_span!("statement", query_id = %id);
        let planned = contained("while planning", async {
            let ctx = self.context(session, self.access(session)?);
            let statement = Statement::recognize(sql, &ctx).await?;
            recognized = Some(audited(&id, session, &statement));
            record.kind = statement.kind().to_string();
            statement.family().authorize(&ctx)?;
            tracing::debug!(planned = ?started.elapsed(), "statement planned");
            Ok((statement, ctx.access))
        })
        .instrument(span)
        .await;
        record.planning_ms = started.elapsed().as_millis() as u64;
        if let Err(error) = &planned {
            self.history.record(crate::history::ended(record.clone(), FAILED, error.to_string()));
            let audited = recognized.unwrap_or_else(|| Audited {
                query: id.to_string(),
                user: session.user.clone(),
                caller: session.caller.clone(),
                kind: "unplanned",
                objects: tables_named(sql, &self.ctx.state(), &session.database),
            });
            audited.refused(error.kind(), started);
        }
        let (statement, access) = planned?;
        Ok(PlannedStatement { statement, session: session.clone(), access, record })
    }

    /// Runs a planned statement; its query's progress appears in `progress` once it is launched
    /// (the result comes back with its first batch). The result's batches end with an error, not
    /// a panic, if producing one hits a bug.
    ///
    /// The statement holds a place among its user's running statements until its result is
    /// dropped; without one free, it is refused before it starts.
    pub async fn run(&self, planned: PlannedStatement, progress: &ProgressSlot) -> Result<QueryResult, SchedulerError> {
        let started = Instant::now();
        let announced = planned.schema();
        let audited = audited(&planned.id(), &planned.session, &planned.statement);
        let tracked = Tracked::new(&self.history, planned.record.clone());
        let refused = |error: &SchedulerError| {
            audited.refused(error.kind(), started);
            tracked.failed(error);
        };
        let workgroup = self.workgroups.resolve(&planned.session.workgroup).inspect_err(refused)?;
        let retry_policy = crate::workgroups::retry_policy(&planned.session, &workgroup).inspect_err(refused)?;
        let permit = self.enter(&planned).inspect_err(refused)?;
        let stopping = self.statements.stopping();
        let place = stopping.bound(async { Ok(self.workgroups.admit(&workgroup, || tracked.queued()).await) }).await;
        let place = place.inspect_err(refused)?;
        tracked.running(started.elapsed());
        progress.admit();
        let live = self.live.enter(&planned.id(), progress);
        tracked.watch(progress);
        let limits = Limits::of(&workgroup);
        // A statement that changes the catalog (and any files under it) lists afresh, and so
        // do the queries after it.
        let changes = planned.effect() != Effect::Reads;
        if changes {
            self.forget_listings();
            self.kept.forget_all();
        }
        // What a statement that may change data changes is stale for result reuse from its
        // start to its end.
        let mark = (!planned.statement.only_reads()).then(|| {
            let objects = planned.statement.objects(&planned.session.database);
            self.changes.mark(&objects);
            ChangeMark { changes: Arc::clone(&self.changes), objects }
        });
        let span = tracing::info_span!("statement", query_id = %planned.id());
        let result = stopping
            .bound(limits.within(contained("while running", async {
                let mut ctx = self.context(&planned.session, Arc::clone(&planned.access));
                if let Some(policy) = retry_policy {
                    ctx.state.config_mut().set_extension(Arc::new(policy));
                }
                planned.statement.family().run(&ctx, planned.id(), progress).await
            })))
            .instrument(span)
            .await;
        if changes {
            self.forget_listings();
        }
        let mut result = result.inspect_err(refused)?;
        // Clients were told the statement's schema when it was planned (Flight SQL's `FlightInfo`,
        // PostgreSQL's describe); the rows carry exactly that schema.
        result.batches = conformed(result.batches, &result.schema, &announced);
        result.batches = limits.enforce(result.batches, progress.clone(), result.stats.clone());
        result.batches = stopping.bound_stream(result.batches);
        result.schema = announced;
        Ok(held(result, audited, started, (permit, place, mark, live), tracked))
    }

    /// Launches a query for its client to read its result from the executors, if its final stage
    /// is a plain gather (see `query/endpoints.rs`) and its workgroup sets no concurrency limit,
    /// timeout or cutoff (which the scheduler enforces on results it runs); `None`, with nothing
    /// started (nor recorded), for any other statement. The returned result has no rows and ends
    /// when the client has read them all: until then it holds the statement's place among its
    /// user's, and then writes its audit line and history record.
    pub async fn run_at_executors(&self, planned: PlannedStatement) -> Result<Option<AtExecutors>, SchedulerError> {
        let started = Instant::now();
        let audited = audited(&planned.id(), &planned.session, &planned.statement);
        let refused = |error: &SchedulerError| {
            audited.refused(error.kind(), started);
            self.history.record(crate::history::ended(planned.record.clone(), FAILED, error.to_string()));
        };
        let workgroup = self.workgroups.resolve(&planned.session.workgroup).inspect_err(refused)?;
        if Limits::of(&workgroup).any() || workgroup.settings.max_concurrent.is_some() {
            return Ok(None);
        }
        let retry_policy = crate::workgroups::retry_policy(&planned.session, &workgroup).inspect_err(refused)?;
        let permit = self.enter(&planned).inspect_err(refused)?;
        let progress = ProgressSlot::default();
        let live = self.live.enter(&planned.id(), &progress);
        let launched = contained("while running", async {
            let mut ctx = self.context(&planned.session, Arc::clone(&planned.access));
            if let Some(policy) = retry_policy {
                ctx.state.config_mut().set_extension(Arc::new(policy));
            }
            planned.statement.family().run_at_executors(&ctx, planned.id(), &progress).await
        })
        .await;
        let Some(launched) = launched.inspect_err(refused)? else { return Ok(None) };
        let tracked = Tracked::new(&self.history, planned.record.clone());
        tracked.running(started.elapsed());
        tracked.watch(&progress);
        let mut result = launched.result;
        result.batches = self.statements.stopping().bound_stream(result.batches);
        Ok(Some(AtExecutors { result: held(result, audited, started, (permit, live), tracked), ..launched }))
    }

    /// Empties the scheduler's listing cache, if it has one.
    fn forget_listings(&self) {
        if let Some(cache) = self.ctx.state_ref().read().config().get_extension::<ListingCache>() {
            cache.invalidate();
        }
    }

    /// Writes a client's batches into a table (Flight SQL bulk ingest); the rows written. It
    /// holds a place among the user's statements while it runs.
    pub async fn ingest(
        &self,
        session: &ClientSession,
        target: IngestTarget,
        rows: datafusion::physical_plan::SendableRecordBatchStream,
    ) -> Result<u64, SchedulerError> {
        let id = QueryId::random();
        let session = &self.in_workgroup(session);
        let database = target.database.as_deref().unwrap_or(&session.database);
        let mut record = new_record(&id, &format!("-- bulk ingest into {database}.{}", target.table), session);
        record.database = database.to_string();
        record.kind = "ingest".into();
        let tracked = Tracked::new(&self.history, record);
        let objects = vec![format!("{database}.{}", target.table)];
        self.changes.mark(&objects);
        let _mark = ChangeMark { changes: Arc::clone(&self.changes), objects };
        let result = async {
            let workgroup = self.workgroups.resolve(&session.workgroup)?;
            let _permit = self.statements.enter(session.user.as_deref())?;
            let queued = Instant::now();
            let _place = self.workgroups.admit(&workgroup, || tracked.queued()).await;
            tracked.running(queued.elapsed());
            let ctx = self.context(session, self.access(session)?);
            let limits = Limits::of(&workgroup);
            limits.within(contained("while ingesting", crate::statement::ingest(&ctx, target, rows, id))).await
        };
        let result = self.statements.stopping().bound(result).await;
        self.forget_listings();
        let stats = result.as_ref().ok().map(|&rows| glaux_proto::QueryStats { rows, ..Default::default() });
        tracked.end(Some(result.as_ref().map(|_| ()).map_err(|e| (e.kind(), e.to_string()))), stats.as_ref());
        result
    }

    /// A place among the statement's user's running statements.
    fn enter(&self, planned: &PlannedStatement) -> Result<StatementPermit, SchedulerError> {
        self.statements.enter(planned.session.user.as_deref())
    }

    fn context<'a>(&'a self, session: &'a ClientSession, access: Arc<Access>) -> Context<'a> {
        let state = self.state(session, &access);
        Context { state, session, lake: &self.lake, queries: &self.queries, access }
    }

    /// The planning state for a client: DataFusion's, with the client's database as default,
    /// and the catalog as the client's user may see it.
    fn state(&self, session: &ClientSession, access: &Arc<Access>) -> SessionState {
        if access.is_admin() {
            let mut state = self.admin_state.clone();
            state.config_mut().options_mut().catalog.default_schema = session.database.clone();
            state.mark_start_execution();
            return state;
        }
        let mut state = self.ctx.state();
        state.config_mut().options_mut().catalog.default_schema = session.database.clone();
        let granted =
            GrantedCatalogs::wrap(Arc::clone(state.catalog_list()), Arc::clone(access), Arc::clone(&self.pg_tables));
        let catalogs =
            WithSystem::wrap(granted, Arc::clone(&self.history), Some(session.user.clone().unwrap_or_default()));
        with_catalogs(state, catalogs, &self.functions)
    }
}

/// `state` with `catalogs` in place of its own. Rebuilding a state registers its functions
/// anew in no fixed order, so a DataFusion function whose alias is the name of one of Glaux's
/// (`map_extract`'s `element_at`) could take that name back: Glaux's are registered again last,
/// as when the session was made.
fn with_catalogs(state: SessionState, catalogs: Arc<dyn CatalogProviderList>, ours: &OurFunctions) -> SessionState {
    let mut rebuilt = SessionStateBuilder::new_from_existing(state).with_catalog_list(catalogs).build();
    for function in &ours.scalars {
        let _ = rebuilt.register_udf(Arc::clone(function));
    }
    for function in &ours.aggregates {
        let _ = rebuilt.register_udaf(Arc::clone(function));
    }
    rebuilt
}

/// Glaux's own functions, as registered in the scheduler's session.
struct OurFunctions {
    scalars: Vec<Arc<datafusion::logical_expr::ScalarUDF>>,
    aggregates: Vec<Arc<datafusion::logical_expr::AggregateUDF>>,
}

impl OurFunctions {
    fn of(state: &SessionState) -> Self {
        let scalars = glaux_functions::scalar_functions()
            .iter()
            .filter_map(|f| state.scalar_functions().get(f.name()).cloned())
            .collect();
        let aggregates = glaux_functions::aggregate_functions()
            .iter()
            .filter_map(|f| state.aggregate_functions().get(f.name()).cloned())
            .collect();
        Self { scalars, aggregates }
    }
}

/// `result` holding `permit` (its places among running statements, and what marks its changes)
/// until it is dropped, its batches ending with an error, not a panic,
/// if producing one hits a bug, and its audit line written when it is dropped, with how it ended.
fn held(
    mut result: QueryResult,
    audited: Audited,
    started: Instant,
    permit: impl Send + 'static,
    tracked: Arc<Tracked>,
) -> QueryResult {
    let batches = contain_panics(result.batches, |message| {
        DataFusionError::External(Box::new(SchedulerError::Panicked { during: "while running", message }))
    });
    let audit = Arc::new(AuditOnDrop::new(audited, started, result.stats.clone(), tracked));
    let on_error = Arc::clone(&audit);
    let batches = batches.inspect(move |item| {
        let _held = &permit;
        if let Err(error) = item {
            on_error.end(Err((execution_kind(error), error.to_string())));
        }
    });
    let at_end = futures::stream::once(async move {
        audit.end(Ok(()));
        None
    })
    .filter_map(std::future::ready);
    result.batches = Box::pin(batches.chain(at_end));
    result
}

/// Runs `work`, turning a panic (a bug) into an error for this statement alone.
async fn contained<T>(
    during: &'static str,
    work: impl Future<Output = Result<T, SchedulerError>>,
) -> Result<T, SchedulerError> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(%message, "a statement hit a bug {during} it");
            Err(SchedulerError::Panicked { during, message })
        }
    }
}

/// What a statement is, for its audit line.
fn audited(id: &QueryId, session: &ClientSession, statement: &Statement) -> Audited {
    Audited {
        query: id.to_string(),
        user: session.user.clone(),
        caller: session.caller.clone(),
        kind: statement.kind(),
        objects: statement.objects(&session.database),
    }
}

/// The tables a statement names, as `db.t` (for the audit line of one that did not plan).
fn tables_named(sql: &str, state: &SessionState, database: &str) -> Vec<String> {
    let Ok(statement) = state.sql_to_statement(sql, &datafusion::config::Dialect::Generic) else { return Vec::new() };
    let Ok(references) = state.resolve_table_references(&statement) else { return Vec::new() };
    let mut tables: Vec<String> = references
        .into_iter()
        .map(|r| {
            let name = r.resolve(glaux_catalog::DEFAULT_CATALOG, database);
            format!("{}.{}", name.schema, name.table)
        })
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// `batches` relabelled with the schema clients were announced, where the plan that ran differs
/// from it only in nullability or metadata (DataFusion's physical plans can know a column is
/// never null where the logical plan could not, as for `grouping(a) + grouping(b)`).
fn conformed(
    batches: impl Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
    produced: &SchemaRef,
    announced: &SchemaRef,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<RecordBatch, DataFusionError>> + Send>> {
    let same_types = produced.fields().len() == announced.fields().len()
        && produced.fields().iter().zip(announced.fields()).all(|(p, a)| p.data_type() == a.data_type());
    if produced == announced || !same_types {
        return Box::pin(batches);
    }
    let announced = Arc::clone(announced);
    Box::pin(batches.map(move |batch| {
        let batch = batch?;
        Ok(RecordBatch::try_new(Arc::clone(&announced), batch.columns().to_vec())?)
    }))
}
