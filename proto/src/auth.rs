//! The cluster credential: every scheduler↔executor and executor↔executor call carries it.
//!
//! A client that reaches an executor directly, without the secret, can neither launch tasks nor read
//! task output. The secret travels as a bearer token inside gRPC metadata; deployments that cross
//! untrusted networks put TLS under it.

use std::fmt;
use std::sync::Arc;

use rand::Rng;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

const HEADER: &str = "x-glaux-cluster-token";

/// A shared secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Arc<str>);

impl ClusterSecret {
    /// A secret accepted only if it is long enough to resist guessing.
    pub fn try_new(secret: impl Into<String>) -> Result<Self, String> {
        let secret = secret.into();
        if secret.len() < 16 {
            return Err("the cluster secret must be at least 16 characters".to_string());
        }
        if !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the cluster secret must be printable ASCII without spaces".to_string());
        }
        Ok(Self(secret.into()))
    }

    /// 256 random bits, hex encoded: what `glaux standalone` uses when none is configured.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::rng().random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(hex.into())
    }

    /// The raw value, for handing to a child process. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), presented)
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Both halves of the handshake: as a client interceptor it attaches the secret, as a server
/// interceptor it rejects calls that do not carry it.
#[derive(Clone, Debug)]
pub struct ClusterAuth {
    secret: ClusterSecret,
    mode: Mode,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Attach,
    Verify,
    Mark,
}

/// Marks a request that came without the cluster credential, on a service that also serves
/// clients (an executor's Flight `DoGet`, for a result endpoint's ticket): the service must then
/// accept only what a client may do.
#[derive(Clone, Copy, Debug)]
pub struct Outsider;

impl ClusterAuth {
    pub fn attach(secret: ClusterSecret) -> Self {
        Self { secret, mode: Mode::Attach }
    }

    pub fn verify(secret: ClusterSecret) -> Self {
        Self { secret, mode: Mode::Verify }
    }

    /// Like [`ClusterAuth::verify`], except that a call without any credential passes, marked
    /// [`Outsider`]; a wrong credential is still refused.
    pub fn mark(secret: ClusterSecret) -> Self {
        Self { secret, mode: Mode::Mark }
    }
}

impl Interceptor for ClusterAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.mode {
            Mode::Attach => {
                let value = MetadataValue::try_from(self.secret.expose())
                    .map_err(|_| Status::internal("cluster secret is not valid metadata"))?;
                request.metadata_mut().insert(HEADER, value);
                Ok(request)
            }
            Mode::Verify | Mode::Mark => match request.metadata().get(HEADER) {
                Some(v) if self.secret.matches(v.as_bytes()) => Ok(request),
                Some(_) => Err(Status::unauthenticated("wrong cluster credential")),
                None if matches!(self.mode, Mode::Mark) => {
                    request.extensions_mut().insert(Outsider);
                    Ok(request)
                }
                None => Err(Status::unauthenticated(
                    "this endpoint serves only members of its Glaux cluster (no cluster credential)",
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_and_verified() {
        let secret = ClusterSecret::generate();
        assert!(!format!("{secret:?}").contains(secret.expose()));
        let mut attach = ClusterAuth::attach(secret.clone());
        let mut verify = ClusterAuth::verify(secret);
        let request = attach.call(Request::new(())).unwrap();
        assert!(verify.call(request).is_ok());
        assert!(verify.call(Request::new(())).is_err());
        let other = ClusterAuth::attach(ClusterSecret::generate()).call(Request::new(())).unwrap();
        assert!(verify.call(other).is_err());
        assert!(ClusterSecret::try_new("short").is_err());
    }

    #[test]
    fn marking_lets_outsiders_through_marked_but_never_a_wrong_credential() {
        let secret = ClusterSecret::generate();
        let mut mark = ClusterAuth::mark(secret.clone());
        let member = mark.call(ClusterAuth::attach(secret).call(Request::new(())).unwrap()).unwrap();
        assert!(member.extensions().get::<Outsider>().is_none());
        let outsider = mark.call(Request::new(())).unwrap();
        assert!(outsider.extensions().get::<Outsider>().is_some());
        let wrong = ClusterAuth::attach(ClusterSecret::generate()).call(Request::new(())).unwrap();
        assert!(mark.call(wrong).is_err());
    }
}
