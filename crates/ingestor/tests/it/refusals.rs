//! One bad message never costs a good one: refusals inside busy batches.

use std::collections::HashSet;
use std::time::Duration;

use fetchreward_cli::sample;

use crate::harness::Pipeline;

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
