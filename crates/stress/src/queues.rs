//! The runs' own queue operations: sending messages while keeping the message id SQS gives each
//! one (what the checks compare rows and DLQ copies with), reading a whole DLQ with the
//! attributes the ingestor puts on its copies, and deleting a run's queues.

use std::collections::HashSet;

use anyhow::Context;
use aws_sdk_sqs::Client;
use fetchreward_cli::queue::BATCH;
use fetchreward_model::attributes;

/// How long a DLQ message read by [`dead_letters`] stays invisible: longer than any reading
/// takes, so that no message is read twice.
const DLQ_READ_VISIBILITY_SECS: i32 = 900;

/// Sends `bodies` to `queue_url` and returns the message id SQS gave each body, in order.
pub async fn send_with_ids(
    sqs: &Client,
    queue_url: &str,
    bodies: &[String],
) -> anyhow::Result<Vec<String>> {
    fetchreward_cli::queue::send_all(sqs, queue_url, bodies, |_| {}).await
}

/// A message in a DLQ, as the checks see it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its id in the DLQ.
    pub message_id: String,
    /// `fetchreward-reason`: set on the ingestor's copies, absent on messages the redrive
    /// policy moved.
    pub reason: Option<String>,
    /// `fetchreward-reason-code`.
    pub reason_code: Option<String>,
    /// `fetchreward-source-message-id`: the id the message was sent with.
    pub source_message_id: Option<String>,
}

impl DeadLetter {
    /// The id the message was sent to the source queue with: the ingestor's copies name it in
    /// an attribute; a message the redrive policy moved keeps its own id.
    pub fn source_id(&self) -> &str {
        self.source_message_id.as_deref().unwrap_or(&self.message_id)
    }
}

/// Every message in the DLQ, each once. They are received with a long visibility timeout (not
/// deleted), so the queue must not be read by anything else meanwhile.
pub async fn dead_letters(sqs: &Client, dlq_url: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let mut seen = HashSet::new();
    let mut letters = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(BATCH as i32)
            .visibility_timeout(DLQ_READ_VISIBILITY_SECS)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .context("ReceiveMessage on the DLQ failed")?;
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            let (visible, _) = fetchreward_cli::queue::depth(sqs, dlq_url).await?;
            if visible == 0 {
                return Ok(letters);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        for message in messages {
            let message_id = message.message_id.clone().unwrap_or_default();
            if !seen.insert(message_id.clone()) {
                continue;
            }
            let attribute = |name: &str| {
                message
                    .message_attributes
                    .as_ref()
                    .and_then(|all| all.get(name))
                    .and_then(|value| value.string_value.clone())
            };
            letters.push(DeadLetter {
                reason: attribute(attributes::REASON),
                reason_code: attribute(attributes::REASON_CODE),
                source_message_id: attribute(attributes::SOURCE_MESSAGE_ID),
                message_id,
            });
        }
    }
}

/// Deletes a run's source queue and DLQ, so that the emulator does not keep them.
pub async fn delete_queues(sqs: &Client, queue_urls: [&str; 2]) -> anyhow::Result<()> {
    for queue_url in queue_urls {
        sqs.delete_queue()
            .queue_url(queue_url)
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .with_context(|| format!("DeleteQueue {queue_url} failed"))?;
    }
    Ok(())
}
