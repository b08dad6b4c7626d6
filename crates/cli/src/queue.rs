//! Queue commands: seeding, queue depth, waiting for the queue to drain.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// SendMessageBatch's limit.
pub const BATCH: usize = 10;
/// SendMessageBatch calls in flight.
const CONCURRENT_SENDS: usize = 16;
/// Above this many messages, seeding shows a progress bar.
const PROGRESS_FROM: usize = 1_000;

/// One message to send: its body and its message attributes.
#[derive(Clone, Default)]
pub struct Outgoing {
    /// The body. May hold personal data.
    pub body: String,
    /// Message attributes by name.
    pub attributes: HashMap<String, MessageAttributeValue>,
}

impl From<&String> for Outgoing {
    fn from(body: &String) -> Self {
        Outgoing { body: body.clone(), attributes: HashMap::new() }
    }
}

/// Sends `bodies` to `queue_url` in batches of ten, with a progress bar for many; returns how
/// many were sent.
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
    let ids = send_all(sqs, queue_url, &bodies, |count| progress.inc(count as u64)).await?;
    progress.finish_and_clear();
    Ok(ids.len())
}

/// Sends `bodies` to `queue_url`, ten per SendMessageBatch call, several calls at a time, and
/// returns the message id SQS gave each body, in the order of `bodies`. `sent` is told how many
/// each call sent.
pub async fn send_all(
    sqs: &Client,
    queue_url: &str,
    bodies: &[String],
    mut sent: impl FnMut(usize),
) -> anyhow::Result<Vec<String>> {
    // The calls are made before they are streamed: a closure inside the stream would make the
    // future too general for tokio::spawn (rust-lang/rust#102211).
    let calls: Vec<_> = bodies
        .chunks(BATCH)
        .enumerate()
        .map(|(index, chunk)| {
            let messages: Vec<Outgoing> = chunk.iter().map(Outgoing::from).collect();
            async move { (index * BATCH, send_batch(sqs, queue_url, &messages).await) }
        })
        .collect();
    let mut sends = futures::stream::iter(calls).buffer_unordered(CONCURRENT_SENDS);
    let mut ids = vec![String::new(); bodies.len()];
    while let Some((start, result)) = sends.next().await {
        let batch_ids = result?;
        sent(batch_ids.len());
        for (offset, id) in batch_ids.into_iter().enumerate() {
            ids[start + offset] = id;
        }
    }
    Ok(ids)
}

/// One SendMessageBatch call of at most [`BATCH`] messages; returns the message ids SQS gave
/// them, in order. Fails when SQS refuses any of them (the others were sent).
pub async fn send_batch(
    sqs: &Client,
    queue_url: &str,
    messages: &[Outgoing],
) -> anyhow::Result<Vec<String>> {
    let entries = messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&message.body)
                .set_message_attributes(
                    (!message.attributes.is_empty()).then(|| message.attributes.clone()),
                )
                .build()
                .expect("id and body are set")
        })
        .collect::<Vec<_>>();
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
    let mut ids = vec![String::new(); messages.len()];
    for sent in output.successful() {
        let slot = sent.id().parse::<usize>().ok().and_then(|position| ids.get_mut(position));
        *slot.context("SQS answered an unknown entry id")? = sent.message_id().to_owned();
    }
    if ids.iter().any(String::is_empty) {
        bail!("SendMessageBatch did not answer a message id for every message");
    }
    Ok(ids)
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
        // Finer once nothing is left to receive: the last deletes are moments away.
        let pause = if visible > 0 { 100 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
