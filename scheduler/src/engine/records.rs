//! What the engine keeps of statements beyond running them: their history records, the
//! workgroup each runs in, and earlier results a query may reuse.

use std::sync::Arc;

use glaux_catalog::history::{CANCELLED, QueryFilter, QueryRecord, SUCCEEDED};
use glaux_proto::QueryId;

use super::{PlannedStatement, QueryEngine};
use crate::client_session::{ClientSession, PRIMARY_WORKGROUP};
use crate::error::SchedulerError;
use crate::history::{History, epoch_ms};

impl QueryEngine {
    /// Every statement's history.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// The gate every statement passes (and the scheduler's stop, which it obeys).
    pub(crate) fn statements(&self) -> &crate::limits::StatementGate {
        &self.statements
    }

    /// `session` in the workgroup it runs in: the one its door named, else its user's default
    /// (from the users file), else `primary`.
    pub fn in_workgroup(&self, session: &ClientSession) -> ClientSession {
        let mut session = session.clone();
        if session.workgroup.is_empty() {
            let default = session.user.as_ref().and_then(|user| self.default_workgroups.get(user));
            session.workgroup = default.map_or(PRIMARY_WORKGROUP, String::as_str).to_string();
        }
        session
    }

    /// The catalog's store (Athena's API keeps workgroups there).
    pub(crate) fn lake_catalog(&self) -> &Arc<dyn glaux_catalog::Catalog> {
        self.lake.catalog()
    }

    /// The workgroup `name`, if it exists and is enabled.
    pub fn workgroup(&self, name: &str) -> Result<glaux_catalog::WorkGroup, SchedulerError> {
        self.workgroups.resolve(name)
    }

    /// The most recent result of the same query (same SQL, database, workgroup and user) that
    /// ended within `max_age` and that no change to a table it reads (through Glaux) has made
    /// stale; `None` for statements other than queries.
    pub async fn reusable(
        &self,
        planned: &PlannedStatement,
        max_age: std::time::Duration,
    ) -> Result<Option<QueryRecord>, SchedulerError> {
        if planned.kind() != "query" {
            return Ok(None);
        }
        let record = &planned.record;
        let filter = QueryFilter {
            user: Some(record.user.clone()),
            workgroup: Some(record.workgroup.clone()),
            sql: Some(record.sql.clone()),
            database: Some(record.database.clone()),
            state: Some(SUCCEEDED.to_string()),
            limit: 20,
            ..Default::default()
        };
        let oldest = epoch_ms(std::time::SystemTime::now()) - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let changed = self.changes.last(&planned.statement.objects(&planned.session.database));
        let recent = self.history.read(filter).await?.into_iter().find(|previous| {
            previous.output_location.is_some()
                && previous.ended_ms.is_some_and(|ended| ended >= oldest)
                && previous.started_ms.is_some_and(|started| started > changed)
        });
        Ok(recent)
    }

    /// Records `planned` as answered by `previous`'s result, without running.
    pub fn record_reused(&self, planned: &PlannedStatement, previous: &QueryRecord) {
        let now = epoch_ms(std::time::SystemTime::now());
        self.history.record(QueryRecord {
            state: SUCCEEDED.into(),
            started_ms: Some(now),
            ended_ms: Some(now),
            rows: previous.rows,
            output_location: previous.output_location.clone(),
            reused: true,
            ..planned.record.clone()
        });
    }

    /// Records statement `id` submitted, waiting to plan (Athena's API runs statements in the
    /// background).
    pub fn record_queued(&self, id: &QueryId, sql: &str, session: &ClientSession) {
        self.history.record(new_record(id, sql, session));
    }

    /// Records statement `id`, stopped by its client before it planned.
    pub fn record_cancelled(&self, id: &QueryId, sql: &str, session: &ClientSession, reason: &str) {
        self.history.record(crate::history::ended(new_record(id, sql, session), CANCELLED, reason.to_string()));
    }

    /// Whose history records `session`'s user may read: `None` for an administrator (everyone's),
    /// else the user's own.
    pub fn history_of(&self, session: &ClientSession) -> Result<Option<String>, SchedulerError> {
        let access = self.access(session)?;
        Ok((!access.is_admin()).then(|| session.user.clone().unwrap_or_default()))
    }
}

/// The history record of statement `id`, submitted now.
pub(super) fn new_record(id: &QueryId, sql: &str, session: &ClientSession) -> QueryRecord {
    QueryRecord {
        id: id.to_string(),
        user: session.user.clone().unwrap_or_default(),
        door: session.caller.door.name().to_string(),
        workgroup: session.workgroup.clone(),
        database: session.database.clone(),
        sql: sql.to_string(),
        state: glaux_catalog::history::QUEUED.into(),
        submitted_ms: epoch_ms(std::time::SystemTime::now()),
        ..Default::default()
    }
}
