//! Queue commands: seeding, waiting for the queue to drain, reading the DLQ.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// SendMessageBatch's limit.
const BATCH: usize = 10;
/// SendMessageBatch calls in flight.
const CONCURRENT_SENDS: usize = 16;
/// Above this many messages, seeding shows a progress bar.
const PROGRESS_FROM: usize = 1_000;

/// Sends `bodies` to `queue_url` in batches of ten; returns how many were sent.
pub async fn seed(sqs: &Client, queue_url: &str, bodies: Vec<String>) -> anyhow::Result<usize> {
    let progress = if bodies.len() >= PROGRESS_FROM {
        let bar = ProgressBar::new(bodies.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} messages ({per_sec}, {eta} left)")
                .expect("a valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let batches: Vec<Vec<String>> = bodies.chunks(BATCH).map(<[String]>::to_vec).collect();
    let mut sends = futures::stream::iter(batches)
        .map(|batch| send_batch(sqs, queue_url, batch))
        .buffer_unordered(CONCURRENT_SENDS);
    let mut sent = 0;
    while let Some(result) = sends.next().await {
        let count = result?;
        sent += count;
        progress.inc(count as u64);
    }
    progress.finish_and_clear();
    Ok(sent)
}

async fn send_batch(sqs: &Client, queue_url: &str, bodies: Vec<String>) -> anyhow::Result<usize> {
    let entries = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
                .expect("id and body are set")
        })
        .collect::<Vec<_>>();
    let count = entries.len();
    let output = sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .context("SendMessageBatch failed")?;
    if let Some(failed) = output.failed().first() {
        bail!(
            "SQS refused a message: {} ({})",
            failed.code(),
            failed.message().unwrap_or("no detail")
        );
    }
    Ok(count)
}

/// Visible and in-flight message counts of a queue.
pub async fn depth(sqs: &Client, queue_url: &str) -> anyhow::Result<(u64, u64)> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .context("GetQueueAttributes failed")?
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes.get(&name).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0)
    };
    Ok((
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// Waits until the queue holds no message, visible or in flight.
pub async fn wait_empty(
    sqs: &Client,
    queue_url: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let (visible, in_flight) = depth(sqs, queue_url).await?;
        if visible == 0 && in_flight == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!(
                "the queue still holds {visible} visible and {in_flight} in-flight messages after {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A message read from the DLQ.
pub struct DeadLetter {
    /// Its id in the DLQ.
    pub message_id: String,
    /// The reason attribute, if the ingestor put it there (redriven messages have none).
    pub reason: Option<String>,
    /// How many times SQS delivered it.
    pub receive_count: String,
    /// The body as sent.
    pub body: String,
}

/// Reads up to `max` messages of the DLQ without consuming them: they are received with a
/// visibility timeout of zero, so they stay available.
pub async fn peek(sqs: &Client, dlq_url: &str, max: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut empty_receives = 0;
    while letters.len() < max && empty_receives < 3 {
        let output = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(BATCH as i32)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .context("ReceiveMessage on the DLQ failed")?;
        let messages = output.messages.unwrap_or_default();
        let before = letters.len();
        for message in messages {
            let message_id = message.message_id.clone().unwrap_or_default();
            if letters.iter().any(|l| l.message_id == message_id) {
                continue;
            }
            letters.push(DeadLetter {
                message_id,
                reason: message
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get("fetchreward-reason"))
                    .and_then(|v| v.string_value.clone()),
                receive_count: message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .cloned()
                    .unwrap_or_default(),
                body: message.body.unwrap_or_default(),
            });
        }
        if letters.len() == before {
            empty_receives += 1;
        }
    }
    letters.truncate(max);
    Ok(letters)
}
