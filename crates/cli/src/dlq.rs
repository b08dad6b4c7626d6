//! The dead-letter queue: read it, show one message, move messages back to the source queue,
//! empty it.
//!
//! Reading walks the queue: each message is received with a visibility timeout long enough
//! for the walk ([`WALK_VISIBILITY_SECS`]), so every receive returns messages not seen yet,
//! and every message the command does not consume is handed back (visibility zero) when it
//! is done, so it is visible again at once for the next reader.
//!
//! A message in the DLQ came there one of two ways: the ingestor dead-lettered it, with its
//! refusal (reason, code, who refused it) and its origin (first message id and sent time) as
//! attributes; or the source queue's redrive policy moved it after too many receives, as it
//! was (AWS and fauxqs keep its message id and sent time), with no reason.
//!
//! The ingestor's copies hold their body sealed (`fetchreward_dlq`): [`DeadLetter::open`]
//! opens one with `kms:Decrypt` on the DLQ key, and what is shown of it is redacted
//! ([`fetchreward_dlq::redact`]) unless the operator asks to reveal it, which is logged. A
//! message the redrive policy moved never passed the ingestor: its body is raw, and flagged.
//!
//! Redrive opens each chosen message, sends it back to the source queue with its origin as
//! attributes, then deletes it from the DLQ. The ingestor keys the row by the origin, so a message
//! redriven twice (a run interrupted between the send and the delete, and run again) still
//! gives one row.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName,
};
use fetchreward_dlq::{OpenError, Opener};
use fetchreward_model::attributes;

use crate::queue::{BATCH, Outgoing, send_batch};

/// How long a walked message stays invisible to others before the walk hands it back.
pub const WALK_VISIBILITY_SECS: i32 = 300;

/// Empty receives in a row after which the walk takes the queue for exhausted.
const EMPTY_RECEIVES_TO_STOP: u32 = 2;

/// Why the ingestor dead-lettered a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `ingestor`, `vault` or `writer`.
    pub refused_by: String,
    /// The stable code, e.g. `nul_character`.
    pub code: String,
    /// The one-line reason.
    pub reason: String,
}

/// One message of the dead-letter queue.
#[derive(Clone)]
pub struct DeadLetter {
    /// Its id in the DLQ.
    pub message_id: String,
    /// The handle of the walk's delivery.
    receipt_handle: String,
    /// Why the ingestor refused it; `None` when the redrive policy moved it.
    pub refusal: Option<Refusal>,
    /// The message id it was first sent with: its row's key.
    pub source_message_id: String,
    /// Its first `SentTimestamp`, in milliseconds since the Unix epoch.
    pub source_sent_timestamp_ms: i64,
    /// How many times SQS delivered the DLQ copy.
    pub receive_count: u32,
    /// The body as the DLQ holds it: sealed for the ingestor's copies, raw (may hold personal
    /// data) for those the redrive policy moved.
    pub body: String,
    /// The producer's own attributes (the `fetchreward-` ones are above).
    pub producer_attributes: HashMap<String, MessageAttributeValue>,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("message_id", &self.message_id)
            .field("refusal", &self.refusal)
            .field("source_message_id", &self.source_message_id)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl DeadLetter {
    fn from_message(message: Message) -> Option<DeadLetter> {
        let mut all = message.message_attributes.unwrap_or_default();
        let mut take = |name: &str| all.remove(name).and_then(|value| value.string_value);
        let refusal = take(attributes::REASON).map(|reason| Refusal {
            refused_by: take(attributes::REFUSED_BY).unwrap_or_else(|| "unknown".to_owned()),
            code: take(attributes::REASON_CODE).unwrap_or_else(|| "unknown".to_owned()),
            reason,
        });
        let source_id = take(attributes::SOURCE_MESSAGE_ID);
        let source_sent = take(attributes::SOURCE_SENT_TIMESTAMP).and_then(|ms| ms.parse().ok());
        let system = message.attributes.unwrap_or_default();
        let sent = system
            .get(&MessageSystemAttributeName::SentTimestamp)
            .and_then(|ms| ms.parse::<i64>().ok());
        let message_id = message.message_id?;
        Some(DeadLetter {
            source_message_id: source_id.unwrap_or_else(|| message_id.clone()),
            source_sent_timestamp_ms: source_sent.or(sent).unwrap_or_default(),
            receive_count: system
                .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|count| count.parse().ok())
                .unwrap_or_default(),
            message_id,
            receipt_handle: message.receipt_handle?,
            refusal,
            body: message.body.unwrap_or_default(),
            producer_attributes: all
                .into_iter()
                .filter(|(name, _)| !name.starts_with(attributes::PREFIX))
                .collect(),
        })
    }

    /// Whether `id` names this message: its DLQ id or the id it was first sent with.
    pub fn is_named(&self, id: &str) -> bool {
        self.message_id == id || self.source_message_id == id
    }

    /// The refusal's code, or `redrive_policy` for a message the redrive policy moved.
    pub fn code(&self) -> &str {
        self.refusal.as_ref().map_or("redrive_policy", |refusal| refusal.code.as_str())
    }

    /// Whether the body is sealed: an ingestor's copy. A body that is not is raw and may hold
    /// personal data.
    pub fn is_sealed(&self) -> bool {
        self.refusal.is_some() && fetchreward_dlq::looks_sealed(&self.body)
    }

    /// The body as it was sent: opened with the DLQ key when sealed, as it is otherwise.
    pub async fn open(&self, opener: &Opener) -> Result<String, OpenError> {
        match &self.refusal {
            Some(refusal) if self.is_sealed() => {
                opener.open(&self.body, &self.source_message_id, &refusal.code).await
            }
            _ => Ok(self.body.clone()),
        }
    }

    /// What may be shown of the body without revealing it: the opened body with its personal
    /// fields redacted, or why it cannot be opened.
    pub async fn redacted(&self, opener: &Opener) -> String {
        match self.open(opener).await {
            Ok(body) if self.is_sealed() => fetchreward_dlq::redact(&body),
            Ok(body) => format!("UNSEALED {}", fetchreward_dlq::redact(&body)),
            Err(err) => format!("sealed; not opened: {err}"),
        }
    }

    /// The reason, or what is known of a message the redrive policy moved.
    pub fn reason(&self) -> String {
        match &self.refusal {
            Some(refusal) => refusal.reason.clone(),
            None => "no reason recorded: the source queue's redrive policy moved it after \
                     repeated failed receives"
                .to_owned(),
        }
    }
}

/// A walk through the DLQ. Messages it did not consume go back to the queue when it ends.
pub struct Walk<'a> {
    sqs: &'a Client,
    dlq_url: &'a str,
    seen: HashSet<String>,
    to_release: Vec<String>,
    empty_receives: u32,
}

impl<'a> Walk<'a> {
    /// A walk through the queue at `dlq_url`.
    pub fn new(sqs: &'a Client, dlq_url: &'a str) -> Self {
        Walk { sqs, dlq_url, seen: HashSet::new(), to_release: Vec::new(), empty_receives: 0 }
    }

    /// The next messages not seen yet; empty when the queue is exhausted.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<DeadLetter>> {
        while self.empty_receives < EMPTY_RECEIVES_TO_STOP {
            let output = self
                .sqs
                .receive_message()
                .queue_url(self.dlq_url)
                .max_number_of_messages(BATCH as i32)
                .wait_time_seconds(1)
                .visibility_timeout(WALK_VISIBILITY_SECS)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from)
                .context("ReceiveMessage on the DLQ failed")?;
            let mut fresh = Vec::new();
            for letter in
                output.messages.unwrap_or_default().into_iter().filter_map(DeadLetter::from_message)
            {
                self.to_release.push(letter.receipt_handle.clone());
                if self.seen.insert(letter.message_id.clone()) {
                    fresh.push(letter);
                }
            }
            if !fresh.is_empty() {
                self.empty_receives = 0;
                return Ok(fresh);
            }
            self.empty_receives += 1;
        }
        Ok(Vec::new())
    }

    /// Marks messages as consumed: they are not handed back at the end.
    fn consumed(&mut self, letters: &[&DeadLetter]) {
        let handles: HashSet<&str> = letters.iter().map(|l| l.receipt_handle.as_str()).collect();
        self.to_release.retain(|handle| !handles.contains(handle.as_str()));
    }

    /// Hands back every message received and not consumed.
    pub async fn finish(self) -> anyhow::Result<()> {
        for chunk in self.to_release.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            self.sqs
                .change_message_visibility_batch()
                .queue_url(self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from)
                .context("handing messages back to the DLQ failed")?;
        }
        Ok(())
    }
}

/// Up to `max` messages of the DLQ, left in it.
pub async fn list(sqs: &Client, dlq_url: &str, max: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let mut walk = Walk::new(sqs, dlq_url);
    let mut letters = Vec::new();
    while letters.len() < max {
        let batch = walk.next_batch().await?;
        if batch.is_empty() {
            break;
        }
        letters.extend(batch);
    }
    walk.finish().await?;
    letters.truncate(max);
    Ok(letters)
}

/// The message of the DLQ that `id` names (its DLQ id or its source id), left in it.
pub async fn show(sqs: &Client, dlq_url: &str, id: &str) -> anyhow::Result<Option<DeadLetter>> {
    let mut walk = Walk::new(sqs, dlq_url);
    let found = loop {
        let batch = walk.next_batch().await?;
        if batch.is_empty() {
            break None;
        }
        if let Some(letter) = batch.into_iter().find(|letter| letter.is_named(id)) {
            break Some(letter);
        }
    };
    walk.finish().await?;
    Ok(found)
}

/// Which messages a redrive moves.
#[derive(Debug, Clone, Default)]
pub struct RedriveFilter {
    /// Only messages refused with one of these codes (`redrive_policy` names those the redrive
    /// policy moved); any code when empty.
    pub codes: Vec<String>,
    /// Only these messages (DLQ or source ids); any message when empty.
    pub message_ids: Vec<String>,
}

impl RedriveFilter {
    fn matches(&self, letter: &DeadLetter) -> bool {
        (self.codes.is_empty() || self.codes.iter().any(|code| code == letter.code()))
            && (self.message_ids.is_empty()
                || self.message_ids.iter().any(|id| letter.is_named(id)))
    }
}

/// What a redrive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages of the DLQ looked at.
    pub seen: usize,
    /// Messages matching the filter.
    pub matched: usize,
    /// Messages sent back to the source queue and deleted from the DLQ (0 on a dry run).
    pub moved: usize,
}

/// Moves the DLQ's messages that match `filter` back to `queue_url`, their bodies opened with
/// `opener`; with `dry_run`, only counts them. `progress` is called after each batch with the
/// report so far. A batch with a body that does not open moves nothing.
pub async fn redrive(
    sqs: &Client,
    opener: &Opener,
    dlq_url: &str,
    queue_url: &str,
    filter: &RedriveFilter,
    dry_run: bool,
    mut progress: impl FnMut(RedriveReport),
) -> anyhow::Result<RedriveReport> {
    let mut walk = Walk::new(sqs, dlq_url);
    let mut report = RedriveReport::default();
    let result = async {
        loop {
            let batch = walk.next_batch().await?;
            if batch.is_empty() {
                return Ok(());
            }
            report.seen += batch.len();
            let chosen: Vec<&DeadLetter> = batch.iter().filter(|l| filter.matches(l)).collect();
            report.matched += chosen.len();
            if !dry_run && !chosen.is_empty() {
                send_back(sqs, opener, queue_url, &chosen).await?;
                // Only what reached the source queue leaves the DLQ; an interruption here
                // leaves a copy in both, which gives one row all the same.
                delete(sqs, dlq_url, &chosen).await?;
                walk.consumed(&chosen);
                report.moved += chosen.len();
            }
            progress(report);
        }
    }
    .await;
    walk.finish().await?;
    result.map(|()| report)
}

/// Empties the DLQ; returns how many messages it held (approximately, as SQS counts).
pub async fn purge(sqs: &Client, dlq_url: &str) -> anyhow::Result<u64> {
    let (visible, in_flight) = crate::queue::depth(sqs, dlq_url).await?;
    sqs.purge_queue()
        .queue_url(dlq_url)
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .context("PurgeQueue on the DLQ failed")?;
    Ok(visible + in_flight)
}

async fn send_back(
    sqs: &Client,
    opener: &Opener,
    queue_url: &str,
    letters: &[&DeadLetter],
) -> anyhow::Result<()> {
    let mut messages = Vec::with_capacity(letters.len());
    for letter in letters {
        let body = letter.open(opener).await.with_context(|| {
            format!(
                "message {} does not open, so nothing of this batch left the DLQ",
                letter.message_id
            )
        })?;
        messages.push(outgoing(letter, body));
    }
    send_batch(sqs, queue_url, &messages)
        .await
        .context("sending back to the source queue failed; nothing of this batch left the DLQ")?;
    Ok(())
}

/// The message `letter` goes back to the source queue as, with `body`.
fn outgoing(letter: &DeadLetter, body: String) -> Outgoing {
    let mut attributes = letter.producer_attributes.clone();
    attributes.insert(
        attributes::SOURCE_MESSAGE_ID.to_owned(),
        attribute("String", &letter.source_message_id),
    );
    attributes.insert(
        attributes::SOURCE_SENT_TIMESTAMP.to_owned(),
        attribute("Number", &letter.source_sent_timestamp_ms.to_string()),
    );
    Outgoing { body, attributes }
}

async fn delete(sqs: &Client, dlq_url: &str, letters: &[&DeadLetter]) -> anyhow::Result<()> {
    let entries = letters
        .iter()
        .enumerate()
        .map(|(i, letter)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(&letter.receipt_handle)
                .build()
                .expect("id and receipt handle are set")
        })
        .collect();
    let output = sqs
        .delete_message_batch()
        .queue_url(dlq_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .context("DeleteMessageBatch on the DLQ failed")?;
    if let Some(failed) = output.failed().first() {
        bail!(
            "a redriven message could not be deleted from the DLQ: {}; run the redrive again \
             (the copy in the source queue gives one row all the same)",
            failed.code()
        );
    }
    Ok(())
}

fn attribute(data_type: &str, value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("data_type is set")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(code: Option<&str>) -> DeadLetter {
        DeadLetter {
            message_id: "dlq-1".into(),
            receipt_handle: "h".into(),
            refusal: code.map(|code| Refusal {
                refused_by: "ingestor".into(),
                code: code.into(),
                reason: "field `ip` is not a valid IPv4 or IPv6 address".into(),
            }),
            source_message_id: "src-1".into(),
            source_sent_timestamp_ms: 1,
            receive_count: 6,
            body: r#"{"ip": "198.51.100.7"}"#.into(),
            producer_attributes: HashMap::new(),
        }
    }

    #[test]
    fn filters_match_codes_and_either_id() {
        let refused = letter(Some("invalid_ip"));
        let moved = letter(None);
        assert!(RedriveFilter::default().matches(&refused));
        let by_code = RedriveFilter { codes: vec!["invalid_ip".into()], message_ids: vec![] };
        assert!(by_code.matches(&refused) && !by_code.matches(&moved));
        let policy = RedriveFilter { codes: vec!["redrive_policy".into()], message_ids: vec![] };
        assert!(policy.matches(&moved) && !policy.matches(&refused));
        for id in ["dlq-1", "src-1"] {
            let by_id = RedriveFilter { codes: vec![], message_ids: vec![id.into()] };
            assert!(by_id.matches(&refused), "{id}");
        }
        let other = RedriveFilter { codes: vec![], message_ids: vec!["src-2".into()] };
        assert!(!other.matches(&refused));
    }

    #[test]
    fn a_message_the_redrive_policy_moved_says_so() {
        let moved = letter(None);
        assert_eq!(moved.code(), "redrive_policy");
        assert!(moved.reason().starts_with("no reason recorded"), "{}", moved.reason());
        assert!(!format!("{moved:?}").contains("198.51"), "the body stays out of Debug");
    }
}
