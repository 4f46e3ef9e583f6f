//! Athena's REST-JSON protocol: each operation a method and a path (`POST /query-executions`,
//! `GET /query-executions/{QueryExecutionId}/results?MaxResults=...`), its identifiers in the path,
//! its paging and options in the query string, the rest in a JSON body. botocore models Athena so
//! from 1.44.18 (December 2026); earlier clients send AWS JSON 1.1 (`POST /` with
//! `X-Amz-Target`). Both arrive at the same operations: this module turns a REST request into the
//! operation's name and the JSON 1.1 request it stands for.

use serde_json::{Map, Value};

use super::ApiError;

/// (method, path, operation) of every operation the door knows, paths as botocore's model writes
/// them: `{Name}` is a path segment holding the member `Name`.
pub(super) const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/batch-get-named-queries", "BatchGetNamedQuery"),
    ("POST", "/batch-get-query-executions", "BatchGetQueryExecution"),
    ("GET", "/data-catalogs", "ListDataCatalogs"),
    ("GET", "/data-catalogs/{CatalogName}/databases", "ListDatabases"),
    ("GET", "/data-catalogs/{CatalogName}/databases/{DatabaseName}", "GetDatabase"),
    ("GET", "/data-catalogs/{CatalogName}/databases/{DatabaseName}/tables", "ListTableMetadata"),
    ("GET", "/data-catalogs/{CatalogName}/databases/{DatabaseName}/tables/{TableName}", "GetTableMetadata"),
    ("GET", "/data-catalogs/{Name}", "GetDataCatalog"),
    ("GET", "/engine-versions", "ListEngineVersions"),
    ("POST", "/named-queries", "CreateNamedQuery"),
    ("GET", "/named-queries", "ListNamedQueries"),
    ("DELETE", "/named-queries/{NamedQueryId}", "DeleteNamedQuery"),
    ("GET", "/named-queries/{NamedQueryId}", "GetNamedQuery"),
    ("PATCH", "/named-queries/{NamedQueryId}", "UpdateNamedQuery"),
    ("GET", "/query-executions", "ListQueryExecutions"),
    ("POST", "/query-executions", "StartQueryExecution"),
    ("GET", "/query-executions/{QueryExecutionId}", "GetQueryExecution"),
    ("GET", "/query-executions/{QueryExecutionId}/results", "GetQueryResults"),
    ("GET", "/query-executions/{QueryExecutionId}/runtime-statistics", "GetQueryRuntimeStatistics"),
    ("POST", "/query-executions/{QueryExecutionId}/stop", "StopQueryExecution"),
    ("DELETE", "/tags/{ResourceARN}", "UntagResource"),
    ("GET", "/tags/{ResourceARN}", "ListTagsForResource"),
    ("POST", "/tags/{ResourceARN}", "TagResource"),
    ("GET", "/workgroups", "ListWorkGroups"),
    ("POST", "/workgroups", "CreateWorkGroup"),
    ("DELETE", "/workgroups/{WorkGroup}", "DeleteWorkGroup"),
    ("GET", "/workgroups/{WorkGroup}", "GetWorkGroup"),
    ("PATCH", "/workgroups/{WorkGroup}", "UpdateWorkGroup"),
    ("POST", "/workgroups/{WorkGroup}/batch-get-prepared-statements", "BatchGetPreparedStatement"),
    ("POST", "/workgroups/{WorkGroup}/prepared-statements", "CreatePreparedStatement"),
    ("GET", "/workgroups/{WorkGroup}/prepared-statements", "ListPreparedStatements"),
    ("PATCH", "/workgroups/{WorkGroup}/prepared-statements/{StatementName}", "UpdatePreparedStatement"),
    ("GET", "/workgroups/{WorkGroup}/prepared-statements/{StatementName}", "GetPreparedStatement"),
    ("DELETE", "/workgroups/{WorkGroup}/prepared-statements/{StatementName}", "DeletePreparedStatement"),
];

/// A route's path as the HTTP router holds it: each `{Member}` segment named by its position
/// (`/data-catalogs/{2}`), since the router refuses two names for one segment
/// (`/data-catalogs/{Name}` and `/data-catalogs/{CatalogName}/databases`).
pub(super) fn routed(pattern: &str) -> String {
    let segments = pattern
        .split('/')
        .enumerate()
        .map(|(i, segment)| if segment.starts_with('{') { format!("{{{i}}}") } else { segment.to_string() });
    segments.collect::<Vec<_>>().join("/")
}

/// Whether `path` (as sent) is on the route `pattern`: the same literal segments, and a non-empty
/// segment for each member.
fn on_route(pattern: &str, path: &str) -> bool {
    let (expected, sent) = (pattern.split('/'), path.split('/'));
    expected.clone().count() == sent.clone().count()
        && expected.zip(sent).all(|(e, s)| if e.starts_with('{') { !s.is_empty() } else { e == s })
}

/// The operation `method` on `path` (still percent-encoded as sent) names, and its request: the
/// JSON body's members, the path's and the query string's.
pub(super) fn request(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<(&'static str, Value), ApiError> {
    let Some(&(_, pattern, action)) = ROUTES.iter().find(|(m, p, _)| *m == method && on_route(p, path)) else {
        return Err(ApiError::new(
            http::StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("unknown operation {method} {path}"),
        ));
    };
    let mut request = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(members)) => members,
            Ok(_) => return Err(serialization("the request is not an object")),
            Err(e) => return Err(serialization(&e.to_string())),
        }
    };
    for (segment, name) in path.split('/').zip(pattern.split('/')) {
        if let Some(name) = name.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            request.insert(name.to_string(), Value::String(percent_decoded(segment)?));
        }
    }
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = match name.as_ref() {
            "MaxResults" => {
                Value::from(value.parse::<i64>().map_err(|_| serialization("MaxResults must be an integer"))?)
            }
            "RecursiveDeleteOption" | "DeleteCatalogOnly" => {
                Value::Bool(value.parse::<bool>().map_err(|_| serialization(&format!("{name} must be true or false")))?)
            }
            "TagKeys" | "AttributesToGet" => {
                let list = request.entry(name.to_string()).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    items.push(Value::String(value.into_owned()));
                }
                continue;
            }
            _ => Value::String(value.into_owned()),
        };
        request.insert(name.into_owned(), value);
    }
    Ok((action, Value::Object(request)))
}

fn serialization(message: &str) -> ApiError {
    ApiError::new(http::StatusCode::BAD_REQUEST, "SerializationException", message)
}

/// A path segment's text: `%XX` escapes decoded, which must give UTF-8.
fn percent_decoded(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| serialization("a path segment is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_ok(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> (&'static str, Value) {
        request(method, path, query, body).unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[test]
    fn a_rest_request_becomes_its_operation_and_members() {
        let (action, request) =
            request_ok("GET", "/query-executions/ab%2Fc/results", Some("MaxResults=5&NextToken=x%3Dy"), b"");
        assert_eq!(action, "GetQueryResults");
        assert_eq!(request, serde_json::json!({"QueryExecutionId": "ab/c", "MaxResults": 5, "NextToken": "x=y"}));

        let (action, request) = request_ok("DELETE", "/tags/arn%3Aaws", Some("TagKeys=a&TagKeys=b"), b"");
        assert_eq!(action, "UntagResource");
        assert_eq!(request, serde_json::json!({"ResourceARN": "arn:aws", "TagKeys": ["a", "b"]}));

        let (action, request) = request_ok("POST", "/query-executions", None, br#"{"QueryString":"SELECT 1"}"#);
        assert_eq!(action, "StartQueryExecution");
        assert_eq!(request, serde_json::json!({"QueryString": "SELECT 1"}));

        let (action, request) = request_ok("GET", "/data-catalogs/AwsDataCatalog/databases/db", None, b"");
        assert_eq!(action, "GetDatabase");
        assert_eq!(request, serde_json::json!({"CatalogName": "AwsDataCatalog", "DatabaseName": "db"}));
        assert_eq!(request_ok("GET", "/data-catalogs/AwsDataCatalog", None, b"").0, "GetDataCatalog");
    }

    #[test]
    fn bad_rest_requests_are_refused() {
        let kind = |method, path, query, body: &[u8]| request(method, path, query, body).err().map(|e| e.kind);
        assert_eq!(kind("PUT", "/workgroups", None, b""), Some("UnknownOperationException"));
        assert_eq!(kind("GET", "/workgroups//prepared-statements", None, b""), Some("UnknownOperationException"));
        assert_eq!(kind("POST", "/workgroups", None, b"[1]"), Some("SerializationException"));
        assert_eq!(kind("POST", "/workgroups", None, b"{"), Some("SerializationException"));
        assert_eq!(kind("GET", "/workgroups", Some("MaxResults=many"), b""), Some("SerializationException"));
        assert_eq!(kind("GET", "/workgroups/%FF", None, b""), Some("SerializationException"));
    }
}
