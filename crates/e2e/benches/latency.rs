//! The pipeline with a network delay in front of SQS: every request to the emulator is held
//! `BENCH_LATENCY_MS` (default 20, about SQS's from EC2) by a proxy, and the ingestor's pollers
//! and replicas vary: 1, 4, 16 and 64 pollers on one replica, then 1, 2 and 3 replicas of 16
//! pollers. Each setting drains `BENCH_LATENCY_MESSAGES` (default 20000) messages through a
//! fresh vault, writer and database, over mutual TLS. Reports msgs/s, CPU seconds per 1,000
//! messages of the three services, and how busy the machine's CPUs were meanwhile (from
//! /proc/stat): where the rate stops growing, that figure names the resource that set the
//! ceiling. Writes `target/bench/latency.md` and `target/bench/latency.json`.

use std::path::Path;
use std::time::{Duration, Instant};

use fetchreward_cli::{queue, sample};
use fetchreward_stress::services::{ServiceSet, SetConfig};
use fetchreward_testkit::{Stack, TcpProxy};

fn setting(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Busy and total jiffies of all CPUs since boot.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("reads /proc/stat");
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .expect("a cpu line")
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0); // idle + iowait
    (total - idle, total)
}

#[derive(Debug, Clone, serde::Serialize)]
struct Measured {
    replicas: usize,
    pollers: usize,
    msgs_per_s: f64,
    cpu_s_per_1000: f64,
    machine_cpu_busy: f64,
}

async fn drain(
    stack: &Stack,
    proxy: &TcpProxy,
    bodies: &[String],
    replicas: usize,
    pollers: usize,
) -> Measured {
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let sqs = stack.sqs();
    let mut set = ServiceSet::start(
        stack,
        SetConfig {
            tls: true,
            max_receive_count: 50,
            visibility_timeout_secs: 30,
            ingestor_settings: vec![
                ("POLLERS", pollers.to_string()),
                ("RECEIVE_WAIT_SECS", "1".into()),
            ],
            log_dir: logs,
        },
    )
    .await
    .expect("starts the vault and the writer");
    queue::seed(&sqs, &set.queues.queue_url, bodies.to_vec()).await.expect("seeds");
    set.vault.cpu_at_start = set.vault.cpu_seconds();
    set.writer.cpu_at_start = set.writer.cpu_seconds();
    let endpoint = format!("http://{}", proxy.addr);
    let (busy_before, total_before) = cpu_jiffies();
    let started = Instant::now();
    for _ in 0..replicas {
        set.start_ingestor(Some(&endpoint)).expect("starts an ingestor");
    }
    queue::wait_empty(&sqs, &set.queues.queue_url, Duration::from_secs(1800))
        .await
        .expect("drains");
    let elapsed = started.elapsed();
    let (busy_after, total_after) = cpu_jiffies();
    let cpu: f64 = set.services().map(|service| service.cpu_seconds() - service.cpu_at_start).sum();
    set.stop();
    let messages = bodies.len() as f64;
    let measured = Measured {
        replicas,
        pollers,
        msgs_per_s: messages / elapsed.as_secs_f64(),
        cpu_s_per_1000: cpu / messages * 1000.0,
        machine_cpu_busy: (busy_after - busy_before) as f64
            / (total_after - total_before).max(1) as f64,
    };
    eprintln!("{measured:?}");
    measured
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let latency = Duration::from_millis(setting("BENCH_LATENCY_MS", 20) as u64);
    let messages = setting("BENCH_LATENCY_MESSAGES", 20_000);
    let stack = Stack::from_env();
    let upstream = stack.sqs_endpoint.trim_start_matches("http://").parse().expect("host:port");
    let proxy = TcpProxy::start_with_delay(upstream, latency).await;
    let bodies = sample::synthetic(
        messages,
        2024,
        sample::Shape { distinct_ips: messages / 2, distinct_devices: messages / 2 },
    );

    let mut runs = Vec::new();
    for pollers in [1, 4, 16, 64] {
        runs.push(drain(&stack, &proxy, &bodies, 1, pollers).await);
    }
    for replicas in [2, 3] {
        runs.push(drain(&stack, &proxy, &bodies, replicas, 16).await);
    }
    let single = runs[0].msgs_per_s;
    let rows: Vec<String> = runs
        .iter()
        .map(|run| {
            format!(
                "| {} | {} | {} | {:.0} | {:.1}x | {:.0} | {:.3} | {:.0}% |",
                run.replicas,
                run.pollers,
                run.replicas * run.pollers,
                run.msgs_per_s,
                run.msgs_per_s / single,
                run.msgs_per_s / (run.replicas * run.pollers) as f64,
                run.cpu_s_per_1000,
                run.machine_cpu_busy * 100.0
            )
        })
        .collect();
    let report = format!(
        "{messages} messages per setting, {} ms added to every SQS request, mutual TLS\n\n\
         | replicas | pollers each | pollers | msgs/s | vs 1 poller | msgs/s per poller | CPU s per 1,000 msgs (3 services) | machine CPU busy |\n\
         |---|---|---|---|---|---|---|---|\n{}\n",
        latency.as_millis(),
        rows.join("\n")
    );
    println!("{report}");
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::write(logs.join("latency.md"), &report).expect("writes target/bench/latency.md");
    let json = serde_json::json!({ "latency_ms": latency.as_millis() as u64, "messages": messages, "runs": runs });
    std::fs::write(logs.join("latency.json"), serde_json::to_vec_pretty(&json).unwrap())
        .expect("writes latency.json");
}
