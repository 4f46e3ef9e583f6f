//! What the web console reads without running a statement: the history a user may see (and a
//! running statement's progress), and a readable table's columns and partitions. The same checks as statements apply (the user's own
//! history unless an administrator; tables through the catalogs as the user may see them).

use glaux_catalog::history::{QueryFilter, QueryRecord};

use super::QueryEngine;
use crate::client_session::ClientSession;
use crate::error::SchedulerError;
use crate::query::ProgressProbe;

/// Partitions a table's page lists at most.
const MAX_PARTITIONS: usize = 1000;

/// A table as the console shows it.
pub struct TableDetail {
    /// (name, type) of each column its reader may see.
    pub columns: Vec<(String, String)>,
    /// `key=value/...` of each registered partition (the first [`MAX_PARTITIONS`]).
    pub partitions: Vec<String>,
    pub partitions_total: usize,
}

impl QueryEngine {
    /// History records matching `filter` among those `session`'s user may read, newest first.
    pub async fn visible_history(
        &self,
        session: &ClientSession,
        mut filter: QueryFilter,
    ) -> Result<Vec<QueryRecord>, SchedulerError> {
        if let Some(own) = self.history_of(session)? {
            if filter.user.as_ref().is_some_and(|user| *user != own) {
                return Ok(Vec::new());
            }
            filter.user = Some(own);
        }
        self.history.read(filter).await
    }

    /// Statement `id`'s history record if `session`'s user may read it, with its query's progress
    /// probe while it runs on the cluster.
    pub async fn visible_query(
        &self,
        session: &ClientSession,
        id: &str,
    ) -> Result<Option<(QueryRecord, Option<ProgressProbe>)>, SchedulerError> {
        let filter = QueryFilter { id: Some(id.to_string()), limit: 1, ..QueryFilter::default() };
        let Some(record) = self.visible_history(session, filter).await?.into_iter().next() else { return Ok(None) };
        let probe = if record.finished() { None } else { self.live.probe(id) };
        Ok(Some((record, probe)))
    }

    /// `database.table`'s columns and partitions, if `session`'s user may read it.
    pub async fn table_detail(
        &self,
        session: &ClientSession,
        database: &str,
        table: &str,
    ) -> Result<Option<TableDetail>, SchedulerError> {
        let catalog = self.catalogs(session)?.catalog(glaux_catalog::DEFAULT_CATALOG);
        let Some(schema) = catalog.and_then(|c| c.schema(database)) else { return Ok(None) };
        let Some(provider) = schema.table(table).await.map_err(SchedulerError::plan)? else { return Ok(None) };
        let columns =
            provider.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect();
        let (mut partitions, mut partitions_total) = (Vec::new(), 0);
        if let Some(definition) = self.lake.catalog().table(database, table)?
            && !definition.partition_keys.is_empty()
        {
            let registered = self.lake.catalog().partitions(database, table)?;
            partitions_total = registered.len();
            partitions = registered
                .iter()
                .take(MAX_PARTITIONS)
                .map(|p| {
                    let pairs = definition.partition_keys.iter().zip(&p.values);
                    pairs.map(|(key, value)| format!("{}={value}", key.name)).collect::<Vec<_>>().join("/")
                })
                .collect();
        }
        Ok(Some(TableDetail { columns, partitions, partitions_total }))
    }
}
