//! One batch of received messages, from bodies to committed rows.
//!
//! 1. Parse every body with the model's rules. An invalid message is sent, its body sealed, to
//!    the dead-letter queue with its reason, then deleted from the source.
//! 2. Tokenize every personal value of the valid messages in one vault call (each distinct
//!    value once). A value the vault refuses sends the messages that hold it to the DLQ with
//!    the vault's code and reason.
//! 3. Write the other rows in one writer call: one transaction, idempotent on message_id. A row
//!    the writer refuses sends its message to the DLQ with the writer's code and reason; the
//!    others are committed.
//! 4. Delete exactly the messages whose rows are committed.
//!
//! A transient failure of a step is retried with exponential backoff and jitter for a bounded
//! time; then the batch is left alone and its messages come back after their visibility
//! timeout. While a batch is being worked on, a heartbeat extends its visibility, so a slow
//! batch is not redelivered to another consumer halfway.
//!
//! One bad message never costs a good one. When the vault or the writer fails a whole call in
//! a way its content may have caused (an internal error, say) without naming the culprit, the
//! batch is bisected: each half is tried on its own, a failing half is split again, up to
//! [`MAX_BISECT_CALLS`] calls. A message that fails alone, while others of its batch went
//! through, is tried once more, and if it fails again it goes to the DLQ with the failure as
//! its reason; everything else is written or left for redelivery. When nothing of the batch
//! goes through, the failure is not the content's (a broken dependency): nothing is
//! dead-lettered, every message is left.

use crate::watch::OldestReceived;
use fetchreward_telemetry::propagation::{self, RemoteSpan};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use backon::{BackoffBuilder, ExponentialBuilder};
use fetchreward_model::{LoginEvent, MaskedLogin, Pii, PiiKind, Token, parse_login};
use foldhash::{HashMap, HashMapExt as _, HashSet};
use tokio_util::sync::CancellationToken;

use crate::clients::{DependencyError, RowSink, Tokenizer};
use crate::queue::{DeadLetter, Origin, Queue, QueueError, ReceivedMessage};
use crate::refusal::Refusal;

/// The most calls one batch's bisection makes before the parts still failing are left for
/// redelivery (where they meet other neighbours). Each culprit among `n` messages costs about
/// `2·log2(n)` calls, so this isolates three or four culprits of a full batch of 500 at once;
/// it also bounds what a broken dependency is asked per batch before the batch is left.
pub const MAX_BISECT_CALLS: usize = 64;

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
    /// Messages moved to the DLQ: invalid ones, and those the vault or the writer refused.
    pub dead_lettered: usize,
    /// Messages left in the queue, to come back after their visibility timeout.
    pub left: usize,
}

/// Whether the ingestor's last calls to its dependencies succeeded: its readiness.
#[derive(Debug)]
pub struct Health {
    queue_ok: AtomicBool,
    vault_ok: AtomicBool,
    writer_ok: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            queue_ok: AtomicBool::new(true),
            vault_ok: AtomicBool::new(true),
            writer_ok: AtomicBool::new(true),
        }
    }
}

impl Health {
    /// `None` when healthy, else which dependency is failing.
    pub fn problem(&self) -> Option<&'static str> {
        [
            (&self.queue_ok, "the queue is failing"),
            (&self.vault_ok, "the vault is failing"),
            (&self.writer_ok, "the writer is failing"),
        ]
        .into_iter()
        .find(|(ok, _)| !ok.load(Ordering::Relaxed))
        .map(|(_, problem)| problem)
    }

    pub(crate) fn queue(&self, ok: bool) {
        self.queue_ok.store(ok, Ordering::Relaxed);
    }

    /// A batch went through: both services answered.
    fn dependencies_ok(&self) {
        self.vault_ok.store(true, Ordering::Relaxed);
        self.writer_ok.store(true, Ordering::Relaxed);
    }

    fn dependency_failed(&self, service: &str) {
        let flag = if service == "vault" { &self.vault_ok } else { &self.writer_ok };
        flag.store(false, Ordering::Relaxed);
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

/// A message that passed the model's rules.
struct Valid<'a> {
    message: &'a ReceivedMessage,
    origin: Origin,
    event: LoginEvent,
}

/// What the vault and the writer made of some of a batch's valid messages, by their positions
/// in it.
#[derive(Debug, Default)]
struct Settled {
    /// Messages whose rows are committed (or were already).
    committed: Vec<usize>,
    /// Messages refused by the vault or the writer, with why.
    refused: Vec<(usize, Refusal)>,
    /// Messages to leave for redelivery.
    left: Vec<usize>,
}

impl Settled {
    fn merge(&mut self, other: Settled) {
        self.committed.extend(other.committed);
        self.refused.extend(other.refused);
        self.left.extend(other.left);
    }

    /// Whether any message got an answer of its own.
    fn went_through(&self) -> bool {
        !self.committed.is_empty() || !self.refused.is_empty()
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
    received_ages: Arc<OldestReceived>,
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
        // Counted from zero, so that a rate over them exists before the first retry.
        for step in ["vault", "writer", "delete", "dlq"] {
            metrics::counter!("fetchreward_ingestor_retries_total", "step" => step).increment(0);
        }
        Pipeline {
            queue,
            tokenizer,
            sink,
            retry,
            visibility,
            health: Arc::default(),
            shutdown,
            received_ages: Arc::default(),
        }
    }

    /// Where the pollers note the ages of the messages they receive.
    pub fn received_ages(&self) -> &Arc<OldestReceived> {
        &self.received_ages
    }

    /// The readiness state this pipeline updates.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<Q> {
        &self.queue
    }

    /// Processes one batch, extending its visibility while it runs, in a span of the
    /// OpenTelemetry messaging conventions linked to each message's trace (see `batch_span`).
    pub async fn process(&self, batch: Vec<ReceivedMessage>) -> BatchReport {
        if batch.is_empty() {
            return BatchReport::default();
        }
        let span = batch_span(&batch);
        self.process_in_span(batch).instrument(span).await
    }

    async fn process_in_span(&self, batch: Vec<ReceivedMessage>) -> BatchReport {
        let started = Instant::now();
        let in_flight = metrics::gauge!("fetchreward_ingestor_messages_in_flight");
        in_flight.increment(batch.len() as f64);
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
        in_flight.decrement(batch.len() as f64);
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
            match parse(message) {
                Ok(parsed) => valid.push(parsed),
                Err(letter) => letters.push(letter),
            }
        }
        let (dead_lettered, (written, refused)) =
            tokio::join!(self.move_to_dlq(&letters), self.write_valid(&valid));
        let dead_lettered = dead_lettered + refused;
        BatchReport { written, dead_lettered, left: batch.len() - written - dead_lettered }
    }

    /// Moves messages to the DLQ; returns how many were moved.
    async fn move_to_dlq(&self, letters: &[DeadLetter<'_>]) -> usize {
        if letters.is_empty() {
            return 0;
        }
        for letter in letters {
            let refusal = &letter.refusal;
            metrics::counter!(
                "fetchreward_ingestor_dead_letters_total",
                "refused_by" => refusal.refused_by,
                "code" => refusal.code.clone()
            )
            .increment(1);
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

    /// Tokenizes and writes the valid messages, deletes those whose rows are committed and
    /// dead-letters those refused; returns how many of each were completed.
    async fn write_valid(&self, valid: &[Valid<'_>]) -> (usize, usize) {
        if valid.is_empty() {
            return (0, 0);
        }
        let settled = self.deliver(valid).await;
        if !settled.left.is_empty() {
            tracing::debug!(messages = settled.left.len(), "messages left for redelivery");
        }
        let committed: Vec<&ReceivedMessage> =
            settled.committed.iter().map(|&i| valid[i].message).collect();
        // The rows are committed now: each message's whole path, from its SentTimestamp.
        let now = chrono::Utc::now();
        let end_to_end = metrics::histogram!("fetchreward_ingestor_end_to_end_seconds");
        for message in &committed {
            end_to_end.record((now - message.sent_at).num_milliseconds().max(0) as f64 / 1000.0);
        }
        let letters: Vec<DeadLetter<'_>> = settled
            .refused
            .into_iter()
            .map(|(i, refusal)| DeadLetter {
                message: valid[i].message,
                origin: valid[i].origin.clone(),
                refusal,
            })
            .collect();
        tokio::join!(self.delete_committed(&committed), self.move_to_dlq(&letters))
    }

    /// Deletes messages whose rows are committed; returns how many were deleted.
    async fn delete_committed(&self, messages: &[&ReceivedMessage]) -> usize {
        if messages.is_empty() {
            return 0;
        }
        // The rows are committed: from here on a failure only means a redelivery, which the
        // writer turns into "already present".
        match self.with_retry("delete", || self.queue.delete(messages)).await {
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

    /// Settles every valid message of a batch: committed, refused, or left.
    async fn deliver(&self, valid: &[Valid<'_>]) -> Settled {
        let all: Vec<usize> = (0..valid.len()).collect();
        match self.attempt(valid, &all).await {
            Ok(settled) => {
                self.health.dependencies_ok();
                settled
            }
            Err(err) if err.may_be_caused_by_content() && all.len() > 1 => {
                self.bisect(valid, all, &err).await
            }
            Err(err) => {
                self.dependency_failed(&err, all.len());
                Settled { left: all, ..Settled::default() }
            }
        }
    }

    /// Isolates the messages a whole-call failure came from (see the module's header).
    async fn bisect(
        &self,
        valid: &[Valid<'_>],
        all: Vec<usize>,
        first: &DependencyError,
    ) -> Settled {
        tracing::warn!(error = %first, messages = all.len(), "a dependency failed a whole batch; isolating the cause");
        metrics::counter!("fetchreward_ingestor_bisections_total", "service" => first.service())
            .increment(1);
        let mut settled = Settled::default();
        let mut suspects = Vec::new();
        let mut calls = 0;
        let mut pending: Vec<Vec<usize>> = halves(all).into();
        while let Some(part) = pending.pop() {
            if calls == MAX_BISECT_CALLS {
                settled.left.extend(part);
                continue;
            }
            calls += 1;
            match self.attempt(valid, &part).await {
                Ok(done) => settled.merge(done),
                Err(err) if err.may_be_caused_by_content() && part.len() == 1 => {
                    suspects.push(part[0]);
                }
                Err(err) if err.may_be_caused_by_content() => pending.extend(halves(part)),
                Err(_) => settled.left.extend(part),
            }
        }
        if !settled.went_through() {
            self.dependency_failed(first, valid.len());
            settled.left.extend(suspects);
            return settled;
        }
        self.health.dependencies_ok();
        // A message that failed alone while its neighbours went through is tried once more,
        // so that a dependency that failed for a moment is not taken for the message's fault.
        for suspect in suspects {
            match self.attempt(valid, &[suspect]).await {
                Ok(done) => settled.merge(done),
                Err(err) if err.may_be_caused_by_content() => {
                    tracing::warn!(
                        message_id = %valid[suspect].message.message_id,
                        error = %err,
                        "a message fails on its own; dead-lettering it"
                    );
                    settled.refused.push((suspect, err.refusal()));
                }
                Err(_) => settled.left.push(suspect),
            }
        }
        settled
    }

    /// Tokenizes and writes the messages at `part`: one vault call for their distinct values,
    /// one writer call for their rows.
    async fn attempt(
        &self,
        valid: &[Valid<'_>],
        part: &[usize],
    ) -> Result<Settled, DependencyError> {
        let mut slots: HashMap<(PiiKind, &str), usize> = HashMap::new();
        let mut values: Vec<(PiiKind, Pii)> = Vec::new();
        for &i in part {
            let event = &valid[i].event;
            for (kind, value) in [(PiiKind::Ip, &event.ip), (PiiKind::DeviceId, &event.device_id)] {
                if let Some(value) = value {
                    slots.entry((kind, value.expose())).or_insert_with(|| {
                        values.push((kind, value.clone()));
                        values.len() - 1
                    });
                }
            }
        }
        let tokens: Vec<Result<Token, Refusal>> = if values.is_empty() {
            Vec::new()
        } else {
            self.with_retry("vault", || self.tokenizer.tokenize(values.clone())).await?
        };
        let token_of = |kind: PiiKind, value: &Option<Pii>| -> Result<Option<Token>, &Refusal> {
            match value {
                None => Ok(None),
                Some(value) => tokens[slots[&(kind, value.expose())]].as_ref().map(|t| Some(*t)),
            }
        };

        let mut settled = Settled::default();
        let mut rows = Vec::with_capacity(part.len());
        let mut row_positions = Vec::with_capacity(part.len());
        for &i in part {
            let Valid { origin, event, .. } = &valid[i];
            match (token_of(PiiKind::Ip, &event.ip), token_of(PiiKind::DeviceId, &event.device_id))
            {
                (Ok(masked_ip), Ok(masked_device_id)) => {
                    rows.push(MaskedLogin::from_event(
                        origin.message_id.clone(),
                        origin.sent_at,
                        event,
                        masked_ip,
                        masked_device_id,
                    ));
                    row_positions.push(i);
                }
                (Err(refusal), _) | (_, Err(refusal)) => settled.refused.push((i, refusal.clone())),
            }
        }
        if rows.is_empty() {
            return Ok(settled);
        }
        let refused_rows = self.with_retry("writer", || self.sink.write(rows.clone())).await?;
        let refused: HashSet<usize> = refused_rows.iter().map(|(row, _)| *row).collect();
        settled.committed.extend(
            row_positions
                .iter()
                .enumerate()
                .filter(|(row, _)| !refused.contains(row))
                .map(|(_, i)| *i),
        );
        settled
            .refused
            .extend(refused_rows.into_iter().map(|(row, refusal)| (row_positions[row], refusal)));
        Ok(settled)
    }

    fn dependency_failed(&self, err: &DependencyError, messages: usize) {
        self.health.dependency_failed(err.service());
        metrics::counter!("fetchreward_ingestor_dependency_failures_total", "service" => err.service())
            .increment(1);
        if err.is_transient() {
            tracing::warn!(error = %err, messages, "dependency unavailable; messages left for redelivery");
        } else {
            tracing::error!(error = %err, messages, "dependency refused the batch; messages left for redelivery");
        }
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

/// A message and its event, or its way to the DLQ.
fn parse(message: &ReceivedMessage) -> Result<Valid<'_>, DeadLetter<'_>> {
    let own = || Origin { message_id: message.message_id.clone(), sent_at: message.sent_at };
    let origin =
        message.origin().map_err(|refusal| DeadLetter { message, origin: own(), refusal })?;
    match parse_login(message.body.as_bytes()) {
        Ok(event) => Ok(Valid { message, origin, event }),
        Err(rejection) => {
            metrics::counter!("fetchreward_ingestor_rejections_total", "reason" => rejection.code())
                .increment(1);
            Err(DeadLetter { message, origin, refusal: Refusal::of_rejection(&rejection) })
        }
    }
}

/// The span of a batch: linked to the trace of every message that names one (a `traceparent`
/// attribute, or SQS's `AWSTraceHeader`), and a child of it when they all name the same trace (a batch of one traced
/// message, say), so that the vault's and the writer's spans join the producer's trace.
fn batch_span(batch: &[ReceivedMessage]) -> tracing::Span {
    let span = tracing::info_span!(
        "sqs.process",
        otel.name = "process",
        otel.kind = "consumer",
        messaging.system = "aws_sqs",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.batch.message_count = batch.len(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let traced: Vec<RemoteSpan> = batch.iter().filter_map(ReceivedMessage::trace).collect();
    if let Some(first) = traced.first()
        && traced.iter().all(|context| context.trace_id() == first.trace_id())
    {
        propagation::set_remote_parent(&span, first.clone());
    }
    for context in traced {
        propagation::add_link(&span, context);
    }
    propagation::record_ids(&span);
    span
}

/// A part split in two, the first half on top of the stack.
fn halves(mut part: Vec<usize>) -> [Vec<usize>; 2] {
    let second = part.split_off(part.len() / 2);
    [second, part]
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use fetchreward_model::{MAC_LEN, attributes};

    use super::*;
    use crate::queue::memory::{MemoryLetter, MemoryQueue};

    /// A vault that makes deterministic (unkeyed, test-only) tokens, refuses device ids that
    /// start with `refuse-`, and can be taken down.
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
        ) -> Result<Vec<Result<Token, Refusal>>, DependencyError> {
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
                    if value.expose().starts_with("refuse-") {
                        return Err(Refusal {
                            refused_by: "vault",
                            code: "test_refusal".into(),
                            reason: "device_id is refused by the test vault".into(),
                        });
                    }
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    value.expose().hash(&mut hasher);
                    let mut mac = [0u8; MAC_LEN];
                    for (chunk, byte) in mac.chunks_mut(8).zip(0u64..) {
                        chunk.copy_from_slice(&(hasher.finish() ^ byte).to_le_bytes());
                    }
                    Ok(Token::new(*kind, 1, mac))
                })
                .collect())
        }
    }

    /// How the fake writer treats a row whose user_id starts with `poison-`.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum PoisonRows {
        /// Refuses it by index and commits the others (what the real writer does).
        #[default]
        RefuseByIndex,
        /// Fails the whole call with INTERNAL, naming nothing (an older or buggy writer).
        FailTheCall,
    }

    /// A writer that keeps rows by message_id, can be taken down, can be slow, and refuses
    /// rows whose user_id starts with `poison-` (see [`PoisonRows`]).
    #[derive(Default)]
    pub(crate) struct FakeWriter {
        pub(crate) down: AtomicBool,
        pub(crate) broken: AtomicBool,
        pub(crate) poison: Mutex<PoisonRows>,
        pub(crate) delay: Mutex<Duration>,
        pub(crate) rows: Mutex<HashMap<String, MaskedLogin>>,
        pub(crate) writes: AtomicUsize,
        pub(crate) calls: AtomicUsize,
    }

    impl RowSink for Arc<FakeWriter> {
        async fn write(
            &self,
            rows: Vec<MaskedLogin>,
        ) -> Result<Vec<(usize, Refusal)>, DependencyError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().expect("not poisoned");
            tokio::time::sleep(delay).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(DependencyError::Unavailable {
                    service: "writer",
                    detail: "down".into(),
                });
            }
            let internal = || DependencyError::Refused {
                service: "writer",
                code: tonic::Code::Internal,
                message: "database error; nothing was written".into(),
            };
            if self.broken.load(Ordering::SeqCst) {
                return Err(internal());
            }
            let poisoned: Vec<usize> =
                (0..rows.len()).filter(|&i| rows[i].user_id.starts_with("poison-")).collect();
            let mode = *self.poison.lock().expect("not poisoned");
            if mode == PoisonRows::FailTheCall && !poisoned.is_empty() {
                return Err(internal());
            }
            let mut stored = self.rows.lock().expect("not poisoned");
            for (i, row) in rows.into_iter().enumerate() {
                if !poisoned.contains(&i) {
                    self.writes.fetch_add(1, Ordering::SeqCst);
                    stored.entry(row.message_id.clone()).or_insert(row);
                }
            }
            Ok(poisoned
                .into_iter()
                .map(|i| {
                    let refusal = Refusal {
                        refused_by: "writer",
                        code: "db_constraint_violation".into(),
                        reason: "the database refused the row: SQLSTATE 23514 on no_poison".into(),
                    };
                    (i, refusal)
                })
                .collect())
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
        let reason = |letter: &MemoryLetter| {
            letter.refusal.as_ref().map(|r| r.reason.clone()).unwrap_or_default()
        };
        assert!(letters.iter().any(|letter| letter.body.contains("oops_wrong_msg_type")
            && reason(letter) == "field `user_id` is missing"));
        assert!(letters.iter().any(|letter| reason(letter).contains("`ip` is not a valid")));
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
        assert_eq!(pipeline.health().problem(), Some("the vault is failing"));

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

    /// Sends `count` valid logins and `poison` at the given positions; returns the poison ids.
    fn send_mixed(queue: &MemoryQueue, count: usize, poison: &[(usize, String)]) -> Vec<String> {
        let mut poison_ids = Vec::new();
        for i in 0..count {
            if let Some((_, body)) = poison.iter().find(|(at, _)| *at == i) {
                poison_ids.push(queue.send(body.clone()));
            }
            queue.send(login(&format!("u{i}"), &format!("10.2.{}.{}", i / 200, i % 200), "d"));
        }
        poison_ids
    }

    fn refusal_of<'a>(letters: &'a [MemoryLetter], id: &str) -> &'a Refusal {
        letters
            .iter()
            .find(|letter| letter.source_message_id == id)
            .and_then(|letter| letter.refusal.as_ref())
            .expect("dead-lettered with a refusal")
    }

    #[tokio::test(start_paused = true)]
    async fn a_row_the_writer_refuses_is_dead_lettered_and_every_other_row_written() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        let poison = [(37, login("poison-1", "10.9.9.9", "d-9"))];
        let poison_ids = send_mixed(&queue, 120, &poison);

        // Twelve receives merged into one batch, as a worker takes them from the channel.
        let report = pipeline.process(receive_all(&queue).await).await;

        assert_eq!(report, BatchReport { written: 120, dead_lettered: 1, left: 0 });
        assert!(queue.is_empty(), "nothing is left for redelivery");
        let letters = queue.dead_letters();
        assert_eq!(letters.len(), 1);
        let refusal = refusal_of(&letters, &poison_ids[0]);
        assert_eq!(refusal.refused_by, "writer");
        assert_eq!(refusal.code, "db_constraint_violation");
        assert_eq!(refusal.reason, "the database refused the row: SQLSTATE 23514 on no_poison");
        assert_eq!(writer.rows.lock().expect("not poisoned").len(), 120);
        assert_eq!(writer.calls.load(Ordering::SeqCst), 1, "one writer call for the batch");
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_the_vault_refuses_dead_letters_the_messages_that_hold_it() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        let poison =
            [(3, login("v1", "10.8.0.1", "refuse-me")), (60, login("v2", "10.8.0.2", "refuse-me"))];
        let poison_ids = send_mixed(&queue, 80, &poison);

        let report = pipeline.process(receive_all(&queue).await).await;

        assert_eq!(report, BatchReport { written: 80, dead_lettered: 2, left: 0 });
        let letters = queue.dead_letters();
        for id in &poison_ids {
            let refusal = refusal_of(&letters, id);
            assert_eq!((refusal.refused_by, refusal.code.as_str()), ("vault", "test_refusal"));
        }
        assert_eq!(writer.rows.lock().expect("not poisoned").len(), 80);
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_call_failure_is_bisected_down_to_the_messages_that_cause_it() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        *writer.poison.lock().expect("not poisoned") = PoisonRows::FailTheCall;
        let poison = [
            (10, login("poison-a", "10.9.0.1", "d-a")),
            (11, login("poison-b", "10.9.0.2", "d-b")),
            (150, login("poison-c", "10.9.0.3", "d-c")),
        ];
        let poison_ids = send_mixed(&queue, 200, &poison);

        let report = pipeline.process(receive_all(&queue).await).await;

        assert_eq!(report, BatchReport { written: 200, dead_lettered: 3, left: 0 });
        assert!(queue.is_empty());
        let letters = queue.dead_letters();
        assert_eq!(letters.len(), 3);
        for id in &poison_ids {
            let refusal = refusal_of(&letters, id);
            assert_eq!(refusal.code, "writer_internal");
            assert_eq!(refusal.reason, "database error; nothing was written");
        }
        let calls = writer.calls.load(Ordering::SeqCst);
        assert!(calls <= 1 + MAX_BISECT_CALLS + 3, "bounded: {calls} writer calls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dependency_that_fails_every_call_dead_letters_nothing() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        writer.broken.store(true, Ordering::SeqCst);
        send_mixed(&queue, 300, &[]);

        let report = pipeline.process(receive_all(&queue).await).await;

        assert_eq!(report, BatchReport { written: 0, dead_lettered: 0, left: 300 });
        assert!(queue.dead_letters().is_empty(), "a broken writer is not the messages' fault");
        assert_eq!(queue.len(), 300);
        assert!(writer.calls.load(Ordering::SeqCst) <= 1 + MAX_BISECT_CALLS);
        assert_eq!(pipeline.health().problem(), Some("the writer is failing"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_redriven_message_keeps_the_row_of_the_message_it_was_first_sent_as() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        let first_sent_ms = 1_700_000_000_000_i64;
        let origin = [
            (attributes::SOURCE_MESSAGE_ID, "first-id"),
            (attributes::SOURCE_SENT_TIMESTAMP, "1700000000000"),
        ];
        // Redriven twice, so it is in the queue twice under two new ids.
        queue.send_with_attributes(login("u1", "10.0.0.1", "d"), &origin);
        queue.send_with_attributes(login("u1", "10.0.0.1", "d"), &origin);
        let broken = queue.send_with_attributes(
            login("u2", "10.0.0.2", "d"),
            &[(attributes::SOURCE_MESSAGE_ID, "only-the-id")],
        );

        let report = pipeline.process(receive_all(&queue).await).await;

        assert_eq!(report, BatchReport { written: 2, dead_lettered: 1, left: 0 });
        let rows = writer.rows.lock().expect("not poisoned");
        assert_eq!(rows.len(), 1, "one row for both copies");
        let row = &rows["first-id"];
        assert_eq!(row.sent_at.timestamp_millis(), first_sent_ms);
        let letters = queue.dead_letters();
        assert_eq!(refusal_of(&letters, &broken).code, "invalid_source_attributes");
    }
}
