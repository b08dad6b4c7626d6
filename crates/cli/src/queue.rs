//! Queue commands: seeding, queue depth, waiting for the queue to drain.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
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
