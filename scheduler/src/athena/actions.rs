//! Each action of Athena's API the door serves: its request read and checked, its answer shaped
//! as Athena's.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use object_store::{GetOptions, GetRange, ObjectStoreExt};
use serde_json::{Value, json};

use super::executions::{Execution, Request, State};
use super::{ApiError, AthenaDoor, WRITES, metadata, results};
use crate::audit::Door;
use crate::client_session::ClientSession;

/// Actions of Athena's API not served yet: refused by name.
const NOT_YET: [&str; 17] = [
    "CreateWorkGroup",
    "GetWorkGroup",
    "UpdateWorkGroup",
    "DeleteWorkGroup",
    "ListWorkGroups",
    "CreatePreparedStatement",
    "GetPreparedStatement",
    "ListPreparedStatements",
    "DeletePreparedStatement",
    "BatchGetPreparedStatement",
    "UpdatePreparedStatement",
    "CreateNamedQuery",
    "GetNamedQuery",
    "ListNamedQueries",
    "BatchGetNamedQuery",
    "DeleteNamedQuery",
    "ListEngineVersions",
];

/// The one workgroup so far.
const PRIMARY: &str = "primary";
/// Rows `GetQueryResults` returns at most per page (Athena's limit), and by default.
const MAX_RESULTS: usize = 1000;
/// Executions `ListQueryExecutions` returns at most per page.
const MAX_LISTED: usize = 50;
/// Bytes of the result file read first for a page; doubled while a row does not fit, up to
/// [`MAX_READ`].
const FIRST_READ: u64 = 1 << 20;
const MAX_READ: u64 = 64 << 20;

pub(super) async fn dispatch(
    door: &AthenaDoor,
    peer: Option<SocketAddr>,
    user: Option<String>,
    action: &str,
    request: &Value,
) -> Result<Value, ApiError> {
    match action {
        "StartQueryExecution" => start(door, peer, user, request),
        "GetQueryExecution" => {
            let execution = find(door, text(request, "QueryExecutionId")?)?;
            Ok(json!({ "QueryExecution": described(&execution) }))
        }
        "BatchGetQueryExecution" => Ok(batch_get(door, request)?),
        "GetQueryResults" => results_page(door, request).await,
        "StopQueryExecution" => {
            let id = text(request, "QueryExecutionId")?;
            if !door.executions.stop(id) {
                return Err(unknown_execution(id));
            }
            Ok(json!({}))
        }
        "ListQueryExecutions" => list(door, request),
        "GetQueryRuntimeStatistics" => {
            let execution = find(door, text(request, "QueryExecutionId")?)?;
            Ok(json!({ "QueryRuntimeStatistics": runtime_statistics(&execution) }))
        }
        "ListDataCatalogs" => metadata::list_data_catalogs(request),
        "GetDataCatalog" => metadata::get_data_catalog(request),
        "ListDatabases" | "GetDatabase" | "ListTableMetadata" | "GetTableMetadata" => {
            let session = ClientSession::default().for_user(user).sent_by(Door::Athena, peer.map(|p| p.ip()));
            let engine = &door.engine;
            match action {
                "ListDatabases" => metadata::list_databases(engine, &session, request),
                "GetDatabase" => metadata::get_database(engine, &session, request),
                "ListTableMetadata" => metadata::list_table_metadata(engine, &session, request),
                _ => metadata::get_table_metadata(engine, &session, request),
            }
        }
        _ if NOT_YET.contains(&action) => {
            Err(ApiError::invalid(format!("Glaux's Athena API does not serve {action} yet")))
        }
        _ => Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("unknown operation {action}"),
        )),
    }
}

fn text<'a>(request: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    match request.get(field) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a non-empty string"))),
        None => Err(ApiError::invalid(format!("{field} is required"))),
    }
}

fn optional<'a>(request: &'a Value, path: &[&str]) -> Result<Option<&'a str>, ApiError> {
    let mut at = request;
    for field in path {
        match at.get(field) {
            Some(value) => at = value,
            None => return Ok(None),
        }
    }
    at.as_str().map(Some).ok_or_else(|| ApiError::invalid(format!("{} must be a string", path.join("."))))
}

fn unknown_execution(id: &str) -> ApiError {
    ApiError::invalid(format!("QueryExecution {id} was not found"))
}

fn find(door: &AthenaDoor, id: &str) -> Result<std::sync::Arc<Execution>, ApiError> {
    door.executions.get(id).ok_or_else(|| unknown_execution(id))
}

fn workgroup(request: &Value) -> Result<(), ApiError> {
    match optional(request, &["WorkGroup"])? {
        None | Some(PRIMARY) => Ok(()),
        Some(other) => Err(ApiError::invalid(format!("WorkGroup {other} is not found."))),
    }
}

fn start(
    door: &AthenaDoor,
    peer: Option<SocketAddr>,
    user: Option<String>,
    request: &Value,
) -> Result<Value, ApiError> {
    let sql = text(request, "QueryString")?;
    if sql.len() > 262_144 {
        return Err(ApiError::invalid("QueryString is longer than 262144 bytes"));
    }
    workgroup(request)?;
    // What Glaux does not do yet is refused, not ignored.
    for (field, what) in [("ExecutionParameters", "execution parameters"), ("ResultReuseConfiguration", "result reuse")]
    {
        if request.get(field).is_some_and(|v| !v.is_null() && v != &json!([]) && !disabled_reuse(field, v)) {
            return Err(ApiError::invalid(format!("Glaux's Athena API does not support {what} yet ({field})")));
        }
    }
    let configuration = request.get("ResultConfiguration");
    for field in ["EncryptionConfiguration", "ExpectedBucketOwner", "AclConfiguration"] {
        if configuration.is_some_and(|c| c.get(field).is_some()) {
            return Err(ApiError::invalid(format!("Glaux's Athena API does not support ResultConfiguration.{field}")));
        }
    }
    let Some(output_dir) = optional(request, &["ResultConfiguration", "OutputLocation"])? else {
        return Err(ApiError::invalid(
            "No output location provided. An output location is required either through the Workgroup result \
             configuration setting or as an API input.",
        ));
    };
    let database = optional(request, &["QueryExecutionContext", "Database"])?.unwrap_or("default");
    let catalog = optional(request, &["QueryExecutionContext", "Catalog"])?.unwrap_or("AwsDataCatalog");
    if !metadata::is_catalog(catalog) {
        return Err(ApiError::invalid(format!("Catalog {catalog} is not found (Glaux has one: AwsDataCatalog)")));
    }
    let session =
        ClientSession::new(Some(database), Vec::new()).for_user(user).sent_by(Door::Athena, peer.map(|p| p.ip()));
    let id = door.executions.start(Request {
        sql: sql.to_string(),
        database: database.to_string(),
        catalog: catalog.to_string(),
        output_dir: output_dir.to_string(),
        token: optional(request, &["ClientRequestToken"])?.map(str::to_string),
        session,
    })?;
    Ok(json!({ "QueryExecutionId": id }))
}

/// `ResultReuseConfiguration` with reuse turned off asks for what Glaux does.
fn disabled_reuse(field: &str, value: &Value) -> bool {
    field == "ResultReuseConfiguration" && value["ResultReuseByAgeConfiguration"]["Enabled"] != json!(true)
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Athena's statement type and subtype of a statement kind.
fn statement_type(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "query" => ("DML", "SELECT"),
        "insert" => ("DML", "INSERT"),
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
fn described(execution: &Execution) -> Value {
    let status = execution.status();
    let (kind, subtype) = statement_type(status.kind);
    let mut described_status = json!({
        "State": status.state.name(),
        "SubmissionDateTime": seconds(execution.submitted),
    });
    if let Some(completed) = status.completed {
        described_status["CompletionDateTime"] = json!(seconds(completed));
    }
    if let Some(reason) = &status.reason {
        described_status["StateChangeReason"] = json!(reason);
    }
    let total = status.completed.and_then(|c| c.duration_since(execution.submitted).ok()).map(|d| d.as_millis());
    json!({
        "QueryExecutionId": execution.id,
        "Query": execution.sql,
        "StatementType": kind,
        "SubstatementType": subtype,
        "ResultConfiguration": { "OutputLocation": execution.output },
        "ResultReuseConfiguration": { "ResultReuseByAgeConfiguration": { "Enabled": false } },
        "QueryExecutionContext": { "Database": execution.database, "Catalog": execution.catalog },
        "Status": described_status,
        "Statistics": {
            "EngineExecutionTimeInMillis": status.engine_ms,
            "DataScannedInBytes": status.bytes_scanned,
            "TotalExecutionTimeInMillis": total.unwrap_or_default(),
            "QueryQueueTimeInMillis": 0,
            "QueryPlanningTimeInMillis": status.planning_ms,
            "ResultReuseInformation": { "ReusedPreviousResult": false },
        },
        "WorkGroup": PRIMARY,
        "EngineVersion": { "SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Glaux" },
    })
}

/// `GetQueryRuntimeStatistics`: the timeline and the rows and bytes read and written.
fn runtime_statistics(execution: &Execution) -> Value {
    let status = execution.status();
    let total = status.completed.unwrap_or_else(SystemTime::now).duration_since(execution.submitted);
    json!({
        "Timeline": {
            "QueryQueueTimeInMillis": 0,
            "QueryPlanningTimeInMillis": status.planning_ms,
            "EngineExecutionTimeInMillis": status.engine_ms,
            "ServiceProcessingTimeInMillis": 0,
            "TotalExecutionTimeInMillis": total.map_or(0, |d| d.as_millis()),
        },
        "Rows": { "InputBytes": status.bytes_scanned, "OutputRows": status.rows },
    })
}

fn batch_get(door: &AthenaDoor, request: &Value) -> Result<Value, ApiError> {
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
        match door.executions.get(id) {
            Some(execution) => found.push(described(&execution)),
            None => missing.push(json!({
                "QueryExecutionId": id, "ErrorCode": "INVALID_INPUT", "ErrorMessage": "not found"
            })),
        }
    }
    Ok(json!({ "QueryExecutions": found, "UnprocessedQueryExecutionIds": missing }))
}

/// A page token: a position in a list or a file, as decimal text.
fn position(request: &Value) -> Result<u64, ApiError> {
    match optional(request, &["NextToken"])? {
        None => Ok(0),
        Some(token) => token.parse().map_err(|_| ApiError::invalid("NextToken is not a token Glaux gave")),
    }
}

fn page_size(request: &Value, max: usize) -> Result<usize, ApiError> {
    match request.get("MaxResults") {
        None | Some(Value::Null) => Ok(max),
        Some(value) => match value.as_u64() {
            Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
            _ => Err(ApiError::invalid(format!("MaxResults must be between 1 and {max}"))),
        },
    }
}

fn list(door: &AthenaDoor, request: &Value) -> Result<Value, ApiError> {
    workgroup(request)?;
    let (from, size) = (position(request)? as usize, page_size(request, MAX_LISTED)?);
    let ids = door.executions.ids();
    let page: Vec<&String> = ids.iter().skip(from).take(size).collect();
    let mut answer = json!({ "QueryExecutionIds": page });
    if from + size < ids.len() {
        answer["NextToken"] = json!((from + size).to_string());
    }
    Ok(answer)
}

async fn results_page(door: &AthenaDoor, request: &Value) -> Result<Value, ApiError> {
    let execution = find(door, text(request, "QueryExecutionId")?)?;
    let status = execution.status();
    match status.state {
        State::Succeeded => {}
        State::Queued | State::Running => {
            return Err(ApiError::invalid(format!(
                "Query has not yet finished. Current state: {}",
                status.state.name()
            )));
        }
        State::Failed | State::Cancelled => {
            let reason = status.reason.unwrap_or_default();
            return Err(ApiError::invalid(format!(
                "Query did not finish successfully. Final query state: {}. {reason}",
                status.state.name()
            )));
        }
    }
    let (from, size) = (position(request)?, page_size(request, MAX_RESULTS)?);
    let meta = execution
        .store
        .head(&execution.path)
        .await
        .map_err(|e| ApiError::invalid(format!("the result of {} cannot be read: {e}", execution.id)))?;
    if from > meta.size {
        return Err(ApiError::invalid("NextToken is not a token Glaux gave"));
    }
    let (mut read, mut rows, mut used) = (FIRST_READ, Vec::new(), 0);
    while from < meta.size && read <= MAX_READ {
        let end = (from + read).min(meta.size);
        let options = GetOptions { range: Some(GetRange::Bounded(from..end)), ..Default::default() };
        let unreadable =
            |e: object_store::Error| ApiError::invalid(format!("the result of {} cannot be read: {e}", execution.id));
        let bytes = execution.store.get_opts(&execution.path, options).await.map_err(unreadable)?;
        let bytes = bytes.bytes().await.map_err(unreadable)?;
        (rows, used) = results::decode(&bytes, size, end == meta.size).map_err(ApiError::invalid)?;
        if used > 0 || end == meta.size {
            break;
        }
        read *= 2;
    }
    if used == 0 && from < meta.size {
        return Err(ApiError::invalid("a row of the result is larger than 64 MiB"));
    }
    let data: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            let values: Vec<Value> =
                row.into_iter().map(|v| v.map_or_else(|| json!({}), |v| json!({ "VarCharValue": v }))).collect();
            json!({ "Data": values })
        })
        .collect();
    let mut answer = json!({
        "UpdateCount": if WRITES.contains(&status.kind) { status.update_count.unwrap_or_default() } else { 0 },
        "ResultSet": { "Rows": data, "ResultSetMetadata": { "ColumnInfo": status.columns } },
    });
    let next = from + used as u64;
    if next < meta.size {
        answer["NextToken"] = json!(next.to_string());
    }
    Ok(answer)
}
