//! Delivery semantics: redelivery, outages of the vault and the writer, malformed bodies.

use std::collections::HashSet;
use std::time::Duration;

use fetchreward_cli::sample;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{PiiKind, PiiValue, TokenizeRequest};
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use fetchreward_e2e::Pipeline;

fn logins(count: usize, seed: u64) -> Vec<String> {
    sample::synthetic(
        count,
        seed,
        sample::Shape { distinct_ips: count / 3 + 1, distinct_devices: count / 2 + 1 },
    )
}

/// Small batches, one at a time: slow enough for an outage to start halfway.
const SLOW_FLOW: &[(&str, &str)] = &[("MAX_BATCH", "10"), ("WORKERS", "1"), ("POLLERS", "1")];

async fn wait_for_rows(pipeline: &Pipeline, at_least: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while pipeline.rows().await.len() < at_least {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("rows start arriving");
}

fn assert_exactly_once(rows: &[fetchreward_e2e::Row], ids: &[String]) {
    let stored: Vec<&str> = rows.iter().filter_map(|r| r.message_id.as_deref()).collect();
    let distinct: HashSet<&str> = stored.iter().copied().collect();
    assert_eq!(stored.len(), distinct.len(), "no duplicate rows");
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(distinct, expected, "every message has its row");
}

#[tokio::test]
async fn a_message_redelivered_after_its_row_was_committed_gives_one_row() {
    let mut pipeline = Pipeline::start().await;
    let ids = pipeline.send(&logins(1, 11)).await;

    // A consumer that committed the row and died before deleting the message. Its row carries
    // the message's SentTimestamp, as any consumer's does: the idempotency key holds the date.
    let received = pipeline
        .sqs
        .receive_message()
        .queue_url(&pipeline.queues.queue_url)
        .visibility_timeout(1)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .send()
        .await
        .expect("receives")
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1);
    let sent_timestamp_ms: i64 = received[0]
        .attributes()
        .and_then(|attributes| attributes.get(&MessageSystemAttributeName::SentTimestamp))
        .expect("SentTimestamp")
        .parse()
        .expect("milliseconds");
    let mut vault = VaultServiceClient::connect(format!("http://{}", pipeline.vault_addr))
        .await
        .expect("vault");
    let token = vault
        .tokenize(TokenizeRequest {
            values: vec![PiiValue { kind: PiiKind::Ip.into(), value: "192.0.2.1".into() }],
        })
        .await
        .expect("tokenizes")
        .into_inner()
        .tokens
        .remove(0);
    let mut writer = WriterServiceClient::connect(format!("http://{}", pipeline.writer_addr))
        .await
        .expect("writer");
    writer
        .write_logins(WriteLoginsRequest {
            rows: vec![MaskedLogin {
                message_id: ids[0].clone(),
                user_id: "first-attempt".into(),
                masked_ip: Some(token),
                sent_timestamp_ms,
                ..MaskedLogin::default()
            }],
        })
        .await
        .expect("the first attempt commits");

    // After its visibility timeout the message comes back, to the ingestor this time.
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(30)).await;
    let rows = pipeline.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].user_id.as_deref(),
        Some("first-attempt"),
        "the committed row stays as it was"
    );
    assert!(pipeline.dead_letters().await.is_empty());
    pipeline.stop_ingestor().await;
}

#[tokio::test]
async fn the_vault_stopped_while_messages_flow_loses_and_duplicates_nothing() {
    let mut pipeline = Pipeline::start().await;
    let ids = pipeline.send(&logins(1_500, 21)).await;
    pipeline.start_ingestor(SLOW_FLOW).await;
    wait_for_rows(&pipeline, 50).await;
    pipeline.stop_vault().await;
    // One worker: once a batch has failed on the vault, the one before it (tokenized just
    // before the stop) has committed, and nothing moves until the vault is back.
    pipeline.wait_for_dependency_failures("vault", 0, 1).await;
    let during_outage = pipeline.rows().await.len();
    assert!(during_outage < ids.len(), "the outage begins while messages flow");
    pipeline.wait_for_dependency_failures("vault", 1, 1).await;
    assert_eq!(pipeline.rows().await.len(), during_outage, "nothing is written without the vault");
    pipeline.start_vault().await;
    pipeline.wait_drained(Duration::from_secs(90)).await;

    assert_exactly_once(&pipeline.rows().await, &ids);
    assert!(pipeline.dead_letters().await.is_empty(), "no valid message is dead-lettered");
    pipeline.stop_ingestor().await;
}

#[tokio::test]
async fn the_writer_stopped_while_messages_flow_loses_and_duplicates_nothing() {
    let mut pipeline = Pipeline::start().await;
    let ids = pipeline.send(&logins(1_500, 31)).await;
    pipeline.start_ingestor(SLOW_FLOW).await;
    wait_for_rows(&pipeline, 50).await;
    pipeline.stop_writer().await;
    assert!(pipeline.rows().await.len() < ids.len(), "the outage begins while messages flow");
    pipeline.wait_for_dependency_failures("writer", 0, 1).await;
    pipeline.start_writer().await;
    pipeline.wait_drained(Duration::from_secs(90)).await;

    assert_exactly_once(&pipeline.rows().await, &ids);
    assert!(pipeline.dead_letters().await.is_empty());
    pipeline.stop_ingestor().await;
}

#[tokio::test]
async fn malformed_bodies_go_to_the_dlq_with_a_reason_and_the_ingestor_carries_on() {
    let huge = format!(r#"{{"user_id": "u-huge", "device_id": "{}"}}"#, "7".repeat(200 * 1024));
    let malformed = vec![
        "this is not json".to_owned(),
        r#"{"user_id": 42, "ip": "10.0.0.1"}"#.to_owned(),
        r#"{"user_id": "u-ip", "ip": "10.0.0.256"}"#.to_owned(),
        r#"{"user_id": "u-type", "locale": ["RU"]}"#.to_owned(),
        huge,
        "  ".to_owned(),
        "[]".to_owned(),
    ];
    let mut pipeline = Pipeline::start().await;
    pipeline.send(&malformed).await;
    // One more, with a producer's message attribute that the DLQ copy must keep.
    let traced = r#"{"user_id": "u-traced", "ip": "not-an-ip"}"#;
    pipeline
        .sqs
        .send_message()
        .queue_url(&pipeline.queues.queue_url)
        .message_body(traced)
        .message_attributes(
            "trace-id",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("trace-42")
                .build()
                .expect("an attribute"),
        )
        .send()
        .await
        .expect("sends");
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(30)).await;

    let letters = pipeline.dead_letters().await;
    assert_eq!(letters.len(), malformed.len() + 1);
    let traced_letter = letters.iter().find(|l| l.body == traced).expect("the traced message");
    assert_eq!(traced_letter.trace_id.as_deref(), Some("trace-42"));
    assert_eq!(traced_letter.reason_code.as_deref(), Some("invalid_ip"));
    for body in &malformed {
        let letter = letters.iter().find(|l| &l.body == body).expect("each body arrives unchanged");
        let reason = letter.reason.as_deref().expect("a reason attribute");
        assert!(!reason.is_empty() && !reason.contains('\n'), "{reason}");
        assert!(letter.reason_code.is_some());
    }
    let huge_letter = letters.iter().find(|l| l.body.len() > 100_000).expect("the 200 KB body");
    assert_eq!(
        huge_letter.reason.as_deref(),
        Some("field `device_id` is longer than 256 characters")
    );

    // Still consuming.
    let ids = pipeline.send(&logins(3, 41)).await;
    pipeline.wait_drained(Duration::from_secs(30)).await;
    assert_exactly_once(&pipeline.rows().await, &ids);
    pipeline.stop_ingestor().await;
}
