//! The two samples: Fetch's original queue and the project's own.

use std::collections::HashMap;
use std::time::Duration;

use fetchreward_cli::sample;
use fetchreward_model::{PiiKind, parse_login};

use fetchreward_e2e::Pipeline;

#[tokio::test]
async fn fetch_original_queue_gives_99_rows_and_1_dead_letter() {
    let Some(path) = fetchreward_testkit::fetch_sample() else { return };
    let bodies = sample::from_file(&path).expect("reads Fetch's sample");
    assert_eq!(bodies.len(), 100);
    let mut pipeline = Pipeline::start().await;
    pipeline.send(&bodies).await;
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(60)).await;

    assert_eq!(pipeline.rows().await.len(), 99);
    let letters = pipeline.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert!(letters[0].body.contains("oops_wrong_msg_type"));
    assert_eq!(letters[0].reason.as_deref(), Some("field `user_id` is missing"));
    assert_eq!(letters[0].reason_code.as_deref(), Some("missing_user_id"));
    pipeline.stop_ingestor().await;
}

#[tokio::test]
async fn project_sample_gives_its_rows_and_dead_letters_with_shared_tokens() {
    let bodies = sample::project_sample();
    let mut pipeline = Pipeline::start().await;
    let ids = pipeline.send(&bodies).await;
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(60)).await;

    // What the model says each message holds.
    let mut expected: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    let mut invalid = Vec::new();
    for (id, body) in ids.iter().zip(&bodies) {
        match parse_login(body.as_bytes()) {
            Ok(event) => {
                let ip = event.ip.map(|v| v.into_exposed());
                let device = event.device_id.map(|v| v.into_exposed());
                expected.insert(id.clone(), (ip, device));
            }
            Err(rejection) => invalid.push((body.clone(), rejection.to_string())),
        }
    }
    let rows = pipeline.rows().await;
    assert_eq!(rows.len(), expected.len());
    assert_eq!(rows.len(), 95);

    // Equal values share one token; different values never do.
    for kind in PiiKind::ALL {
        let mut token_of_value: HashMap<String, String> = HashMap::new();
        let mut value_of_token: HashMap<String, String> = HashMap::new();
        for row in &rows {
            let id = row.message_id.as_deref().expect("every row has its message_id");
            let (ip, device) = &expected[id];
            let (value, token) = match kind {
                PiiKind::Ip => (ip, &row.masked_ip),
                PiiKind::DeviceId => (device, &row.masked_device_id),
            };
            let (Some(value), Some(token)) = (value, token) else {
                assert_eq!(value.is_some(), token.is_some(), "a token exactly where a value was");
                continue;
            };
            assert!(token.starts_with(kind.token_prefix()), "{token}");
            assert_ne!(token, value, "the value itself never reaches the table");
            assert_eq!(token_of_value.entry(value.clone()).or_insert_with(|| token.clone()), token);
            assert_eq!(value_of_token.entry(token.clone()).or_insert_with(|| value.clone()), value);
        }
        assert!(token_of_value.len() < rows.len(), "the sample repeats {kind} values");
    }

    let letters = pipeline.dead_letters().await;
    assert_eq!(letters.len(), invalid.len());
    assert_eq!(letters.len(), 5);
    for (body, reason) in invalid {
        let letter = letters.iter().find(|l| l.body == body).expect("the body arrives unchanged");
        assert_eq!(letter.reason.as_deref(), Some(reason.as_str()));
    }
    pipeline.stop_ingestor().await;
}
