//! An in-memory queue with SQS's delivery rules, for unit tests.
//!
//! Time is the tokio clock, so tests can pause it and advance past a visibility timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::{DeadLetter, MessageAttribute, Queue, QueueError, ReceivedMessage};
use crate::refusal::Refusal;

#[derive(Debug)]
struct Stored {
    message_id: String,
    body: String,
    attributes: Vec<(String, MessageAttribute)>,
    sent_at: chrono::DateTime<Utc>,
    receive_count: u32,
    /// Handle of the latest delivery, and when it becomes visible again.
    delivery: Option<(String, Instant)>,
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLetter {
    /// The message id it came from (its origin's, for a dead-lettered one).
    pub source_message_id: String,
    /// The body, as sent.
    pub body: String,
    /// Why the ingestor dead-lettered it; `None` when the redrive policy moved it.
    pub refusal: Option<Refusal>,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Stored>,
    dead_letters: Vec<MemoryLetter>,
    next_id: u64,
    /// Operations to fail with a transient error before succeeding again.
    failures_left: u32,
}

/// An in-memory queue and its dead-letter queue. Cloning shares the queue.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    max_receive_count: u32,
}

impl MemoryQueue {
    /// An empty queue whose messages move to its DLQ after `max_receive_count` deliveries.
    pub fn new(max_receive_count: u32) -> Self {
        MemoryQueue { state: Arc::default(), max_receive_count }
    }

    /// Enqueues a body; returns its message_id.
    pub fn send(&self, body: impl Into<String>) -> String {
        self.send_with_attributes(body, &[])
    }

    /// Enqueues a body with `String` message attributes; returns its message_id.
    pub fn send_with_attributes(
        &self,
        body: impl Into<String>,
        attributes: &[(&str, &str)],
    ) -> String {
        let attributes = attributes
            .iter()
            .map(|(name, value)| {
                let attribute = MessageAttribute {
                    data_type: "String".to_owned(),
                    string_value: Some((*value).to_owned()),
                    binary_value: None,
                };
                ((*name).to_owned(), attribute)
            })
            .collect();
        let mut state = self.lock();
        state.next_id += 1;
        let message_id = format!("mem-{:06}", state.next_id);
        state.messages.push_back(Stored {
            message_id: message_id.clone(),
            body: body.into(),
            attributes,
            sent_at: Utc::now(),
            receive_count: 0,
            delivery: None,
        });
        message_id
    }

    /// Messages still in the queue, visible or not.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Whether the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The DLQ's messages.
    pub fn dead_letters(&self) -> Vec<MemoryLetter> {
        self.lock().dead_letters.clone()
    }

    /// Makes the next `n` operations fail with a transient error.
    pub fn fail_next(&self, n: u32) {
        self.lock().failures_left = n;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the queue lock is never poisoned")
    }

    fn injected_failure(state: &mut State) -> Result<(), QueueError> {
        if state.failures_left > 0 {
            state.failures_left -= 1;
            return Err(QueueError::Transient("injected failure".into()));
        }
        Ok(())
    }
}

impl Queue for MemoryQueue {
    async fn receive(
        &self,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let received = {
                let mut state = self.lock();
                Self::injected_failure(&mut state)?;
                let now = Instant::now();
                let max_receive_count = self.max_receive_count;
                // Redrive: a message delivered too often moves to the DLQ as it becomes visible.
                let mut kept = VecDeque::with_capacity(state.messages.len());
                let mut redriven = Vec::new();
                for stored in state.messages.drain(..) {
                    let visible = stored.delivery.as_ref().is_none_or(|(_, until)| *until <= now);
                    if visible && stored.receive_count >= max_receive_count {
                        redriven.push(MemoryLetter {
                            source_message_id: stored.message_id,
                            body: stored.body,
                            refusal: None,
                        });
                    } else {
                        kept.push_back(stored);
                    }
                }
                state.messages = kept;
                state.dead_letters.extend(redriven);
                let mut received = Vec::new();
                for stored in state.messages.iter_mut() {
                    if received.len() == super::BATCH_LIMIT {
                        break;
                    }
                    if stored.delivery.as_ref().is_some_and(|(_, until)| *until > now) {
                        continue;
                    }
                    stored.receive_count += 1;
                    let handle = format!("{}#{}", stored.message_id, stored.receive_count);
                    stored.delivery = Some((handle.clone(), now + visibility));
                    received.push(ReceivedMessage {
                        message_id: stored.message_id.clone(),
                        receipt_handle: handle,
                        body: stored.body.clone(),
                        sent_at: stored.sent_at,
                        receive_count: stored.receive_count,
                        attributes: stored.attributes.clone(),
                        aws_trace_header: None,
                    });
                }
                received
            };
            if !received.is_empty() || Instant::now() >= deadline {
                return Ok(received);
            }
            tokio::time::sleep(Duration::from_millis(10).min(deadline - Instant::now())).await;
        }
    }

    async fn delete(&self, messages: &[&ReceivedMessage]) -> Result<Vec<String>, QueueError> {
        let mut state = self.lock();
        Self::injected_failure(&mut state)?;
        let mut failed = Vec::new();
        for message in messages {
            // Like SQS, only the latest delivery's handle deletes.
            let position = state.messages.iter().position(|stored| {
                stored
                    .delivery
                    .as_ref()
                    .is_some_and(|(handle, _)| *handle == message.receipt_handle)
            });
            match position {
                Some(index) => {
                    state.messages.remove(index);
                }
                None => failed.push(message.message_id.clone()),
            }
        }
        Ok(failed)
    }

    async fn dead_letter(&self, letters: &[DeadLetter<'_>]) -> Result<Vec<String>, QueueError> {
        {
            let mut state = self.lock();
            Self::injected_failure(&mut state)?;
            for letter in letters {
                state.dead_letters.push(MemoryLetter {
                    source_message_id: letter.origin.message_id.clone(),
                    body: letter.message.body.clone(),
                    refusal: Some(letter.refusal.clone()),
                });
            }
        }
        let messages: Vec<&ReceivedMessage> = letters.iter().map(|l| l.message).collect();
        self.delete(&messages).await
    }

    async fn set_visibility(
        &self,
        messages: &[&ReceivedMessage],
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let mut state = self.lock();
        Self::injected_failure(&mut state)?;
        let until = Instant::now() + visibility;
        for stored in state.messages.iter_mut() {
            if let Some((handle, visible_at)) = stored.delivery.as_mut()
                && messages.iter().any(|m| m.receipt_handle == *handle)
            {
                *visible_at = until;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISIBILITY: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_message_comes_back_after_its_visibility_timeout() {
        let queue = MemoryQueue::new(5);
        queue.send("a");
        let first = queue.receive(Duration::ZERO, VISIBILITY).await.expect("receives");
        assert_eq!(first.len(), 1);
        assert!(queue.receive(Duration::ZERO, VISIBILITY).await.expect("receives").is_empty());
        tokio::time::advance(VISIBILITY).await;
        let again = queue.receive(Duration::ZERO, VISIBILITY).await.expect("receives");
        assert_eq!(again[0].receive_count, 2);
        // The first delivery's handle no longer deletes.
        assert_eq!(queue.delete(&[&first[0]]).await.expect("answers"), ["mem-000001"]);
        assert!(queue.delete(&[&again[0]]).await.expect("answers").is_empty());
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn redrive_moves_a_message_after_max_receive_count() {
        let queue = MemoryQueue::new(2);
        queue.send("poison");
        for _ in 0..2 {
            assert_eq!(queue.receive(Duration::ZERO, VISIBILITY).await.expect("ok").len(), 1);
            tokio::time::advance(VISIBILITY).await;
        }
        assert!(queue.receive(Duration::ZERO, VISIBILITY).await.expect("ok").is_empty());
        assert_eq!(queue.dead_letters().len(), 1);
        assert!(queue.is_empty());
    }
}
