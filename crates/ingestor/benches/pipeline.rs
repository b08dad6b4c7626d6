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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fetchreward_cli::{queue, sample};
use fetchreward_ingestor::queue::sqs::SqsQueue;
use fetchreward_ingestor::queue::{Queue, ReceivedMessage};
use fetchreward_testkit::{QueuePair, Stack, TestDatabase, TestPki, create_kms_key};

fn setting(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn binary(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("release").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --bins` first",
        path.display()
    );
    path
}

/// A service process and what it cost.
struct Service {
    name: &'static str,
    child: Child,
    cpu_at_start: f64,
}

impl Service {
    fn start(name: &'static str, binary_name: &str, env: &[(&str, String)], log: &Path) -> Service {
        let log = std::fs::File::create(log).expect("creates the log file");
        let mut command = Command::new(binary(binary_name));
        command.stdout(log.try_clone().expect("log handle")).stderr(log).stdin(Stdio::null());
        command.env("LOG_FORMAT", "json").env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("starts the service");
        Service { name, child, cpu_at_start: 0.0 }
    }

    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / clock_ticks()
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn wait_ready(port: u16, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                .await;
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response).await;
            if response.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not become ready on port {port}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("addr").port()
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
    let bare_time =
        bare_drain(SqsQueue::new(sqs.clone(), &bare.queue_url, &bare.dlq_url), pollers, messages)
            .await;
    let bare_rate = messages as f64 / bare_time.as_secs_f64();
    eprintln!("bare drain: {messages} messages in {bare_time:.2?} ({bare_rate:.0} msgs/s)");

    // 2. The pipeline.
    let db = TestDatabase::create(&stack).await;
    let queues = QueuePair::create(&sqs, 50, 30).await;
    let kms_key = create_kms_key(&stack.kms()).await;
    let (vault_grpc, writer_grpc) = (free_port(), free_port());
    let (vault_http, writer_http, ingestor_http) = (free_port(), free_port(), free_port());
    // Mutual TLS with a throwaway PKI (the default, as in production), or plaintext.
    let pki = TestPki::new();
    let security = |name: &str, policy: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        if !tls {
            return policy.iter().map(|(key, _)| (*key, "anonymous".to_owned())).collect();
        }
        let paths = pki.identity(name);
        let mut env: Vec<(&'static str, String)> =
            paths.env().iter().map(|(key, value)| (*key, (*value).to_owned())).collect();
        env.extend(policy.iter().map(|(key, who)| (*key, format!("spiffe://fetchreward/{who}"))));
        env
    };
    let scheme = if tls { "https://localhost" } else { "http://127.0.0.1" };
    let aws = |extra: Vec<(&'static str, String)>| {
        let mut env: Vec<(&str, String)> = vec![
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_ENDPOINT_URL_SQS", stack.sqs_endpoint.clone()),
            ("AWS_ENDPOINT_URL_KMS", stack.kms_endpoint.clone()),
        ];
        env.extend(extra);
        env
    };
    let mut vault = Service::start(
        "vault",
        "fetchreward-vault",
        &aws([
            vec![
                ("DATABASE_URL", db.url.clone()),
                ("KMS_KEY_ID", kms_key.clone()),
                ("GRPC_ADDR", format!("127.0.0.1:{vault_grpc}")),
                ("HTTP_ADDR", format!("127.0.0.1:{vault_http}")),
            ],
            security("vault", &[("AUTHZ_TOKENIZE", "ingestor")]),
        ]
        .concat()),
        &logs.join("vault.log"),
    );
    let mut writer = Service::start(
        "writer",
        "fetchreward-writer",
        &aws([
            vec![
                ("DATABASE_URL", db.url.clone()),
                ("GRPC_ADDR", format!("127.0.0.1:{writer_grpc}")),
                ("HTTP_ADDR", format!("127.0.0.1:{writer_http}")),
            ],
            security("writer", &[("AUTHZ_WRITE", "ingestor")]),
        ]
        .concat()),
        &logs.join("writer.log"),
    );
    wait_ready(vault_http, "vault").await;
    wait_ready(writer_http, "writer").await;
    queue::seed(&sqs, &queues.queue_url, bodies).await.expect("seeds");

    vault.cpu_at_start = vault.cpu_seconds();
    writer.cpu_at_start = writer.cpu_seconds();
    let started = Instant::now();
    let ingestor = Service::start(
        "ingestor",
        "fetchreward-ingestor",
        &aws([
            vec![
                ("QUEUE_URL", queues.queue_url.clone()),
                ("DLQ_URL", queues.dlq_url.clone()),
                ("VAULT_ENDPOINT", format!("{scheme}:{vault_grpc}")),
                ("WRITER_ENDPOINT", format!("{scheme}:{writer_grpc}")),
                ("HTTP_ADDR", format!("127.0.0.1:{ingestor_http}")),
                ("POLLERS", pollers.to_string()),
                ("WORKERS", workers.to_string()),
                ("MAX_BATCH", max_batch.to_string()),
                ("RECEIVE_WAIT_SECS", "1".into()),
            ],
            security("ingestor", &[]),
        ]
        .concat()),
        &logs.join("ingestor.log"),
    );
    queue::wait_empty(&sqs, &queues.queue_url, Duration::from_secs(1800)).await.expect("drains");
    let elapsed = started.elapsed();
    let rows = count_rows(&db).await;
    assert_eq!(rows, messages, "every message became exactly one row");
    let rate = messages as f64 / elapsed.as_secs_f64();

    let services = [&vault, &writer, &ingestor];
    let report_rows: Vec<String> = services
        .iter()
        .map(|service| {
            let cpu = service.cpu_seconds() - service.cpu_at_start;
            format!(
                "| {} | {:.3} | {:.0} |",
                service.name,
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
    for service in [ingestor, writer, vault] {
        service.stop();
    }
}
