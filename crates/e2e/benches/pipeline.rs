//! `make bench`: the whole pipeline against the local stack, with each service in its own
//! process (release binaries), compared with the bare drain rate of the same queue emulator.
//!
//! Reports end-to-end messages per second, timed from the ingestor's first receive to the
//! queue's last delete (its start-up is reported apart); the bare drain rate (receive + delete
//! only, with the ingestor's number of pollers, one drain before the pipeline and one after, at
//! their mean time); their ratio; CPU seconds per 1,000 messages, minor page faults
//! per message and peak RSS of each service; the values the vault's Tokenize rate limit refused
//! and the ingestor's retries (a round with either measured a limit or a failure, not the
//! pipeline); and the machine's side: the cores the queue emulator kept busy in the bare drain
//! and in the pipeline, Postgres's CPU per message and the cores left idle while the pipeline
//! ran. Settings: `BENCH_MESSAGES` (default 100000), `BENCH_DISTINCT_PERCENT` (share of distinct
//! ip and device_id values, default 50), `BENCH_POLLERS` (default 16, the ingestor's),
//! `BENCH_WORKERS` (2), `BENCH_MAX_BATCH` (500), `BENCH_TLS` (1: mutual TLS between the
//! services, as in production; 0: plaintext), `BENCH_ROUNDS` (5: each a bare drain, the
//! pipeline, then a bare drain again, so both are measured in the same sitting; the table gives
//! medians). Writes `target/bench/pipeline.md` and `target/bench/pipeline.json`, which
//! `make bench-compare` compares with another run's (`BENCH_OUT` names another directory than
//! `target/bench`).
//! Needs `make up` and `cargo build --release --bins` (the Makefile does both).
//!
//! With `BENCH_VECTOR` naming a Vector binary, each round also drains a fresh queue of the
//! same messages through Vector (`aws_sqs` source, a VRL `remap` that parses the body and
//! replaces ip and device_id by their HMAC-SHA256, `postgres` sink, acknowledgements on) once
//! per receiver count in `BENCH_VECTOR_RECEIVERS` (default `2,8`), into a table of a fresh
//! database, and reports its rate, CPU and peak RSS beside the pipeline's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fetchreward_cli::{queue, sample};
use fetchreward_dlq::Sealer;
use fetchreward_ingestor::queue::sqs::SqsQueue;
use fetchreward_ingestor::queue::{Queue, ReceivedMessage};
use fetchreward_stress::process::{
    Service, machine_idle_seconds, pid_cpu_seconds, process_tree_cpu_seconds, workspace_root,
};
use fetchreward_stress::services::{ServiceSet, SetConfig};
use fetchreward_testkit::{QueuePair, Stack, TestDatabase, http_get};

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

/// Seeds a fresh queue with `bodies` and drains it bare: how long it took and what the machine
/// did meanwhile.
async fn seeded_bare_drain(
    stack: &Stack,
    pollers: usize,
    bodies: &[String],
    machine: StackProcesses,
) -> (Duration, MachineUse) {
    let sqs = stack.sqs();
    let pair = QueuePair::create(&sqs, 50, 30).await;
    queue::seed(&sqs, &pair.queue_url, bodies.to_vec()).await.expect("seeds");
    // The bare drain dead-letters nothing: its sealer is never asked for a key.
    let sealer = Arc::new(Sealer::new(stack.kms(), "alias/unused"));
    let bare_queue = SqsQueue::new(sqs, &pair.queue_url, &pair.dlq_url, sealer);
    let start = machine.reading();
    let time = bare_drain(bare_queue, pollers, bodies.len()).await;
    let used = start.until(&machine.reading());
    let rate = bodies.len() as f64 / time.as_secs_f64();
    eprintln!("bare drain: {} messages in {time:.2?} ({rate:.0} msgs/s)", bodies.len());
    (time, used)
}

/// Waits until a consumer just started has received from `queue_url`: the start of its
/// measured drain, so that its start-up (process, TLS, connections) is reported apart and the
/// drain is timed like the bare drain's, from the first receive.
async fn first_receive(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, in_flight) = queue::depth(sqs, queue_url).await.expect("reads the queue's depth");
        if in_flight > 0 {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "the consumer received within two minutes");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The local stack's queue emulator and Postgres, by the pids `make up` records, for the
/// machine's side of a round: what the emulator and the database used while the pipeline ran.
#[derive(Debug, Clone, Copy)]
struct StackProcesses {
    emulator: Option<u32>,
    postgres: Option<u32>,
}

impl StackProcesses {
    fn find() -> Self {
        let dev = workspace_root().join("target/dev");
        let first_line_pid = |path: PathBuf| -> Option<u32> {
            std::fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
        };
        StackProcesses {
            emulator: first_line_pid(dev.join("run/fauxqs.pid")),
            postgres: first_line_pid(dev.join("pg/postmaster.pid")),
        }
    }

    fn reading(&self) -> MachineReading {
        MachineReading {
            at: Instant::now(),
            emulator: self.emulator.map_or(0.0, |pid| pid_cpu_seconds(pid, true)),
            postgres: self.postgres.map_or(0.0, process_tree_cpu_seconds),
            idle: machine_idle_seconds(),
        }
    }
}

/// CPU seconds used so far by the emulator and Postgres, and the machine's idle seconds.
#[derive(Debug, Clone, Copy)]
struct MachineReading {
    at: Instant,
    emulator: f64,
    postgres: f64,
    idle: f64,
}

impl MachineReading {
    /// What the machine did between `self` and `later`: each field the difference of the two.
    fn until(&self, later: &MachineReading) -> MachineUse {
        MachineUse {
            seconds: (later.at - self.at).as_secs_f64().max(f64::EPSILON),
            emulator: later.emulator - self.emulator,
            postgres: later.postgres - self.postgres,
            idle: later.idle - self.idle,
        }
    }
}

/// Seconds of wall time, and within them CPU seconds of the emulator and Postgres and idle
/// seconds of the machine.
#[derive(Debug, Clone, Copy)]
struct MachineUse {
    seconds: f64,
    emulator: f64,
    postgres: f64,
    idle: f64,
}

/// The sum of every series of the counter `name` on the `/metrics` page of the operations
/// server on `port` (zero when it has none).
async fn counter_sum(port: u16, name: &str) -> f64 {
    let page = http_get(([127, 0, 0, 1], port).into(), "/metrics").await;
    page.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

async fn count_rows(db: &TestDatabase, table: &str) -> usize {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let rows: Vec<Count> = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .load(&mut conn)
        .await
        .expect("counts rows");
    rows[0].n as usize
}

/// What one round measured: a bare drain, the pipeline, another bare drain, on the same
/// emulator. The bare rate the pipeline is compared with is that of the two drains' mean time,
/// so that the machine speeding up or slowing down during the round is shared by both sides.
#[derive(Debug, Clone, serde::Serialize)]
struct Round {
    bare_msgs_per_s: f64,
    bare_before_msgs_per_s: f64,
    bare_after_msgs_per_s: f64,
    pipeline_msgs_per_s: f64,
    ratio_to_bare: f64,
    /// Per service: CPU seconds per 1,000 messages, peak RSS.
    services: BTreeMap<String, ServiceFigures>,
    cpu_s_per_1000_total: f64,
    peak_rss_mib_total: f64,
    /// Values the vault's Tokenize rate limit refused: a round that meets the limit measures
    /// the limit, not the pipeline.
    rate_limited_values: f64,
    /// Steps the ingestor retried (vault, writer, delete, dlq calls).
    retries: f64,
    /// From starting the ingestor to its first receive; the pipeline's rate is timed from there.
    ingestor_startup_ms: f64,
    /// Cores the queue emulator kept busy on average during the bare drains and during the
    /// pipeline: the emulator is single-threaded, so one core is its ceiling.
    emulator_cores_bare: f64,
    emulator_cores_pipeline: f64,
    /// Postgres's CPU seconds per 1,000 messages during the pipeline (the vault's token
    /// inserts, the writer's rows, autovacuum).
    postgres_cpu_s_per_1000: f64,
    /// Cores idle on average while the pipeline ran: near zero, the machine is the limit.
    idle_cores_pipeline: f64,
    /// Vector on the same messages, by its number of receivers (`client_concurrency`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    vector: BTreeMap<usize, VectorFigures>,
}

/// What one Vector drain measured.
#[derive(Debug, Clone, serde::Serialize)]
struct VectorFigures {
    msgs_per_s: f64,
    /// From starting Vector to its first receive; its rate is timed from there.
    startup_ms: f64,
    ratio_to_bare: f64,
    cpu_s_per_1000: f64,
    peak_rss_mib: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct ServiceFigures {
    cpu_s_per_1000: f64,
    /// Minor page faults per message: memory the allocator returned to the system and touched
    /// again (counted, so repeatable where CPU seconds are not).
    page_faults_per_message: f64,
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
    /// The Vector binary run beside the pipeline, if any.
    vector: Option<PathBuf>,
    /// Its receiver counts, one drain each.
    vector_receivers: Vec<usize>,
}

/// One round: a fresh queue drained bare, then a fresh pipeline on a fresh queue and database.
async fn round(
    stack: &Stack,
    settings: &Settings,
    bodies: &[String],
    logs: &Path,
    machine: StackProcesses,
) -> Round {
    let sqs = stack.sqs();
    let messages = settings.messages;
    let (bare_before, bare_before_use) =
        seeded_bare_drain(stack, settings.pollers, bodies, machine).await;

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
    for service in [&mut set.vault, &mut set.writer] {
        service.cpu_at_start = service.cpu_seconds();
        service.faults_at_start = service.minor_faults();
    }
    let launched = Instant::now();
    set.start_ingestor(None).expect("starts the ingestor");
    let started = first_receive(&sqs, &set.queues.queue_url).await;
    let pipeline_start = machine.reading();
    let ingestor_startup = started - launched;
    queue::wait_empty(&sqs, &set.queues.queue_url, Duration::from_secs(1800))
        .await
        .expect("drains");
    let elapsed = started.elapsed();
    let pipeline_use = pipeline_start.until(&machine.reading());
    let rows = count_rows(&set.database, "user_logins").await;
    assert_eq!(rows, messages, "every message became exactly one row");
    let rate = messages as f64 / elapsed.as_secs_f64();
    eprintln!("pipeline: {messages} messages in {elapsed:.2?} ({rate:.0} msgs/s)");
    let services: BTreeMap<String, ServiceFigures> = set
        .services()
        .map(|service| {
            let cpu = service.cpu_seconds() - service.cpu_at_start;
            let faults = service.minor_faults().saturating_sub(service.faults_at_start);
            let figures = ServiceFigures {
                cpu_s_per_1000: cpu / messages as f64 * 1000.0,
                page_faults_per_message: faults as f64 / messages as f64,
                peak_rss_mib: service.peak_rss_mib(),
            };
            (service.name().to_owned(), figures)
        })
        .collect();
    let rate_limited_values =
        counter_sum(set.vault_ports.http, fetchreward_vault::metrics::TOKENIZE_LIMITED).await;
    let retries = counter_sum(set.ingestor_ports[0], "fetchreward_ingestor_retries_total").await;
    if rate_limited_values > 0.0 {
        eprintln!(
            "warning: the vault's rate limit refused {rate_limited_values} values: this round \
             measured VAULT_TOKENIZE_RATE"
        );
    }
    set.stop();
    let (bare_after, bare_after_use) =
        seeded_bare_drain(stack, settings.pollers, bodies, machine).await;
    let bare_rate = messages as f64 / ((bare_before + bare_after) / 2).as_secs_f64();
    let mut vector = BTreeMap::new();
    if let Some(program) = &settings.vector {
        for &receivers in &settings.vector_receivers {
            let figures = vector_drain(stack, program, receivers, bodies, bare_rate, logs).await;
            vector.insert(receivers, figures);
        }
    }
    Round {
        bare_msgs_per_s: bare_rate,
        bare_before_msgs_per_s: messages as f64 / bare_before.as_secs_f64(),
        bare_after_msgs_per_s: messages as f64 / bare_after.as_secs_f64(),
        pipeline_msgs_per_s: rate,
        ratio_to_bare: rate / bare_rate,
        cpu_s_per_1000_total: services.values().map(|s| s.cpu_s_per_1000).sum(),
        peak_rss_mib_total: services.values().map(|s| s.peak_rss_mib).sum(),
        rate_limited_values,
        retries,
        ingestor_startup_ms: ingestor_startup.as_secs_f64() * 1000.0,
        emulator_cores_bare: (bare_before_use.emulator + bare_after_use.emulator)
            / (bare_before_use.seconds + bare_after_use.seconds),
        emulator_cores_pipeline: pipeline_use.emulator / pipeline_use.seconds,
        postgres_cpu_s_per_1000: pipeline_use.postgres / messages as f64 * 1000.0,
        idle_cores_pipeline: pipeline_use.idle / pipeline_use.seconds,
        services,
        vector,
    }
}

/// The Vector configuration of the comparison: SQS in, the body parsed and its two personal
/// fields replaced by a keyed hash, rows out to Postgres, each message deleted once its row is
/// committed (end-to-end acknowledgements).
fn vector_config(stack: &Stack, queue_url: &str, receivers: usize, database_url: &str) -> String {
    format!(
        r#"
[sources.sqs]
type = "aws_sqs"
region = "us-east-1"
endpoint = "{endpoint}"
queue_url = "{queue_url}"
client_concurrency = {receivers}
poll_secs = 1
visibility_timeout_secs = 30
delete_message = true
auth.access_key_id = "test"
auth.secret_access_key = "test"

[transforms.tokenize]
type = "remap"
inputs = ["sqs"]
source = """
. = object!(parse_json!(string!(.message)))
.masked_ip = encode_base64(hmac(string!(.ip), "bench-key"))
.masked_device_id = encode_base64(hmac(string!(.device_id), "bench-key"))
del(.ip)
del(.device_id)
.create_date = format_timestamp!(now(), "%Y-%m-%d")
"""

[sinks.rows]
type = "postgres"
inputs = ["tokenize"]
endpoint = "{database_url}"
table = "vector_logins"
acknowledgements.enabled = true
"#,
        endpoint = stack.sqs_endpoint,
    )
}

/// Drains a fresh queue of `bodies` through Vector with `receivers` receivers into a fresh
/// database; its rate is compared with the round's `bare_rate`.
async fn vector_drain(
    stack: &Stack,
    program: &Path,
    receivers: usize,
    bodies: &[String],
    bare_rate: f64,
    logs: &Path,
) -> VectorFigures {
    use diesel_async::RunQueryDsl;
    let sqs = stack.sqs();
    let messages = bodies.len();
    let pair = QueuePair::create(&sqs, 50, 30).await;
    queue::seed(&sqs, &pair.queue_url, bodies.to_vec()).await.expect("seeds");
    let db = TestDatabase::create(stack).await;
    diesel::sql_query(
        "CREATE TABLE vector_logins (user_id text, device_type text, masked_ip text, \
         masked_device_id text, locale text, app_version text, create_date date)",
    )
    .execute(&mut db.connect().await)
    .await
    .expect("creates Vector's table");
    let config = logs.join(format!("vector-{receivers}.toml"));
    std::fs::write(&config, vector_config(stack, &pair.queue_url, receivers, &db.url))
        .expect("writes Vector's configuration");
    let data_dir = logs.join(format!("vector-{receivers}.data"));
    std::fs::create_dir_all(&data_dir).expect("creates Vector's data directory");
    let launched = Instant::now();
    let vector = Service::start_program(
        format!("vector-{receivers}"),
        program.to_owned(),
        &["--config".into(), config.display().to_string(), "--quiet".into()],
        &[("VECTOR_DATA_DIR", data_dir.display().to_string())],
        &logs.join(format!("vector-{receivers}.log")),
    )
    .expect("starts Vector");
    let started = first_receive(&sqs, &pair.queue_url).await;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while count_rows(&db, "vector_logins").await < messages {
        assert!(Instant::now() < deadline, "Vector wrote every row in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queue::wait_empty(&sqs, &pair.queue_url, Duration::from_secs(60)).await.expect("drains");
    let elapsed = started.elapsed();
    let msgs_per_s = messages as f64 / elapsed.as_secs_f64();
    let figures = VectorFigures {
        msgs_per_s,
        startup_ms: (started - launched).as_secs_f64() * 1000.0,
        ratio_to_bare: msgs_per_s / bare_rate,
        cpu_s_per_1000: vector.cpu_seconds() / messages as f64 * 1000.0,
        peak_rss_mib: vector.peak_rss_mib(),
    };
    vector.stop();
    eprintln!(
        "vector, {receivers} receivers: {messages} messages in {elapsed:.2?} ({:.0} msgs/s)",
        figures.msgs_per_s
    );
    figures
}

/// One figure of a round.
type Figure = fn(&Round) -> f64;
/// How the table shows a figure.
type Format = fn(f64) -> String;

/// The median of `values` (the upper middle one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `median (min–max)` of one figure over the rounds.
fn spread(rounds: &[Round], figure: impl Fn(&Round) -> f64, format: Format) -> String {
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
        pollers: setting("BENCH_POLLERS", 16),
        workers: setting("BENCH_WORKERS", 2),
        max_batch: setting("BENCH_MAX_BATCH", 500),
        tls: setting("BENCH_TLS", 1) == 1,
        rounds: setting("BENCH_ROUNDS", 5).max(1),
        vector: std::env::var_os("BENCH_VECTOR").map(PathBuf::from),
        vector_receivers: std::env::var("BENCH_VECTOR_RECEIVERS")
            .unwrap_or_else(|_| "2,8".into())
            .split(',')
            .map(|n| n.trim().parse().expect("BENCH_VECTOR_RECEIVERS lists numbers"))
            .collect(),
    };
    let stack = Stack::from_env();
    let bodies = sample::synthetic(
        messages,
        2024,
        sample::Shape { distinct_ips: settings.distinct, distinct_devices: settings.distinct },
    );
    let logs = std::env::var_os("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"));
    std::fs::create_dir_all(&logs).expect("creates the report's directory");

    let machine = StackProcesses::find();
    let mut rounds = Vec::with_capacity(settings.rounds);
    for number in 1..=settings.rounds {
        eprintln!("round {number} of {}", settings.rounds);
        rounds.push(round(&stack, &settings, &bodies, &logs, machine).await);
    }

    let rate = |v: f64| format!("{v:.0}");
    let percent = |v: f64| format!("{:.0}%", v * 100.0);
    let cpu = |v: f64| format!("{v:.3}");
    let mib = |v: f64| format!("{v:.0}");
    let bare_label = format!("bare drain msgs/s (receive + delete, {} pollers)", settings.pollers);
    let figures: [(&str, Figure, Format); 12] = [
        ("end-to-end msgs/s", |r| r.pipeline_msgs_per_s, rate),
        (&bare_label, |r| r.bare_msgs_per_s, rate),
        ("ratio to the bare drain", |r| r.ratio_to_bare, percent),
        ("CPU s per 1,000 msgs, all services", |r| r.cpu_s_per_1000_total, cpu),
        ("peak RSS, all services (MiB)", |r| r.peak_rss_mib_total, mib),
        ("values refused by the vault's rate limit", |r| r.rate_limited_values, rate),
        ("ingestor retries", |r| r.retries, rate),
        (
            "ingestor: start-up to first receive (ms), not in its rate",
            |r| r.ingestor_startup_ms,
            rate,
        ),
        ("queue emulator, cores busy: bare drain", |r| r.emulator_cores_bare, cpu),
        ("queue emulator, cores busy: pipeline", |r| r.emulator_cores_pipeline, cpu),
        ("Postgres: CPU s per 1,000 msgs during the pipeline", |r| r.postgres_cpu_s_per_1000, cpu),
        ("machine, cores idle during the pipeline", |r| r.idle_cores_pipeline, cpu),
    ];
    let mut table = vec![
        "| measure | value, median of the rounds (min–max) |".to_owned(),
        "|---|---|".to_owned(),
    ];
    table.extend(figures.iter().map(|(label, figure, format)| {
        format!("| {label} | {} |", spread(&rounds, figure, *format))
    }));
    for name in rounds[0].services.keys() {
        table.push(format!(
            "| {name}: CPU s per 1,000 msgs | {} |",
            spread(&rounds, |r| r.services[name].cpu_s_per_1000, cpu)
        ));
        table.push(format!(
            "| {name}: page faults per message | {} |",
            spread(&rounds, |r| r.services[name].page_faults_per_message, |v| format!("{v:.2}"))
        ));
        table.push(format!(
            "| {name}: peak RSS (MiB) | {} |",
            spread(&rounds, |r| r.services[name].peak_rss_mib, mib)
        ));
    }
    for &receivers in &settings.vector_receivers {
        if !rounds[0].vector.contains_key(&receivers) {
            continue;
        }
        let figure = |of: fn(&VectorFigures) -> f64| move |r: &Round| of(&r.vector[&receivers]);
        let versus = |of: fn(&Round, &VectorFigures) -> f64| {
            median(rounds.iter().map(|r| of(r, &r.vector[&receivers])).collect())
        };
        let name = format!("Vector, {receivers} receivers");
        table.extend([
            format!("| {name}: msgs/s | {} |", spread(&rounds, figure(|v| v.msgs_per_s), rate)),
            format!(
                "| {name}: ratio to the bare drain | {} |",
                spread(&rounds, figure(|v| v.ratio_to_bare), percent)
            ),
            format!(
                "| {name}: start-up to first receive (ms), not in its rate | {} |",
                spread(&rounds, figure(|v| v.startup_ms), rate)
            ),
            format!(
                "| {name}: CPU s per 1,000 msgs | {} |",
                spread(&rounds, figure(|v| v.cpu_s_per_1000), cpu)
            ),
            format!(
                "| {name}: peak RSS (MiB) | {} |",
                spread(&rounds, figure(|v| v.peak_rss_mib), mib)
            ),
            format!(
                "| the pipeline over {name}: msgs/s, CPU per message | {:.2}x, {:.2}x |",
                versus(|r, v| r.pipeline_msgs_per_s / v.msgs_per_s),
                versus(|r, v| r.cpu_s_per_1000_total / v.cpu_s_per_1000),
            ),
        ]);
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
    std::fs::write(logs.join("pipeline.md"), &report).expect("writes pipeline.md");
    let json = serde_json::json!({ "settings": settings, "rounds": rounds });
    std::fs::write(logs.join("pipeline.json"), serde_json::to_vec_pretty(&json).unwrap())
        .expect("writes pipeline.json");
    eprintln!(
        "written: pipeline.md and pipeline.json in {} (make bench-compare A=… B=…)",
        logs.display()
    );
}
