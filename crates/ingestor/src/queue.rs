//! The queue the ingestor consumes, behind a small trait.
//!
//! [`SqsQueue`](sqs::SqsQueue) is the production implementation; `memory::MemoryQueue`, compiled
//! for unit tests only, is an in-memory fake with the same delivery rules (visibility timeout,
//! receive count, redrive).

#[cfg(test)]
pub mod memory;
pub mod sqs;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fetchreward_model::attributes;
use fetchreward_model::limits;

use crate::refusal::Refusal;

/// The most messages one receive, delete or send call handles (SQS's batch limit).
pub const BATCH_LIMIT: usize = 10;

/// One received message.
#[derive(Clone)]
pub struct ReceivedMessage {
    /// The queue's id of the message: the row's idempotency key.
    pub message_id: String,
    /// The handle that deletes or extends this delivery.
    pub receipt_handle: String,
    /// The body, as sent. May hold PII: never log it.
    pub body: String,
    /// When the queue received the message (`SentTimestamp`).
    pub sent_at: DateTime<Utc>,
    /// How many times it has been delivered, this time included (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// The producer's message attributes, carried over to the DLQ copy of an invalid message.
    pub attributes: Vec<(String, MessageAttribute)>,
    /// SQS's `AWSTraceHeader` system attribute: the X-Ray trace of a traced producer.
    pub aws_trace_header: Option<String>,
}

/// The message a row comes from: its idempotency key and its date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The SQS MessageId the message was first sent with.
    pub message_id: String,
    /// Its first `SentTimestamp`.
    pub sent_at: DateTime<Utc>,
}

impl ReceivedMessage {
    /// The trace the message belongs to: its `traceparent` attribute, else SQS's
    /// `AWSTraceHeader`.
    pub fn trace(&self) -> Option<fetchreward_telemetry::propagation::RemoteSpan> {
        use fetchreward_telemetry::propagation;
        self.attribute(propagation::TRACEPARENT)
            .and_then(propagation::context_of_traceparent)
            .or_else(|| {
                self.aws_trace_header.as_deref().and_then(propagation::context_of_xray_header)
            })
    }

    /// The value of a `String` or `Number` attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(own, _)| own == name)
            .and_then(|(_, attribute)| attribute.string_value.as_deref())
    }

    /// Where the row comes from: the message itself, or, for a message redriven from the
    /// dead-letter queue, the message it was first sent as (named by the attributes
    /// [`attributes::SOURCE_MESSAGE_ID`] and [`attributes::SOURCE_SENT_TIMESTAMP`]), so that a
    /// message redriven twice still gives one row.
    pub fn origin(&self) -> Result<Origin, Refusal> {
        let refused = |reason: &str| Refusal {
            refused_by: "ingestor",
            code: "invalid_source_attributes".to_owned(),
            reason: reason.to_owned(),
        };
        let id = self.attribute(attributes::SOURCE_MESSAGE_ID);
        let sent = self.attribute(attributes::SOURCE_SENT_TIMESTAMP);
        match (id, sent) {
            (None, None) => {
                Ok(Origin { message_id: self.message_id.clone(), sent_at: self.sent_at })
            }
            (Some(id), Some(sent)) => {
                if id.trim().is_empty()
                    || fetchreward_model::check_text(id, limits::MESSAGE_ID).is_err()
                {
                    return Err(refused(
                        "attribute `fetchreward-source-message-id` is not a message id",
                    ));
                }
                let sent_at = sent
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .ok_or_else(|| {
                        refused("attribute `fetchreward-source-sent-timestamp` is not a timestamp in milliseconds")
                    })?;
                Ok(Origin { message_id: id.to_owned(), sent_at })
            }
            _ => Err(refused(
                "attributes `fetchreward-source-message-id` and `fetchreward-source-sent-timestamp` come together",
            )),
        }
    }
}

/// A message attribute as the producer set it.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    /// `String`, `Number`, `Binary`, or one of those with a custom suffix.
    pub data_type: String,
    /// The value of a `String` or `Number` attribute.
    pub string_value: Option<String>,
    /// The value of a `Binary` attribute.
    pub binary_value: Option<Vec<u8>>,
}

impl fmt::Debug for MessageAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A producer's attribute may hold anything: only its type is shown.
        f.debug_struct("MessageAttribute")
            .field("data_type", &self.data_type)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("message_id", &self.message_id)
            .field("body_bytes", &self.body.len())
            .field("sent_at", &self.sent_at)
            .field("receive_count", &self.receive_count)
            .field("attributes", &self.attributes.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A message that cannot become a row, on its way to the dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The message, whose body is sealed on its way to the DLQ.
    pub message: &'a ReceivedMessage,
    /// The message it was first sent as (the DLQ copy names it, so that a redrive keeps it).
    pub origin: Origin,
    /// Why, and who said so.
    pub refusal: Refusal,
}

/// A failed queue operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// Throttling, a timeout, a network or server error: worth retrying.
    #[error("queue temporarily unavailable: {0}")]
    Transient(String),
    /// A missing queue, denied access, a malformed request: retrying will not help.
    #[error("queue error: {0}")]
    Permanent(String),
}

impl QueueError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Transient(_))
    }
}

/// Receive, delete, dead-letter and extend: what the ingestor needs of a queue.
///
/// Batch operations take any number of messages and split them into calls of
/// [`BATCH_LIMIT`]; they return the message_ids whose entries failed, so the caller can leave
/// exactly those for redelivery.
pub trait Queue: Send + Sync + 'static {
    /// Receives up to [`BATCH_LIMIT`] messages, waiting up to `wait` for the first, and makes
    /// them invisible to other consumers for `visibility`.
    fn receive(
        &self,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    /// Deletes delivered messages; returns the message_ids that could not be deleted.
    fn delete(
        &self,
        messages: &[&ReceivedMessage],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;

    /// Sends messages to the dead-letter queue with their refusals and origins as message
    /// attributes, then deletes them from the source; returns the message_ids not fully moved.
    fn dead_letter(
        &self,
        letters: &[DeadLetter<'_>],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;

    /// Sets the visibility timeout of delivered messages: longer to keep working on them,
    /// zero to hand them back at once.
    fn set_visibility(
        &self,
        messages: &[&ReceivedMessage],
        visibility: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}
