//! The names of the SQS message attributes Fetchreward reads and writes: the contract between
//! the ingestor, the dead-letter queue and the `fetchreward dlq` commands.
//!
//! Every name starts with [`PREFIX`], which is reserved: the ingestor never copies a producer's
//! attribute with that prefix to a DLQ copy, and a producer must not set one (the two source
//! attributes decide which row a message becomes).

/// The prefix of every name below.
pub const PREFIX: &str = "fetchreward-";

/// On a DLQ copy: the one-line reason the message was refused (never a value).
pub const REASON: &str = "fetchreward-reason";

/// On a DLQ copy: the reason's stable code, e.g. `nul_character` or `db_constraint_violation`.
pub const REASON_CODE: &str = "fetchreward-reason-code";

/// On a DLQ copy: who refused the message: `ingestor` (the message rules), `vault` or
/// `writer`.
pub const REFUSED_BY: &str = "fetchreward-refused-by";

/// On a DLQ copy, and on a message redriven from the DLQ: the SQS MessageId the message was
/// first sent with, which stays its row's idempotency key however often it is redriven.
pub const SOURCE_MESSAGE_ID: &str = "fetchreward-source-message-id";

/// With [`SOURCE_MESSAGE_ID`]: the first `SentTimestamp`, in milliseconds since the Unix epoch,
/// which stays its row's `create_date`.
pub const SOURCE_SENT_TIMESTAMP: &str = "fetchreward-source-sent-timestamp";
