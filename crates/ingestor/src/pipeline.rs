//! One batch of received messages, from bodies to committed rows.
//!
//! 1. Parse every body with the model's rules. An invalid message is sent, byte for byte, to
//!    the dead-letter queue with its reason, then deleted from the source.
//! 2. Tokenize every personal value of the valid messages in one vault call (each distinct
//!    value once).
//! 3. Write every row in one writer call: one transaction, idempotent on message_id.
//! 4. Delete exactly the messages whose rows are committed.
//!
//! A transient failure of a step is retried with exponential backoff and jitter for a bounded
//! time; then the batch is left alone and its messages come back after their visibility
//! timeout (the queue's redrive policy moves one that keeps failing to the DLQ). While a
//! batch is being worked on, a heartbeat extends its visibility, so a slow batch is not
//! redelivered to another consumer halfway.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use fetchreward_model::{LoginEvent, MaskedLogin, Pii, PiiKind, Token, parse_login};
use tokio_util::sync::CancellationToken;

use crate::clients::{DependencyError, RowSink, Tokenizer};
use crate::queue::{DeadLetter, Queue, QueueError, ReceivedMessage};

/// How failures are retried within one batch.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest single delay.
    pub max_delay: Duration,
    /// Total time spent sleeping on one step before the batch is left for redelivery.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(20),
        }
    }
}

/// What became of a batch's messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows committed and messages deleted.
    pub written: usize,
    /// Invalid messages moved to the DLQ.
    pub dead_lettered: usize,
    /// Messages left in the queue, to come back after their visibility timeout.
    pub left: usize,
}

/// Whether the ingestor's last calls to its dependencies succeeded: its readiness.
#[derive(Debug)]
pub struct Health {
    queue_ok: AtomicBool,
    dependencies_ok: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health { queue_ok: AtomicBool::new(true), dependencies_ok: AtomicBool::new(true) }
    }
}

impl Health {
    /// `None` when healthy, else what is failing.
    pub fn problem(&self) -> Option<&'static str> {
        if !self.queue_ok.load(Ordering::Relaxed) {
            Some("the queue is failing")
        } else if !self.dependencies_ok.load(Ordering::Relaxed) {
            Some("the vault or the writer is failing")
        } else {
            None
        }
    }

    pub(crate) fn queue(&self, ok: bool) {
        self.queue_ok.store(ok, Ordering::Relaxed);
    }

    fn dependencies(&self, ok: bool) {
        self.dependencies_ok.store(ok, Ordering::Relaxed);
    }
}

/// An error a retry loop can classify.
trait Retryable: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

impl Retryable for QueueError {
    fn is_transient(&self) -> bool {
        QueueError::is_transient(self)
    }
}

impl Retryable for DependencyError {
    fn is_transient(&self) -> bool {
        DependencyError::is_transient(self)
    }
}

/// Turns batches of messages into committed rows.
pub struct Pipeline<Q, T, W> {
    queue: Arc<Q>,
    tokenizer: T,
    sink: W,
    retry: RetryPolicy,
    visibility: Duration,
    health: Arc<Health>,
    shutdown: CancellationToken,
}

impl<Q: Queue, T: Tokenizer, W: RowSink> Pipeline<Q, T, W> {
    /// A pipeline over its queue and dependencies. `visibility` is the timeout the messages
    /// were received with; `shutdown` cuts retries short.
    pub fn new(
        queue: Arc<Q>,
        tokenizer: T,
        sink: W,
        retry: RetryPolicy,
        visibility: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Pipeline { queue, tokenizer, sink, retry, visibility, health: Arc::default(), shutdown }
    }

    /// The readiness state this pipeline updates.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<Q> {
        &self.queue
    }

    /// Processes one batch, extending its visibility while it runs.
    #[tracing::instrument(skip_all, fields(messages = batch.len()))]
    pub async fn process(&self, batch: Vec<ReceivedMessage>) -> BatchReport {
        if batch.is_empty() {
            return BatchReport::default();
        }
        let started = Instant::now();
        let report = {
            let work = self.process_unextended(&batch);
            tokio::pin!(work);
            let mut heartbeat = tokio::time::interval(self.visibility / 3);
            heartbeat.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    report = &mut work => break report,
                    _ = heartbeat.tick() => self.extend_visibility(&batch).await,
                }
            }
        };
        metrics::histogram!("fetchreward_ingestor_batch_seconds").record(started.elapsed());
        metrics::histogram!("fetchreward_ingestor_batch_messages").record(batch.len() as f64);
        for (outcome, count) in [
            ("written", report.written),
            ("dead_lettered", report.dead_lettered),
            ("left", report.left),
        ] {
            metrics::counter!("fetchreward_ingestor_messages_total", "outcome" => outcome)
                .increment(count as u64);
        }
        tracing::debug!(
            written = report.written,
            dead_lettered = report.dead_lettered,
            left = report.left,
            "batch done"
        );
        report
    }

    async fn process_unextended(&self, batch: &[ReceivedMessage]) -> BatchReport {
        let mut valid = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for message in batch {
            match parse_login(message.body.as_bytes()) {
                Ok(event) => valid.push((message, event)),
                Err(rejection) => {
                    metrics::counter!("fetchreward_ingestor_rejections_total", "reason" => rejection.code())
                        .increment(1);
                    letters.push(DeadLetter {
                        message,
                        reason: rejection.to_string(),
                        reason_code: rejection.code(),
                    });
                }
            }
        }
        let (dead_lettered, written) =
            tokio::join!(self.move_to_dlq(&letters), self.write_valid(valid));
        BatchReport { written, dead_lettered, left: batch.len() - written - dead_lettered }
    }

    /// Moves invalid messages to the DLQ; returns how many were moved.
    async fn move_to_dlq(&self, letters: &[DeadLetter<'_>]) -> usize {
        if letters.is_empty() {
            return 0;
        }
        match self.with_retry("dlq", || self.queue.dead_letter(letters)).await {
            Ok(failed) => {
                self.health.queue(true);
                letters.len() - failed.len()
            }
            Err(err) => {
                self.health.queue(false);
                tracing::warn!(error = %err, messages = letters.len(), "dead-lettering failed; messages left for redelivery");
                0
            }
        }
    }

    /// Tokenizes, writes and deletes the valid messages; returns how many were completed.
    async fn write_valid(&self, valid: Vec<(&ReceivedMessage, LoginEvent)>) -> usize {
        if valid.is_empty() {
            return 0;
        }
        let messages: Vec<&ReceivedMessage> = valid.iter().map(|(message, _)| *message).collect();
        let rows = match self.mask(valid).await {
            Ok(rows) => rows,
            Err(err) => return self.dependency_failed(err, messages.len()),
        };
        if let Err(err) = self.with_retry("writer", || self.sink.write(rows.clone())).await {
            return self.dependency_failed(err, messages.len());
        }
        self.health.dependencies(true);
        // The rows are committed: from here on a failure only means a redelivery, which the
        // writer turns into "already present".
        match self.with_retry("delete", || self.queue.delete(&messages)).await {
            Ok(failed) => {
                self.health.queue(true);
                if !failed.is_empty() {
                    tracing::warn!(
                        messages = failed.len(),
                        "some deletes failed; those messages will be redelivered and skipped"
                    );
                }
                messages.len() - failed.len()
            }
            Err(err) => {
                self.health.queue(false);
                tracing::warn!(error = %err, "deleting committed messages failed; they will be redelivered and skipped");
                0
            }
        }
    }

    /// Replaces personal values by tokens, asking the vault once for each distinct value.
    async fn mask(
        &self,
        valid: Vec<(&ReceivedMessage, LoginEvent)>,
    ) -> Result<Vec<MaskedLogin>, DependencyError> {
        let mut slots: HashMap<(PiiKind, &str), usize> = HashMap::new();
        let mut values: Vec<(PiiKind, Pii)> = Vec::new();
        for (_, event) in &valid {
            for (kind, value) in [(PiiKind::Ip, &event.ip), (PiiKind::DeviceId, &event.device_id)] {
                if let Some(value) = value {
                    slots.entry((kind, value.expose())).or_insert_with(|| {
                        values.push((kind, value.clone()));
                        values.len() - 1
                    });
                }
            }
        }
        let tokens: Vec<Token> = if values.is_empty() {
            Vec::new()
        } else {
            self.with_retry("vault", || self.tokenizer.tokenize(values.clone())).await?
        };
        let token_of = |kind: PiiKind, value: &Option<Pii>| {
            value.as_ref().map(|value| tokens[slots[&(kind, value.expose())]])
        };
        let rows = valid
            .iter()
            .map(|(message, event)| {
                let masked_ip = token_of(PiiKind::Ip, &event.ip);
                let masked_device_id = token_of(PiiKind::DeviceId, &event.device_id);
                MaskedLogin::from_event(
                    message.message_id.clone(),
                    message.sent_at,
                    LoginEvent { ip: None, device_id: None, ..event.clone() },
                    masked_ip,
                    masked_device_id,
                )
            })
            .collect();
        Ok(rows)
    }

    fn dependency_failed(&self, err: DependencyError, messages: usize) -> usize {
        self.health.dependencies(false);
        metrics::counter!("fetchreward_ingestor_dependency_failures_total", "service" => err.service())
            .increment(1);
        if err.is_transient() {
            tracing::warn!(error = %err, messages, "dependency unavailable; messages left for redelivery");
        } else {
            tracing::error!(error = %err, messages, "dependency refused the batch; messages left for redelivery");
        }
        0
    }

    async fn extend_visibility(&self, batch: &[ReceivedMessage]) {
        let messages: Vec<&ReceivedMessage> = batch.iter().collect();
        if let Err(err) = self.queue.set_visibility(&messages, self.visibility).await {
            tracing::warn!(error = %err, "extending visibility failed");
        }
    }

    /// Runs `op` until it succeeds, fails for good, the backoff's time is used up, or shutdown
    /// begins.
    async fn with_retry<R, E, F, Fut>(&self, step: &'static str, mut op: F) -> Result<R, E>
    where
        E: Retryable,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_total_delay(Some(self.retry.give_up_after))
            .without_max_times()
            .with_jitter()
            .build();
        loop {
            let err = match op().await {
                Ok(result) => return Ok(result),
                Err(err) => err,
            };
            if !err.is_transient() || self.shutdown.is_cancelled() {
                return Err(err);
            }
            let Some(delay) = delays.next() else { return Err(err) };
            metrics::counter!("fetchreward_ingestor_retries_total", "step" => step).increment(1);
            tracing::debug!(step, error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => return Err(err),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use fetchreward_model::MAC_LEN;

    use super::*;
    use crate::queue::memory::MemoryQueue;

    /// A vault that makes deterministic (unkeyed, test-only) tokens and can be taken down.
    #[derive(Default)]
    pub(crate) struct FakeVault {
        pub(crate) down: AtomicBool,
        pub(crate) calls: AtomicUsize,
        pub(crate) values_seen: AtomicUsize,
    }

    impl Tokenizer for Arc<FakeVault> {
        async fn tokenize(
            &self,
            values: Vec<(PiiKind, Pii)>,
        ) -> Result<Vec<Token>, DependencyError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(DependencyError::Unavailable {
                    service: "vault",
                    detail: "down".into(),
                });
            }
            self.values_seen.fetch_add(values.len(), Ordering::SeqCst);
            Ok(values
                .iter()
                .map(|(kind, value)| {
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    value.expose().hash(&mut hasher);
                    let mut mac = [0u8; MAC_LEN];
                    for (chunk, byte) in mac.chunks_mut(8).zip(0u64..) {
                        chunk.copy_from_slice(&(hasher.finish() ^ byte).to_le_bytes());
                    }
                    Token::new(*kind, 1, mac)
                })
                .collect())
        }
    }

    /// A writer that keeps rows by message_id, can be taken down, and can be slow.
    #[derive(Default)]
    pub(crate) struct FakeWriter {
        pub(crate) down: AtomicBool,
        pub(crate) delay: Mutex<Duration>,
        pub(crate) rows: Mutex<HashMap<String, MaskedLogin>>,
        pub(crate) writes: AtomicUsize,
    }

    impl RowSink for Arc<FakeWriter> {
        async fn write(&self, rows: Vec<MaskedLogin>) -> Result<(), DependencyError> {
            let delay = *self.delay.lock().expect("not poisoned");
            tokio::time::sleep(delay).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(DependencyError::Unavailable {
                    service: "writer",
                    detail: "down".into(),
                });
            }
            self.writes.fetch_add(rows.len(), Ordering::SeqCst);
            let mut stored = self.rows.lock().expect("not poisoned");
            for row in rows {
                stored.entry(row.message_id.clone()).or_insert(row);
            }
            Ok(())
        }
    }

    pub(crate) const VISIBILITY: Duration = Duration::from_secs(30);

    pub(crate) type TestPipeline = Pipeline<MemoryQueue, Arc<FakeVault>, Arc<FakeWriter>>;

    pub(crate) fn pipeline(
        queue: &MemoryQueue,
    ) -> (Arc<TestPipeline>, Arc<FakeVault>, Arc<FakeWriter>) {
        pipeline_stopped_by(queue, CancellationToken::new())
    }

    /// A pipeline whose retries stop when `shutdown` is cancelled.
    pub(crate) fn pipeline_stopped_by(
        queue: &MemoryQueue,
        shutdown: CancellationToken,
    ) -> (Arc<TestPipeline>, Arc<FakeVault>, Arc<FakeWriter>) {
        let vault = Arc::new(FakeVault::default());
        let writer = Arc::new(FakeWriter::default());
        let pipeline = Pipeline::new(
            Arc::new(queue.clone()),
            vault.clone(),
            writer.clone(),
            RetryPolicy {
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
                give_up_after: Duration::from_secs(3),
            },
            VISIBILITY,
            shutdown,
        );
        (Arc::new(pipeline), vault, writer)
    }

    pub(crate) fn login(user: &str, ip: &str, device: &str) -> String {
        format!(
            r#"{{"user_id":"{user}","ip":"{ip}","device_id":"{device}","app_version":"2.3.0"}}"#
        )
    }

    async fn receive_all(queue: &MemoryQueue) -> Vec<ReceivedMessage> {
        let mut all = Vec::new();
        loop {
            let batch = queue.receive(Duration::ZERO, VISIBILITY).await.expect("receives");
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn valid_rows_are_written_and_invalid_messages_dead_lettered() {
        let queue = MemoryQueue::new(5);
        let (pipeline, vault, writer) = pipeline(&queue);
        let first = queue.send(login("u1", "10.0.0.1", "d-1"));
        let second = queue.send(login("u2", "::ffff:10.0.0.1", "d-2"));
        queue.send(login("u3", "10.0.0.3", "d-1"));
        queue.send(r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#);
        queue.send(login("u5", "10.0.0.999", "d-5"));

        let report = pipeline.process(receive_all(&queue).await).await;

        assert_eq!(report, BatchReport { written: 3, dead_lettered: 2, left: 0 });
        assert!(queue.is_empty(), "every message is deleted or moved");
        let letters = queue.dead_letters();
        assert_eq!(letters.len(), 2);
        assert!(letters.iter().any(|(_, body, reason)| body.contains("oops_wrong_msg_type")
            && reason == "field `user_id` is missing"));
        assert!(letters.iter().any(|(_, _, reason)| reason.contains("`ip` is not a valid")));
        assert_eq!(vault.calls.load(Ordering::SeqCst), 1, "one vault call per batch");
        assert_eq!(vault.values_seen.load(Ordering::SeqCst), 4, "each distinct value once");
        let rows = writer.rows.lock().expect("not poisoned");
        assert_eq!(rows[&first].masked_ip, rows[&second].masked_ip, "canonical ips share a token");
        assert_eq!(rows[&first].app_version_number(), Some(20300));
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_vault_is_down_nothing_is_deleted_and_messages_come_back() {
        let queue = MemoryQueue::new(5);
        let (pipeline, vault, writer) = pipeline(&queue);
        for i in 0..20 {
            queue.send(login(&format!("u{i}"), "10.0.0.1", &format!("d-{i}")));
        }
        vault.down.store(true, Ordering::SeqCst);
        let report = pipeline.process(receive_all(&queue).await).await;
        assert_eq!(report, BatchReport { written: 0, dead_lettered: 0, left: 20 });
        assert_eq!(queue.len(), 20);
        assert!(vault.calls.load(Ordering::SeqCst) > 1, "retried before giving up");
        assert_eq!(pipeline.health().problem(), Some("the vault or the writer is failing"));

        vault.down.store(false, Ordering::SeqCst);
        tokio::time::advance(VISIBILITY).await;
        let report = pipeline.process(receive_all(&queue).await).await;
        assert_eq!(report.written, 20);
        assert!(queue.is_empty());
        assert_eq!(writer.rows.lock().expect("not poisoned").len(), 20);
        assert_eq!(pipeline.health().problem(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_outage_loses_nothing_and_duplicates_nothing() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        for i in 0..15 {
            queue.send(login(&format!("u{i}"), &format!("10.0.1.{i}"), "d"));
        }
        writer.down.store(true, Ordering::SeqCst);
        assert_eq!(pipeline.process(receive_all(&queue).await).await.left, 15);
        writer.down.store(false, Ordering::SeqCst);
        tokio::time::advance(VISIBILITY).await;
        assert_eq!(pipeline.process(receive_all(&queue).await).await.written, 15);
        assert!(queue.is_empty());
        assert_eq!(writer.rows.lock().expect("not poisoned").len(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_batch_keeps_its_messages_invisible() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        queue.send(login("u1", "10.0.0.1", "d"));
        *writer.delay.lock().expect("not poisoned") = VISIBILITY * 3;
        let batch = receive_all(&queue).await;
        let running = tokio::spawn({
            let pipeline = pipeline.clone();
            async move { pipeline.process(batch).await }
        });
        tokio::time::sleep(VISIBILITY * 2).await;
        assert!(
            queue.receive(Duration::ZERO, VISIBILITY).await.expect("receives").is_empty(),
            "the heartbeat extended the visibility"
        );
        assert_eq!(running.await.expect("joins").written, 1);
        assert_eq!(writer.writes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_failure_on_delete_means_a_redelivery_skipped_by_the_writer() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        queue.send(login("u1", "10.0.0.1", "d"));
        let batch = receive_all(&queue).await;
        // Every delete attempt within the retry budget fails.
        queue.fail_next(1_000);
        assert_eq!(pipeline.process(batch).await.left, 1);
        queue.fail_next(0);
        tokio::time::advance(VISIBILITY).await;
        assert_eq!(pipeline.process(receive_all(&queue).await).await.written, 1);
        assert_eq!(writer.rows.lock().expect("not poisoned").len(), 1, "one row");
        assert_eq!(writer.writes.load(Ordering::SeqCst), 2, "the write was repeated");
    }
}
