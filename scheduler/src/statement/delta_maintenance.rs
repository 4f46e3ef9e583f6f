//! Keeping Delta tables: `VACUUM t` (deletes the files no recent version needs),
//! `ALTER TABLE t SET TBLPROPERTIES ('k' = 'v', ...)` (one version setting them; among them
//! `vacuum_max_snapshot_age_seconds`, the retention `VACUUM` keeps) and `ALTER TABLE t ADD
//! COLUMNS (...)` (Athena's and Trino's column changes are read by `glaux_catalog`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use glaux_catalog::{ColumnChange, Privilege, TableDef, TableFormat, delta_log, parse_alter_columns};
use glaux_proto::QueryId;

use super::create_table_as::{refused, unsupported};
use super::words::{Part, Words};
use super::{Context, Effect, Family, Recognized, Statement};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};

pub(crate) enum DeltaMaintenance {
    Vacuum { name: Vec<String> },
    SetProperties { name: Vec<String>, properties: HashMap<String, String> },
    Columns { name: Vec<String>, change: ColumnChange },
}

pub(super) fn recognize(words: &Words<'_>, _ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let w = words.words();
    let statement = if w.first() == Some(&"VACUUM") {
        let (name, end) = words.name_at(1)?;
        if words.part(end).is_some() {
            return Some(Err(refused("VACUUM takes a table name only")));
        }
        Ok(DeltaMaintenance::Vacuum { name })
    } else if w.starts_with(&["ALTER", "TABLE"]) {
        if let Some(parsed) = parse_alter_columns(words.after_words(0)?) {
            return Some(match parsed {
                Ok((name, change)) => {
                    Ok(Recognized::Statement(Statement::DeltaMaintenance(Box::new(DeltaMaintenance::Columns {
                        name,
                        change,
                    }))))
                }
                Err(error) => Err(error.into()),
            });
        }
        let (name, end) = words.name_at(2)?;
        if w.get(end..end + 2) != Some(&["SET", "TBLPROPERTIES"][..]) {
            return None;
        }
        properties(words, end + 2).map(|properties| DeltaMaintenance::SetProperties { name, properties })
    } else {
        return None;
    };
    Some(statement.map(|s| Recognized::Statement(Statement::DeltaMaintenance(Box::new(s)))))
}

/// `('k' = 'v', ...)` from part `i` to the end.
fn properties(words: &Words<'_>, mut i: usize) -> Result<HashMap<String, String>, SchedulerError> {
    let malformed = || refused("SET TBLPROPERTIES takes ('key' = 'value', ...)");
    if words.part(i) != Some(&Part::Symbol('(')) {
        return Err(malformed());
    }
    let mut properties = HashMap::new();
    loop {
        match (words.part(i + 1), words.part(i + 2), words.part(i + 3), words.part(i + 4)) {
            (Some(Part::Text(key)), Some(Part::Symbol('=')), Some(Part::Text(value)), Some(Part::Symbol(end))) => {
                properties.insert(key.clone(), value.clone());
                i += 4;
                match end {
                    ',' => continue,
                    ')' if words.part(i + 1).is_none() => break,
                    _ => return Err(malformed()),
                }
            }
            _ => return Err(malformed()),
        }
    }
    Ok(properties)
}

impl DeltaMaintenance {
    fn name(&self) -> &[String] {
        match self {
            Self::Vacuum { name } | Self::SetProperties { name, .. } | Self::Columns { name, .. } => name,
        }
    }

    /// The table named, `db.t` as written.
    pub fn table(&self, database: &str) -> String {
        match self.name() {
            [table] => format!("{database}.{table}"),
            parts => parts.join("."),
        }
    }

    /// The Delta table named, and its location (ending in '/').
    fn delta_table(&self, ctx: &Context<'_>) -> Result<(TableDef, String), SchedulerError> {
        let table = ctx.lake.table(self.name(), &ctx.session.database)?;
        let statement = match self {
            Self::Vacuum { .. } => "VACUUM",
            Self::SetProperties { .. } => "ALTER TABLE SET TBLPROPERTIES",
            Self::Columns { change: ColumnChange::Add(_), .. } => "ALTER TABLE ADD COLUMNS",
            Self::Columns { change: ColumnChange::Rename { .. }, .. } => "ALTER TABLE CHANGE COLUMN",
            Self::Columns { change: ColumnChange::Drop(_), .. } => "ALTER TABLE DROP COLUMN",
        };
        if table.format != TableFormat::Delta {
            return Err(unsupported(format!(
                "{statement} works on Delta tables ('table_type' = 'DELTA'); {}.{} is not one",
                table.database, table.name
            )));
        }
        let location = super::delta::location(&table)?;
        Ok((table, location))
    }
}

#[async_trait]
impl Family for DeltaMaintenance {
    fn schema(&self) -> SchemaRef {
        match self {
            Self::Vacuum { .. } => Arc::new(Schema::new(vec![Field::new("files_deleted", DataType::Int64, false)])),
            Self::SetProperties { .. } | Self::Columns { .. } => Arc::new(Schema::empty()),
        }
    }

    fn effect(&self) -> Effect {
        match self {
            // It deletes files: it runs when its result is fetched, like a write.
            Self::Vacuum { .. } => Effect::Reads,
            Self::SetProperties { .. } | Self::Columns { .. } => Effect::ChangesCatalog,
        }
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        let table = ctx.lake.table(self.name(), &ctx.session.database)?;
        let privilege = match self {
            Self::Vacuum { .. } => Privilege::Delete,
            Self::SetProperties { .. } | Self::Columns { .. } => Privilege::Alter,
        };
        ctx.access.require_table(privilege, &table.database, &table.name)?;
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let (table, location) = self.delta_table(ctx)?;
        let runtime = ctx.state.runtime_env();
        match self {
            Self::Vacuum { .. } => {
                let deleted = delta_log::vacuum(runtime, &location).await?;
                let deleted = Int64Array::from(vec![i64::try_from(deleted).unwrap_or(i64::MAX)]);
                let batch = RecordBatch::try_new(self.schema(), vec![Arc::new(deleted)])
                    .map_err(|e| SchedulerError::plan(e.into()))?;
                Ok(QueryResult::finished(query, self.schema(), vec![batch]))
            }
            Self::SetProperties { properties, .. } => {
                delta_log::set_properties(runtime, &location, properties.clone()).await?;
                Ok(QueryResult::finished(query, self.schema(), Vec::new()))
            }
            // Renaming or dropping changes only the log: column mapping (turned on the first
            // time) keeps the files' names.
            Self::Columns { change, .. } => {
                match change {
                    ColumnChange::Add(columns) => delta_log::add_columns(runtime, &location, columns).await?,
                    ColumnChange::Rename { old, new, data_type } => {
                        delta_log::rename_column(runtime, &location, old, new, data_type.as_ref()).await?
                    }
                    ColumnChange::Drop(column) => delta_log::drop_column(runtime, &location, column).await?,
                };
                ctx.lake.refresh_delta(&ctx.state, &table).await?;
                Ok(QueryResult::finished(query, self.schema(), Vec::new()))
            }
        }
    }
}
