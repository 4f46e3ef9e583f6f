//! The query history (table `queries`): one row per statement, from every door, kept across
//! restarts and pruned by age and count.

use rusqlite::{Connection, Row, params};

use crate::error::{CatalogError, Result};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS queries (
        id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        door TEXT NOT NULL,
        workgroup TEXT NOT NULL,
        database TEXT NOT NULL,
        sql TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        submitted_ms INTEGER NOT NULL,
        started_ms INTEGER,
        ended_ms INTEGER,
        queue_ms INTEGER NOT NULL,
        planning_ms INTEGER NOT NULL,
        execution_ms INTEGER NOT NULL,
        bytes_scanned INTEGER NOT NULL,
        rows_returned INTEGER NOT NULL,
        output_location TEXT,
        reused INTEGER NOT NULL,
        tasks_rerun INTEGER NOT NULL,
        stages TEXT
    );
    CREATE INDEX IF NOT EXISTS queries_by_time ON queries (submitted_ms, id);
    CREATE INDEX IF NOT EXISTS queries_by_user ON queries (user_name, submitted_ms);
";

const COLUMNS: &str = "id, user_name, door, workgroup, database, sql, kind, state, reason, submitted_ms, started_ms, \
    ended_ms, queue_ms, planning_ms, execution_ms, bytes_scanned, rows_returned, output_location, reused, tasks_rerun";

/// The states of a statement; the first two are unfinished.
pub const QUEUED: &str = "QUEUED";
pub const RUNNING: &str = "RUNNING";
pub const SUCCEEDED: &str = "SUCCEEDED";
pub const FAILED: &str = "FAILED";
pub const CANCELLED: &str = "CANCELLED";

/// One statement's history record. Times are milliseconds since the Unix epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryRecord {
    pub id: String,
    /// Empty for the implicit admin of a scheduler without users.
    pub user: String,
    pub door: String,
    pub workgroup: String,
    /// The database it ran in (its session's default).
    pub database: String,
    pub sql: String,
    /// The statement's kind (`query`, `insert`, ...), empty if it did not plan.
    pub kind: String,
    pub state: String,
    pub reason: Option<String>,
    pub submitted_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub queue_ms: u64,
    pub planning_ms: u64,
    pub execution_ms: u64,
    pub bytes_scanned: u64,
    pub rows: u64,
    pub output_location: Option<String>,
    /// Whether a previous result was returned instead of running it.
    pub reused: bool,
    pub tasks_rerun: u64,
    /// How it ran, for its page (JSON written by the scheduler: its stages and their tasks' work).
    /// Read only with a record read by its id (`QueryFilter::id`): lists leave it out.
    pub stages: Option<String>,
}

impl QueryRecord {
    pub fn finished(&self) -> bool {
        self.state != QUEUED && self.state != RUNNING
    }
}

/// Which records to read, newest first.
#[derive(Clone, Debug, Default)]
pub struct QueryFilter {
    pub id: Option<String>,
    pub user: Option<String>,
    pub workgroup: Option<String>,
    /// Records of exactly this statement text, in this database, in this state.
    pub sql: Option<String>,
    pub database: Option<String>,
    pub state: Option<String>,
    /// Records of statements that came through this door (`flight_sql`, `postgres`, ...).
    pub door: Option<String>,
    /// Only records submitted before this one (`(submitted_ms, id)`): the next page.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

fn sql_error(e: rusqlite::Error) -> CatalogError {
    CatalogError::from(e)
}

/// Creates the table, and adds the `stages` column to one made before it existed.
pub(crate) fn migrate(connection: &Connection) -> Result<()> {
    connection.execute_batch(SCHEMA).map_err(sql_error)?;
    let has_stages = connection
        .prepare("SELECT 1 FROM pragma_table_info('queries') WHERE name = 'stages'")
        .and_then(|mut s| s.exists([]))
        .map_err(sql_error)?;
    if !has_stages {
        connection.execute_batch("ALTER TABLE queries ADD COLUMN stages TEXT").map_err(sql_error)?;
    }
    Ok(())
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Writes `records` (a record with a known id replaces it) in one transaction (a file catalog's
/// history connection commits without waiting for the disk: `SqliteCatalog::open`).
pub(crate) fn record(connection: &mut Connection, records: &[QueryRecord]) -> Result<()> {
    let transaction = connection.transaction().map_err(sql_error)?;
    {
        let mut insert = transaction
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO queries ({COLUMNS}, stages) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
            ))
            .map_err(sql_error)?;
        for r in records {
            insert
                .execute(params![
                    r.id,
                    r.user,
                    r.door,
                    r.workgroup,
                    r.database,
                    r.sql,
                    r.kind,
                    r.state,
                    r.reason,
                    r.submitted_ms,
                    r.started_ms,
                    r.ended_ms,
                    int(r.queue_ms),
                    int(r.planning_ms),
                    int(r.execution_ms),
                    int(r.bytes_scanned),
                    int(r.rows),
                    r.output_location,
                    r.reused,
                    int(r.tasks_rerun),
                    r.stages,
                ])
                .map_err(sql_error)?;
        }
    }
    transaction.commit().map_err(sql_error)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<QueryRecord> {
    let count = |i: usize| row.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(QueryRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        door: row.get(2)?,
        workgroup: row.get(3)?,
        database: row.get(4)?,
        sql: row.get(5)?,
        kind: row.get(6)?,
        state: row.get(7)?,
        reason: row.get(8)?,
        submitted_ms: row.get(9)?,
        started_ms: row.get(10)?,
        ended_ms: row.get(11)?,
        queue_ms: count(12)?,
        planning_ms: count(13)?,
        execution_ms: count(14)?,
        bytes_scanned: count(15)?,
        rows: count(16)?,
        output_location: row.get(17)?,
        reused: row.get(18)?,
        tasks_rerun: count(19)?,
        stages: row.get(20)?,
    })
}

pub(crate) fn read(connection: &Connection, filter: &QueryFilter) -> Result<Vec<QueryRecord>> {
    let (before_ms, before_id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, CASE WHEN ?1 IS NULL THEN NULL ELSE stages END FROM queries \
             WHERE (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR user_name = ?2) AND (?3 IS NULL OR workgroup = ?3) \
               AND (submitted_ms < ?4 OR (submitted_ms = ?4 AND (?5 = '' OR id < ?5))) \
               AND (?7 IS NULL OR sql = ?7) AND (?8 IS NULL OR database = ?8) AND (?9 IS NULL OR state = ?9) \
               AND (?10 IS NULL OR door = ?10) \
             ORDER BY submitted_ms DESC, id DESC LIMIT ?6"
        ))
        .map_err(sql_error)?;
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let rows = statement
        .query_map(
            params![
                filter.id,
                filter.user,
                filter.workgroup,
                before_ms,
                before_id,
                limit,
                filter.sql,
                filter.database,
                filter.state,
                filter.door
            ],
            from_row,
        )
        .map_err(sql_error)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_error)
}

/// Marks every unfinished record failed with `reason` (at a start: what ran when the scheduler
/// stopped did not finish); how many.
pub(crate) fn end_unfinished(connection: &Connection, state: &str, reason: &str, now_ms: i64) -> Result<usize> {
    connection
        .execute(
            "UPDATE queries SET state = ?1, reason = ?2, ended_ms = ?3 WHERE state IN (?4, ?5)",
            params![state, reason, now_ms, QUEUED, RUNNING],
        )
        .map_err(sql_error)
}

/// Deletes finished records submitted before `before_ms`, and the oldest finished ones beyond
/// `keep`; how many.
pub(crate) fn prune(connection: &Connection, before_ms: i64, keep: usize) -> Result<usize> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let old = connection
        .execute(
            "DELETE FROM queries WHERE submitted_ms < ?1 AND state NOT IN (?2, ?3)",
            params![before_ms, QUEUED, RUNNING],
        )
        .map_err(sql_error)?;
    let surplus = connection
        .execute(
            "DELETE FROM queries WHERE state NOT IN (?2, ?3) AND id IN \
             (SELECT id FROM queries ORDER BY submitted_ms DESC, id DESC LIMIT -1 OFFSET ?1)",
            params![keep, QUEUED, RUNNING],
        )
        .map_err(sql_error)?;
    Ok(old + surplus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, user: &str, submitted_ms: i64, state: &str) -> QueryRecord {
        QueryRecord {
            id: id.into(),
            user: user.into(),
            state: state.into(),
            submitted_ms,
            workgroup: "primary".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_table_made_before_stages_gets_the_column() {
        let mut connection = Connection::open_in_memory().unwrap();
        let before = SCHEMA.replace(",\n        stages TEXT", "");
        assert_ne!(before, SCHEMA);
        connection.execute_batch(&before).unwrap();
        migrate(&connection).unwrap();
        migrate(&connection).unwrap();
        record(&mut connection, &[QueryRecord { stages: Some("{}".into()), ..at("q", "ann", 1, SUCCEEDED) }]).unwrap();
        let read = read(&connection, &QueryFilter { id: Some("q".into()), limit: 1, ..Default::default() }).unwrap();
        assert_eq!(read[0].stages.as_deref(), Some("{}"));
    }

    #[test]
    fn records_are_replaced_paged_failed_at_restart_and_pruned() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&connection).unwrap();
        let records: Vec<_> =
            (0..5).map(|i| at(&format!("q{i}"), if i % 2 == 0 { "ann" } else { "bob" }, i, SUCCEEDED)).collect();
        record(&mut connection, &records).unwrap();
        record(&mut connection, &[at("q4", "ann", 4, RUNNING)]).unwrap();
        let all = read(&connection, &QueryFilter { limit: 10, ..Default::default() }).unwrap();
        assert_eq!(all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["q4", "q3", "q2", "q1", "q0"]);
        assert_eq!(all[0].state, RUNNING);
        let ann = QueryFilter { user: Some("ann".into()), limit: 1, ..Default::default() };
        let page = read(&connection, &ann).unwrap();
        assert_eq!(page[0].id, "q4");
        let next = QueryFilter { before: Some((4, "q4".into())), ..ann };
        assert_eq!(read(&connection, &next).unwrap()[0].id, "q2");

        assert_eq!(end_unfinished(&connection, FAILED, "scheduler restarted", 99).unwrap(), 1);
        let q4 = read(&connection, &QueryFilter { id: Some("q4".into()), limit: 1, ..Default::default() }).unwrap();
        assert_eq!(
            (q4[0].state.as_str(), q4[0].reason.as_deref(), q4[0].ended_ms),
            (FAILED, Some("scheduler restarted"), Some(99))
        );

        // How a statement ran is read with its record by id, and left out of lists.
        record(&mut connection, &[QueryRecord { stages: Some("[1]".into()), ..at("q3", "bob", 3, SUCCEEDED) }])
            .unwrap();
        let q3 = read(&connection, &QueryFilter { id: Some("q3".into()), limit: 1, ..Default::default() }).unwrap();
        assert_eq!(q3[0].stages.as_deref(), Some("[1]"));
        let listed = read(&connection, &QueryFilter { user: Some("bob".into()), limit: 10, ..Default::default() });
        assert!(listed.unwrap().iter().all(|r| r.stages.is_none()));

        // Older than 1 ms: q0 goes; beyond 2 kept: q2 and q1 go.
        assert_eq!(prune(&connection, 1, 2).unwrap(), 3);
        let left = read(&connection, &QueryFilter { limit: 10, ..Default::default() }).unwrap();
        assert_eq!(left.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["q4", "q3"]);
    }
}
