//! Mutual TLS between cluster members (`--cluster-tls-cert/--cluster-tls-key/--cluster-tls-ca`):
//! every call between the scheduler and executors and between executors is encrypted, and both
//! ends prove a certificate from the cluster's CA, so a process without one can neither join nor
//! call. The cluster secret still travels inside (defence in depth; per-task tokens are the next
//! layer).

use std::fmt;
use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A member's certificate and key, and the CA every member's certificate must come from (PEM).
/// `Debug` never shows the key.
#[derive(Clone)]
pub struct ClusterTls {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("ca_pem", &format!("{} bytes", self.ca_pem.len()))
            .field("cert_pem", &format!("{} bytes", self.cert_pem.len()))
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// From PEM text; each part must hold what it names.
    pub fn from_pem(ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, String> {
        let holds = |pem: &[u8], label: &str| String::from_utf8_lossy(pem).contains(&format!("-----BEGIN {label}"));
        if !holds(&ca_pem, "CERTIFICATE") {
            return Err("the cluster CA file holds no PEM certificate".into());
        }
        if !holds(&cert_pem, "CERTIFICATE") {
            return Err("the cluster certificate file holds no PEM certificate".into());
        }
        let key = String::from_utf8_lossy(&key_pem);
        if !(key.contains("-----BEGIN") && key.contains("PRIVATE KEY")) {
            return Err("the cluster key file holds no PEM private key".into());
        }
        use_ring_for_tls();
        Ok(Self { ca_pem, cert_pem, key_pem })
    }

    /// Reads the three files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, String> {
        let read = |path: &Path| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        Self::from_pem(read(ca)?, read(cert)?, read(key)?)
    }

    /// What a member serves with: its identity, and client certificates required from the CA.
    /// A handshake has the connect timeout members call with: one never finished is dropped.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .timeout(crate::channels::CONNECT_TIMEOUT)
    }

    /// What a member calls with: the CA it trusts (only it), and its own identity.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

/// Makes ring rustls' process-wide crypto provider. Both ring and aws-lc-rs are compiled in (the
/// latter by the HTTP client under `deltalake-core`), and rustls then refuses to guess for the
/// configurations that do not name their provider (tonic's). Call before any TLS; idempotent.
pub fn use_ring_for_tls() {
    // An error means a provider is installed already: ring, by an earlier call.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
