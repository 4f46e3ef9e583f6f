//! Query executions as Athena describes them (`GetQueryExecution`, `BatchGetQueryExecution`,
//! `ListQueryExecutions`): those this scheduler ran through the API since it started, from
//! memory, and every other statement (any door, any earlier run of the scheduler) from the query
//! history. A user sees their own executions; an administrator sees everyone's.

use std::sync::Arc;

use glaux_catalog::history::{QueryFilter, QueryRecord};
use serde_json::{Value, json};

use super::actions::{optional, page_size, text, unknown_execution, workgroup};
use super::executions::Execution;
use super::{ApiError, AthenaDoor};
use crate::client_session::ClientSession;
use crate::history::epoch_ms;

/// Executions `ListQueryExecutions` and `BatchGetQueryExecution` take at most per call.
const MAX_LISTED: usize = 50;

/// What Athena's description of an execution says.
struct View {
    id: String,
    sql: String,
    kind: String,
    state: String,
    reason: Option<String>,
    submitted_ms: i64,
    completed_ms: Option<i64>,
    output: Option<String>,
    database: String,
    catalog: String,
    workgroup: String,
    bytes_scanned: u64,
    planning_ms: u64,
    engine_ms: u64,
    queue_ms: u64,
    reused: bool,
}

impl View {
    fn live(execution: &Execution) -> Self {
        let status = execution.status();
        Self {
            id: execution.id.clone(),
            sql: execution.sql.clone(),
            kind: status.kind.to_string(),
            state: status.state.name().to_string(),
            reason: status.reason,
            submitted_ms: epoch_ms(execution.submitted),
            completed_ms: status.completed.map(epoch_ms),
            output: Some(execution.result_file().output),
            database: execution.database.clone(),
            catalog: execution.catalog.clone(),
            workgroup: execution.session.workgroup.clone(),
            bytes_scanned: status.bytes_scanned,
            planning_ms: status.planning_ms,
            engine_ms: status.engine_ms,
            queue_ms: 0,
            reused: status.reused.is_some(),
        }
    }

    fn recorded(record: QueryRecord) -> Self {
        Self {
            id: record.id,
            sql: record.sql,
            kind: record.kind,
            state: record.state,
            reason: record.reason,
            submitted_ms: record.submitted_ms,
            completed_ms: record.ended_ms,
            output: record.output_location,
            database: record.database,
            catalog: super::metadata::CATALOG.to_string(),
            workgroup: record.workgroup,
            bytes_scanned: record.bytes_scanned,
            planning_ms: record.planning_ms,
            engine_ms: record.execution_ms,
            queue_ms: record.queue_ms,
            reused: record.reused,
        }
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Athena's statement type and subtype of a statement kind.
fn statement_type(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "query" => ("DML", "SELECT"),
        "insert" | "ingest" => ("DML", "INSERT"),
        "create_table_as" => ("DML", "CREATE_TABLE_AS_SELECT"),
        "update" => ("DML", "UPDATE"),
        "delete" => ("DML", "DELETE"),
        "merge" => ("DML", "MERGE_INTO"),
        "unload" => ("DML", "UNLOAD"),
        "explain" => ("UTILITY", "EXPLAIN"),
        "show_create_table" => ("UTILITY", "SHOW_CREATE_TABLE"),
        "show_functions" => ("UTILITY", "SHOW_FUNCTIONS"),
        "use" | "prepared_statement" | "" => ("UTILITY", "UNKNOWN"),
        _ => ("DDL", "UNKNOWN"),
    }
}

/// A `QueryExecution` as Athena describes one.
fn described(view: View) -> Value {
    let (kind, subtype) = statement_type(&view.kind);
    let mut status = json!({ "State": view.state, "SubmissionDateTime": seconds(view.submitted_ms) });
    if let Some(completed) = view.completed_ms {
        status["CompletionDateTime"] = json!(seconds(completed));
    }
    if let Some(reason) = &view.reason {
        status["StateChangeReason"] = json!(reason);
    }
    let total = view.completed_ms.map(|c| u64::try_from(c - view.submitted_ms).unwrap_or(0));
    let mut execution = json!({
        "QueryExecutionId": view.id,
        "Query": view.sql,
        "StatementType": kind,
        "SubstatementType": subtype,
        "ResultReuseConfiguration": { "ResultReuseByAgeConfiguration": { "Enabled": view.reused } },
        "QueryExecutionContext": { "Database": view.database, "Catalog": view.catalog },
        "Status": status,
        "Statistics": {
            "EngineExecutionTimeInMillis": view.engine_ms,
            "DataScannedInBytes": view.bytes_scanned,
            "TotalExecutionTimeInMillis": total.unwrap_or_default(),
            "QueryQueueTimeInMillis": view.queue_ms,
            "QueryPlanningTimeInMillis": view.planning_ms,
            "ResultReuseInformation": { "ReusedPreviousResult": view.reused },
        },
        "WorkGroup": view.workgroup,
        "EngineVersion": { "SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Glaux" },
    });
    if let Some(output) = view.output {
        execution["ResultConfiguration"] = json!({ "OutputLocation": output });
    }
    execution
}

/// Execution `id` if `session`'s user may see it: from memory, else from the history.
async fn lookup(door: &AthenaDoor, session: &ClientSession, id: &str) -> Result<Option<Value>, ApiError> {
    let only = door.engine.history_of(session)?;
    let live = door.executions.get(id);
    if let Some(execution) = &live {
        let owner = execution.session.user.clone().unwrap_or_default();
        if only.as_ref().is_some_and(|user| *user != owner) {
            return Ok(None);
        }
        if !execution.status().state.finished() {
            return Ok(Some(described(View::live(execution))));
        }
    }
    let filter = QueryFilter { id: Some(id.to_string()), user: only, limit: 1, ..Default::default() };
    let record = door.engine.history().read(filter).await?.into_iter().next();
    Ok(match (live, record) {
        // What this door saw of its own execution (its result file written or not), with the
        // time it waited for its workgroup.
        (Some(execution), record) => {
            let view = View::live(&execution);
            Some(described(View { queue_ms: record.map_or(0, |r| r.queue_ms), ..view }))
        }
        (None, record) => record.map(|record| described(View::recorded(record))),
    })
}

/// A live execution `session`'s user may see (to page its results, stop it, or read its
/// statistics).
pub(super) fn find(door: &AthenaDoor, session: &ClientSession, id: &str) -> Result<Arc<Execution>, ApiError> {
    let only = door.engine.history_of(session)?;
    door.executions
        .get(id)
        .filter(|e| only.as_ref().is_none_or(|user| *user == e.session.user.clone().unwrap_or_default()))
        .ok_or_else(|| unknown_execution(id))
}

pub(super) async fn get(door: &AthenaDoor, session: &ClientSession, request: &Value) -> Result<Value, ApiError> {
    let id = text(request, "QueryExecutionId")?;
    let execution = lookup(door, session, id).await?.ok_or_else(|| unknown_execution(id))?;
    Ok(json!({ "QueryExecution": execution }))
}

pub(super) async fn batch_get(door: &AthenaDoor, session: &ClientSession, request: &Value) -> Result<Value, ApiError> {
    let ids = request
        .get("QueryExecutionIds")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("QueryExecutionIds is required: a list of 1 to 50 query execution ids"))?;
    if ids.is_empty() || ids.len() > MAX_LISTED {
        return Err(ApiError::invalid("QueryExecutionIds must name 1 to 50 query execution ids"));
    }
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for id in ids {
        let id = id.as_str().unwrap_or_default();
        match lookup(door, session, id).await? {
            Some(execution) => found.push(execution),
            None => missing.push(json!({
                "QueryExecutionId": id, "ErrorCode": "INVALID_INPUT", "ErrorMessage": "not found"
            })),
        }
    }
    Ok(json!({ "QueryExecutions": found, "UnprocessedQueryExecutionIds": missing }))
}

/// The ids of the workgroup's executions the user may see (from every door), newest first;
/// `NextToken` is the last listed one's submission time and id.
pub(super) async fn list(door: &AthenaDoor, session: &ClientSession, request: &Value) -> Result<Value, ApiError> {
    let workgroup = workgroup(door, request)?.name;
    let size = page_size(request, MAX_LISTED)?;
    let before = match optional(request, &["NextToken"])? {
        None => None,
        Some(token) => {
            let bad = || ApiError::invalid("NextToken is not a token Glaux gave");
            let (ms, id) = token.split_once('/').ok_or_else(bad)?;
            Some((ms.parse().map_err(|_| bad())?, id.to_string()))
        }
    };
    let user = door.engine.history_of(session)?;
    let filter = QueryFilter { user, workgroup: Some(workgroup), before, limit: size + 1, ..Default::default() };
    let mut records = door.engine.history().read(filter).await?;
    let more = records.len() > size;
    records.truncate(size);
    let mut answer = json!({ "QueryExecutionIds": records.iter().map(|r| &r.id).collect::<Vec<_>>() });
    if more && let Some(last) = records.last() {
        answer["NextToken"] = json!(format!("{}/{}", last.submitted_ms, last.id));
    }
    Ok(answer)
}
