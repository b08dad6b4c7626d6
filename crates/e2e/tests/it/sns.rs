//! Messages an SNS topic delivers to the queue without raw message delivery.

use std::time::Duration;

use fetchreward_e2e::Pipeline;

#[tokio::test]
async fn an_sns_wrapped_body_gives_the_same_row_as_the_raw_body() {
    let raw = r#"{"user_id": "u-sns", "app_version": "2.3.0", "device_type": "ios", "ip": "203.0.113.40", "locale": "FR", "device_id": "112-23-3344"}"#;
    let envelope = serde_json::json!({
        "Type": "Notification",
        "MessageId": "0f8f4b5e-3c1a-5d2e-9b7a-1e2d3c4b5a69",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:logins",
        "Message": raw,
        "Timestamp": "2026-12-01T10:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": {"source": {"Type": "String", "Value": "web"}},
    })
    .to_string();
    let mut pipeline = Pipeline::start().await;
    let ids = pipeline.send(&[raw.to_owned(), envelope]).await;
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(30)).await;

    let rows = pipeline.rows().await;
    assert_eq!(rows.len(), 2);
    assert!(pipeline.dead_letters().await.is_empty());
    let row_of =
        |id: &str| rows.iter().find(|r| r.message_id.as_deref() == Some(id)).expect("a row");
    let (plain, wrapped) = (row_of(&ids[0]), row_of(&ids[1]));
    assert_eq!(wrapped.content(), plain.content(), "every column but the message id");
    assert!(plain.masked_ip.as_deref().is_some_and(|t| t.starts_with("ip_v1_")));
    assert_eq!(plain.app_version, Some(20300));
    pipeline.stop_ingestor().await;
}
