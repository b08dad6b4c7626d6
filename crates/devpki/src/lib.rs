//! A development PKI: a CA and certificates for `spiffe://fetchreward/<name>` identities, made
//! with rcgen, for `fetchreward dev-certs` (`make certs`, `make demo`) and the tests. It is not
//! a dependency of any service: production identities come from cert-manager or SPIRE
//! (docs/deployment.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
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
    /// The CA's private key, PEM, written beside its certificate so that people's short-lived
    /// certificates can be issued later ([`DevCa::load`]).
    key_pem: String,
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
    /// From now for this many hours: a person's certificate.
    Hours(u32),
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
        let key_pem = key.serialize_pem();
        Ok(DevCa { cert_pem: cert.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// The CA that [`DevCa::write_all`] wrote into `dir` (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> std::io::Result<DevCa> {
        let cert_pem = std::fs::read_to_string(dir.join("ca.pem"))?;
        let key_pem = std::fs::read_to_string(dir.join("ca.key"))?;
        let key = KeyPair::from_pem(&key_pem).map_err(std::io::Error::other)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(std::io::Error::other)?;
        Ok(DevCa { issuer, key_pem, cert_pem })
    }

    /// A client certificate for `spiffe://fetchreward/person/<person>`, valid for `hours` from
    /// now: a person's own identity, short-lived like one an IdP-backed issuer gives.
    pub fn issue_person(&self, person: &str, hours: u32) -> Result<IssuedPem, rcgen::Error> {
        let valid = !person.is_empty()
            && person.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(rcgen::Error::InvalidAsn1String(rcgen::InvalidAsn1String::Ia5String(
                format!("person `{person}`: lowercase letters, digits and `-` only"),
            )));
        }
        let uri = person_id(person);
        self.issue_with_uris(&format!("person-{person}"), &[uri], Validity::Hours(hours))
    }

    /// Writes `person-<person>.pem` and `.key` into `dir` ([`DevCa::issue_person`]); returns
    /// the person's SPIFFE id.
    pub fn write_person(&self, dir: &Path, person: &str, hours: u32) -> std::io::Result<String> {
        let issued = self.issue_person(person, hours).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("person-{person}.pem")), &issued.cert)?;
        write_private(&dir.join(format!("person-{person}.key")), &issued.key)?;
        Ok(person_id(person))
    }

    /// A certificate for `spiffe://fetchreward/<name>`, usable by servers (for `localhost`,
    /// `127.0.0.1`, `::1` and `<name>`) and by clients.
    pub fn issue(&self, name: &str, validity: Validity) -> Result<IssuedPem, rcgen::Error> {
        let uri = format!("{}fetchreward/{name}", fetchreward_runtime::tls::SPIFFE_SCHEME);
        self.issue_with_uris(name, &[uri], validity)
    }

    /// A certificate like [`DevCa::issue`]'s whose URI SANs are `uris`, in that order (none,
    /// several, or ids of another trust domain: what the services must refuse).
    pub fn issue_with_uris(
        &self,
        name: &str,
        uris: &[String],
        validity: Validity,
    ) -> Result<IssuedPem, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        for uri in uris {
            params.subject_alt_names.push(SanType::URI(uri.as_str().try_into()?));
        }
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - day, now + day * 365),
            Validity::Expired => (now - day * 30, now - day),
            Validity::Hours(hours) => {
                (now - time::Duration::minutes(5), now + time::Duration::hours(i64::from(hours)))
            }
        };
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPem { cert: cert.pem(), key: key.serialize_pem() })
    }

    /// Writes `ca.pem`, and `<name>.pem` + `<name>.key` for each identity, into `dir`.
    pub fn write_all(&self, dir: &Path, names: &[&str]) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), &self.cert_pem)?;
        write_private(&dir.join("ca.key"), &self.key_pem)?;
        for name in names {
            let issued = self.issue(name, Validity::Current).map_err(std::io::Error::other)?;
            std::fs::write(dir.join(format!("{name}.pem")), &issued.cert)?;
            write_private(&dir.join(format!("{name}.key")), &issued.key)?;
        }
        Ok(())
    }
}

/// The SPIFFE id of a person.
pub fn person_id(person: &str) -> String {
    format!("{}fetchreward/person/{person}", fetchreward_runtime::tls::SPIFFE_SCHEME)
}

/// Writes a private key readable by its owner only (0600).
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use fetchreward_runtime::tls::{peer_identity, uri_sans};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn issued_certificates_carry_their_spiffe_id() {
        let ca = DevCa::new("test ca").expect("a CA");
        let issued = ca.issue("ingestor", Validity::Current).expect("a certificate");
        let der = CertificateDer::from_pem_slice(issued.cert.as_bytes()).expect("PEM");
        assert_eq!(
            peer_identity(der.as_ref(), "fetchreward").as_deref(),
            Ok("spiffe://fetchreward/ingestor")
        );
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("PEM");
        assert!(uri_sans(ca_der.as_ref()).is_empty(), "the CA has no SPIFFE id");
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_person_is_issued_later_by_the_ca_written_before() {
        let dir = std::env::temp_dir().join(format!("devpki-{}", std::process::id()));
        DevCa::new("test ca").expect("a CA").write_all(&dir, &["vault"]).expect("writes");
        let ca = DevCa::load(&dir).expect("loads the CA back");
        let id = ca.write_person(&dir, "alice", 8).expect("issues");
        assert_eq!(id, "spiffe://fetchreward/person/alice");
        let pem = std::fs::read(dir.join("person-alice.pem")).expect("written");
        let der = CertificateDer::from_pem_slice(&pem).expect("PEM");
        assert_eq!(peer_identity(der.as_ref(), "fetchreward").as_deref(), Ok(id.as_str()));
        // Signed by the CA on disk: a verifier holding only ca.pem accepts it.
        let ca_der = CertificateDer::from_pem_slice(
            std::fs::read(dir.join("ca.pem")).expect("ca.pem").as_slice(),
        )
        .expect("PEM");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).expect("a root");
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots.into())
            .build()
            .expect("a verifier");
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_client_cert(&der, &[], now).expect("the CA on disk signed it");
        assert!(ca.issue_person("Alice/../admin", 8).is_err(), "names are plain");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_identity_is_one_uri_san_of_the_trust_domain() {
        use fetchreward_runtime::tls::IdentityError;
        let ca = DevCa::new("test ca").expect("a CA");
        let identity = |uris: &[&str]| {
            let uris: Vec<String> = uris.iter().map(|uri| (*uri).to_owned()).collect();
            let issued = ca.issue_with_uris("x", &uris, Validity::Current).expect("issues");
            let der = CertificateDer::from_pem_slice(issued.cert.as_bytes()).expect("PEM");
            peer_identity(der.as_ref(), "fetchreward")
        };
        assert_eq!(identity(&[]), Err(IdentityError::NoUri));
        assert_eq!(
            identity(&["spiffe://fetchreward/reader", "spiffe://fetchreward/admin"]),
            Err(IdentityError::SeveralUris(2))
        );
        assert_eq!(
            identity(&["https://example.com/", "spiffe://fetchreward/admin"]),
            Err(IdentityError::SeveralUris(2)),
            "not the first spiffe:// one"
        );
        assert_eq!(
            identity(&["spiffe://elsewhere/admin"]),
            Err(IdentityError::ForeignId("fetchreward".into()))
        );
        assert_eq!(
            identity(&["spiffe://fetchreward/admin"]).as_deref(),
            Ok("spiffe://fetchreward/admin")
        );
    }
}
