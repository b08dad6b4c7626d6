//! Every metric that the dashboard, the alert rules and their unit tests query is served by the
//! running services: a renamed metric fails here, not silently on a dashboard.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use fetchreward_cli::sample;
use fetchreward_e2e::Pipeline;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, ForgetRequest, ListAuditRequest, PiiKind, PiiValue, TokenizeRequest,
};
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest};
use fetchreward_testkit::{TestPki, http_get};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// The metric names in `text`: words that start with `fetchreward_` or `process_`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices(['f', 'p']) {
        let rest = &text[start..];
        if !(rest.starts_with("fetchreward_") || rest.starts_with("process_")) {
            continue;
        }
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        names.insert(rest[..end].to_owned());
    }
    names
}

/// The names of the series a `/metrics` page serves.
fn served(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn observability_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}

fn ips(prefix: u8, n: u32) -> Vec<PiiValue> {
    (0..n)
        .map(|i| PiiValue {
            kind: PiiKind::Ip.into(),
            value: format!("10.{prefix}.{}.{}", i / 256, i % 256),
        })
        .collect()
}

async fn tls_client(
    port: u16,
    tls: tonic::transport::ClientTlsConfig,
) -> VaultServiceClient<Channel> {
    let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("an endpoint")
        .tls_config(tls)
        .expect("a TLS configuration");
    VaultServiceClient::new(endpoint.connect().await.expect("connects"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_the_alert_rules_use_is_served() {
    let mut pipeline = Pipeline::start().await;
    // Valid messages and one the model refuses.
    let mut bodies =
        sample::synthetic(30, 12, sample::Shape { distinct_ips: 10, distinct_devices: 10 });
    bodies.push(r#"{"user_id": "u-bad", "ip": "not an address"}"#.to_owned());
    pipeline.send(&bodies).await;
    pipeline.start_ingestor(&[("QUEUE_METRICS_SECS", "1")]).await;
    pipeline.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(pipeline.rows().await.len(), 30);

    // The vault: a Detokenize, a Forget, a refused call, a purpose refused unaudited.
    let mut vault = VaultServiceClient::connect(format!("http://{}", pipeline.vault_addr))
        .await
        .expect("connects");
    let token = pipeline.rows().await[0].masked_ip.clone().expect("a token");
    let ask = |purpose: &str| DetokenizeRequest {
        tokens: vec![token.clone()],
        purpose: purpose.into(),
        note: String::new(),
    };
    vault.detokenize(ask("observability test")).await.expect("recovers");
    vault.detokenize(ask("a\u{0}b")).await.expect_err("a control character");
    vault
        .forget(ForgetRequest { tokens: vec![token.clone()], purpose: "observability test".into() })
        .await
        .expect("forgets");
    let refused = vault.list_audit(ListAuditRequest::default()).await.expect_err("not an auditor");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // The writer refuses a row whose token is not one.
    let mut writer = WriterServiceClient::connect(format!("http://{}", pipeline.writer_addr))
        .await
        .expect("connects");
    let row = MaskedLogin {
        message_id: "m-observability".into(),
        user_id: "u".into(),
        masked_ip: Some("not a token".into()),
        sent_timestamp_ms: 1,
        ..MaskedLogin::default()
    };
    writer.write_logins(WriteLoginsRequest { rows: vec![row] }).await.expect("answered");
    // And one the database refuses (a rule the model does not know): a database error.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = pipeline.db.connect().await;
        diesel::sql_query(
            "ALTER TABLE user_logins ADD CONSTRAINT no_blocked CHECK (user_id <> 'u-blocked')",
        )
        .execute(&mut conn)
        .await
        .expect("adds the rule");
    }
    let blocked = MaskedLogin {
        message_id: "m-blocked".into(),
        user_id: "u-blocked".into(),
        sent_timestamp_ms: 1,
        ..MaskedLogin::default()
    };
    let answer = writer
        .write_logins(WriteLoginsRequest { rows: vec![blocked] })
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(answer.refused.len(), 1, "the database refused the row");

    // A vault with a low Tokenize limit, past it.
    let (_limited, addr) = pipeline
        .start_extra_vault(&[("VAULT_TOKENIZE_RATE", "1"), ("VAULT_TOKENIZE_BURST", "10000")])
        .await;
    let mut limited =
        VaultServiceClient::connect(format!("http://{addr}")).await.expect("connects");
    limited.tokenize(TokenizeRequest { values: ips(7, 6_000) }).await.expect("within the limit");
    limited.tokenize(TokenizeRequest { values: ips(8, 6_000) }).await.expect_err("past the limit");

    // A vault with TLS (its certificate's expiry), and a caller whose certificate names nobody.
    let pki = TestPki::new();
    let server = pki.identity("vault");
    let mut settings: Vec<(&str, &str)> = server.env().to_vec();
    settings.extend([
        ("AUTHZ_TOKENIZE", "spiffe://fetchreward/ingestor"),
        ("AUTHZ_DETOKENIZE", "spiffe://fetchreward/reader"),
        ("AUTHZ_ADMIN", "spiffe://fetchreward/admin"),
    ]);
    let (_tls_vault, tls_addr) = pipeline.start_extra_vault(&settings).await;
    let nobody = pki.with_uris("nobody", &[]);
    let mut anonymous = tls_client(tls_addr.port(), nobody.client_tls()).await;
    let refused =
        anonymous.tokenize(TokenizeRequest { values: ips(9, 1) }).await.expect_err("nobody");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // One tick of the queue watcher, then the page.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let addr = pipeline.ingestor_http.expect("the ingestor runs");
    let page = http_get(addr, "/metrics").await;
    let served = served(&page);
    let mut wanted = BTreeSet::new();
    for file in ["prometheus/alerts.yml", "prometheus/alerts_test.yml", "grafana/fetchreward.json"]
    {
        wanted.extend(metric_names(&observability_file(file)));
    }
    assert!(wanted.len() > 30, "the files name many metrics: {wanted:?}");
    let missing: Vec<&String> = wanted.iter().filter(|name| !served.contains(*name)).collect();
    assert!(missing.is_empty(), "used but not served: {missing:?}\nserved: {served:?}");
    pipeline.stop_ingestor().await;
}

#[test]
fn metric_names_are_found_as_whole_words() {
    let names = metric_names(
        r#"sum(rate(fetchreward_a_total{x="y"}[5m])) / process_open_fds and my_fetchreward_b"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["fetchreward_a_total", "process_open_fds"]);
}
