//! Athena's workgroup actions: `CreateWorkGroup`, `GetWorkGroup`, `UpdateWorkGroup`,
//! `DeleteWorkGroup`, `ListWorkGroups`, and the tags of a workgroup (`TagResource`,
//! `UntagResource`, `ListTagsForResource`). Anyone may read workgroups; only an administrator
//! changes them.
//!
//! Athena's configuration carries the output location, its enforcement and the data scanned
//! cutoff. Glaux's further settings, which Athena's request shapes have no field for (and boto3
//! would refuse in `Configuration`), are tags: `glaux:max-concurrent-queries`,
//! `glaux:query-timeout-seconds` and `glaux:result-reuse-max-age-minutes`. Settings Glaux does not
//! act on (CloudWatch metrics, requester pays, an engine version) are refused when asked for.

use glaux_catalog::{PRIMARY_WORKGROUP, WorkGroup, WorkGroupSettings};
use serde_json::{Map, Value, json};

use super::actions::{optional, page_size, text};
use super::{ApiError, AthenaDoor};
use crate::client_session::ClientSession;
use crate::history::epoch_ms;
use crate::query::RetryPolicy;

const CONCURRENCY_TAG: &str = "glaux:max-concurrent-queries";
const TIMEOUT_TAG: &str = "glaux:query-timeout-seconds";
const REUSE_TAG: &str = "glaux:result-reuse-max-age-minutes";
const RETRY_TAG: &str = "glaux:retry-policy";
/// Athena's least `BytesScannedCutoffPerQuery` (10 MB).
const LEAST_CUTOFF: u64 = 10_000_000;
const MAX_LISTED: usize = 50;

pub(super) async fn dispatch(
    door: &AthenaDoor,
    session: &ClientSession,
    action: &str,
    request: &Value,
) -> Result<Value, ApiError> {
    let catalog = door.engine.lake_catalog();
    let changes =
        matches!(action, "CreateWorkGroup" | "UpdateWorkGroup" | "DeleteWorkGroup" | "TagResource" | "UntagResource");
    if changes && door.engine.history_of(session)?.is_some() {
        return Err(ApiError::invalid(format!("{action}: only an administrator changes workgroups")));
    }
    match action {
        "CreateWorkGroup" => {
            let name = text(request, "Name")?;
            check_name(name)?;
            let mut workgroup = WorkGroup {
                name: name.to_string(),
                description: optional(request, &["Description"])?.unwrap_or_default().to_string(),
                enabled: true,
                settings: WorkGroupSettings { enforce: true, ..Default::default() },
                tags: Vec::new(),
                created_ms: epoch_ms(std::time::SystemTime::now()),
            };
            if let Some(configuration) = request.get("Configuration") {
                configure(door, session, &mut workgroup.settings, configuration, false)?;
            }
            set_tags(&mut workgroup, request.get("Tags"))?;
            if !catalog.put_workgroup(&workgroup, false)? {
                return Err(ApiError::invalid(format!("WorkGroup {name} is already created")));
            }
            Ok(json!({}))
        }
        "GetWorkGroup" => {
            let workgroup = find(door, text(request, "WorkGroup")?)?;
            Ok(json!({ "WorkGroup": described(&workgroup) }))
        }
        "UpdateWorkGroup" => {
            let mut workgroup = find(door, text(request, "WorkGroup")?)?;
            if let Some(description) = optional(request, &["Description"])? {
                workgroup.description = description.to_string();
            }
            match optional(request, &["State"])? {
                None => {}
                Some("ENABLED") => workgroup.enabled = true,
                Some("DISABLED") => workgroup.enabled = false,
                Some(other) => {
                    return Err(ApiError::invalid(format!("State must be ENABLED or DISABLED, not {other}")));
                }
            }
            if let Some(updates) = request.get("ConfigurationUpdates") {
                configure(door, session, &mut workgroup.settings, updates, true)?;
            }
            catalog.put_workgroup(&workgroup, true)?;
            Ok(json!({}))
        }
        "DeleteWorkGroup" => {
            let name = text(request, "WorkGroup")?;
            if name == PRIMARY_WORKGROUP {
                return Err(ApiError::invalid("The primary workgroup cannot be deleted"));
            }
            if !catalog.delete_workgroup(name)? {
                return Err(not_found(name));
            }
            Ok(json!({}))
        }
        "ListWorkGroups" => {
            let size = page_size(request, MAX_LISTED)?;
            let after = optional(request, &["NextToken"])?.unwrap_or_default();
            let all = catalog.workgroups()?;
            let page: Vec<&WorkGroup> = all.iter().filter(|w| w.name.as_str() > after).take(size + 1).collect();
            let listed: Vec<Value> = page.iter().take(size).map(|w| summary(w)).collect();
            let mut answer = json!({ "WorkGroups": listed });
            if page.len() > size {
                answer["NextToken"] = json!(page[size - 1].name);
            }
            Ok(answer)
        }
        "TagResource" | "UntagResource" => {
            let mut workgroup = find(door, arn_name(request)?)?;
            if action == "TagResource" {
                set_tags(&mut workgroup, request.get("Tags"))?;
            } else {
                let keys = request
                    .get("TagKeys")
                    .and_then(Value::as_array)
                    .ok_or_else(|| ApiError::invalid("TagKeys is required"))?;
                for key in keys.iter().filter_map(Value::as_str) {
                    workgroup.tags.retain(|(k, _)| k != key);
                    apply_tag(&mut workgroup.settings, key, None)?;
                }
            }
            catalog.put_workgroup(&workgroup, true)?;
            Ok(json!({}))
        }
        "ListTagsForResource" => {
            let workgroup = find(door, arn_name(request)?)?;
            let tags: Vec<Value> = workgroup.tags.iter().map(|(k, v)| json!({ "Key": k, "Value": v })).collect();
            Ok(json!({ "Tags": tags }))
        }
        _ => Err(ApiError::invalid(format!("unknown workgroup action {action}"))),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::invalid(format!("WorkGroup {name} is not found."))
}

fn find(door: &AthenaDoor, name: &str) -> Result<WorkGroup, ApiError> {
    door.engine.lake_catalog().workgroup(name)?.ok_or_else(|| not_found(name))
}

/// Athena's rule for workgroup names.
fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(ApiError::invalid("Name must be 1 to 128 letters, digits, '.', '_' or '-'"));
    }
    Ok(())
}

/// The workgroup a resource ARN names (`arn:aws:athena:REGION:ACCOUNT:workgroup/NAME`).
fn arn_name(request: &Value) -> Result<&str, ApiError> {
    let arn = text(request, "ResourceARN")?;
    arn.rsplit_once(":workgroup/")
        .map(|(_, name)| name)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{arn} is not a workgroup's ARN")))
}

/// Applies Athena's `Configuration` (or, `update`, `ConfigurationUpdates`) to `settings`.
fn configure(
    door: &AthenaDoor,
    session: &ClientSession,
    settings: &mut WorkGroupSettings,
    configuration: &Value,
    update: bool,
) -> Result<(), ApiError> {
    let Some(fields) = configuration.as_object() else {
        return Err(ApiError::invalid("the workgroup's configuration must be an object"));
    };
    let results = if update { "ResultConfigurationUpdates" } else { "ResultConfiguration" };
    for (field, value) in fields {
        match field.as_str() {
            "EnforceWorkGroupConfiguration" => settings.enforce = flag(field, value)?,
            "BytesScannedCutoffPerQuery" => {
                let cutoff = value.as_u64().filter(|c| *c >= LEAST_CUTOFF).ok_or_else(|| {
                    ApiError::invalid(format!("BytesScannedCutoffPerQuery must be at least {LEAST_CUTOFF}"))
                })?;
                settings.bytes_scanned_cutoff = Some(cutoff);
            }
            "RemoveBytesScannedCutoffPerQuery" if update => {
                if flag(field, value)? {
                    settings.bytes_scanned_cutoff = None;
                }
            }
            "PublishCloudWatchMetricsEnabled" | "RequesterPaysEnabled" => {
                if flag(field, value)? {
                    return Err(ApiError::invalid(format!("Glaux does not support {field}")));
                }
            }
            "EngineVersion" => {
                if value.get("SelectedEngineVersion").and_then(Value::as_str).is_some_and(|v| v != "AUTO") {
                    return Err(ApiError::invalid("Glaux has one engine version: AUTO"));
                }
            }
            name if name == results => output(door, session, settings, value)?,
            other => return Err(ApiError::invalid(format!("Glaux does not support the workgroup setting {other}"))),
        }
    }
    Ok(())
}

fn flag(field: &str, value: &Value) -> Result<bool, ApiError> {
    value.as_bool().ok_or_else(|| ApiError::invalid(format!("{field} must be true or false")))
}

/// The output location part of a configuration (checked as every result location is).
fn output(
    door: &AthenaDoor,
    session: &ClientSession,
    settings: &mut WorkGroupSettings,
    value: &Value,
) -> Result<(), ApiError> {
    let empty = Map::new();
    for (field, value) in value.as_object().unwrap_or(&empty) {
        match field.as_str() {
            "OutputLocation" => {
                let location = value.as_str().ok_or_else(|| ApiError::invalid("OutputLocation must be a string"))?;
                door.engine.result_store(session, location)?;
                settings.output_location = Some(location.to_string());
            }
            "RemoveOutputLocation" => {
                if flag(field, value)? {
                    settings.output_location = None;
                }
            }
            other => {
                return Err(ApiError::invalid(format!("Glaux does not support the result configuration's {other}")));
            }
        }
    }
    Ok(())
}

/// Adds `tags` (Athena's `[{Key, Value}]`), applying Glaux's own.
fn set_tags(workgroup: &mut WorkGroup, tags: Option<&Value>) -> Result<(), ApiError> {
    let Some(tags) = tags else { return Ok(()) };
    let tags = tags.as_array().ok_or_else(|| ApiError::invalid("Tags must be a list of {Key, Value}"))?;
    for tag in tags {
        let (Some(key), Some(value)) =
            (tag.get("Key").and_then(Value::as_str), tag.get("Value").and_then(Value::as_str))
        else {
            return Err(ApiError::invalid("every tag needs a Key and a Value"));
        };
        apply_tag(&mut workgroup.settings, key, Some(value))?;
        workgroup.tags.retain(|(k, _)| k != key);
        workgroup.tags.push((key.to_string(), value.to_string()));
    }
    Ok(())
}

/// A tag's effect on the settings (`None`: the tag removed).
fn apply_tag(settings: &mut WorkGroupSettings, key: &str, value: Option<&str>) -> Result<(), ApiError> {
    fn number<T: std::str::FromStr + PartialOrd>(key: &str, value: &str, least: T, most: T) -> Result<T, ApiError> {
        value
            .parse::<T>()
            .ok()
            .filter(|n| *n >= least && *n <= most)
            .ok_or_else(|| ApiError::invalid(format!("tag {key} must be a whole number in range, not {value}")))
    }
    match key {
        CONCURRENCY_TAG => settings.max_concurrent = value.map(|v| number(key, v, 1, 10_000)).transpose()?,
        TIMEOUT_TAG => settings.timeout_seconds = value.map(|v| number(key, v, 1, 86_400 * 7)).transpose()?,
        REUSE_TAG => settings.reuse_max_age_minutes = value.map(|v| number(key, v, 1, 10_080)).transpose()?,
        RETRY_TAG => {
            let policy = |v: &str| {
                RetryPolicy::parse(v)
                    .map(|p| p.name().to_string())
                    .ok_or_else(|| ApiError::invalid(format!("tag {key} must be {}, not {v}", RetryPolicy::NAMES)))
            };
            settings.retry_policy = value.map(policy).transpose()?;
        }
        other if other.starts_with("glaux:") => {
            return Err(ApiError::invalid(format!(
                "unknown Glaux tag {other} (known: {CONCURRENCY_TAG}, {TIMEOUT_TAG}, {REUSE_TAG}, {RETRY_TAG})"
            )));
        }
        _ => {}
    }
    Ok(())
}

fn state(workgroup: &WorkGroup) -> &'static str {
    if workgroup.enabled { "ENABLED" } else { "DISABLED" }
}

const ENGINE: fn() -> Value = || json!({ "SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Glaux" });

fn summary(workgroup: &WorkGroup) -> Value {
    json!({
        "Name": workgroup.name,
        "State": state(workgroup),
        "Description": workgroup.description,
        "CreationTime": workgroup.created_ms as f64 / 1000.0,
        "EngineVersion": ENGINE(),
    })
}

/// A `WorkGroup` as `GetWorkGroup` describes it.
fn described(workgroup: &WorkGroup) -> Value {
    let settings = &workgroup.settings;
    let mut configuration = json!({
        "EnforceWorkGroupConfiguration": settings.enforce,
        "PublishCloudWatchMetricsEnabled": false,
        "RequesterPaysEnabled": false,
        "EngineVersion": ENGINE(),
    });
    if let Some(location) = &settings.output_location {
        configuration["ResultConfiguration"] = json!({ "OutputLocation": location });
    }
    if let Some(cutoff) = settings.bytes_scanned_cutoff {
        configuration["BytesScannedCutoffPerQuery"] = json!(cutoff);
    }
    json!({
        "Name": workgroup.name,
        "State": state(workgroup),
        "Configuration": configuration,
        "Description": workgroup.description,
        "CreationTime": workgroup.created_ms as f64 / 1000.0,
    })
}
