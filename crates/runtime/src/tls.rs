//! Mutual TLS between the services, and who is calling.
//!
//! Every gRPC hop runs over TLS 1.2+/1.3 (rustls on aws-lc-rs) when a service is given
//! `TLS_CA_FILE`, `TLS_CERT_FILE` and `TLS_KEY_FILE`. Servers present their certificate and
//! verify client certificates against the CA; clients verify the server against the same CA.
//!
//! A caller's identity is the `spiffe://` URI subject alternative name of its verified client
//! certificate, e.g. `spiffe://fetchreward/ingestor` — the form cert-manager's CSI driver and
//! SPIFFE issue in Kubernetes. A connection without a client certificate is accepted by the TLS
//! layer and reaches the service as [`ANONYMOUS`], which no policy with TLS may allow: the call
//! is refused with PERMISSION_DENIED and, where the service audits, audited. A certificate that
//! does not verify (another CA, expired, not yet valid) never completes the handshake.

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::ConfigReader;

/// The identity of a caller that presented no verified certificate with a SPIFFE id.
pub const ANONYMOUS: &str = "anonymous";

/// The scheme of caller identities.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// PEM files of one service's TLS identity and of the CA it trusts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA bundle that verifies peers.
    pub ca: PathBuf,
    /// This service's certificate chain.
    pub cert: PathBuf,
    /// This service's private key.
    pub key: PathBuf,
}

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl TlsFiles {
    /// Reads `TLS_CA_FILE`, `TLS_CERT_FILE`, `TLS_KEY_FILE`: all three or none.
    pub fn from_env(reader: &mut ConfigReader<'_>) -> Option<TlsFiles> {
        let keys = ["TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"];
        let set = keys.iter().filter(|key| reader.raw(key).is_some()).count();
        if set == 0 {
            return None;
        }
        if set < keys.len() {
            reader.problem("TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE must be set together");
            return None;
        }
        let files =
            (reader.file("TLS_CA_FILE"), reader.file("TLS_CERT_FILE"), reader.file("TLS_KEY_FILE"));
        match files {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => None,
        }
    }

    fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|source| TlsError::Read { path: path.clone(), source })
    }

    /// The server side: this service's certificate, and client certificates verified against
    /// the CA when presented.
    pub fn server_config(&self) -> Result<ServerTlsConfig, TlsError> {
        let identity = Identity::from_pem(Self::read(&self.cert)?, Self::read(&self.key)?);
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(Self::read(&self.ca)?))
            .client_auth_optional(true))
    }

    /// The client side: the server verified against the CA, this service's certificate
    /// presented as its identity.
    pub fn client_config(&self) -> Result<ClientTlsConfig, TlsError> {
        let identity = Identity::from_pem(Self::read(&self.cert)?, Self::read(&self.key)?);
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(Self::read(&self.ca)?))
            .identity(identity))
    }
}

/// The first `spiffe://` URI SAN of a DER certificate.
pub fn spiffe_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with(SPIFFE_SCHEME) => {
            Some((*uri).to_owned())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_come_all_three_or_none() {
        use std::collections::HashMap;
        let none: HashMap<&str, &str> = HashMap::new();
        let mut reader = ConfigReader::new(&none);
        assert!(TlsFiles::from_env(&mut reader).is_none());
        assert!(reader.finish().is_ok());

        let partial: HashMap<&str, &str> = HashMap::from([("TLS_CA_FILE", "/etc/ca.pem")]);
        let mut reader = ConfigReader::new(&partial);
        assert!(TlsFiles::from_env(&mut reader).is_none());
        assert!(reader.finish().expect_err("partial").to_string().contains("must be set together"));
    }
}
