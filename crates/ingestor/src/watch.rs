//! Queue depth and message age, for dashboards and alerts.
//!
//! Every `QUEUE_METRICS_SECS` (default 15 s) each replica asks SQS for the source queue's and
//! the DLQ's approximate counts (`GetQueueAttributes`) and publishes
//! `fetchreward_queue_messages{queue="source"|"dlq", state="visible"|"in_flight"|"delayed"}`.
//! SQS tells the age of the oldest message only to CloudWatch
//! (`ApproximateAgeOfOldestMessage`, which the Terraform alarms on); here the pollers note the
//! age of every message they receive, and the watcher publishes the oldest seen since its last
//! tick as `fetchreward_ingestor_oldest_received_age_seconds`. Every replica publishes the same
//! counts: a dashboard takes their `max`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::queue::ReceivedMessage;
use crate::queue::sqs::SqsQueue;

/// The oldest age, in milliseconds, of the messages received since the last tick.
#[derive(Debug, Default)]
pub struct OldestReceived(AtomicI64);

impl OldestReceived {
    /// Notes the ages of `messages`, received now.
    pub fn note(&self, messages: &[ReceivedMessage]) {
        let now = Utc::now();
        if let Some(oldest) = messages.iter().map(|m| (now - m.sent_at).num_milliseconds()).max() {
            self.0.fetch_max(oldest, Ordering::Relaxed);
        }
    }

    /// The oldest age noted since the last call, in seconds; 0 when none.
    fn take_seconds(&self) -> f64 {
        self.0.swap(0, Ordering::Relaxed).max(0) as f64 / 1000.0
    }
}

/// The attributes asked for, and the `state` label of each.
const STATES: [(QueueAttributeName, &str); 3] = [
    (QueueAttributeName::ApproximateNumberOfMessages, "visible"),
    (QueueAttributeName::ApproximateNumberOfMessagesNotVisible, "in_flight"),
    (QueueAttributeName::ApproximateNumberOfMessagesDelayed, "delayed"),
];

/// Publishes the queues' counts and the oldest received age every `interval` until
/// `shutdown`. A failed read is logged at debug level and counted; the gauges keep their
/// last values.
pub async fn watch(
    queue: &SqsQueue,
    oldest: &OldestReceived,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        for (name, url) in [("source", queue.queue_url()), ("dlq", queue.dlq_url())] {
            match queue.attributes(url, STATES.iter().map(|(attribute, _)| attribute.clone())).await
            {
                Ok(values) => {
                    for (attribute, state) in &STATES {
                        let count = values
                            .get(attribute)
                            .and_then(|value| value.parse::<f64>().ok())
                            .unwrap_or(0.0);
                        metrics::gauge!("fetchreward_queue_messages", "queue" => name, "state" => *state)
                            .set(count);
                    }
                }
                Err(err) => {
                    metrics::counter!("fetchreward_ingestor_queue_watch_failures_total", "queue" => name)
                        .increment(1);
                    tracing::debug!(queue = name, error = %err, "queue attributes not read");
                }
            }
        }
        metrics::gauge!("fetchreward_ingestor_oldest_received_age_seconds")
            .set(oldest.take_seconds());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(age_ms: i64) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "h".into(),
            body: String::new(),
            sent_at: Utc::now() - chrono::Duration::milliseconds(age_ms),
            receive_count: 1,
            attributes: Vec::new(),
            aws_trace_header: None,
        }
    }

    #[test]
    fn the_oldest_age_since_the_last_tick_is_published_once() {
        let oldest = OldestReceived::default();
        oldest.note(&[received(1_000), received(90_000)]);
        oldest.note(&[received(5_000)]);
        let seconds = oldest.take_seconds();
        assert!((90.0..91.0).contains(&seconds), "{seconds}");
        assert_eq!(oldest.take_seconds(), 0.0, "reset at each tick");
    }
}
