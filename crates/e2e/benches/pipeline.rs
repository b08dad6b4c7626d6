//! `make bench`: the whole pipeline against the local stack, with each service in its own
//! process (release binaries), compared with the bare drain rate of the same queue emulator.
//!
//! Reports end-to-end messages per second; the bare drain rate (receive + delete only, with the
//! ingestor's number of pollers); their ratio; CPU seconds per 1,000 messages and peak RSS of
//! each service. Settings: `BENCH_MESSAGES` (default 100000), `BENCH_DISTINCT_PERCENT` (share
//! of distinct ip and device_id values, default 50), `BENCH_POLLERS` (default 4),
//! `BENCH_WORKERS` (4), `BENCH_MAX_BATCH` (500), `BENCH_TLS` (1: mutual TLS between the
//! services, as in production; 0: plaintext). Needs `make up` and
//! `cargo build --release --bins` (the Makefile does both).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fetchreward_cli::{queue, sample};
use fetchreward_dlq::Sealer;
use fetchreward_ingestor::queue::sqs::SqsQueue;
use fetchreward_ingestor::queue::{Queue, ReceivedMessage};
use fetchreward_stress::services::{ServiceSet, SetConfig};
use fetchreward_testkit::{QueuePair, Stack, TestDatabase};

fn setting(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Receive + delete only, with `pollers` concurrent loops, until `expected` are gone.
async fn bare_drain(queue: SqsQueue, pollers: usize, expected: usize) -> Duration {
    let queue = Arc::new(queue);
    let drained = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let loops = (0..pollers).map(|_| {
        let queue = queue.clone();
        let drained = drained.clone();
        tokio::spawn(async move {
            while drained.load(Ordering::Relaxed) < expected {
                let messages = queue
                    .receive(Duration::from_secs(1), Duration::from_secs(30))
                    .await
                    .expect("receives");
                let refs: Vec<&ReceivedMessage> = messages.iter().collect();
                let failed = queue.delete(&refs).await.expect("deletes");
                drained.fetch_add(refs.len() - failed.len(), Ordering::Relaxed);
            }
        })
    });
    futures::future::join_all(loops).await;
    started.elapsed()
}

async fn count_rows(db: &TestDatabase) -> usize {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let rows: Vec<Count> = diesel::sql_query("SELECT count(*) AS n FROM user_logins")
        .load(&mut conn)
        .await
        .expect("counts rows");
    rows[0].n as usize
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo bench -- --list` enumerates benchmarks; this one is a whole run.
    }
    let messages = setting("BENCH_MESSAGES", 100_000);
    let distinct = (messages * setting("BENCH_DISTINCT_PERCENT", 50) / 100).max(1);
    let pollers = setting("BENCH_POLLERS", 4);
    let workers = setting("BENCH_WORKERS", 4);
    let max_batch = setting("BENCH_MAX_BATCH", 500);
    let tls = setting("BENCH_TLS", 1) == 1;
    let stack = Stack::from_env();
    let sqs = stack.sqs();
    let bodies = sample::synthetic(
        messages,
        2024,
        sample::Shape { distinct_ips: distinct, distinct_devices: distinct },
    );
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&logs).expect("creates target/bench");

    // 1. The emulator alone.
    let bare = QueuePair::create(&sqs, 50, 30).await;
    queue::seed(&sqs, &bare.queue_url, bodies.clone()).await.expect("seeds");
    // The bare drain dead-letters nothing: its sealer is never asked for a key.
    let sealer = Arc::new(Sealer::new(stack.kms(), "alias/unused"));
    let bare_queue = SqsQueue::new(sqs.clone(), &bare.queue_url, &bare.dlq_url, sealer);
    let bare_time = bare_drain(bare_queue, pollers, messages).await;
    let bare_rate = messages as f64 / bare_time.as_secs_f64();
    eprintln!("bare drain: {messages} messages in {bare_time:.2?} ({bare_rate:.0} msgs/s)");

    // 2. The pipeline: vault and writer first, with mutual TLS from a throwaway PKI (the
    // default, as in production) or in plaintext.
    let mut set = ServiceSet::start(
        &stack,
        SetConfig {
            tls,
            max_receive_count: 50,
            visibility_timeout_secs: 30,
            ingestor_settings: vec![
                ("POLLERS", pollers.to_string()),
                ("WORKERS", workers.to_string()),
                ("MAX_BATCH", max_batch.to_string()),
                ("RECEIVE_WAIT_SECS", "1".into()),
            ],
            log_dir: logs.clone(),
        },
    )
    .await
    .expect("starts the vault and the writer");
    queue::seed(&sqs, &set.queues.queue_url, bodies).await.expect("seeds");

    set.vault.cpu_at_start = set.vault.cpu_seconds();
    set.writer.cpu_at_start = set.writer.cpu_seconds();
    let started = Instant::now();
    set.start_ingestor(None).expect("starts the ingestor");
    queue::wait_empty(&sqs, &set.queues.queue_url, Duration::from_secs(1800))
        .await
        .expect("drains");
    let elapsed = started.elapsed();
    let rows = count_rows(&set.database).await;
    assert_eq!(rows, messages, "every message became exactly one row");
    let rate = messages as f64 / elapsed.as_secs_f64();

    let report_rows: Vec<String> = set
        .services()
        .map(|service| {
            let cpu = service.cpu_seconds() - service.cpu_at_start;
            format!(
                "| {} | {:.3} | {:.0} |",
                service.name(),
                cpu / messages as f64 * 1000.0,
                service.peak_rss_mib()
            )
        })
        .collect();
    let report = format!(
        "End to end: {messages} messages ({distinct} distinct ip and device_id values), pollers {pollers}, \
         workers {workers}, max batch {max_batch}, gRPC {}\n\n\
         | measure | value |\n|---|---|\n\
         | end-to-end rate | {rate:.0} msgs/s ({elapsed:.1?}) |\n\
         | bare drain rate of the emulator (receive + delete, {pollers} pollers) | {bare_rate:.0} msgs/s |\n\
         | ratio | {:.0}% |\n\n\
         | service | CPU seconds per 1,000 messages | peak RSS (MiB) |\n|---|---|---|\n{}\n",
        if tls { "over mutual TLS" } else { "in plaintext" },
        rate / bare_rate * 100.0,
        report_rows.join("\n"),
    );
    println!("{report}");
    std::fs::write(logs.join("pipeline.md"), &report).expect("writes target/bench/pipeline.md");
    set.stop();
}
