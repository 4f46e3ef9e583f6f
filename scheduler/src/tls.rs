//! TLS for the client doors: one certificate chain and private key (PEM), served by Flight SQL
//! (tonic's rustls) and by the PostgreSQL port (pgwire's tokio-rustls acceptor). Both are
//! rustls with the ring provider.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::error::SchedulerError;

/// A server identity: its certificate chain and private key, as PEM. `Debug` never shows the key.
#[derive(Clone)]
pub struct TlsIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_pem", &format!("{} bytes", self.cert_pem.len()))
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Reads and checks a certificate chain and its key (`--tls-cert`, `--tls-key`).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, SchedulerError> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| SchedulerError::Config(format!("cannot read the TLS {what} {}: {e}", path.display())))
        };
        Self::from_pem(read(cert, "certificate")?, read(key, "key")?)
    }

    /// A checked identity from PEM text: at least one certificate, a private key rustls accepts.
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, SchedulerError> {
        glaux_proto::use_ring_for_tls();
        let identity = Self { cert_pem, key_pem };
        identity.rustls_config()?;
        Ok(identity)
    }

    /// Flight SQL's TLS (tonic).
    /// A client's handshake may take 10 s; one never finished is dropped.
    pub(crate) fn tonic(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(std::time::Duration::from_secs(10))
    }

    /// The PostgreSQL port's TLS acceptor.
    pub(crate) fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, SchedulerError> {
        let mut config = self.rustls_config()?;
        // PostgreSQL 17 clients may start TLS at once (sslnegotiation=direct), naming this protocol.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// The acceptor of the HTTP door (Athena's API): HTTP/1.1 only.
    pub(crate) fn http_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, SchedulerError> {
        let mut config = self.rustls_config()?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    fn rustls_config(&self) -> Result<rustls::ServerConfig, SchedulerError> {
        let invalid = |message: String| SchedulerError::Config(format!("TLS: {message}"));
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("the certificate file is not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(invalid("the certificate file holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| invalid(format!("the key file holds no private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| invalid(format!("the key does not fit the certificate: {e}")))
    }
}
