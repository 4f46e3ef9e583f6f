//! `CREATE EXTERNAL TABLE`, in DataFusion's dialect or in Athena's (Hive's): the catalog crate
//! checks the location, lets the crawler complete the definition, and stores it with the
//! partitions it finds.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::logical_expr::CreateExternalTable;
use glaux_catalog::HiveTable;
use glaux_proto::QueryId;

use super::{Context, Effect, Family};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};

pub(crate) enum CreateTable {
    DataFusion(Box<CreateExternalTable>),
    Hive(HiveTable),
}

impl CreateTable {
    /// The new table, `db.t`, unqualified names in `database`.
    pub fn table(&self, database: &str) -> String {
        match self {
            Self::DataFusion(create) => {
                format!("{}.{}", create.name.schema().unwrap_or(database), create.name.table())
            }
            Self::Hive(table) => match table.name.as_slice() {
                [.., database, name] => format!("{database}.{name}"),
                names => format!("{database}.{}", names.join(".")),
            },
        }
    }
}

#[async_trait]
impl Family for CreateTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::empty())
    }

    fn effect(&self) -> Effect {
        Effect::ChangesCatalog
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        let (database, locations) = match self {
            Self::DataFusion(create) => (create.name.schema().map(str::to_string), create.locations.clone()),
            Self::Hive(table) => {
                let database = match table.name.as_slice() {
                    [.., database, _] => Some(database.clone()),
                    _ => None,
                };
                // A new Delta table without a LOCATION goes under the warehouse, as a CTAS's does.
                let locations = Some(table.location.clone()).filter(|l| !l.is_empty()).into_iter().collect();
                (database, locations)
            }
        };
        let database = database.unwrap_or_else(|| ctx.session.database.clone());
        ctx.access.require_database(glaux_catalog::Privilege::Create, &database)?;
        for location in &locations {
            ctx.access.require_location(location)?;
        }
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let database = &ctx.session.database;
        match self {
            Self::DataFusion(create) => ctx.lake.create_external_table(&ctx.state, create, database).await?,
            Self::Hive(table) => ctx.lake.create_hive_table(&ctx.state, table, database).await?,
        }
        Ok(QueryResult::empty(query))
    }
}
