//! The console's JSON API (`/ui/api/...`); see `mod.rs` for how requests are authorized.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{Console, Refused, Session, json_reply, refusal};
use crate::audit::Door;
use crate::client_session::ClientSession;
use crate::http::Peer;
use crate::query::{StageProgress, by_stage, progress_json};
use glaux_catalog::history::QueryFilter;

/// Statements longer than this are refused (the editor is for people typing).
const MAX_SQL_BYTES: usize = 1 << 20;
/// History rows a page shows.
const HISTORY_ROWS: usize = 200;

type Shared = State<Arc<Console>>;

fn session_of(session: &Session, peer: Option<Peer>) -> ClientSession {
    ClientSession::default().for_user(session.user.clone()).sent_by(Door::Console, peer.map(|p| p.0.ip()))
}

fn body_json(body: &[u8]) -> Result<Value, Refused> {
    serde_json::from_slice(body).map_err(|e| refusal(StatusCode::BAD_REQUEST, &format!("not JSON: {e}")))
}

fn text<'a>(request: &'a Value, field: &str) -> &'a str {
    request.get(field).and_then(Value::as_str).unwrap_or_default()
}

pub(super) async fn login(
    State(console): Shared,
    peer: Option<axum::Extension<Peer>>,
    body: Bytes,
) -> Result<Response, Refused> {
    let request = body_json(&body)?;
    let (user, password) = (text(&request, "user"), text(&request, "password"));
    let user = match &console.users {
        // Without users the scheduler serves loopback only, and everyone is its administrator.
        None => None,
        Some(users) => {
            let address = peer.map(|p| p.0.0.ip());
            if users.verify(user, password, address).await.is_err() {
                console.engine.metrics().failed_login("console");
                return Err(refusal(StatusCode::UNAUTHORIZED, "wrong user name or password"));
            }
            Some(user.to_string())
        }
    };
    let Some((id, session)) = console.open(user) else {
        return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, "too many sessions; try again later"));
    };
    let body = json!({ "user": session.user, "csrf": session.csrf }).to_string();
    let headers = [
        ("set-cookie", console.set_cookie(&id)),
        ("content-type", "application/json".into()),
        ("cache-control", "no-store".into()),
    ];
    Ok((StatusCode::OK, headers, body).into_response())
}

pub(super) async fn logout(State(console): Shared, headers: HeaderMap) -> Result<Response, Refused> {
    console.authorized(&headers)?;
    console.close(&headers);
    let cookie = format!("{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0", super::COOKIE);
    Ok((StatusCode::OK, [("set-cookie", cookie)], "{}").into_response())
}

/// The session the cookie names (a page reloaded learns its CSRF token here: other sites cannot
/// read the answer).
pub(super) async fn session(State(console): Shared, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Some(session) => json_reply(StatusCode::OK, &json!({ "user": session.user, "csrf": session.csrf })),
        None => refusal(StatusCode::UNAUTHORIZED, "log in first").into_response(),
    }
}

pub(super) async fn start(
    State(console): Shared,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let session = console.authorized(&headers)?;
    let request = body_json(&body)?;
    let sql = text(&request, "sql").trim();
    if sql.is_empty() || sql.len() > MAX_SQL_BYTES {
        return Err(refusal(StatusCode::BAD_REQUEST, "a statement of 1 to 1048576 bytes is required"));
    }
    let client = session_of(&session, peer.map(|p| p.0));
    let id = console.runs.start(Arc::clone(&console.engine), client, sql.to_string());
    Ok(json_reply(StatusCode::OK, &json!({ "id": id })))
}

/// The run `id` of the request's user (another user's is as unknown as none).
fn run_of(console: &Console, headers: &HeaderMap, id: &str) -> Result<Arc<super::runs::Run>, Refused> {
    let session = console.authorized(headers)?;
    console.runs.get(id, &session.user).ok_or_else(|| refusal(StatusCode::NOT_FOUND, "no such statement"))
}

pub(super) async fn statement(
    State(console): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let run = run_of(&console, &headers, &id)?;
    Ok(json_reply(StatusCode::OK, &run.describe().await))
}

pub(super) async fn cancel(
    State(console): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let run = run_of(&console, &headers, &id)?;
    run.cancel();
    Ok(json_reply(StatusCode::OK, &json!({})))
}

/// The query history as the user may see it (their own statements; an administrator's, all),
/// newest first, filtered by `state`, `user`, `workgroup`, `door` and `id`. Reading it is no statement
/// of its own.
pub(super) async fn history(
    State(console): Shared,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let session = console.authorized(&headers)?;
    let client = session_of(&session, peer.map(|p| p.0));
    let mut filter = QueryFilter { limit: HISTORY_ROWS, ..QueryFilter::default() };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = (!value.is_empty()).then(|| value.to_string());
        match key.as_ref() {
            "state" => filter.state = value,
            "user" => filter.user = value,
            "workgroup" => filter.workgroup = value,
            "door" => filter.door = value,
            "id" => filter.id = value,
            _ => {}
        }
    }
    let records = console
        .engine
        .visible_history(&client, filter)
        .await
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, &e.to_string()))?;
    let columns = [
        "query_id",
        "user",
        "door",
        "workgroup",
        "state",
        "statement_type",
        "submitted",
        "execution_ms",
        "rows",
        "data_scanned",
        "error",
        "query",
    ];
    let rows: Vec<Value> = records
        .iter()
        .map(|r| {
            let submitted = chrono::DateTime::from_timestamp_millis(r.submitted_ms)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
            json!([
                r.id,
                r.user,
                r.door,
                r.workgroup,
                r.state,
                r.kind,
                submitted,
                r.execution_ms.to_string(),
                r.rows.to_string(),
                glaux_proto::format_bytes(r.bytes_scanned),
                r.reason,
                r.sql
            ])
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &json!({ "columns": columns, "rows": rows })))
}

/// A statement's page, whatever door it came through, if the user may see its history record:
/// state, SQL, time, rows, data scanned, and its stages (live while it runs on the cluster, as its
/// executors report them; afterwards as its tasks reported when it ended, kept with its record).
pub(super) async fn query(
    State(console): Shared,
    Path(id): Path<String>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let session = console.authorized(&headers)?;
    let client = session_of(&session, peer.map(|p| p.0));
    let (record, probe) = console
        .engine
        .visible_query(&client, &id)
        .await
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, &e.to_string()))?
        .ok_or_else(|| refusal(StatusCode::NOT_FOUND, "no such query (or not yours to see)"))?;
    let mut scanned = record.bytes_scanned;
    let (plan, stage_progress, progress, ended) = match probe {
        Some(probe) => {
            let now = by_stage(&probe.tasks().await);
            scanned = now.iter().map(|s| s.bytes_scanned).sum();
            let plan = crate::planner::render_distributed_plan(probe.plan(), false);
            let stages: Vec<Value> = now.iter().map(StageProgress::to_json).collect();
            (json!(plan), json!(stages), progress_json(probe.planned(), &now), json!(false))
        }
        None => {
            let ran: Value = record.stages.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
            (ran["plan"].clone(), ran["stage_progress"].clone(), Value::Null, ran["stages_ended"].clone())
        }
    };
    let elapsed_ms = match record.started_ms {
        Some(started) if !record.finished() => crate::history::epoch_ms(std::time::SystemTime::now()) - started,
        _ => i64::try_from(record.execution_ms).unwrap_or(i64::MAX),
    };
    Ok(json_reply(
        StatusCode::OK,
        &json!({
            "id": record.id, "sql": record.sql, "state": record.state, "error": record.reason, "user": record.user,
            "door": record.door, "workgroup": record.workgroup, "rows_returned": record.rows, "truncated": false,
            "data_scanned_bytes": scanned, "data_scanned": glaux_proto::format_bytes(scanned),
            "elapsed_ms": elapsed_ms, "tasks_rerun": record.tasks_rerun, "stages": plan,
            "stage_progress": stage_progress, "stages_ended": ended, "progress": progress,
        }),
    ))
}

/// The executors: address, slots, whether they drain, tasks running (from their heartbeats).
pub(super) async fn executors(State(console): Shared, headers: HeaderMap) -> Result<Response, Refused> {
    console.authorized(&headers)?;
    let executors: Vec<Value> = console
        .cluster
        .members()
        .into_iter()
        .map(|m| {
            json!({ "id": m.info.id.to_string(), "address": m.info.addr.to_string(), "slots": m.info.task_slots,
                    "running_tasks": m.running_tasks, "memory_limit_bytes": m.memory_limit,
                    "memory_limit": glaux_proto::format_bytes(m.memory_limit), "memory_used_bytes": m.memory_used,
                    "memory_used": glaux_proto::format_bytes(m.memory_used), "draining": m.draining,
                    "last_heartbeat_ms": m.last_seen_ms })
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &json!({ "executors": executors })))
}

pub(super) async fn databases(
    State(console): Shared,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let session = console.authorized(&headers)?;
    let client = session_of(&session, peer.map(|p| p.0));
    let databases =
        console.engine.visible_databases(&client).map_err(|e| refusal(StatusCode::BAD_REQUEST, &e.to_string()))?;
    Ok(json_reply(StatusCode::OK, &json!({ "databases": databases })))
}

pub(super) async fn tables(
    State(console): Shared,
    Path(database): Path<String>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let session = console.authorized(&headers)?;
    let client = session_of(&session, peer.map(|p| p.0));
    let tables = console
        .engine
        .visible_tables(&client, &database)
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, &e.to_string()))?;
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    Ok(json_reply(StatusCode::OK, &json!({ "tables": names })))
}

/// A table's columns (as its reader may see them) and partitions.
pub(super) async fn table(
    State(console): Shared,
    Path((database, table)): Path<(String, String)>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let session = console.authorized(&headers)?;
    let client = session_of(&session, peer.map(|p| p.0));
    let detail = console
        .engine
        .table_detail(&client, &database, &table)
        .await
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, &e.to_string()))?
        .ok_or_else(|| refusal(StatusCode::NOT_FOUND, "no such table (or not yours to read)"))?;
    let columns: Vec<Value> = detail.columns.iter().map(|(name, kind)| json!([name, kind])).collect();
    let partitions: Vec<Value> = detail.partitions.iter().map(|p| json!([p])).collect();
    Ok(json_reply(
        StatusCode::OK,
        &json!({
            "columns": { "columns": ["column", "type"], "rows": columns },
            "partitions": { "columns": ["partition"], "rows": partitions },
            "partitions_total": detail.partitions_total,
        }),
    ))
}
