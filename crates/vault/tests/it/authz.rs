//! Mutual TLS and the vault's policy: every method, every kind of caller.

use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, ForgetRequest, KeyTarget, LiftQuotaRequest, LookupRequest, PiiKind,
    PlantDecoysRequest, RewrapRequest, RotateKeysRequest, TokenizeRequest,
};
use fetchreward_testkit::{Spawned, TestPki, TlsPaths, tls_alert};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::helpers::{Resources, audit_rows, ip, serve};

const INGESTOR: &str = "spiffe://fetchreward/ingestor";
const READER: &str = "spiffe://fetchreward/reader";
const ADMIN: &str = "spiffe://fetchreward/admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Tokenize,
    Detokenize,
    RevealMasked,
    Lookup,
    Forget,
    RotateKeys,
    Rewrap,
    LiftQuota,
    PlantDecoys,
}

const CALLS: [Call; 9] = [
    Call::Tokenize,
    Call::Detokenize,
    Call::RevealMasked,
    Call::Lookup,
    Call::Forget,
    Call::RotateKeys,
    Call::Rewrap,
    Call::LiftQuota,
    Call::PlantDecoys,
];

impl Call {
    /// The identity the policy below allows.
    fn allowed(self) -> &'static str {
        match self {
            Call::Tokenize => INGESTOR,
            Call::Detokenize | Call::RevealMasked | Call::Lookup => READER,
            Call::Forget
            | Call::RotateKeys
            | Call::Rewrap
            | Call::LiftQuota
            | Call::PlantDecoys => ADMIN,
        }
    }

    async fn make(self, client: &mut VaultServiceClient<Channel>, token: &str) -> Result<(), Code> {
        self.send(client, token).await.map_err(|status| status.code())
    }

    async fn send(
        self,
        client: &mut VaultServiceClient<Channel>,
        token: &str,
    ) -> Result<(), tonic::Status> {
        let purpose = || "denial matrix".to_owned();
        match self {
            Call::Tokenize => {
                client.tokenize(TokenizeRequest { values: vec![ip("10.20.30.40")] }).await.map(drop)
            }
            Call::Detokenize => client
                .detokenize(DetokenizeRequest {
                    tokens: vec![token.to_owned()],
                    purpose: purpose(),
                    note: String::new(),
                })
                .await
                .map(drop),
            Call::RevealMasked => client
                .reveal_masked(DetokenizeRequest {
                    tokens: vec![token.to_owned()],
                    purpose: purpose(),
                    note: String::new(),
                })
                .await
                .map(drop),
            Call::Lookup => client
                .lookup(LookupRequest {
                    values: vec![ip("192.0.2.44")],
                    purpose: purpose(),
                    note: String::new(),
                })
                .await
                .map(drop),
            Call::LiftQuota => client
                .lift_quota(LiftQuotaRequest {
                    caller: READER.to_owned(),
                    quota_purpose: String::new(),
                    values: 10,
                    purpose: purpose(),
                })
                .await
                .map(drop),
            Call::PlantDecoys => client
                .plant_decoys(PlantDecoysRequest {
                    kind: PiiKind::Ip.into(),
                    count: 1,
                    purpose: purpose(),
                })
                .await
                .map(drop),
            Call::Forget => client
                .forget(ForgetRequest { tokens: vec![token.to_owned()], purpose: purpose() })
                .await
                .map(drop),
            Call::RotateKeys => client
                .rotate_keys(RotateKeysRequest {
                    target: KeyTarget::Data.into(),
                    purpose: purpose(),
                })
                .await
                .map(drop),
            Call::Rewrap => {
                client.rewrap(RewrapRequest { purpose: purpose(), max_rows: 100 }).await.map(drop)
            }
        }
    }
}

/// Connects over TLS; a refused handshake shows as an error here or on the first call.
pub(crate) async fn connect(
    port: u16,
    tls: ClientTlsConfig,
) -> Result<VaultServiceClient<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("an endpoint")
        .tls_config(tls)
        .expect("a TLS configuration");
    endpoint.connect().await.map(VaultServiceClient::new)
}

/// The alert with which the server refuses the handshake of `tls`: when connecting, or, with
/// TLS 1.3, on the first call.
async fn handshake_alert(
    port: u16,
    tls: ClientTlsConfig,
    call: Call,
    token: &str,
) -> Option<String> {
    match connect(port, tls).await {
        Err(err) => tls_alert(&err),
        Ok(mut client) => match call.send(&mut client, token).await {
            Err(status) => tls_alert(&status),
            Ok(()) => None,
        },
    }
}

fn foreign_identity(server_ca: &str, foreign: &TlsPaths) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(server_ca).expect("CA")))
        .identity(Identity::from_pem(
            std::fs::read(&foreign.cert).expect("cert"),
            std::fs::read(&foreign.key).expect("key"),
        ))
}

#[tokio::test]
async fn every_method_is_refused_to_all_but_its_listed_identity() {
    let pki = TestPki::new();
    let other_pki = TestPki::new();
    let resources = Resources::create().await;
    let server = pki.identity("vault");
    let mut settings: Vec<(&str, &str)> = server.env().to_vec();
    settings.extend([
        ("AUTHZ_TOKENIZE", INGESTOR),
        ("AUTHZ_DETOKENIZE", READER),
        ("AUTHZ_LOOKUP", READER),
        ("AUTHZ_ADMIN", ADMIN),
        ("VAULT_ROTATION_DELAY_SECS", "0"),
    ]);
    let app = fetchreward_vault::Application::build(resources.config(&settings), resources.kms())
        .await
        .expect("the vault starts with TLS");
    let port = app.grpc_addr().port();
    let http_addr = app.http_addr();
    let running = Spawned::new(|shutdown| app.run_until_stopped(shutdown));

    let ingestor = pki.identity("ingestor");
    let mut as_ingestor =
        connect(port, ingestor.client_tls()).await.expect("the ingestor connects");
    let token = as_ingestor
        .tokenize(TokenizeRequest { values: vec![ip("192.0.2.44")] })
        .await
        .expect("the ingestor tokenizes")
        .into_inner()
        .tokens
        .remove(0);

    let ca_only = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(pki.ca_path()).expect("CA")));
    for call in CALLS {
        // No client certificate: anonymous, refused by the policy.
        let mut anonymous =
            connect(port, ca_only.clone()).await.expect("TLS without a certificate");
        assert_eq!(
            call.make(&mut anonymous, &token).await,
            Err(Code::PermissionDenied),
            "{call:?}"
        );

        // A valid certificate of another identity.
        let wrong = if call == Call::Tokenize { "reader" } else { "ingestor" };
        let mut wrong = connect(port, pki.identity(wrong).client_tls()).await.expect("connects");
        assert_eq!(call.make(&mut wrong, &token).await, Err(Code::PermissionDenied), "{call:?}");

        // A certificate of the CA that names nobody: no URI SAN, the right id beside another,
        // or the right name in another trust domain. Refused before the policy is asked.
        let name = call.allowed().rsplit('/').next().expect("a name");
        let foreign_domain = format!("spiffe://elsewhere/{name}");
        for (file, uris) in [
            ("no-uri", vec![]),
            ("two-uris", vec![call.allowed(), "spiffe://fetchreward/someone"]),
            ("foreign-domain", vec![foreign_domain.as_str()]),
        ] {
            let mut nobody = connect(port, pki.with_uris(file, &uris).client_tls())
                .await
                .expect("the handshake succeeds: the CA signed it");
            let status = call.send(&mut nobody, &token).await.expect_err("refused");
            assert_eq!(status.code(), Code::Unauthenticated, "{call:?} with {file}");
            assert!(status.message().starts_with("the client certificate"), "{status:?}");
        }

        // The right name, but from another CA, or expired: no session at all.
        // (The foreign CA has the same name as the vault's, so its signature is what fails.)
        let foreign = foreign_identity(&pki.ca_path(), &other_pki.identity(name));
        let alert = handshake_alert(port, foreign, call, &token).await;
        assert_eq!(alert.as_deref(), Some("DecryptError"), "{call:?}");
        let alert = handshake_alert(port, pki.expired(name).client_tls(), call, &token).await;
        assert_eq!(alert.as_deref(), Some("CertificateExpired"), "{call:?}");
    }

    // The allowed identities, in an order that keeps every call meaningful.
    let reader = pki.identity("reader");
    let admin = pki.identity("admin");
    for call in [
        Call::Tokenize,
        Call::Detokenize,
        Call::RevealMasked,
        Call::Lookup,
        Call::RotateKeys,
        Call::Rewrap,
        Call::LiftQuota,
        Call::PlantDecoys,
        Call::Forget,
    ] {
        let identity = match call.allowed() {
            INGESTOR => &ingestor,
            READER => &reader,
            _ => &admin,
        };
        let mut client = connect(port, identity.client_tls()).await.expect("connects");
        assert_eq!(call.make(&mut client, &token).await, Ok(()), "{call:?} as {}", call.allowed());
    }

    let metrics = fetchreward_testkit::http_get(http_addr, "/metrics").await;
    for reason in ["no_uri_san", "several_uri_sans", "foreign_id"] {
        let counted = format!(
            "fetchreward_authn_refused_total{{service=\"vault\",reason=\"{reason}\"}} {}",
            CALLS.len()
        );
        assert!(metrics.contains(&counted), "{counted} in {metrics}");
    }

    // Every audited method left a row per call, refused ones included, naming the caller.
    let audit = audit_rows(&resources.db).await;
    for (method, allowed) in [
        ("Detokenize", READER),
        ("RevealMasked", READER),
        ("Lookup", READER),
        ("Forget", ADMIN),
        ("RotateKeys", ADMIN),
        ("Rewrap", ADMIN),
        ("LiftQuota", ADMIN),
        ("PlantDecoys", ADMIN),
    ] {
        let rows: Vec<_> = audit.iter().filter(|row| row.method == method).collect();
        let denied: Vec<&str> =
            rows.iter().filter(|r| r.outcome == "denied").map(|r| r.caller.as_str()).collect();
        assert_eq!(denied.len(), 2, "{method}: anonymous and the wrong identity: {rows:?}");
        assert!(denied.contains(&"anonymous"), "{method}");
        assert!(rows.iter().any(|r| r.outcome == "allowed" && r.caller == allowed), "{method}");
    }
    running.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn a_plaintext_vault_may_admit_anonymous_callers_but_a_tls_vault_may_not() {
    let pki = TestPki::new();
    let resources = Resources::create().await;
    let server = pki.identity("vault");
    let mut settings: Vec<(&str, &str)> = server.env().to_vec();
    settings.push(("AUTHZ_DETOKENIZE", "anonymous"));
    let env: std::collections::HashMap<&str, &str> = settings
        .into_iter()
        .chain([("DATABASE_URL", resources.db.url.as_str()), ("KMS_KEY_ID", "alias/x")])
        .collect();
    let errors = fetchreward_vault::VaultConfig::from_env(&env).expect_err("refused");
    assert!(errors.to_string().contains("only without TLS"), "{errors}");
}

#[tokio::test]
async fn the_vault_connects_to_postgres_with_verified_tls() {
    let resources = Resources::create().await;
    let base = resources.db.url.split('?').next().unwrap_or(&resources.db.url).to_owned();
    let url = format!("{base}?sslmode=verify-full");
    let settings =
        [("DATABASE_URL", url.as_str()), ("DATABASE_CA_FILE", resources.stack.pg_ca_file.as_str())];
    let mut vault = serve(
        fetchreward_vault::Application::build(resources.config(&settings), resources.kms())
            .await
            .expect("starts over TLS"),
    )
    .await;
    vault.tokenize(vec![ip("203.0.113.5")]).await;

    #[derive(diesel::QueryableByName)]
    struct Encrypted {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        all_ssl: bool,
    }
    let mut conn = resources.db.connect().await;
    let check: Vec<Encrypted> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT bool_and(s.ssl) AS all_ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
        )
        .bind::<diesel::sql_types::Text, _>(&resources.db.name),
        &mut conn,
    )
    .await
    .expect("pg_stat_ssl");
    assert!(check[0].all_ssl, "every connection of the vault is encrypted");
}
