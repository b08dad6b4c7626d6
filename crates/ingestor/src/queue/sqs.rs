//! [`Queue`] on Amazon SQS (or any emulator speaking its API).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Utc};
use fetchreward_dlq::Sealer;
use fetchreward_model::attributes;
use futures::StreamExt as _;

use super::{BATCH_LIMIT, DeadLetter, MessageAttribute, Queue, QueueError, ReceivedMessage};

/// Most `DeleteMessageBatch` calls of one delete in flight at once, unless set otherwise.
const DEFAULT_DELETE_CONCURRENCY: usize = 16;

/// SQS's limit of message attributes per message.
const MAX_ATTRIBUTES: usize = 10;

/// A source queue and its dead-letter queue on SQS. Every body sent to the DLQ is sealed
/// first (`fetchreward_dlq`): no raw body ever reaches it.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: String,
    sealer: Arc<Sealer>,
    delete_concurrency: usize,
}

impl SqsQueue {
    /// The queues at `queue_url` and `dlq_url`, dead-letter bodies sealed by `sealer`.
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dlq_url: impl Into<String>,
        sealer: Arc<Sealer>,
    ) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
            sealer,
            delete_concurrency: DEFAULT_DELETE_CONCURRENCY,
        }
    }

    /// The same queues, with at most `calls` `DeleteMessageBatch` calls of one delete in flight
    /// at once (at least one).
    pub fn with_delete_concurrency(self, calls: usize) -> Self {
        SqsQueue { delete_concurrency: calls.max(1), ..self }
    }

    /// The source queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The DLQ's URL.
    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// The `names` attributes of the queue at `url`.
    pub async fn attributes(
        &self,
        url: &str,
        names: impl IntoIterator<Item = QueueAttributeName>,
    ) -> Result<HashMap<QueueAttributeName, String>, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.into_iter().collect()))
            .send()
            .await
            .map_err(|err| classify("GetQueueAttributes", err))?;
        Ok(output.attributes.unwrap_or_default())
    }

    /// The sealed body of `letter`, bound to its source id and reason code.
    async fn sealed_body(&self, letter: &DeadLetter<'_>) -> Result<String, QueueError> {
        self.sealer
            .seal(&letter.origin.message_id, &letter.refusal.code, &letter.message.body)
            .await
            .map_err(|err| {
                let error = format!("sealing a DLQ body: {err}");
                if err.is_transient() {
                    QueueError::Transient(error)
                } else {
                    QueueError::Permanent(error)
                }
            })
    }
}

/// Error codes that retrying cannot fix.
const PERMANENT_CODES: [&str; 6] = [
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidAddress",
    "InvalidParameterValue",
];

fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let permanent = err.code().is_some_and(|code| PERMANENT_CODES.contains(&code));
    let detail = format!("{operation}: {}", DisplayErrorContext(&err));
    if permanent { QueueError::Permanent(detail) } else { QueueError::Transient(detail) }
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

fn number_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

fn received(message: Message) -> Option<ReceivedMessage> {
    let attributes = message.attributes.unwrap_or_default();
    let sent_at = attributes
        .get(&MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_else(Utc::now);
    let receive_count = attributes
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let aws_trace_header = attributes.get(&MessageSystemAttributeName::AwsTraceHeader).cloned();
    let attributes = message
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let attribute = MessageAttribute {
                data_type: value.data_type,
                string_value: value.string_value,
                binary_value: value.binary_value.map(|blob| blob.into_inner()),
            };
            (name, attribute)
        })
        .collect();
    Some(ReceivedMessage {
        message_id: message.message_id?,
        receipt_handle: message.receipt_handle?,
        body: message.body.unwrap_or_default(),
        sent_at,
        receive_count,
        attributes,
        aws_trace_header,
    })
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH_LIMIT as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|err| classify("ReceiveMessage", err))?;
        Ok(output.messages.unwrap_or_default().into_iter().filter_map(received).collect())
    }

    async fn delete(&self, messages: &[&ReceivedMessage]) -> Result<Vec<String>, QueueError> {
        let calls = messages.chunks(BATCH_LIMIT).map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, message)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&message.receipt_handle)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| classify("DeleteMessageBatch", err))?;
            Ok::<_, QueueError>(failed_ids(chunk, output.failed().iter().map(|f| f.id())))
        });
        // Collected first: the compiler cannot prove a stream over the lazy map `Send`.
        let calls: Vec<_> = calls.collect();
        let results: Vec<_> =
            futures::stream::iter(calls).buffer_unordered(self.delete_concurrency).collect().await;
        let mut failed = Vec::new();
        for result in results {
            failed.extend(result?);
        }
        Ok(failed)
    }

    async fn dead_letter(&self, letters: &[DeadLetter<'_>]) -> Result<Vec<String>, QueueError> {
        let mut not_moved = Vec::new();
        let mut sent = Vec::with_capacity(letters.len());
        for chunk in letters.chunks(BATCH_LIMIT) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, letter) in chunk.iter().enumerate() {
                let body = self.sealed_body(letter).await?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .set_message_attributes(Some(dlq_copy_attributes(letter)))
                        .build()
                        .expect("id and body are set"),
                );
            }
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| classify("SendMessageBatch", err))?;
            let failed: Vec<&str> = output.failed().iter().map(|f| f.id()).collect();
            for (i, letter) in chunk.iter().enumerate() {
                if failed.contains(&i.to_string().as_str()) {
                    not_moved.push(letter.message.message_id.clone());
                } else {
                    sent.push(letter.message);
                }
            }
        }
        // A message deleted only after its copy is in the DLQ is never lost; a failed delete
        // means a redelivery and a second copy in the DLQ, which is the safe side.
        not_moved.extend(self.delete(&sent).await?);
        Ok(not_moved)
    }

    async fn set_visibility(
        &self,
        messages: &[&ReceivedMessage],
        visibility: Duration,
    ) -> Result<(), QueueError> {
        for chunk in messages.chunks(BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, message)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&message.receipt_handle)
                        .visibility_timeout(visibility.as_secs() as i32)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            // Entries of messages deleted meanwhile fail individually; that is expected.
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| classify("ChangeMessageVisibilityBatch", err))?;
        }
        Ok(())
    }
}

/// The attributes of a DLQ copy: the refusal (reason, code, who refused) and the origin
/// (message id and sent time), then the producer's own attributes as long as SQS's limit
/// allows.
fn dlq_copy_attributes(letter: &DeadLetter<'_>) -> HashMap<String, MessageAttributeValue> {
    let refusal = &letter.refusal;
    let sent_ms = letter.origin.sent_at.timestamp_millis().to_string();
    let mut copied = HashMap::from([
        (attributes::REASON.to_owned(), string_attribute(&refusal.reason)),
        (attributes::REASON_CODE.to_owned(), string_attribute(&refusal.code)),
        (attributes::REFUSED_BY.to_owned(), string_attribute(refusal.refused_by)),
        (attributes::SOURCE_MESSAGE_ID.to_owned(), string_attribute(&letter.origin.message_id)),
        (attributes::SOURCE_SENT_TIMESTAMP.to_owned(), number_attribute(&sent_ms)),
    ]);
    let own =
        letter.message.attributes.iter().filter(|(name, _)| !name.starts_with(attributes::PREFIX));
    for (name, attribute) in own {
        if copied.len() == MAX_ATTRIBUTES {
            tracing::debug!(
                message_id = %letter.message.message_id,
                "producer attributes beyond the limit are not copied to the DLQ"
            );
            break;
        }
        let value = MessageAttributeValue::builder()
            .data_type(&attribute.data_type)
            .set_string_value(attribute.string_value.clone())
            .set_binary_value(
                attribute.binary_value.clone().map(aws_sdk_sqs::primitives::Blob::new),
            )
            .build()
            .expect("data_type is set");
        copied.insert(name.clone(), value);
    }
    copied
}

/// The message_ids of a chunk whose batch-entry ids (their positions) failed.
fn failed_ids<'a>(
    chunk: &[&ReceivedMessage],
    failed: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    failed
        .filter_map(|id| id.parse::<usize>().ok())
        .filter_map(|i| chunk.get(i))
        .map(|message| message.message_id.clone())
        .collect()
}
