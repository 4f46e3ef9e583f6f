//! Each action of Athena's API the door serves: its request read and checked, its answer shaped
//! as Athena's.

use std::net::SocketAddr;
use std::time::SystemTime;

use datafusion::common::ScalarValue;
use glaux_catalog::history::{QueryFilter, SUCCEEDED};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use serde_json::{Value, json};

use super::executions::{Execution, Request, ResultFile, State};
use super::{ApiError, AthenaDoor, WRITES, described, metadata, results, saved, workgroups};
use crate::audit::Door;
use crate::client_session::{ClientSession, PRIMARY_WORKGROUP};

/// Actions of Athena's API not served yet: refused by name.
const NOT_YET: [&str; 1] = ["ListEngineVersions"];

/// Rows `GetQueryResults` returns at most per page (Athena's limit), and by default.
const MAX_RESULTS: usize = 1000;
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
    let session = ClientSession::default().for_user(user).sent_by(Door::Athena, peer.map(|p| p.ip()));
    let engine = &door.engine;
    match action {
        "StartQueryExecution" => start(door, session, request),
        "GetQueryExecution" => described::get(door, &session, request).await,
        "BatchGetQueryExecution" => described::batch_get(door, &session, request).await,
        "GetQueryResults" => results_page(door, &session, request).await,
        "StopQueryExecution" => {
            let execution = described::find(door, &session, text(request, "QueryExecutionId")?)?;
            door.executions.stop(&execution.id);
            Ok(json!({}))
        }
        "ListQueryExecutions" => described::list(door, &session, request).await,
        "GetQueryRuntimeStatistics" => {
            let execution = described::find(door, &session, text(request, "QueryExecutionId")?)?;
            Ok(json!({ "QueryRuntimeStatistics": runtime_statistics(&execution) }))
        }
        "CreateWorkGroup"
        | "GetWorkGroup"
        | "UpdateWorkGroup"
        | "DeleteWorkGroup"
        | "ListWorkGroups"
        | "TagResource"
        | "UntagResource"
        | "ListTagsForResource" => workgroups::dispatch(door, &session, action, request).await,
        "CreatePreparedStatement"
        | "GetPreparedStatement"
        | "BatchGetPreparedStatement"
        | "ListPreparedStatements"
        | "UpdatePreparedStatement"
        | "DeletePreparedStatement"
        | "CreateNamedQuery"
        | "GetNamedQuery"
        | "BatchGetNamedQuery"
        | "ListNamedQueries"
        | "UpdateNamedQuery"
        | "DeleteNamedQuery" => saved::dispatch(door, &session, action, request).await,
        "ListDataCatalogs" => metadata::list_data_catalogs(request),
        "GetDataCatalog" => metadata::get_data_catalog(request),
        "ListDatabases" => metadata::list_databases(engine, &session, request),
        "GetDatabase" => metadata::get_database(engine, &session, request),
        "ListTableMetadata" => metadata::list_table_metadata(engine, &session, request),
        "GetTableMetadata" => metadata::get_table_metadata(engine, &session, request),
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

pub(super) fn text<'a>(request: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    match request.get(field) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a non-empty string"))),
        None => Err(ApiError::invalid(format!("{field} is required"))),
    }
}

pub(super) fn optional<'a>(request: &'a Value, path: &[&str]) -> Result<Option<&'a str>, ApiError> {
    let mut at = request;
    for field in path {
        match at.get(field) {
            Some(value) => at = value,
            None => return Ok(None),
        }
    }
    at.as_str().map(Some).ok_or_else(|| ApiError::invalid(format!("{} must be a string", path.join("."))))
}

pub(super) fn unknown_execution(id: &str) -> ApiError {
    ApiError::invalid(format!("QueryExecution {id} was not found"))
}

/// The workgroup a request names (`primary` if none), which must exist and be enabled.
pub(super) fn workgroup(door: &AthenaDoor, request: &Value) -> Result<glaux_catalog::WorkGroup, ApiError> {
    let name = optional(request, &["WorkGroup"])?.unwrap_or(PRIMARY_WORKGROUP);
    Ok(door.engine.workgroup(name)?)
}

fn start(door: &AthenaDoor, session: ClientSession, request: &Value) -> Result<Value, ApiError> {
    let sql = text(request, "QueryString")?;
    if sql.len() > 262_144 {
        return Err(ApiError::invalid("QueryString is longer than 262144 bytes"));
    }
    let workgroup = workgroup(door, request)?;
    let parameters = execution_parameters(request.get("ExecutionParameters"))?;
    // Result reuse: as the request asks, else as its workgroup does by default.
    let reuse = match request.get("ResultReuseConfiguration") {
        None | Some(Value::Null) => workgroup.settings.reuse_max_age_minutes,
        Some(configuration) => reuse_minutes(configuration)?,
    };
    let configuration = request.get("ResultConfiguration");
    for field in ["EncryptionConfiguration", "ExpectedBucketOwner", "AclConfiguration"] {
        if configuration.is_some_and(|c| c.get(field).is_some()) {
            return Err(ApiError::invalid(format!("Glaux's Athena API does not support ResultConfiguration.{field}")));
        }
    }
    // The workgroup's output location: the default, or with its configuration enforced, the one.
    let requested = optional(request, &["ResultConfiguration", "OutputLocation"])?;
    let configured = workgroup.settings.output_location.as_deref();
    let chosen = if workgroup.settings.enforce { configured.or(requested) } else { requested.or(configured) };
    let Some(output_dir) = chosen else {
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
        ClientSession { database: database.to_string(), workgroup: workgroup.name.clone(), parameters, ..session };
    let id = door.executions.start(Request {
        sql: sql.to_string(),
        database: database.to_string(),
        catalog: catalog.to_string(),
        output_dir: output_dir.to_string(),
        token: optional(request, &["ClientRequestToken"])?.map(str::to_string),
        session,
        reuse: reuse.map(|minutes| std::time::Duration::from_secs(u64::from(minutes) * 60)),
    })?;
    Ok(json!({ "QueryExecutionId": id }))
}

/// `ResultReuseConfiguration`'s maximum age in minutes (Athena's default 60), or `None` when
/// reuse is off.
fn reuse_minutes(configuration: &Value) -> Result<Option<u32>, ApiError> {
    let by_age = &configuration["ResultReuseByAgeConfiguration"];
    match by_age.get("Enabled").and_then(Value::as_bool) {
        Some(false) => Ok(None),
        Some(true) => match by_age.get("MaxAgeInMinutes") {
            None | Some(Value::Null) => Ok(Some(60)),
            Some(minutes) => minutes
                .as_u64()
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| *m <= 10_080)
                .map(Some)
                .ok_or_else(|| ApiError::invalid("MaxAgeInMinutes must be between 0 and 10080")),
        },
        None => Err(ApiError::invalid("ResultReuseByAgeConfiguration.Enabled is required")),
    }
}

/// `ExecutionParameters`: the values of the statement's placeholders (`?`), in order, each
/// written as a SQL literal (`'text'`, `42`, `1.5`, `true`, `NULL`).
fn execution_parameters(parameters: Option<&Value>) -> Result<Vec<ScalarValue>, ApiError> {
    let Some(parameters) = parameters.filter(|p| !p.is_null()) else { return Ok(Vec::new()) };
    let list = parameters.as_array().ok_or_else(|| ApiError::invalid("ExecutionParameters must be a list"))?;
    list.iter()
        .map(|value| {
            let text = value.as_str().ok_or_else(|| ApiError::invalid("ExecutionParameters must be strings"))?;
            literal(text.trim()).ok_or_else(|| {
                ApiError::invalid(format!(
                    "execution parameter {text} is not a literal Glaux reads ('text', a number, true, false or NULL)"
                ))
            })
        })
        .collect()
}

fn literal(text: &str) -> Option<ScalarValue> {
    if let Some(quoted) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        let inner = quoted.replace("''", "'");
        // A lone quote inside is not a literal.
        return (inner.matches('\'').count() * 2 == quoted.matches('\'').count())
            .then_some(ScalarValue::Utf8(Some(inner)));
    }
    match text.to_ascii_lowercase().as_str() {
        "null" => return Some(ScalarValue::Null),
        "true" => return Some(ScalarValue::Boolean(Some(true))),
        "false" => return Some(ScalarValue::Boolean(Some(false))),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(ScalarValue::Int64(Some(n)));
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| ScalarValue::Float64(Some(f)))
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

/// A page token: a position in a list or a file, as decimal text.
fn position(request: &Value) -> Result<u64, ApiError> {
    match optional(request, &["NextToken"])? {
        None => Ok(0),
        Some(token) => token.parse().map_err(|_| ApiError::invalid("NextToken is not a token Glaux gave")),
    }
}

pub(super) fn page_size(request: &Value, max: usize) -> Result<usize, ApiError> {
    match request.get("MaxResults") {
        None | Some(Value::Null) => Ok(max),
        Some(value) => match value.as_u64() {
            Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
            _ => Err(ApiError::invalid(format!("MaxResults must be between 1 and {max}"))),
        },
    }
}

/// What `GetQueryResults` pages: a result file, its columns, and what the statement was.
struct Paged {
    id: String,
    file: ResultFile,
    kind: String,
    columns: Vec<Value>,
    update_count: Option<u64>,
}

fn unfinished(state: &str, reason: Option<String>) -> ApiError {
    if state == "QUEUED" || state == "RUNNING" {
        return ApiError::invalid(format!("Query has not yet finished. Current state: {state}"));
    }
    let reason = reason.unwrap_or_default();
    ApiError::invalid(format!("Query did not finish successfully. Final query state: {state}. {reason}"))
}

/// The result of an execution this scheduler ran, or one from the history whose file and
/// `.csv.metadata` are still at its output location (an execution of an earlier run).
async fn paged(door: &AthenaDoor, session: &ClientSession, id: &str) -> Result<Paged, ApiError> {
    if let Ok(execution) = described::find(door, session, id) {
        let status = execution.status();
        if status.state != State::Succeeded {
            return Err(unfinished(status.state.name(), status.reason));
        }
        let file = execution.result_file();
        let (kind, columns, update_count) = (status.kind.to_string(), status.columns, status.update_count);
        return Ok(Paged { id: id.to_string(), file, kind, columns, update_count });
    }
    let only = door.engine.history_of(session)?;
    let filter = QueryFilter { id: Some(id.to_string()), user: only, limit: 1, ..Default::default() };
    let record = door.engine.history().read(filter).await?.into_iter().next().ok_or_else(|| unknown_execution(id))?;
    if record.state != SUCCEEDED {
        return Err(unfinished(&record.state, record.reason));
    }
    let output = record.output_location.ok_or_else(|| {
        ApiError::invalid(format!("{id} ran through another door: its result was sent to its client, not written"))
    })?;
    let (store, path) = door.engine.result_store(session, &output)?;
    let unreadable = |e: object_store::Error| ApiError::invalid(format!("the result of {id} cannot be read: {e}"));
    let metadata = store.get(&Path::from(format!("{path}.metadata"))).await.map_err(unreadable)?;
    let metadata = metadata.bytes().await.map_err(unreadable)?;
    let columns = results::metadata_columns(&metadata).map_err(ApiError::invalid)?;
    let file = ResultFile { output, store, path };
    Ok(Paged { id: id.to_string(), file, kind: record.kind, columns, update_count: None })
}

async fn results_page(door: &AthenaDoor, session: &ClientSession, request: &Value) -> Result<Value, ApiError> {
    let Paged { id, file, kind, columns, update_count } =
        paged(door, session, text(request, "QueryExecutionId")?).await?;
    let (from, size) = (position(request)?, page_size(request, MAX_RESULTS)?);
    let meta = file
        .store
        .head(&file.path)
        .await
        .map_err(|e| ApiError::invalid(format!("the result of {id} cannot be read: {e}")))?;
    if from > meta.size {
        return Err(ApiError::invalid("NextToken is not a token Glaux gave"));
    }
    let (mut read, mut rows, mut used) = (FIRST_READ, Vec::new(), 0);
    while from < meta.size && read <= MAX_READ {
        let end = (from + read).min(meta.size);
        let options = GetOptions { range: Some(GetRange::Bounded(from..end)), ..Default::default() };
        let unreadable = |e: object_store::Error| ApiError::invalid(format!("the result of {id} cannot be read: {e}"));
        let bytes = file.store.get_opts(&file.path, options).await.map_err(unreadable)?;
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
    // A write's one row is the rows it wrote (read back from its file for an earlier run's).
    let written = || data.get(1)?["Data"][0]["VarCharValue"].as_str()?.parse().ok();
    let update_count =
        if WRITES.contains(&kind.as_str()) { update_count.or_else(written).unwrap_or_default() } else { 0 };
    let mut answer = json!({
        "UpdateCount": update_count,
        "ResultSet": { "Rows": data, "ResultSetMetadata": { "ColumnInfo": columns } },
    });
    let next = from + used as u64;
    if next < meta.size {
        answer["NextToken"] = json!(next.to_string());
    }
    Ok(answer)
}
