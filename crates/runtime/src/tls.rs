//! Mutual TLS between the services, and who is calling.
//!
//! Every gRPC hop runs over TLS 1.2+/1.3 (rustls on aws-lc-rs) when a service is given
//! `TLS_CA_FILE`, `TLS_CERT_FILE` and `TLS_KEY_FILE`. Servers present their certificate and
//! verify client certificates against the CA; clients verify the server against the same CA.
//!
//! A caller's identity is the URI subject alternative name of its verified client certificate,
//! a SPIFFE id in the deployment's trust domain (`TLS_TRUST_DOMAIN`, default `fetchreward`),
//! e.g. `spiffe://fetchreward/ingestor` — the form cert-manager's CSI driver and SPIRE issue in
//! Kubernetes. The certificate must carry exactly one URI SAN, and it must be such an id: a
//! certificate with none, with two, or with an id of another trust domain names nobody, and its
//! calls are refused UNAUTHENTICATED ([`peer_identity`]). A connection without a client
//! certificate is accepted by the TLS layer and reaches the service as [`ANONYMOUS`], which no
//! policy with TLS may allow: the call is refused with PERMISSION_DENIED and, where the service
//! audits, audited. A certificate that does not verify (another CA, expired, not yet valid)
//! never completes the handshake.

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::ConfigReader;

/// The identity of a caller that presented no verified certificate with a SPIFFE id.
pub const ANONYMOUS: &str = "anonymous";

/// The scheme of caller identities.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// The trust domain when `TLS_TRUST_DOMAIN` is unset.
pub const DEFAULT_TRUST_DOMAIN: &str = "fetchreward";

/// PEM files of one service's TLS identity and of the CA it trusts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA bundle that verifies peers.
    pub ca: PathBuf,
    /// This service's certificate chain.
    pub cert: PathBuf,
    /// This service's private key.
    pub key: PathBuf,
    /// The SPIFFE trust domain of the callers a server accepts.
    pub trust_domain: String,
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
    /// The files of an identity, in the default trust domain.
    pub fn new(ca: PathBuf, cert: PathBuf, key: PathBuf) -> TlsFiles {
        TlsFiles { ca, cert, key, trust_domain: DEFAULT_TRUST_DOMAIN.to_owned() }
    }

    /// Reads `TLS_CA_FILE`, `TLS_CERT_FILE`, `TLS_KEY_FILE` (all three or none) and
    /// `TLS_TRUST_DOMAIN`.
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
        let trust_domain =
            reader.raw("TLS_TRUST_DOMAIN").unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_owned());
        if !is_trust_domain(&trust_domain) {
            reader.problem(
                "TLS_TRUST_DOMAIN must be a SPIFFE trust domain: lowercase letters, digits, \
                 `.`, `-` and `_`, such as fetchreward or prod.example.com",
            );
        }
        let files =
            (reader.file("TLS_CA_FILE"), reader.file("TLS_CERT_FILE"), reader.file("TLS_KEY_FILE"));
        match files {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key, trust_domain }),
            _ => None,
        }
    }

    fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|source| TlsError::Read { path: path.clone(), source })
    }

    /// The server side: this service's certificate, and client certificates verified against
    /// the CA when presented.
    pub fn server_config(&self) -> Result<ServerTlsConfig, TlsError> {
        let cert = Self::read(&self.cert)?;
        record_expiry(&cert, "server");
        let identity = Identity::from_pem(cert, Self::read(&self.key)?);
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(Self::read(&self.ca)?))
            .client_auth_optional(true))
    }

    /// The client side: the server verified against the CA, this service's certificate
    /// presented as its identity.
    pub fn client_config(&self) -> Result<ClientTlsConfig, TlsError> {
        let cert = Self::read(&self.cert)?;
        record_expiry(&cert, "client");
        let identity = Identity::from_pem(cert, Self::read(&self.key)?);
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(Self::read(&self.ca)?))
            .identity(identity))
    }
}

/// Publishes when the leaf certificate of `pem`, loaded for `side` (`server` or `client`),
/// expires: `fetchreward_tls_certificate_expiry_timestamp_seconds{side}` (Unix seconds). The
/// process serves the certificate it loaded until it restarts, so this is the date that
/// matters, whatever cert-manager has renewed on disk meanwhile.
fn record_expiry(pem: &[u8], side: &'static str) {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem) else { return };
    let Ok(cert) = block.parse_x509() else { return };
    let expires = cert.validity().not_after.timestamp();
    metrics::gauge!("fetchreward_tls_certificate_expiry_timestamp_seconds", "side" => side)
        .set(expires as f64);
}

/// Why a verified client certificate names nobody.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate cannot be parsed (it verified, so this is not expected).
    #[error("the client certificate cannot be read")]
    Unreadable,
    /// No URI SAN.
    #[error("the client certificate carries no URI SAN")]
    NoUri,
    /// More than one URI SAN: which one is the caller is anybody's guess.
    #[error("the client certificate carries {0} URI SANs; exactly one is allowed")]
    SeveralUris(usize),
    /// A URI SAN that is not a SPIFFE id of this trust domain.
    #[error("the client certificate's URI SAN is not a SPIFFE id in trust domain {0}")]
    ForeignId(String),
}

impl IdentityError {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            IdentityError::Unreadable => "unreadable",
            IdentityError::NoUri => "no_uri_san",
            IdentityError::SeveralUris(_) => "several_uri_sans",
            IdentityError::ForeignId(_) => "foreign_id",
        }
    }
}

/// The URI SANs of a DER certificate, in order (none when it cannot be parsed).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let Ok(Some(sans)) = cert.subject_alternative_name() else { return Vec::new() };
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

/// The identity a verified client certificate proves: its one URI SAN, which must be a SPIFFE
/// id in `trust_domain`.
pub fn peer_identity(der: &[u8], trust_domain: &str) -> Result<String, IdentityError> {
    if x509_parser::parse_x509_certificate(der).is_err() {
        return Err(IdentityError::Unreadable);
    }
    let mut uris = uri_sans(der);
    match uris.len() {
        0 => Err(IdentityError::NoUri),
        1 => {
            let uri = uris.remove(0);
            if is_spiffe_id_in(&uri, trust_domain) {
                Ok(uri)
            } else {
                Err(IdentityError::ForeignId(trust_domain.to_owned()))
            }
        }
        n => Err(IdentityError::SeveralUris(n)),
    }
}

/// Whether `id` is a SPIFFE id of `trust_domain`: `spiffe://<trust domain>/<path>`, the path
/// one or more segments of letters, digits, `.`, `-` and `_`, none empty, `.` or `..`.
pub fn is_spiffe_id_in(id: &str, trust_domain: &str) -> bool {
    let Some(rest) = id.strip_prefix(SPIFFE_SCHEME) else { return false };
    let Some((domain, path)) = rest.split_once('/') else { return false };
    domain == trust_domain
        && path.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
}

/// Whether `domain` is a SPIFFE trust domain name.
fn is_trust_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
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

    #[test]
    fn a_spiffe_id_is_of_one_trust_domain_with_a_clean_path() {
        for id in ["spiffe://fetchreward/ingestor", "spiffe://fetchreward/ns/prod/sa/vault-1.a_b"] {
            assert!(is_spiffe_id_in(id, "fetchreward"), "{id}");
        }
        for id in [
            "spiffe://other/ingestor",
            "spiffe://fetchreward.evil/ingestor",
            "spiffe://fetchreward",
            "spiffe://fetchreward/",
            "spiffe://fetchreward//x",
            "spiffe://fetchreward/../admin",
            "spiffe://fetchreward/a?b",
            "spiffe://fetchreward:443/ingestor",
            "SPIFFE://fetchreward/ingestor",
            "https://fetchreward/ingestor",
        ] {
            assert!(!is_spiffe_id_in(id, "fetchreward"), "{id}");
        }
    }

    #[test]
    fn the_trust_domain_is_checked_at_start_up() {
        use std::collections::HashMap;
        let env: HashMap<&str, &str> = HashMap::from([
            ("TLS_CA_FILE", "/nonexistent/ca.pem"),
            ("TLS_CERT_FILE", "/nonexistent/c.pem"),
            ("TLS_KEY_FILE", "/nonexistent/c.key"),
            ("TLS_TRUST_DOMAIN", "Fetch Reward"),
        ]);
        let mut reader = ConfigReader::new(&env);
        TlsFiles::from_env(&mut reader);
        let problems = reader.finish().expect_err("invalid").to_string();
        assert!(problems.contains("TLS_TRUST_DOMAIN must be a SPIFFE trust domain"), "{problems}");
    }
}
