//! `make bench`: the whole pipeline against the local stack, with each service in its own
//! process (release binaries), compared with the bare drain rate of the same queue emulator.
//!
//! Reports end-to-end messages per second; the bare drain rate (receive + delete only, with the
//! ingestor's number of pollers); their ratio; CPU seconds per 1,000 messages and peak RSS of
//! each service. Settings: `BENCH_MESSAGES` (default 100000), `BENCH_DISTINCT_PERCENT` (share
//! of distinct ip and device_id values, default 50), `BENCH_POLLERS` (default 4),
//! `BENCH_WORKERS` (4), `BENCH_MAX_BATCH` (500), `BENCH_TLS` (1: mutual TLS between the
//! services, as in production; 0: plaintext), `BENCH_ROUNDS` (3: each a bare drain, then the
//! pipeline, so both are measured in the same sitting; the table gives medians). Writes
//! `target/bench/pipeline.md` and `target/bench/pipeline.json`, which `make bench-compare`
//! compares with another run's. Needs `make up` and
//! `cargo build --release --bins` (the Makefile does both).

use std::collections::BTreeMap;
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

/// What one round measured: the bare drain, then the pipeline on the same emulator.
#[derive(Debug, Clone, serde::Serialize)]
struct Round {
    bare_msgs_per_s: f64,
    pipeline_msgs_per_s: f64,
    ratio_to_bare: f64,
    /// Per service: CPU seconds per 1,000 messages, peak RSS.
    services: BTreeMap<String, ServiceFigures>,
    cpu_s_per_1000_total: f64,
    peak_rss_mib_total: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct ServiceFigures {
    cpu_s_per_1000: f64,
    peak_rss_mib: f64,
}

/// The settings of a run, as the JSON report records them.
#[derive(Debug, Clone, serde::Serialize)]
struct Settings {
    messages: usize,
    distinct: usize,
    pollers: usize,
    workers: usize,
    max_batch: usize,
    tls: bool,
    rounds: usize,
}

/// One round: a fresh queue drained bare, then a fresh pipeline on a fresh queue and database.
async fn round(stack: &Stack, settings: &Settings, bodies: &[String], logs: &Path) -> Round {
    let sqs = stack.sqs();
    let messages = settings.messages;
    let bare = QueuePair::create(&sqs, 50, 30).await;
    queue::seed(&sqs, &bare.queue_url, bodies.to_vec()).await.expect("seeds");
    // The bare drain dead-letters nothing: its sealer is never asked for a key.
    let sealer = Arc::new(Sealer::new(stack.kms(), "alias/unused"));
    let bare_queue = SqsQueue::new(sqs.clone(), &bare.queue_url, &bare.dlq_url, sealer);
    let bare_time = bare_drain(bare_queue, settings.pollers, messages).await;
    let bare_rate = messages as f64 / bare_time.as_secs_f64();
    eprintln!("bare drain: {messages} messages in {bare_time:.2?} ({bare_rate:.0} msgs/s)");

    // The pipeline: vault and writer first, with mutual TLS from a throwaway PKI (the default,
    // as in production) or in plaintext.
    let mut set = ServiceSet::start(
        stack,
        SetConfig {
            tls: settings.tls,
            max_receive_count: 50,
            visibility_timeout_secs: 30,
            ingestor_settings: vec![
                ("POLLERS", settings.pollers.to_string()),
                ("WORKERS", settings.workers.to_string()),
                ("MAX_BATCH", settings.max_batch.to_string()),
                ("RECEIVE_WAIT_SECS", "1".into()),
            ],
            log_dir: logs.to_path_buf(),
        },
    )
    .await
    .expect("starts the vault and the writer");
    queue::seed(&sqs, &set.queues.queue_url, bodies.to_vec()).await.expect("seeds");
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
    eprintln!("pipeline: {messages} messages in {elapsed:.2?} ({rate:.0} msgs/s)");
    let services: BTreeMap<String, ServiceFigures> = set
        .services()
        .map(|service| {
            let cpu = service.cpu_seconds() - service.cpu_at_start;
            let figures = ServiceFigures {
                cpu_s_per_1000: cpu / messages as f64 * 1000.0,
                peak_rss_mib: service.peak_rss_mib(),
            };
            (service.name().to_owned(), figures)
        })
        .collect();
    set.stop();
    Round {
        bare_msgs_per_s: bare_rate,
        pipeline_msgs_per_s: rate,
        ratio_to_bare: rate / bare_rate,
        cpu_s_per_1000_total: services.values().map(|s| s.cpu_s_per_1000).sum(),
        peak_rss_mib_total: services.values().map(|s| s.peak_rss_mib).sum(),
        services,
    }
}

/// The median of `values` (the upper middle one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `median (min–max)` of one figure over the rounds.
fn spread(rounds: &[Round], figure: impl Fn(&Round) -> f64, format: fn(f64) -> String) -> String {
    let values: Vec<f64> = rounds.iter().map(&figure).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if rounds.len() == 1 {
        format(values[0])
    } else {
        format!("{} ({}–{})", format(median(values)), format(min), format(max))
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo bench -- --list` enumerates benchmarks; this one is a whole run.
    }
    let messages = setting("BENCH_MESSAGES", 100_000);
    let settings = Settings {
        messages,
        distinct: (messages * setting("BENCH_DISTINCT_PERCENT", 50) / 100).max(1),
        pollers: setting("BENCH_POLLERS", 4),
        workers: setting("BENCH_WORKERS", 4),
        max_batch: setting("BENCH_MAX_BATCH", 500),
        tls: setting("BENCH_TLS", 1) == 1,
        rounds: setting("BENCH_ROUNDS", 3).max(1),
    };
    let stack = Stack::from_env();
    let bodies = sample::synthetic(
        messages,
        2024,
        sample::Shape { distinct_ips: settings.distinct, distinct_devices: settings.distinct },
    );
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&logs).expect("creates target/bench");

    let mut rounds = Vec::with_capacity(settings.rounds);
    for number in 1..=settings.rounds {
        eprintln!("round {number} of {}", settings.rounds);
        rounds.push(round(&stack, &settings, &bodies, &logs).await);
    }

    let rate = |v: f64| format!("{v:.0}");
    let percent = |v: f64| format!("{:.0}%", v * 100.0);
    let cpu = |v: f64| format!("{v:.3}");
    let mib = |v: f64| format!("{v:.0}");
    let mut table = vec![
        "| measure | value, median of the rounds (min–max) |".to_owned(),
        "|---|---|".to_owned(),
        format!("| end-to-end msgs/s | {} |", spread(&rounds, |r| r.pipeline_msgs_per_s, rate)),
        format!(
            "| bare drain msgs/s (receive + delete, {} pollers) | {} |",
            settings.pollers,
            spread(&rounds, |r| r.bare_msgs_per_s, rate)
        ),
        format!("| ratio to the bare drain | {} |", spread(&rounds, |r| r.ratio_to_bare, percent)),
        format!(
            "| CPU s per 1,000 msgs, all services | {} |",
            spread(&rounds, |r| r.cpu_s_per_1000_total, cpu)
        ),
        format!(
            "| peak RSS, all services (MiB) | {} |",
            spread(&rounds, |r| r.peak_rss_mib_total, mib)
        ),
    ];
    for name in rounds[0].services.keys() {
        table.push(format!(
            "| {name}: CPU s per 1,000 msgs | {} |",
            spread(&rounds, |r| r.services[name].cpu_s_per_1000, cpu)
        ));
        table.push(format!(
            "| {name}: peak RSS (MiB) | {} |",
            spread(&rounds, |r| r.services[name].peak_rss_mib, mib)
        ));
    }
    let report = format!(
        "End to end: {messages} messages ({} distinct ip and device_id values), pollers {}, \
         workers {}, max batch {}, gRPC {}, {} round(s)\n\n{}\n",
        settings.distinct,
        settings.pollers,
        settings.workers,
        settings.max_batch,
        if settings.tls { "over mutual TLS" } else { "in plaintext" },
        settings.rounds,
        table.join("\n"),
    );
    println!("{report}");
    std::fs::write(logs.join("pipeline.md"), &report).expect("writes target/bench/pipeline.md");
    let json = serde_json::json!({ "settings": settings, "rounds": rounds });
    std::fs::write(logs.join("pipeline.json"), serde_json::to_vec_pretty(&json).unwrap())
        .expect("writes target/bench/pipeline.json");
    eprintln!(
        "written: target/bench/pipeline.md, target/bench/pipeline.json (make bench-compare A=… B=…)"
    );
}
