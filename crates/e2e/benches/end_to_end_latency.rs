//! End-to-end latency at a fixed offered load: a producer sends `BENCH_RATE` messages a second
//! (default 1000, in batches of ten every 10 ms) for `BENCH_SECONDS` (default 60) while the
//! pipeline (release binaries, mutual TLS, default settings) drains the queue. The latency of a
//! message is from its SentTimestamp to its row's commit, as the ingestor's
//! `fetchreward_ingestor_end_to_end_seconds` histogram records it; p50 and p99 are read from
//! the histogram (linear within a bucket), the maximum is the upper bound of the highest bucket
//! that holds a message. Writes `target/bench/end_to_end_latency.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use fetchreward_cli::queue::{self, Outgoing};
use fetchreward_cli::sample;
use fetchreward_stress::services::{ServiceSet, SetConfig};
use fetchreward_testkit::{Stack, http_get};

fn setting(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `(upper bound, cumulative count)` of every bucket of the histogram `name` in a scrape.
fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().ok()? };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of cumulative `buckets`, linear within the bucket that holds it.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |(_, count)| *count);
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let share = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 1.0 };
            return lower.0 + (bound - lower.0) * share;
        }
        lower = (bound, count);
    }
    lower.0
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let rate = setting("BENCH_RATE", 1000);
    let seconds = setting("BENCH_SECONDS", 60);
    let stack = Stack::from_env();
    let sqs = stack.sqs();
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let mut set = ServiceSet::start(
        &stack,
        SetConfig {
            tls: true,
            max_receive_count: 50,
            visibility_timeout_secs: 30,
            ingestor_settings: Vec::new(),
            log_dir: logs.clone(),
        },
    )
    .await
    .expect("starts the vault and the writer");
    set.start_ingestor(None).expect("starts the ingestor");
    let total = rate * seconds;
    let bodies: Vec<Outgoing> = sample::synthetic(
        total,
        7,
        sample::Shape { distinct_ips: total / 2, distinct_devices: total / 2 },
    )
    .iter()
    .map(Outgoing::from)
    .collect();

    // Ten messages every 10 ms / (rate / 1000): the offered load, kept whatever the pipeline does.
    let batches_per_second = (rate / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / batches_per_second as u32);
    let started = Instant::now();
    let mut sending = tokio::task::JoinSet::new();
    for batch in bodies.chunks(10) {
        tick.tick().await;
        let (sqs, url, batch) = (sqs.clone(), set.queues.queue_url.clone(), batch.to_vec());
        sending.spawn(async move { queue::send_batch(&sqs, &url, &batch).await.expect("sent") });
    }
    while sending.join_next().await.is_some() {}
    let offered = total as f64 / started.elapsed().as_secs_f64();
    queue::wait_empty(&sqs, &set.queues.queue_url, Duration::from_secs(600)).await.expect("drains");
    // The last deletes follow the last commits; the histogram is complete once the queue is.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = format!("127.0.0.1:{}", set.ingestor_ports[0]).parse().unwrap();
    let metrics = http_get(addr, "/metrics").await;
    set.stop();

    let histogram = buckets(&metrics, "fetchreward_ingestor_end_to_end_seconds");
    let counted = histogram.last().map_or(0.0, |(_, count)| *count);
    assert_eq!(counted as usize, total, "every message's latency was recorded once");
    let highest = histogram
        .windows(2)
        .filter(|pair| pair[1].1 > pair[0].1)
        .map(|pair| pair[1].0)
        .fold(histogram[0].0, f64::max);
    let ms = |seconds: f64| format!("{:.0} ms", seconds * 1000.0);
    let report = format!(
        "{total} messages offered at {rate} msgs/s for {seconds} s (achieved {offered:.0} msgs/s), \
         default settings, mutual TLS\n\n\
         | latency, SentTimestamp to commit | value |\n|---|---|\n\
         | p50 | {} |\n| p99 | {} |\n| max | at most {} |\n",
        ms(quantile(&histogram, 0.5)),
        ms(quantile(&histogram, 0.99)),
        ms(highest),
    );
    println!("{report}");
    std::fs::write(logs.join("end_to_end_latency.md"), &report).expect("writes the report");
}
