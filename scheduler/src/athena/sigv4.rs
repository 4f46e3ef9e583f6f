//! AWS Signature Version 4 checked as AWS checks it: the request's `Authorization` header names
//! an access key, a scope (date, region, `athena`) and the headers it signed; the signature those
//! headers, the body and the key's secret give (computed by `aws-sigv4`) must be the one sent,
//! and `X-Amz-Date` within 15 minutes of the server's clock.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, StatusCode};

use super::ApiError;

/// How far a request's time may be from the server's.
const SKEW: Duration = Duration::from_secs(15 * 60);

/// What an `Authorization: AWS4-HMAC-SHA256 ...` header says.
pub(super) struct Authorization<'a> {
    pub key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "IncompleteSignatureException", message)
}

fn mismatch() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method.",
    )
}

/// Reads the `Authorization` header.
pub(super) fn authorization(headers: &HeaderMap) -> Result<Authorization<'_>, ApiError> {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ApiError::new(StatusCode::FORBIDDEN, "MissingAuthenticationTokenException", "Missing Authentication Token")
    })?;
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| incomplete("Authorization header requires AWS4-HMAC-SHA256 (Signature Version 4)"))?;
    let part = |name: &str| rest.split(',').map(str::trim).find_map(|p| p.strip_prefix(name));
    let credential = part("Credential=").ok_or_else(|| incomplete("Authorization header requires 'Credential'"))?;
    let signed = part("SignedHeaders=").ok_or_else(|| incomplete("Authorization header requires 'SignedHeaders'"))?;
    let signature = part("Signature=").ok_or_else(|| incomplete("Authorization header requires 'Signature'"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(incomplete("Credential must be <key>/<date>/<region>/<service>/aws4_request"));
    };
    Ok(Authorization { key, date, region, service, signed_headers: signed.split(';').collect(), signature })
}

/// Checks that `auth` signs this request (`method` on `path_and_query`, as sent) with `secret`.
pub(super) fn verify(
    auth: &Authorization<'_>,
    secret: &str,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    if auth.service != "athena" {
        return Err(incomplete("Credential should be scoped to correct service: 'athena'."));
    }
    let date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    })?;
    let time = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| incomplete("X-Amz-Date must be <yyyyMMdd>T<HHmmss>Z"))?
        .and_utc();
    if !date.starts_with(auth.date) {
        return Err(mismatch());
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(time.timestamp()).unwrap_or_default());
    let now = SystemTime::now();
    if now.duration_since(at).is_ok_and(|d| d > SKEW) || at.duration_since(now).is_ok_and(|d| d > SKEW) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidSignatureException",
            format!("Signature expired or not yet current: {date} is more than 15 minutes from the server's time"),
        ));
    }
    // The headers signed, as sent; the signer adds host and x-amz-date itself.
    let mut signed = Vec::new();
    for name in &auth.signed_headers {
        let value = headers.get(*name).and_then(|v| v.to_str().ok()).ok_or_else(mismatch)?;
        if *name != "x-amz-date" {
            signed.push((*name, value));
        }
    }
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) {
        return Err(mismatch());
    }
    let identity: Identity = Credentials::new(auth.key, secret, None, None, "glaux").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|_| mismatch())?
        .into();
    let uri = format!("http://{host}{path_and_query}");
    let request =
        SignableRequest::new(method, uri, signed.into_iter(), SignableBody::Bytes(body)).map_err(|_| mismatch())?;
    let expected = sign(request, &params).map_err(|_| mismatch())?;
    if !glaux_proto::constant_time_eq(expected.signature().as_bytes(), auth.signature.as_bytes()) {
        return Err(mismatch());
    }
    Ok(())
}
