//! A canary: personal values with an unmistakable shape pushed through the whole pipeline,
//! valid and invalid, then looked for everywhere they must never appear: the JSON log lines of
//! all three services (at debug level), error messages returned to callers (Tokenize, the
//! writer, Detokenize, Forget, Restore), DLQ reasons and DLQ bodies as SQS holds them (sealed),
//! metric labels, span names and attributes (an in-memory OpenTelemetry exporter), and
//! `user_logins`.
//!
//! One test in its own binary, because it installs the process-wide log subscriber.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, ForgetRequest, PiiKind, PiiValue, RestoreRequest, TokenizeRequest,
};
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest};

use fetchreward_e2e::{Captured, Pipeline};

/// Texts that must never appear outside the vault's ciphertexts and the sealed DLQ bodies.
const CANARY_IP: &str = "198.51.100.213";
const CANARY_IPV6: &str = "2001:db8:c0ff:ee::1";
const CANARY_DEVICE: &str = "CANARY-7f3e9a1c-DEVICE";
const CANARY_MARK: &str = "7f3e9a1c";

fn leaks(text: &str) -> Vec<&'static str> {
    [CANARY_IP, CANARY_IPV6, CANARY_DEVICE, CANARY_MARK]
        .into_iter()
        .filter(|canary| text.contains(canary))
        .collect()
}

#[derive(QueryableByName)]
struct RowText {
    #[diesel(sql_type = Text)]
    row: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_value_appears_nowhere_it_must_not() {
    let captured = Captured::install("fetchreward-canary");

    let mut pipeline = Pipeline::start().await;
    let bodies = vec![
        format!(
            r#"{{"user_id": "u-canary-1", "ip": "{CANARY_IP}", "device_id": "{CANARY_DEVICE}"}}"#
        ),
        format!(
            r#"{{"user_id": "u-canary-2", "ip": "{CANARY_IPV6}", "device_id": " {CANARY_DEVICE} "}}"#
        ),
        format!(r#"{{"user_id": "u-canary-3", "ip": "{CANARY_DEVICE}"}}"#),
        format!(r#"{{"user_id": "u-canary-4", "device_id": "{}"}}"#, CANARY_DEVICE.repeat(20)),
        format!(r#"{{"user_id": "u-canary-5", "ip": ["{CANARY_IP}"]}}"#),
        format!(r#"{{"user_id": "u-canary-6", "ip": "{CANARY_IP}""#),
    ];
    pipeline.send(&bodies).await;
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(30)).await;

    // Errors returned to callers.
    let mut vault = VaultServiceClient::connect(format!("http://{}", pipeline.vault_addr))
        .await
        .expect("connects to the vault");
    let refused = vault
        .tokenize(TokenizeRequest {
            values: vec![PiiValue { kind: PiiKind::Ip.into(), value: CANARY_DEVICE.into() }],
        })
        .await
        .expect("answered")
        .into_inner()
        .refused;
    assert_eq!(refused.len(), 1, "not an ip");
    assert_eq!(leaks(&refused[0].reason), Vec::<&str>::new(), "{}", refused[0].reason);
    let mut writer = WriterServiceClient::connect(format!("http://{}", pipeline.writer_addr))
        .await
        .expect("connects to the writer");
    let refused = writer
        .write_logins(WriteLoginsRequest {
            rows: vec![MaskedLogin {
                message_id: "m-canary".into(),
                user_id: "u".into(),
                masked_ip: Some(CANARY_IP.into()),
                sent_timestamp_ms: 1,
                ..MaskedLogin::default()
            }],
        })
        .await
        .expect("answered")
        .into_inner()
        .refused;
    assert_eq!(refused.len(), 1, "raw PII is refused");
    assert_eq!(leaks(&refused[0].reason), Vec::<&str>::new(), "{}", refused[0].reason);

    // Recovering the value is allowed to return it — and still must not log it.
    let rows = pipeline.rows().await;
    assert_eq!(rows.len(), 2);
    let token = rows[0].masked_device_id.clone().expect("a device token");
    let recovered = vault
        .detokenize(DetokenizeRequest {
            tokens: vec![token],
            purpose: "canary test".into(),
            note: String::new(),
        })
        .await
        .expect("recovers")
        .into_inner();
    assert_eq!(recovered.results[0].value, CANARY_DEVICE);

    // user_logins, every column as text.
    let mut conn = pipeline.db.connect().await;
    let table: Vec<RowText> = diesel::sql_query("SELECT t::text AS row FROM user_logins t")
        .load(&mut conn)
        .await
        .expect("reads user_logins");
    for row in &table {
        assert_eq!(leaks(&row.row), Vec::<&str>::new(), "{}", row.row);
    }

    // Errors of Detokenize, Forget and Restore to a caller who passes a value for a token.
    let mistaken = vec![CANARY_IP.to_owned(), format!("ip_v1_{CANARY_DEVICE}")];
    let refused = vault
        .detokenize(DetokenizeRequest {
            tokens: mistaken.clone(),
            purpose: "canary test".into(),
            note: String::new(),
        })
        .await
        .expect_err("not tokens");
    assert_eq!(leaks(refused.message()), Vec::<&str>::new(), "{}", refused.message());
    let refused = vault
        .forget(ForgetRequest { tokens: mistaken.clone(), purpose: "canary test".into() })
        .await
        .expect_err("not tokens");
    assert_eq!(leaks(refused.message()), Vec::<&str>::new(), "{}", refused.message());
    let refused = vault
        .restore(RestoreRequest { tokens: mistaken, purpose: "canary test".into() })
        .await
        .expect_err("not tokens");
    assert_eq!(leaks(refused.message()), Vec::<&str>::new(), "{}", refused.message());

    // The DLQ: reasons carry no value, and the bodies, read as SQS holds them, are sealed;
    // opened with the DLQ key they are the bodies as sent, and redacted they show none.
    let letters = pipeline.dead_letters().await;
    assert_eq!(letters.len(), 4);
    for letter in &letters {
        let reason = letter.reason.as_deref().unwrap_or_default();
        assert_eq!(leaks(reason), Vec::<&str>::new(), "{reason}");
        assert!(fetchreward_dlq::looks_sealed(&letter.sealed), "{}", letter.sealed);
        assert_eq!(leaks(&letter.sealed), Vec::<&str>::new(), "{}", letter.sealed);
        assert!(bodies.contains(&letter.body), "opened as sent: {}", letter.body);
        let shown = fetchreward_dlq::redact(&letter.body);
        assert_eq!(leaks(&shown), Vec::<&str>::new(), "{shown}");
    }

    // Metric labels of the process (all three services record into it).
    let metrics = fetchreward_telemetry::metrics::handle().render();
    assert!(metrics.contains("fetchreward_ingestor_messages_total"), "metrics are recorded");
    assert_eq!(leaks(&metrics), Vec::<&str>::new());

    pipeline.stop_ingestor().await;
    // Span names and attributes, as an OpenTelemetry collector would receive them.
    let finished = captured.spans();
    assert!(finished.len() > 10, "the services traced their work");
    for span in &finished {
        let mut texts = vec![span.name.to_string()];
        texts.extend(span.attributes.iter().map(|kv| format!("{}={}", kv.key, kv.value)));
        for event in &span.events.events {
            texts.push(event.name.to_string());
            texts.extend(event.attributes.iter().map(|kv| format!("{}={}", kv.key, kv.value)));
        }
        for text in texts {
            assert_eq!(leaks(&text), Vec::<&str>::new(), "a span leaks: {text}");
        }
    }
    let captured = captured.logs.text();
    assert!(captured.lines().count() > 20, "the services logged at debug level");
    for line in captured.lines() {
        assert!(line.starts_with('{'), "JSON lines only: {line}");
        assert_eq!(leaks(line), Vec::<&str>::new(), "a log line leaks: {line}");
    }
}
