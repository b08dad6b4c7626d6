//! One bad message never costs a good one: refusals inside busy batches.

use std::collections::HashSet;
use std::time::Duration;

use fetchreward_cli::sample;

use fetchreward_e2e::Pipeline;

fn logins(count: usize, seed: u64) -> Vec<String> {
    sample::synthetic(
        count,
        seed,
        sample::Shape { distinct_ips: count / 2 + 1, distinct_devices: count / 2 + 1 },
    )
}

/// Every body of `poison` among `valid`, spread out so that each batch holds some.
fn mixed(valid: &[String], poison: &[String]) -> Vec<String> {
    let mut bodies = valid.to_vec();
    let step = valid.len() / poison.len();
    for (i, body) in poison.iter().enumerate() {
        bodies.insert(i * (step + 1) + step / 2, body.clone());
    }
    bodies
}

#[tokio::test]
async fn nul_characters_and_over_long_values_are_dead_lettered_with_their_reason_on_first_receipt()
{
    // With a redrive policy of one receive, anything the ingestor does not settle on the first
    // receipt would reach the DLQ without a reason.
    let mut pipeline = Pipeline::start_with_max_receive_count(1).await;
    let valid = logins(600, 51);
    let poison = sample::poison(1);
    let bodies = mixed(&valid, &poison);
    let ids = pipeline.send(&bodies).await;
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(60)).await;

    let valid_ids: HashSet<&str> = ids
        .iter()
        .zip(&bodies)
        .filter(|(_, body)| !poison.contains(body))
        .map(|(id, _)| id.as_str())
        .collect();
    let rows = pipeline.rows().await;
    let stored: HashSet<&str> = rows.iter().filter_map(|r| r.message_id.as_deref()).collect();
    assert_eq!(rows.len(), valid.len(), "one row per valid message");
    assert_eq!(stored, valid_ids, "every valid message is written");

    let letters = pipeline.dead_letters().await;
    let dead: HashSet<&str> = letters.iter().map(|l| l.body.as_str()).collect();
    let expected: HashSet<&str> = poison.iter().map(String::as_str).collect();
    assert_eq!(dead, expected, "exactly the poison messages are dead-lettered");
    assert_eq!(letters.len(), poison.len(), "each once");
    for letter in &letters {
        let code = letter.reason_code.as_deref().expect("a reason code");
        assert!(["nul_character", "too_long"].contains(&code), "{code}");
        assert!(letter.reason.as_deref().is_some_and(|r| r.starts_with("field `")));
    }
    pipeline.stop_ingestor().await;
}

#[tokio::test]
async fn messages_the_writer_refused_are_redriven_and_written_once_the_cause_is_fixed() {
    use diesel_async::RunQueryDsl;
    use fetchreward_cli::dlq;

    let mut pipeline = Pipeline::start().await;
    // A rule of the table the model does not know, which the operator will lift.
    let mut conn = pipeline.db.connect().await;
    diesel::sql_query(
        "ALTER TABLE user_logins ADD CONSTRAINT no_blocked CHECK (user_id NOT LIKE 'blocked-%')",
    )
    .execute(&mut conn)
    .await
    .expect("adds the constraint");
    let valid = logins(60, 61);
    let blocked: Vec<String> = (0..5)
        .map(|i| {
            format!(r#"{{"user_id": "blocked-{i}", "ip": "192.0.2.{i}", "device_id": "b-{i}"}}"#)
        })
        .collect();
    let bodies = mixed(&valid, &blocked);
    let ids = pipeline.send(&bodies).await;
    let blocked_ids: HashSet<&str> = ids
        .iter()
        .zip(&bodies)
        .filter(|(_, body)| blocked.contains(body))
        .map(|(id, _)| id.as_str())
        .collect();
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(pipeline.rows().await.len(), 60);

    let (sqs, dlq_url, queue_url) =
        (&pipeline.sqs, &pipeline.queues.dlq_url, &pipeline.queues.queue_url);
    let opener = fetchreward_dlq::Opener::new(pipeline.stack.kms());
    let letters = dlq::list(sqs, dlq_url, 100).await.expect("lists the DLQ");
    assert_eq!(letters.len(), 5);
    for letter in &letters {
        // Sealed in the queue; opened, the body as sent; shown, its personal fields redacted.
        assert!(letter.is_sealed() && !letter.body.contains("192.0.2."), "{}", letter.body);
        let opened = letter.open(&opener).await.expect("opens with the DLQ key");
        assert!(blocked.contains(&opened), "{opened}");
        let shown = letter.redacted(&opener).await;
        assert!(shown.contains(r#""ip":"<redacted>""#) && shown.contains("blocked-"), "{shown}");
        assert!(!shown.contains("192.0.2."), "{shown}");
        let refusal = letter.refusal.as_ref().expect("refused by the writer");
        assert_eq!(
            (refusal.refused_by.as_str(), refusal.code.as_str()),
            ("writer", "db_constraint_violation")
        );
        assert!(blocked_ids.contains(letter.source_message_id.as_str()));
    }
    let shown = dlq::show(sqs, dlq_url, &letters[0].source_message_id).await.expect("shows");
    assert_eq!(shown.map(|l| l.message_id), Some(letters[0].message_id.clone()));

    diesel::sql_query("ALTER TABLE user_logins DROP CONSTRAINT no_blocked")
        .execute(&mut conn)
        .await
        .expect("lifts the rule");
    let everything = dlq::RedriveFilter::default();
    let dry = dlq::redrive(sqs, &opener, dlq_url, queue_url, &everything, true, |_| {})
        .await
        .expect("runs");
    assert_eq!((dry.matched, dry.moved), (5, 0));
    let other_code =
        dlq::RedriveFilter { codes: vec!["invalid_ip".into()], message_ids: Vec::new() };
    let none = dlq::redrive(sqs, &opener, dlq_url, queue_url, &other_code, false, |_| {})
        .await
        .expect("runs");
    assert_eq!(none.moved, 0);
    let moved = dlq::redrive(sqs, &opener, dlq_url, queue_url, &everything, false, |_| {})
        .await
        .expect("runs");
    assert_eq!(moved.moved, 5);
    // An interrupted second run would leave one more copy of a message in the source queue.
    let again = &letters[1];
    let again_body = again.open(&opener).await.expect("opens");
    pipeline
        .sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(&again_body)
        .message_attributes(
            fetchreward_model::attributes::SOURCE_MESSAGE_ID,
            string_attribute("String", &again.source_message_id),
        )
        .message_attributes(
            fetchreward_model::attributes::SOURCE_SENT_TIMESTAMP,
            string_attribute("Number", &again.source_sent_timestamp_ms.to_string()),
        )
        .send()
        .await
        .expect("sends the copy");
    pipeline.wait_drained(Duration::from_secs(60)).await;

    let rows = pipeline.rows().await;
    let stored: HashSet<&str> = rows.iter().filter_map(|r| r.message_id.as_deref()).collect();
    assert_eq!(rows.len(), 65, "every message once, the redriven ones under their first ids");
    assert_eq!(stored, ids.iter().map(String::as_str).collect::<HashSet<_>>());
    assert!(dlq::list(sqs, dlq_url, 10).await.expect("lists").is_empty());
    pipeline.stop_ingestor().await;
}

fn string_attribute(data_type: &str, value: &str) -> aws_sdk_sqs::types::MessageAttributeValue {
    aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("an attribute")
}
