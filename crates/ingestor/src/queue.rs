//! The queue the ingestor consumes, behind a small trait.
//!
//! [`SqsQueue`](sqs::SqsQueue) is the production implementation; [`MemoryQueue`](memory::MemoryQueue)
//! is an in-memory fake with the same delivery rules (visibility timeout, receive count,
//! redrive) for unit tests.

pub mod memory;
pub mod sqs;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

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

/// A message that breaks the message rules, on its way to the dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The message, sent on byte for byte.
    pub message: &'a ReceivedMessage,
    /// The one-line reason (never quotes a value).
    pub reason: String,
    /// The reason's stable code, e.g. `invalid_ip`.
    pub reason_code: &'static str,
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

    /// Sends messages to the dead-letter queue with their reasons as message attributes, then
    /// deletes them from the source; returns the message_ids not fully moved.
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

/// The names of the message attributes a dead-lettered message carries, beside the producer's
/// own (as many of those as fit in SQS's limit of ten attributes per message).
pub mod dlq_attributes {
    /// The prefix of the names below; a producer's attribute with this prefix is not copied.
    pub const PREFIX: &str = "fetchreward-";
    /// The one-line reason.
    pub const REASON: &str = "fetchreward-reason";
    /// The reason's stable code.
    pub const REASON_CODE: &str = "fetchreward-reason-code";
    /// The message's id in the source queue.
    pub const SOURCE_MESSAGE_ID: &str = "fetchreward-source-message-id";
}
