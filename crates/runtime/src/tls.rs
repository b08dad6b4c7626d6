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

/// A development PKI: a CA and certificates for named identities, made with rcgen.
pub mod dev {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };

    /// A certificate and its private key, PEM.
    #[derive(Clone)]
    pub struct IssuedPem {
        /// The certificate.
        pub cert: String,
        /// The private key (PKCS#8).
        pub key: String,
    }

    impl std::fmt::Debug for IssuedPem {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("IssuedPem").field("cert", &self.cert).finish_non_exhaustive()
        }
    }

    /// A certificate authority that can issue certificates.
    pub struct DevCa {
        issuer: Issuer<'static, KeyPair>,
        /// The CA's own certificate, PEM.
        pub cert_pem: String,
    }

    impl std::fmt::Debug for DevCa {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("DevCa").finish_non_exhaustive()
        }
    }

    /// How long issued certificates are valid, relative to now.
    #[derive(Debug, Clone, Copy)]
    pub enum Validity {
        /// From a day ago for a year.
        Current,
        /// Expired yesterday.
        Expired,
    }

    impl DevCa {
        /// A new CA named `name`.
        pub fn new(name: &str) -> Result<DevCa, rcgen::Error> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key)?;
            Ok(DevCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
        }

        /// A certificate for `spiffe://fetchreward/<name>`, usable by servers (for `localhost`,
        /// `127.0.0.1`, `::1` and `<name>`) and by clients.
        pub fn issue(&self, name: &str, validity: Validity) -> Result<IssuedPem, rcgen::Error> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec!["localhost".to_owned(), name.to_owned()])?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            params.subject_alt_names.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
            params.subject_alt_names.push(SanType::URI(
                format!("{}fetchreward/{name}", super::SPIFFE_SCHEME).try_into()?,
            ));
            params.extended_key_usages =
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let now = time::OffsetDateTime::now_utc();
            let day = time::Duration::days(1);
            (params.not_before, params.not_after) = match validity {
                Validity::Current => (now - day, now + day * 365),
                Validity::Expired => (now - day * 30, now - day),
            };
            let cert = params.signed_by(&key, &self.issuer)?;
            Ok(IssuedPem { cert: cert.pem(), key: key.serialize_pem() })
        }

        /// Writes `ca.pem`, and `<name>.pem` + `<name>.key` for each identity, into `dir`.
        pub fn write_all(&self, dir: &Path, names: &[&str]) -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("ca.pem"), &self.cert_pem)?;
            for name in names {
                let issued = self.issue(name, Validity::Current).map_err(std::io::Error::other)?;
                std::fs::write(dir.join(format!("{name}.pem")), &issued.cert)?;
                write_private(&dir.join(format!("{name}.key")), &issued.key)?;
            }
            Ok(())
        }
    }

    /// Writes a private key readable by its owner only.
    fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        options.open(path)?.write_all(contents.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::dev::{DevCa, Validity};
    use super::*;

    #[test]
    fn issued_certificates_carry_their_spiffe_id() {
        let ca = DevCa::new("test ca").expect("a CA");
        let issued = ca.issue("ingestor", Validity::Current).expect("a certificate");
        let der = CertificateDer::from_pem_slice(issued.cert.as_bytes()).expect("PEM");
        assert_eq!(spiffe_id(der.as_ref()).as_deref(), Some("spiffe://fetchreward/ingestor"));
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("PEM");
        assert_eq!(spiffe_id(ca_der.as_ref()), None, "the CA has no SPIFFE id");
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }

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
