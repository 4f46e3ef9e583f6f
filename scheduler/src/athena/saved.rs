//! Saved SQL through Athena's API: prepared statements (`CreatePreparedStatement`, `Get`, `List`,
//! `BatchGet`, `Update`, `Delete`) and named queries (`CreateNamedQuery`, `Get`, `List`,
//! `BatchGet`, `Update`, `Delete`).
//!
//! Prepared statements are the ones SQL's `PREPARE` makes (run through the engine, so the same
//! rules apply: a statement belongs to its author, admins may replace any); their names are one
//! namespace across workgroups (a name taken in one workgroup is refused in another). A user
//! sees their own prepared statements and named queries; an administrator sees all.

use futures::StreamExt;
use glaux_catalog::NamedQuery;
use serde_json::{Value, json};

use super::actions::{optional, page_size, text, workgroup};
use super::{ApiError, AthenaDoor};
use crate::client_session::ClientSession;
use crate::query::ProgressSlot;

const MAX_LISTED: usize = 50;

pub(super) async fn dispatch(
    door: &AthenaDoor,
    session: &ClientSession,
    action: &str,
    request: &Value,
) -> Result<Value, ApiError> {
    let session = &ClientSession { workgroup: workgroup(door, request)?.name, ..session.clone() };
    let catalog = door.engine.lake_catalog();
    let only = door.engine.history_of(session)?;
    let owned = |owner: &str| only.as_ref().is_none_or(|user| user == owner);
    match action {
        "CreatePreparedStatement" | "UpdatePreparedStatement" => {
            let name = statement_name(request)?;
            let existing = catalog.prepared_statement(name)?;
            match (&existing, action) {
                (Some(_), "CreatePreparedStatement") => {
                    return Err(ApiError::invalid(format!("Prepared statement {name} already exists")));
                }
                (Some(p), _) if p.workgroup != session.workgroup => {
                    return Err(ApiError::invalid(format!(
                        "Prepared statement {name} belongs to workgroup {}",
                        p.workgroup
                    )));
                }
                (None, "UpdatePreparedStatement") => return Err(prepared_not_found(name, &session.workgroup)),
                _ => {}
            }
            let statement = text(request, "QueryStatement")?;
            run_sql(door, session, &format!("PREPARE {name} FROM {statement}")).await?;
            if let Some(description) = optional(request, &["Description"])?
                && let Some(mut prepared) = catalog.prepared_statement(name)?
            {
                prepared.description = description.to_string();
                catalog.prepare_statement(name, &prepared)?;
            }
            Ok(json!({}))
        }
        "GetPreparedStatement" => {
            let name = statement_name(request)?;
            match catalog.prepared_statement(name)? {
                Some(p) if p.workgroup == session.workgroup && owned(&p.owner) => Ok(json!({
                    "PreparedStatement": {
                        "StatementName": name,
                        "QueryStatement": p.statement,
                        "WorkGroupName": p.workgroup,
                        "Description": p.description,
                        "LastModifiedTime": p.updated_ms as f64 / 1000.0,
                    }
                })),
                _ => Err(prepared_not_found(name, &session.workgroup)),
            }
        }
        "BatchGetPreparedStatement" => {
            let names = list_of(request, "PreparedStatementNames")?;
            let (mut found, mut missing) = (Vec::new(), Vec::new());
            for name in names {
                match catalog.prepared_statement(name)? {
                    Some(p) if p.workgroup == session.workgroup && owned(&p.owner) => found.push(json!({
                        "StatementName": name, "QueryStatement": p.statement, "WorkGroupName": p.workgroup,
                        "Description": p.description, "LastModifiedTime": p.updated_ms as f64 / 1000.0,
                    })),
                    _ => missing.push(
                        json!({ "StatementName": name, "ErrorCode": "INVALID_INPUT", "ErrorMessage": "not found" }),
                    ),
                }
            }
            Ok(json!({ "PreparedStatements": found, "UnprocessedPreparedStatementNames": missing }))
        }
        "ListPreparedStatements" => {
            let listed: Vec<(String, Value)> = catalog
                .prepared_statements()?
                .into_iter()
                .filter(|(_, p)| p.workgroup == session.workgroup && owned(&p.owner))
                .map(|(name, p)| {
                    let summary = json!({ "StatementName": name, "LastModifiedTime": p.updated_ms as f64 / 1000.0 });
                    (name, summary)
                })
                .collect();
            page(request, listed, "PreparedStatements")
        }
        "DeletePreparedStatement" => {
            let name = statement_name(request)?;
            match catalog.prepared_statement(name)? {
                Some(p) if p.workgroup == session.workgroup => {
                    run_sql(door, session, &format!("DEALLOCATE PREPARE {name}")).await?
                }
                _ => return Err(prepared_not_found(name, &session.workgroup)),
            }
            Ok(json!({}))
        }
        "CreateNamedQuery" => {
            let query = NamedQuery {
                id: glaux_proto::QueryId::random().to_string(),
                name: text(request, "Name")?.to_string(),
                description: optional(request, &["Description"])?.unwrap_or_default().to_string(),
                database: text(request, "Database")?.to_string(),
                query: text(request, "QueryString")?.to_string(),
                workgroup: session.workgroup.clone(),
                owner: session.user.clone().unwrap_or_default(),
            };
            if query.query.len() > 262_144 {
                return Err(ApiError::invalid("QueryString is longer than 262144 bytes"));
            }
            catalog.put_named_query(&query)?;
            Ok(json!({ "NamedQueryId": query.id }))
        }
        "GetNamedQuery" => {
            let id = text(request, "NamedQueryId")?;
            let query = catalog.named_query(id)?.filter(|q| owned(&q.owner)).ok_or_else(|| named_not_found(id))?;
            Ok(json!({ "NamedQuery": described(&query) }))
        }
        "BatchGetNamedQuery" => {
            let (mut found, mut missing) = (Vec::new(), Vec::new());
            for id in list_of(request, "NamedQueryIds")? {
                match catalog.named_query(id)?.filter(|q| owned(&q.owner)) {
                    Some(query) => found.push(described(&query)),
                    None => missing
                        .push(json!({ "NamedQueryId": id, "ErrorCode": "INVALID_INPUT", "ErrorMessage": "not found" })),
                }
            }
            Ok(json!({ "NamedQueries": found, "UnprocessedNamedQueryIds": missing }))
        }
        "ListNamedQueries" => {
            let listed: Vec<(String, Value)> = catalog
                .named_queries()?
                .into_iter()
                .filter(|q| q.workgroup == session.workgroup && owned(&q.owner))
                .map(|q| (q.id.clone(), json!(q.id)))
                .collect();
            page(request, listed, "NamedQueryIds")
        }
        "UpdateNamedQuery" => {
            let id = text(request, "NamedQueryId")?;
            let mut query = catalog.named_query(id)?.filter(|q| owned(&q.owner)).ok_or_else(|| named_not_found(id))?;
            query.name = text(request, "Name")?.to_string();
            query.query = text(request, "QueryString")?.to_string();
            if let Some(description) = optional(request, &["Description"])? {
                query.description = description.to_string();
            }
            catalog.put_named_query(&query)?;
            Ok(json!({}))
        }
        "DeleteNamedQuery" => {
            let id = text(request, "NamedQueryId")?;
            if catalog.named_query(id)?.filter(|q| owned(&q.owner)).is_none() || !catalog.delete_named_query(id)? {
                return Err(named_not_found(id));
            }
            Ok(json!({}))
        }
        _ => Err(ApiError::invalid(format!("unknown action {action}"))),
    }
}

/// Runs `sql` through the engine as `session`'s user, to its end.
async fn run_sql(door: &AthenaDoor, session: &ClientSession, sql: &str) -> Result<(), ApiError> {
    let mut result = door.engine.execute(sql, session, &ProgressSlot::default()).await?;
    while let Some(batch) = result.batches.next().await {
        batch.map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    Ok(())
}

/// A prepared statement's name: a letter or `_`, then letters, digits and `_`.
fn statement_name(request: &Value) -> Result<&str, ApiError> {
    let name = text(request, "StatementName")?;
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256;
    if !valid {
        return Err(ApiError::invalid("StatementName must be a letter or '_', then letters, digits or '_'"));
    }
    Ok(name)
}

fn list_of<'a>(request: &'a Value, field: &str) -> Result<Vec<&'a str>, ApiError> {
    let values = request.get(field).and_then(Value::as_array).filter(|v| !v.is_empty() && v.len() <= MAX_LISTED);
    let values = values.ok_or_else(|| ApiError::invalid(format!("{field} must list 1 to {MAX_LISTED} names")))?;
    Ok(values.iter().filter_map(Value::as_str).collect())
}

/// One page of `(key, item)`s sorted by key; `NextToken` is the last key listed.
fn page(request: &Value, items: Vec<(String, Value)>, field: &str) -> Result<Value, ApiError> {
    let size = page_size(request, MAX_LISTED)?;
    let after = optional(request, &["NextToken"])?.unwrap_or_default();
    let mut items: Vec<(String, Value)> = items.into_iter().filter(|(key, _)| key.as_str() > after).collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let more = items.len() > size;
    items.truncate(size);
    let mut answer = json!({ field: items.iter().map(|(_, v)| v).collect::<Vec<_>>() });
    if more && let Some((last, _)) = items.last() {
        answer["NextToken"] = json!(last);
    }
    Ok(answer)
}

fn described(query: &NamedQuery) -> Value {
    json!({
        "Name": query.name,
        "Description": query.description,
        "Database": query.database,
        "QueryString": query.query,
        "NamedQueryId": query.id,
        "WorkGroup": query.workgroup,
    })
}

fn prepared_not_found(name: &str, workgroup: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::BAD_REQUEST,
        "ResourceNotFoundException",
        format!("Prepared statement {name} was not found in workgroup {workgroup}"),
    )
}

fn named_not_found(id: &str) -> ApiError {
    ApiError::invalid(format!("NamedQuery {id} was not found"))
}
