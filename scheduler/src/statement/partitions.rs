//! Partitions in the catalog: `MSCK REPAIR TABLE t`, `ALTER TABLE t ADD [IF NOT EXISTS]
//! PARTITION (k = 'v', ...) [LOCATION '...'] ...`, `ALTER TABLE t DROP [IF EXISTS] PARTITION
//! (...) [, PARTITION (...)]` and `SHOW PARTITIONS t`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use glaux_catalog::{PartitionSpec, TableDef, add_partitions, drop_partitions, repair_table, show_partitions};
use glaux_proto::QueryId;

use super::words::{Part, Words, identifier};
use super::{Context, Effect, Family, Recognized, Statement};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};

pub(crate) enum Partitions {
    Repair(TableDef),
    Add { table: TableDef, if_not_exists: bool, partitions: Vec<(PartitionSpec, Option<String>)> },
    Drop { table: TableDef, if_exists: bool, partitions: Vec<PartitionSpec> },
    Show(TableDef),
}

pub(super) fn recognize(words: &Words<'_>, ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let (name, statement) = match words.words().as_slice() {
        ["MSCK", "REPAIR", "TABLE", ..] => (words.name_ending_at(3)?, Kind::Repair),
        ["SHOW", "PARTITIONS", ..] => (words.name_ending_at(2)?, Kind::Show),
        ["ALTER", "TABLE", ..] => {
            let (name, end) = words.name_at(2)?;
            (name, alter_partitions(words, end)?)
        }
        _ => return None,
    };
    let table = match ctx.lake.table(&name, &ctx.session.database) {
        Ok(table) => table,
        Err(error) => return Some(Err(error.into())),
    };
    let statement = match statement {
        Kind::Repair => Partitions::Repair(table),
        Kind::Show => Partitions::Show(table),
        Kind::Add { if_not_exists, partitions } => Partitions::Add { table, if_not_exists, partitions },
        Kind::Drop { if_exists, partitions } => Partitions::Drop { table, if_exists, partitions },
    };
    Some(Ok(Recognized::Statement(Statement::Partitions(statement))))
}

impl Partitions {
    /// `db.t`.
    pub fn table(&self) -> String {
        let (Self::Repair(table) | Self::Show(table) | Self::Add { table, .. } | Self::Drop { table, .. }) = self;
        format!("{}.{}", table.database, table.name)
    }
}

/// A partition statement before its table is looked up.
#[derive(Debug, PartialEq)]
enum Kind {
    Repair,
    Show,
    Add { if_not_exists: bool, partitions: Vec<(PartitionSpec, Option<String>)> },
    Drop { if_exists: bool, partitions: Vec<PartitionSpec> },
}

/// `ALTER TABLE t ADD|DROP ...` after the table name, at `i`.
fn alter_partitions(words: &Words<'_>, mut i: usize) -> Option<Kind> {
    let w = words.words();
    let add = match *w.get(i)? {
        "ADD" => true,
        "DROP" => false,
        _ => return None,
    };
    i += 1;
    let guard: &[&str] = if add { &["IF", "NOT", "EXISTS"] } else { &["IF", "EXISTS"] };
    let guarded = w.get(i..i + guard.len()) == Some(guard);
    if guarded {
        i += guard.len();
    }
    let mut added = Vec::new();
    let mut dropped = Vec::new();
    while i < words.len() {
        let (spec, end) = partition_at(words, i)?;
        i = end;
        if add {
            let location = match (w.get(i), words.part(i + 1)) {
                (Some(&"LOCATION"), Some(Part::Text(location))) => {
                    i += 2;
                    Some(location.clone())
                }
                _ => None,
            };
            added.push((spec, location));
        } else {
            dropped.push(spec);
            if words.part(i) == Some(&Part::Symbol(',')) {
                i += 1;
            }
        }
    }
    if add {
        (!added.is_empty()).then_some(Kind::Add { if_not_exists: guarded, partitions: added })
    } else {
        (!dropped.is_empty()).then_some(Kind::Drop { if_exists: guarded, partitions: dropped })
    }
}

/// `PARTITION (k = 'v', k2 = 2)` at `i`, and where it ends.
fn partition_at(words: &Words<'_>, i: usize) -> Option<(PartitionSpec, usize)> {
    if words.part(i) != Some(&Part::Word("PARTITION".into())) || words.part(i + 1) != Some(&Part::Symbol('(')) {
        return None;
    }
    let mut spec = Vec::new();
    let mut i = i + 2;
    loop {
        let key = identifier(words.part(i)?)?;
        if words.part(i + 1) != Some(&Part::Symbol('=')) {
            return None;
        }
        let value = match words.part(i + 2)? {
            Part::Text(t) | Part::Number(t) => t.clone(),
            _ => return None,
        };
        spec.push((key, value));
        i += 3;
        match words.part(i)? {
            Part::Symbol(',') => i += 1,
            Part::Symbol(')') => return Some((spec, i + 1)),
            _ => return None,
        }
    }
}

/// One text column.
fn text_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
}

#[async_trait]
impl Family for Partitions {
    fn schema(&self) -> SchemaRef {
        match self {
            Self::Repair(_) => text_schema("result"),
            Self::Show(_) => text_schema("partition"),
            Self::Add { .. } | Self::Drop { .. } => Arc::new(Schema::empty()),
        }
    }

    fn effect(&self) -> Effect {
        match self {
            Self::Show(_) => Effect::Reads,
            _ => Effect::ChangesCatalog,
        }
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        use glaux_catalog::Privilege;
        let access = &ctx.access;
        match self {
            Self::Show(table) => access.require_readable(&table.database, &table.name)?,
            Self::Repair(table) | Self::Drop { table, .. } => {
                access.require_table(Privilege::Alter, &table.database, &table.name)?;
            }
            Self::Add { table, partitions, .. } => {
                access.require_table(Privilege::Alter, &table.database, &table.name)?;
                for location in partitions.iter().filter_map(|(_, location)| location.as_deref()) {
                    access.require_location(location)?;
                }
            }
        }
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        match self {
            Self::Repair(table) => {
                QueryResult::text(query, self.schema(), repair_table(ctx.lake, &ctx.state, table).await?)
            }
            Self::Show(table) => {
                QueryResult::text(query, self.schema(), show_partitions(ctx.lake, &ctx.state, table).await?)
            }
            Self::Add { table, if_not_exists, partitions } => {
                add_partitions(ctx.lake, table, *if_not_exists, partitions)?;
                Ok(QueryResult::empty(query))
            }
            Self::Drop { table, if_exists, partitions } => {
                drop_partitions(ctx.lake, table, *if_exists, partitions)?;
                Ok(QueryResult::empty(query))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alter(sql: &str) -> Option<Kind> {
        let words = Words::of(sql).unwrap();
        let (_, end) = words.name_at(2)?;
        alter_partitions(&words, end)
    }

    #[test]
    fn recognizes_partition_clauses() {
        assert_eq!(
            alter(
                "ALTER TABLE t ADD IF NOT EXISTS PARTITION (Dt = '2023-06-18', \"H\" = 3) LOCATION 's3://b/x/' PARTITION (dt='a', h=4)"
            ),
            Some(Kind::Add {
                if_not_exists: true,
                partitions: vec![
                    (vec![("dt".into(), "2023-06-18".into()), ("H".into(), "3".into())], Some("s3://b/x/".into())),
                    (vec![("dt".into(), "a".into()), ("h".into(), "4".into())], None),
                ],
            })
        );
        assert_eq!(
            alter("ALTER TABLE t DROP PARTITION (d = '1'), PARTITION (d = '2')"),
            Some(Kind::Drop {
                if_exists: false,
                partitions: vec![vec![("d".into(), "1".into())], vec![("d".into(), "2".into())]],
            })
        );
        assert_eq!(alter("ALTER TABLE t ADD PARTITION (d = )"), None);
        assert_eq!(alter("ALTER TABLE t RENAME TO u"), None);
    }
}
