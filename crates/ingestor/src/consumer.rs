//! Pollers and workers: how messages flow from the queue through the pipeline.
//!
//! `pollers` tasks long-poll the queue and push messages into a channel bounded at
//! `prefetch`; `workers` tasks each take whatever the channel holds (up to `max_batch`
//! messages, so deliveries from several receives merge into one vault call and one writer
//! call) and run the pipeline on it. The channel's bound is the back-pressure: when the vault
//! or the writer is slow or down, workers sit in their backoff, the channel fills, and pollers
//! stop receiving — no busy loop, and few messages held invisible at a time.
//!
//! Shutdown: pollers stop at once (a long poll in progress is abandoned; SQS makes anything it
//! was about to return visible again after the visibility timeout), workers finish their
//! current batch within the grace period, and messages still waiting in the channel are
//! handed back to the queue with a visibility timeout of zero.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clients::{RowSink, Tokenizer};
use crate::pipeline::Pipeline;
use crate::queue::{Queue, ReceivedMessage};

/// How the consumer receives and batches.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// Concurrent receive loops.
    pub pollers: usize,
    /// Concurrent batches in the pipeline.
    pub workers: usize,
    /// Most messages in one batch.
    pub max_batch: usize,
    /// Most messages waiting in the channel for a worker.
    pub prefetch: usize,
    /// Long-polling wait of one receive.
    pub receive_wait: Duration,
    /// Visibility timeout asked for on receive.
    pub visibility: Duration,
    /// How long in-flight batches may run after shutdown begins.
    pub grace: Duration,
    /// How often the queues' depths are published (`watch`); zero: never.
    pub queue_metrics: Duration,
}

/// Runs the consumer until `shutdown` is cancelled and in-flight work is finished or released.
pub async fn run<Q: Queue, T: Tokenizer, W: RowSink>(
    pipeline: Arc<Pipeline<Q, T, W>>,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) {
    let (sender, receiver) = mpsc::channel::<ReceivedMessage>(settings.prefetch);
    let receiver = Arc::new(Mutex::new(receiver));
    let tasks = TaskTracker::new();
    for _ in 0..settings.pollers {
        tasks.spawn(poll(pipeline.clone(), sender.clone(), settings, shutdown.clone()));
    }
    drop(sender);
    for _ in 0..settings.workers {
        tasks.spawn(work(pipeline.clone(), receiver.clone(), settings.max_batch, shutdown.clone()));
    }

    shutdown.cancelled().await;
    let finished = fetchreward_runtime::shutdown::drain(&tasks, settings.grace).await;
    release_waiting(&pipeline, &receiver).await;
    tracing::info!(finished, "consumer stopped");
}

/// One receive loop.
async fn poll<Q: Queue, T: Tokenizer, W: RowSink>(
    pipeline: Arc<Pipeline<Q, T, W>>,
    sender: mpsc::Sender<ReceivedMessage>,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) {
    let health = pipeline.health();
    let mut backoff = receive_backoff();
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = pipeline.queue().receive(settings.receive_wait, settings.visibility) => received,
        };
        match received {
            Ok(messages) => {
                health.queue(true);
                backoff = receive_backoff();
                metrics::counter!("fetchreward_ingestor_received_total")
                    .increment(messages.len() as u64);
                pipeline.received_ages().note(&messages);
                for message in messages {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        sent = sender.send(message) => if sent.is_err() { return },
                    }
                }
            }
            Err(err) => {
                health.queue(false);
                let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(error = %err, delay_ms = delay.as_millis() as u64, "receive failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

fn receive_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times()
        .with_jitter()
        .build()
}

/// One batch loop.
async fn work<Q: Queue, T: Tokenizer, W: RowSink>(
    pipeline: Arc<Pipeline<Q, T, W>>,
    receiver: Arc<Mutex<mpsc::Receiver<ReceivedMessage>>>,
    max_batch: usize,
    shutdown: CancellationToken,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let mut batch = Vec::with_capacity(max_batch);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                received = receiver.recv_many(&mut batch, max_batch) => if received == 0 { return },
            }
            batch
        };
        pipeline.process(batch).await;
    }
}

/// Hands messages received but not yet processed back to the queue.
async fn release_waiting<Q: Queue, T: Tokenizer, W: RowSink>(
    pipeline: &Pipeline<Q, T, W>,
    receiver: &Mutex<mpsc::Receiver<ReceivedMessage>>,
) {
    let mut waiting = Vec::new();
    {
        let mut receiver = receiver.lock().await;
        receiver.close();
        while let Ok(message) = receiver.try_recv() {
            waiting.push(message);
        }
    }
    if waiting.is_empty() {
        return;
    }
    let messages: Vec<&ReceivedMessage> = waiting.iter().collect();
    match pipeline.queue().set_visibility(&messages, Duration::ZERO).await {
        Ok(()) => tracing::info!(messages = messages.len(), "released unprocessed messages"),
        Err(err) => {
            tracing::warn!(error = %err, "releasing unprocessed messages failed; they return after their visibility timeout")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::pipeline::tests::{VISIBILITY, login, pipeline, pipeline_stopped_by};
    use crate::queue::memory::MemoryQueue;

    fn settings() -> ConsumerSettings {
        ConsumerSettings {
            pollers: 3,
            workers: 2,
            max_batch: 50,
            prefetch: 100,
            receive_wait: Duration::from_millis(50),
            visibility: VISIBILITY,
            grace: Duration::from_secs(5),
            queue_metrics: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn drains_the_queue_and_stops_on_shutdown() {
        let queue = MemoryQueue::new(5);
        let (pipeline, _vault, writer) = pipeline(&queue);
        for i in 0..500 {
            queue.send(login(&format!("u{i}"), &format!("10.0.{}.{}", i / 256, i % 256), "d"));
        }
        queue.send("not json");
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(run(pipeline, settings(), shutdown.clone()));
        tokio::time::timeout(Duration::from_secs(30), async {
            while !queue.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("drained");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("stops")
            .expect("joins");
        assert_eq!(writer.rows.lock().expect("not poisoned").len(), 500);
        assert_eq!(queue.dead_letters().len(), 1);
    }

    #[tokio::test]
    async fn shutdown_during_an_outage_stops_within_the_grace_period() {
        let queue = MemoryQueue::new(5);
        let shutdown = CancellationToken::new();
        let (pipeline, vault, _writer) = pipeline_stopped_by(&queue, shutdown.clone());
        vault.down.store(true, Ordering::SeqCst);
        for i in 0..200 {
            queue.send(login(&format!("u{i}"), "10.0.0.1", "d"));
        }
        let running = tokio::spawn(run(pipeline, settings(), shutdown.clone()));
        // The consumer is in its retries once the vault has been called.
        tokio::time::timeout(Duration::from_secs(10), async {
            while vault.calls.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the vault is called");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("stops")
            .expect("joins");
        assert_eq!(queue.len(), 200, "nothing deleted while the vault was down");
        // Messages that waited in the channel were handed back: visible again at once.
        let visible = queue.receive(Duration::ZERO, VISIBILITY).await.expect("receives");
        assert!(!visible.is_empty());
    }
}
