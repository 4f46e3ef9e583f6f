//! What a client's SQL is: an Athena statement Glaux runs itself (partitions, `USE`, `SHOW
//! FUNCTIONS`, prepared statements), or Trino SQL read by `trino` and planned by DataFusion.
//! `EXECUTE` becomes its prepared statement with the values in place of its parameters.

use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SQLOptions;

use crate::athena_statements::{AthenaStatement, PartitionSpec, recognize};
use crate::catalog::{HiveTable, TableDef, is_create_external_table, parse_hive_create_table};
use crate::error::SchedulerError;
use crate::placeholders::{bind_parameters, number_question_marks};
use crate::query::{ClientSession, QueryEngine, plan_error};
use crate::session::DEFAULT_CATALOG;

/// A statement, parsed and planned.
pub(crate) enum Statement {
    Plan(LogicalPlan),
    ShowCreateTable(TableDef),
    ShowPartitions(TableDef),
    CreateHiveTable(HiveTable),
    RepairTable(TableDef),
    AddPartitions { table: TableDef, if_not_exists: bool, partitions: Vec<(PartitionSpec, Option<String>)> },
    DropPartitions { table: TableDef, if_exists: bool, partitions: Vec<PartitionSpec> },
    Use(String),
    /// `PREPARE name FROM statement`, the statement checked.
    Prepare { name: String, statement: String },
    /// `DEALLOCATE PREPARE name`.
    Deallocate(String),
    ShowFunctions(Option<String>),
}

impl QueryEngine {
    /// Recognizes Athena statements, then plans with DataFusion.
    pub(crate) async fn statement(&self, sql: &str, session: &ClientSession) -> Result<Statement, SchedulerError> {
        // `EXECUTE` is its prepared statement with the values in place of its parameters.
        if let Some(AthenaStatement::Execute { name, values }) = recognize(sql, &session.database) {
            let prepared = self.catalog.prepared_statement(&name).map_err(SchedulerError::plan)?;
            let prepared = prepared.ok_or_else(|| plan_error(format!("Prepared statement not found: {name}")))?;
            let sql = crate::placeholders::substitute_parameters(&prepared, &values)?;
            return Box::pin(self.statement(&sql, session)).await;
        }
        let table = |name: &[String]| self.table_named(name, session);
        match recognize(sql, &session.database) {
            // DataFusion's DDL first; Athena's (Hive's) when DataFusion cannot read it.
            None => match self.logical_plan(sql, session).await {
                Ok(plan) => Ok(Statement::Plan(plan)),
                Err(datafusion_error) if is_create_external_table(sql) => match parse_hive_create_table(sql) {
                    Ok(table) => Ok(Statement::CreateHiveTable(table)),
                    Err(hive_error) => Err(plan_error(format!(
                        "{hive_error} (reading the statement as Athena DDL; as DataFusion DDL: {datafusion_error})"
                    ))),
                },
                Err(e) => Err(e),
            },
            Some(AthenaStatement::Rewritten(sql)) => Ok(Statement::Plan(self.logical_plan(&sql, session).await?)),
            Some(AthenaStatement::Unsupported(message)) => Err(plan_error(message)),
            Some(AthenaStatement::ShowCreateTable(name)) => Ok(Statement::ShowCreateTable(table(&name)?)),
            Some(AthenaStatement::ShowPartitions(name)) => Ok(Statement::ShowPartitions(table(&name)?)),
            Some(AthenaStatement::RepairTable(name)) => Ok(Statement::RepairTable(table(&name)?)),
            Some(AthenaStatement::AddPartitions { table: name, if_not_exists, partitions }) => {
                Ok(Statement::AddPartitions { table: table(&name)?, if_not_exists, partitions })
            }
            Some(AthenaStatement::DropPartitions { table: name, if_exists, partitions }) => {
                Ok(Statement::DropPartitions { table: table(&name)?, if_exists, partitions })
            }
            Some(AthenaStatement::Prepare { name, statement }) => {
                if matches!(recognize(&statement, &session.database), Some(AthenaStatement::Prepare { .. } | AthenaStatement::Execute { .. })) {
                    return Err(plan_error("a prepared statement cannot be PREPARE or EXECUTE".into()));
                }
                // Checked now, so a statement that cannot plan is refused at PREPARE.
                Box::pin(self.statement(&statement, session)).await?;
                Ok(Statement::Prepare { name, statement })
            }
            Some(AthenaStatement::Deallocate(name)) => Ok(Statement::Deallocate(name)),
            Some(AthenaStatement::ShowFunctions(pattern)) => Ok(Statement::ShowFunctions(pattern)),
            Some(AthenaStatement::Execute { .. }) => Err(plan_error("EXECUTE inside EXECUTE".into())),
            Some(AthenaStatement::Use(name)) => {
                let database = match name.as_slice() {
                    [database] => database,
                    [catalog, database] if catalog == DEFAULT_CATALOG => database,
                    _ => return Err(plan_error(format!("{} is not a database name", name.join(".")))),
                };
                if !self.catalog.database_exists(database).map_err(SchedulerError::plan)? {
                    return Err(plan_error(format!("database {database} does not exist")));
                }
                Ok(Statement::Use(database.clone()))
            }
        }
    }

    /// The catalog's definition of the table written as `name` (`t`, `db.t`, `glaux.db.t`).
    fn table_named(&self, name: &[String], session: &ClientSession) -> Result<TableDef, SchedulerError> {
        let (database, table) = match name {
            [table] => (session.database.as_str(), table),
            [database, table] => (database.as_str(), table),
            [catalog, database, table] if catalog == DEFAULT_CATALOG => (database.as_str(), table),
            _ => return Err(plan_error(format!("{} is not a table name", name.join(".")))),
        };
        let definition = self.catalog.table(database, table).map_err(SchedulerError::plan)?;
        definition.ok_or_else(|| plan_error(format!("table {database}.{table} not found")))
    }

    /// Parses and plans `sql` without running it. Writes and session statements are refused.
    async fn logical_plan(&self, sql: &str, session: &ClientSession) -> Result<LogicalPlan, SchedulerError> {
        let sql = number_question_marks(sql);
        let state = self.state(session);
        let planned = match crate::trino::parse(&state, &sql).await {
            Ok(statement) => state.statement_to_plan(statement).await,
            Err(e) => Err(e),
        };
        let plan = planned.map_err(|e| match crate::trino::explain_plan_error(&e.to_string(), &sql, &state) {
            Some(message) => plan_error(message),
            None => SchedulerError::plan(e),
        })?;
        SQLOptions::new()
            .with_allow_ddl(true)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(SchedulerError::plan)?;
        let plan = if session.parameters.is_empty() { plan } else { bind_parameters(plan, &session.parameters)? };
        if let LogicalPlan::Ddl(ddl) = &plan {
            match ddl {
                DdlStatement::CreateMemoryTable(_) | DdlStatement::CreateIndex(_) => {
                    return Err(SchedulerError::Unsupported(
                        "CREATE TABLE without EXTERNAL (Glaux reads tables from the lake; use CREATE EXTERNAL TABLE)"
                            .into(),
                    ));
                }
                DdlStatement::CreateFunction(_) | DdlStatement::DropFunction(_) => {
                    return Err(SchedulerError::Unsupported("CREATE/DROP FUNCTION".into()));
                }
                _ => {}
            }
        }
        Ok(plan)
    }
}
