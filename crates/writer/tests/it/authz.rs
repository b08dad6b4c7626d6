//! Mutual TLS and the WriteLogins policy: who is refused, who is allowed.

use fetchreward_proto::writer::v1::WriteLoginsRequest;
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_testkit::{Stack, TestDatabase, TestPki, http_get, tls_alert};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::helpers::{count_rows, rows, start_writer};

/// How a call failed.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// The service answered with this code.
    Status(Code),
    /// The server refused the TLS handshake with this alert.
    Handshake(String),
}

/// Calls WriteLogins over TLS with `tls`: the rows inserted, or how the call was refused.
async fn write_with(port: u16, tls: ClientTlsConfig, prefix: &str) -> Result<u32, Refused> {
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("an endpoint")
        .tls_config(tls)
        .expect("a TLS configuration");
    // With TLS 1.3 the server judges the client's certificate after the client has sent its
    // last handshake message: a refusal shows when connecting or on the first call.
    let refused = |err: &(dyn std::error::Error + 'static)| match tls_alert(err) {
        Some(alert) => Refused::Handshake(alert),
        None => panic!("not a handshake refusal: {err}"),
    };
    let channel = endpoint.connect().await.map_err(|err| refused(&err))?;
    WriterServiceClient::new(channel)
        .write_logins(WriteLoginsRequest { rows: rows(prefix, 2) })
        .await
        .map(|reply| reply.into_inner().inserted)
        .map_err(|status| match status.code() {
            Code::Unknown | Code::Unavailable => refused(&status),
            code => Refused::Status(code),
        })
}

#[tokio::test]
async fn only_the_ingestor_identity_may_write() {
    let pki = TestPki::new();
    let other_pki = TestPki::new();
    let server = pki.identity("writer");
    let db = TestDatabase::create(&Stack::from_env()).await;
    let mut settings = server.env().to_vec();
    settings.push(("AUTHZ_WRITE", "spiffe://fetchreward/ingestor"));
    let (grpc_addr, http_addr, running) = start_writer(&db, &settings).await;
    let port = grpc_addr.port();
    let ca_only = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(pki.ca_path()).expect("CA")))
    };

    // No client certificate: reaches the service as anonymous, which the policy refuses.
    let denied = Err(Refused::Status(Code::PermissionDenied));
    assert_eq!(write_with(port, ca_only(), "none").await, denied);
    // A valid certificate of another identity.
    let reader = pki.identity("reader").client_tls();
    assert_eq!(write_with(port, reader, "reader").await, denied);
    // A certificate from another CA, and an expired one: the handshake fails.
    let foreign = other_pki.identity("ingestor");
    let foreign = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(pki.ca_path()).expect("CA")))
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(&foreign.cert).expect("cert"),
            std::fs::read(&foreign.key).expect("key"),
        ));
    // (The foreign CA has the same name as the writer's, so its signature is what fails.)
    let handshake = |alert: &str| Err(Refused::Handshake(alert.to_owned()));
    assert_eq!(write_with(port, foreign, "foreign").await, handshake("DecryptError"));
    let expired = pki.expired("ingestor").client_tls();
    assert_eq!(write_with(port, expired, "expired").await, handshake("CertificateExpired"));
    // Plaintext to a TLS server.
    // Plaintext to a TLS server: the server never answers as a gRPC service.
    let plaintext = match WriterServiceClient::connect(format!("http://localhost:{port}")).await {
        Err(_) => None,
        Ok(mut client) => {
            let call = client.write_logins(WriteLoginsRequest { rows: rows("plain", 1) }).await;
            Some(call.expect_err("refused").code())
        }
    };
    assert!(matches!(plaintext, None | Some(Code::Unknown | Code::Unavailable)), "{plaintext:?}");
    assert_eq!(count_rows(&db).await, 0, "no refused call wrote anything");

    // The ingestor.
    let ingestor = pki.identity("ingestor").client_tls();
    assert_eq!(write_with(port, ingestor, "ingestor").await, Ok(2));
    assert_eq!(count_rows(&db).await, 2);

    let metrics = http_get(http_addr, "/metrics").await;
    assert!(
        metrics
            .contains(r#"fetchreward_authz_denied_total{service="writer",method="WriteLogins",caller="spiffe://fetchreward/reader"}"#),
        "{metrics}"
    );
    running.stop().await.expect("stops");
}

#[tokio::test]
async fn anonymous_writes_need_an_explicit_policy_even_in_plaintext() {
    let db = TestDatabase::create(&Stack::from_env()).await;
    // Plaintext, with AUTHZ_WRITE emptied: deny by default.
    let (grpc_addr, _, _running) = start_writer(&db, &[("AUTHZ_WRITE", "")]).await;
    let mut client =
        WriterServiceClient::connect(format!("http://{grpc_addr}")).await.expect("connects");
    let refused = client.write_logins(WriteLoginsRequest { rows: rows("x", 1) }).await;
    assert_eq!(refused.expect_err("refused").code(), Code::PermissionDenied);
}

#[test]
fn anonymous_in_the_policy_is_a_configuration_error_with_tls() {
    let pki = TestPki::new();
    let server = pki.identity("writer");
    let mut settings = server.env().to_vec();
    settings.push(("DATABASE_URL", "postgres://h/db"));
    settings.push(("AUTHZ_WRITE", "anonymous"));
    let env: std::collections::HashMap<&str, &str> = settings.into_iter().collect();
    let errors = fetchreward_writer::WriterConfig::from_env(&env).expect_err("refused");
    assert!(errors.to_string().contains("only without TLS"), "{errors}");
}
