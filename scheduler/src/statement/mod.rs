//! What a client's SQL is: recognized once into one [`Statement`], each family of statements in
//! a file of its own that says both what it returns ([`Family::schema`]) and how it runs
//! ([`Family::run`]).
//!
//! Recognition tries the Athena statements DataFusion does not parse, family by family, on the
//! statement's words (`words.rs`); what none claims is Trino SQL, read by `trino` and planned by
//! DataFusion (`plan_sql.rs`), and its plan says its family (a query, `EXPLAIN`, DDL). A new
//! statement is a new file, one variant of [`Statement`] with its arm in [`Statement::family`],
//! and its recognizer's line in [`Statement::recognize`].
//!
//! | file | statements |
//! |---|---|
//! | `query.rs` | queries DataFusion plans (`SELECT`, `VALUES`, `DESCRIBE`, `information_schema`) |
//! | `explain.rs` | `EXPLAIN [ANALYZE]` with the distributed plan |
//! | `create_table.rs` | `CREATE EXTERNAL TABLE`, in DataFusion's dialect and Athena's |
//! | `catalog_ddl.rs` | `CREATE`/`DROP DATABASE` and `SCHEMA`, `DROP TABLE`, views |
//! | `show.rs` | `SHOW DATABASES`/`SCHEMAS`/`TABLES`/`COLUMNS`, `SHOW CREATE TABLE` |
//! | `show_functions.rs` | `SHOW FUNCTIONS [LIKE]` |
//! | `optimize.rs` | `ALTER TABLE ... EXECUTE optimize` (compaction) |
//! | `partitions.rs` | `MSCK REPAIR TABLE`, `ALTER TABLE ADD/DROP PARTITION`, `SHOW PARTITIONS` |
//! | `use_database.rs` | `USE` |
//! | `prepared.rs` | `PREPARE`, `EXECUTE`, `DEALLOCATE PREPARE` |

mod bucketing;
mod catalog_ddl;
mod create_table;
mod create_table_as;
mod delta;
mod delta_dml;
mod delta_maintenance;
mod delta_merge;
mod explain;
mod grants;
mod ingest;
mod insert;
mod optimize;
mod partitions;
mod placeholders;
mod plan_sql;
mod prepared;
mod query;
mod show;
mod show_functions;
mod unload;
mod use_database;
mod words;

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use glaux_catalog::{Access, Lake, is_create_external_table, parse_hive_create_table};
use glaux_proto::QueryId;

use crate::client_session::ClientSession;
use crate::error::{ErrorKind, SchedulerError};
use crate::query::{AtExecutors, ProgressSlot, QueryResult, QueryRunner};

use catalog_ddl::CatalogDdl;
use create_table::CreateTable;
use create_table_as::CreateTableAs;
use delta_dml::DeltaDml;
use delta_maintenance::DeltaMaintenance;
use delta_merge::DeltaMerge;
use explain::Explain;
use grants::Authorization;
pub(crate) use ingest::{IfExists, IngestTarget, ingest};
use insert::Insert;
use optimize::Optimize;
use partitions::Partitions;
use prepared::Prepared;
use query::Query;
use show::ShowCreateTable;
use show_functions::ShowFunctions;
use unload::Unload;
use use_database::UseDatabase;
use words::Words;

/// What a statement is recognized and run against.
pub(crate) struct Context<'a> {
    /// DataFusion's planning state, with the client's database as the default schema.
    pub state: SessionState,
    pub session: &'a ClientSession,
    pub lake: &'a Lake,
    pub queries: &'a QueryRunner,
    /// What the session's user may do (everything for admins and clusters without users).
    pub access: Arc<Access>,
}

/// When a statement runs, and what it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// It reads: it runs when its result is fetched.
    Reads,
    /// It changes the catalog: it runs as soon as it is submitted (clients may never fetch the
    /// empty result of DDL).
    ChangesCatalog,
    /// It moves the client's session to this database.
    UseDatabase(String),
}

/// A statement family: what it returns, and how it runs.
#[async_trait]
pub(crate) trait Family: Send + Sync {
    /// The columns of its result.
    fn schema(&self) -> SchemaRef;

    fn effect(&self) -> Effect {
        Effect::Reads
    }

    /// Its placeholders (`$1`, `$2`, ...), typed where the statement says what they compare
    /// with (text where it does not).
    fn parameters(&self) -> SchemaRef {
        Arc::new(Schema::empty())
    }

    /// Refuses the statement unless the session's user may run it. Reads are checked as they
    /// are planned, through the user's view of the catalog (`access.rs`); every other family
    /// says what it needs here.
    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError>;

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError>;

    /// Launches it for its result to be read from the executors, if it is a query whose final
    /// stage is a plain gather; `None` (nothing started) for every other statement.
    async fn run_at_executors(
        &self,
        _ctx: &Context<'_>,
        _query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<Option<AtExecutors>, SchedulerError> {
        Ok(None)
    }
}

/// A client's statement, recognized and planned.
pub(crate) enum Statement {
    Query(Query),
    Explain(Explain),
    CreateTable(CreateTable),
    CreateTableAs(Box<CreateTableAs>),
    Insert(Box<Insert>),
    /// `DELETE` or `UPDATE` (of a Delta table).
    Rewrite(Box<DeltaDml>),
    /// `MERGE` (into a Delta table).
    Merge(Box<DeltaMerge>),
    /// `VACUUM`, `ALTER TABLE SET TBLPROPERTIES` (of a Delta table).
    DeltaMaintenance(Box<DeltaMaintenance>),
    Unload(Box<Unload>),
    Optimize(Box<Optimize>),
    CatalogDdl(CatalogDdl),
    ShowCreateTable(ShowCreateTable),
    ShowFunctions(ShowFunctions),
    Partitions(Partitions),
    UseDatabase(UseDatabase),
    Prepared(Prepared),
    Authorization(Authorization),
}

/// What a family's recognizer made of a statement's words.
enum Recognized {
    Statement(Statement),
    /// Run this SQL instead (an Athena statement said in DataFusion's SQL).
    Sql(String),
}

type Recognizer = fn(&Words<'_>, &Context<'_>) -> Option<Result<Recognized, SchedulerError>>;

/// The Athena statements DataFusion does not parse, tried in turn on a statement's words.
const RECOGNIZERS: [Recognizer; 9] = [
    grants::recognize,
    delta_maintenance::recognize,
    show::recognize,
    show_functions::recognize,
    optimize::recognize,
    partitions::recognize,
    use_database::recognize,
    prepared::recognize,
    catalog_ddl::recognize,
];

impl Statement {
    /// What kind of statement it is, for the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Query(_) => "query",
            Self::Explain(_) => "explain",
            Self::CreateTable(_) => "create_table",
            Self::CreateTableAs(_) => "create_table_as",
            Self::Insert(_) => "insert",
            Self::Rewrite(dml) if dml.is_update() => "update",
            Self::Rewrite(_) => "delete",
            Self::Merge(_) => "merge",
            Self::DeltaMaintenance(_) => "delta_maintenance",
            Self::Unload(_) => "unload",
            Self::Optimize(_) => "optimize",
            Self::CatalogDdl(_) => "catalog_ddl",
            Self::ShowCreateTable(_) => "show_create_table",
            Self::ShowFunctions(_) => "show_functions",
            Self::Partitions(_) => "partitions",
            Self::UseDatabase(_) => "use",
            Self::Prepared(_) => "prepared_statement",
            Self::Authorization(_) => "authorization",
        }
    }

    /// Whether it only reads (its result may be reused while what it reads does not change).
    /// Any other statement may change data: the tables it names, or if it names none, any.
    pub fn only_reads(&self) -> bool {
        matches!(self, Self::Query(_) | Self::ShowCreateTable(_) | Self::ShowFunctions(_) | Self::UseDatabase(_))
    }

    /// The tables (`db.t`) it reads or changes, names resolved in `database`, for the audit log.
    pub fn objects(&self, database: &str) -> Vec<String> {
        let mut objects = match self {
            Self::Query(query) => tables_read(query.plan(), database),
            Self::Explain(explain) => tables_read(explain.plan(), database),
            Self::ShowCreateTable(show) => vec![show.table()],
            Self::Partitions(partitions) => vec![partitions.table()],
            Self::CreateTable(create) => vec![create.table(database)],
            Self::Unload(unload) => tables_read(unload.plan(), database),
            Self::Optimize(optimize) => vec![optimize.table(database)],
            Self::Rewrite(dml) => vec![dml.table()],
            Self::Merge(merge) => {
                let mut objects = tables_read(merge.source(), database);
                objects.push(merge.table());
                objects
            }
            Self::DeltaMaintenance(maintenance) => vec![maintenance.table(database)],
            Self::Insert(insert) => {
                let mut objects = tables_read(insert.plan(), database);
                objects.push(insert.table());
                objects
            }
            Self::CreateTableAs(create) => {
                let mut objects = tables_read(create.plan(), database);
                objects.push(create.table(database));
                objects
            }
            _ => Vec::new(),
        };
        objects.sort();
        objects.dedup();
        objects
    }

    pub fn family(&self) -> &dyn Family {
        match self {
            Self::Query(s) => s,
            Self::Explain(s) => s,
            Self::CreateTable(s) => s,
            Self::CreateTableAs(s) => s.as_ref(),
            Self::Insert(s) => s.as_ref(),
            Self::Rewrite(s) => s.as_ref(),
            Self::Merge(s) => s.as_ref(),
            Self::DeltaMaintenance(s) => s.as_ref(),
            Self::Unload(s) => s.as_ref(),
            Self::Optimize(s) => s.as_ref(),
            Self::CatalogDdl(s) => s,
            Self::ShowCreateTable(s) => s,
            Self::ShowFunctions(s) => s,
            Self::Partitions(s) => s,
            Self::UseDatabase(s) => s,
            Self::Prepared(s) => s,
            Self::Authorization(s) => s,
        }
    }

    /// Recognizes `sql` and plans it.
    pub async fn recognize(sql: &str, ctx: &Context<'_>) -> Result<Statement, SchedulerError> {
        // A query (SELECT, WITH) goes straight to the parser: no recognizer here reads one. Any
        // other statement is tokenized once here; UNLOAD's and CTAS's parsers, which tokenize
        // again for the places of their parts, only run on statements that begin as they do.
        // (TPC-DS q41's text was tokenized four times before the parser's own: 0.6 ms.)
        let words = if words::is_query(sql) { None } else { Words::of(sql) };
        let first = words.as_ref().and_then(Words::first_word);
        if first == Some("UNLOAD")
            && let Some(parsed) = unload::parse(sql)
        {
            let parsed = parsed?;
            let plan = plan_sql::plan_sql(&parsed.query, ctx).await?;
            return Ok(Statement::Unload(Box::new(Unload::try_new(parsed, plan)?)));
        }
        // Athena's CTAS: its query is planned here like any query, and read as the user may.
        if first == Some("CREATE")
            && let Some(parsed) = create_table_as::parse(sql)
        {
            let parsed = parsed?;
            let plan = plan_sql::plan_sql(&parsed.query, ctx).await?;
            return Ok(Statement::CreateTableAs(Box::new(CreateTableAs::try_new(parsed, plan)?)));
        }
        if let Some(words) = words {
            // EXPLAIN [ANALYZE] [VERBOSE] of a write.
            let all = words.words();
            let options = all.iter().skip(1).take_while(|w| matches!(**w, "ANALYZE" | "VERBOSE")).count();
            let explained: Vec<&str> = all.iter().skip(1 + options).take(2).copied().collect();
            if all.first() == Some(&"EXPLAIN")
                && matches!(explained.as_slice(), ["INSERT" | "DELETE" | "UPDATE" | "MERGE", _] | ["CREATE", "TABLE"])
            {
                let written = words.after_words(1 + options).unwrap_or_default();
                if explained[0] != "CREATE" || create_table_as::parse(written).is_some() {
                    return Err(SchedulerError::refused(
                        ErrorKind::Unsupported,
                        format!(
                            "EXPLAIN of {} is not supported yet: EXPLAIN its query",
                            if explained[0] == "CREATE" { "CREATE TABLE AS" } else { explained[0] }
                        ),
                    ));
                }
            }
            if words.words().first() == Some(&"MERGE") {
                let plan = plan_sql::plan_insert(sql, ctx).await?;
                return Ok(Statement::Merge(Box::new(DeltaMerge::try_new(plan, &ctx.session.database)?)));
            }
            if matches!(words.words().first(), Some(&"DELETE" | &"UPDATE")) {
                let plan = plan_sql::plan_insert(sql, ctx).await?;
                return Ok(Statement::Rewrite(Box::new(DeltaDml::try_new(plan, &ctx.session.database)?)));
            }
            if words.words().starts_with(&["INSERT"]) {
                let plan = plan_sql::plan_insert(sql, ctx).await?;
                return Ok(Statement::Insert(Box::new(Insert::try_new(plan, &ctx.session.database)?)));
            }
            // `EXECUTE` is its prepared statement with the values in place of its parameters.
            if let Some(executed) = prepared::execute(&words, ctx) {
                return Box::pin(Self::recognize(&executed?, ctx)).await;
            }
            for recognize in RECOGNIZERS {
                match recognize(&words, ctx) {
                    Some(Ok(Recognized::Statement(Statement::Prepared(Prepared::Prepare { name, statement })))) => {
                        // Checked now, so a statement that cannot plan is refused at PREPARE.
                        Box::pin(Self::recognize(&statement, ctx)).await?;
                        return Ok(Statement::Prepared(Prepared::Prepare { name, statement }));
                    }
                    Some(Ok(Recognized::Statement(statement))) => return Ok(statement),
                    Some(Ok(Recognized::Sql(sql))) => return Self::planned(plan_sql::plan_sql(&sql, ctx).await?),
                    Some(Err(error)) => return Err(error),
                    None => {}
                }
            }
        }
        // DataFusion's DDL first; Athena's (Hive's) when DataFusion cannot read it.
        match plan_sql::plan_sql(sql, ctx).await {
            Ok(plan) => Self::planned(plan),
            Err(datafusion_error) if is_create_external_table(sql) => match parse_hive_create_table(sql) {
                Ok(table) => Ok(Statement::CreateTable(CreateTable::Hive(table))),
                // The statement reads as Athena DDL and asks for what Glaux does not do: that alone.
                Err(unsupported @ glaux_catalog::CatalogError::Unsupported(_)) => Err(unsupported.into()),
                Err(hive_error) => {
                    let hive_error = SchedulerError::from(hive_error);
                    let message = format!(
                        "{hive_error} (reading the statement as Athena DDL; as DataFusion DDL: {datafusion_error})"
                    );
                    Err(SchedulerError::refused(hive_error.kind(), message))
                }
            },
            Err(error) => Err(error),
        }
    }

    /// The family a DataFusion plan belongs to.
    fn planned(plan: LogicalPlan) -> Result<Statement, SchedulerError> {
        Ok(match plan {
            LogicalPlan::Explain(explain) => {
                let verbose = explain.verbose;
                Statement::Explain(Explain::try_new(Arc::unwrap_or_clone(explain.plan), false, verbose)?)
            }
            LogicalPlan::Analyze(analyze) => {
                Statement::Explain(Explain::try_new(Arc::unwrap_or_clone(analyze.input), true, analyze.verbose)?)
            }
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => {
                Statement::CreateTable(CreateTable::DataFusion(create))
            }
            LogicalPlan::Ddl(ddl) => Statement::CatalogDdl(CatalogDdl::try_new(ddl)?),
            plan => Statement::Query(Query::try_new(plan)?),
        })
    }
}

/// The tables a plan scans, as `db.t`.
fn tables_read(plan: &LogicalPlan, database: &str) -> Vec<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut tables = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.clone().resolve(glaux_catalog::DEFAULT_CATALOG, database);
            tables.push(format!("{}.{}", name.schema, name.table));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    tables
}
