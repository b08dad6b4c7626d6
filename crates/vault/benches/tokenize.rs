//! Tokenize throughput and latency, through gRPC, against the local Postgres and moto KMS
//! (`make up`), on a fresh database per run.
//!
//! - criterion: tokens per second for batches of 100 values that are new (each value stored),
//!   already known and remembered by the vault's cache, and already known with the cache off
//!   (each batch a no-op upsert in Postgres).
//! - then the p50/p90/p99 latency of sequential Tokenize calls of 10 values, printed as a table.
//!
//! Run with `cargo bench -p fetchreward-vault`.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{PiiKind, PiiValue, TokenizeRequest};
use fetchreward_testkit::{Spawned, Stack, TestDatabase, create_kms_key};
use fetchreward_vault::kms::{KmsKeyProvider, KmsSettings};
use fetchreward_vault::{Application, StartError, VaultConfig};
use tonic::transport::Channel;

/// Values per batch in the throughput benchmarks.
const BATCH: usize = 100;

/// Values per call in the latency measurement.
const SMALL_BATCH: usize = 10;

/// Calls per latency measurement.
const LATENCY_CALLS: usize = 2_000;

/// Makes values never sent before: half ip (IPv6 from a counter), half device_id.
struct FreshValues {
    next: AtomicU64,
}

impl FreshValues {
    fn batch(&self, size: usize) -> Vec<PiiValue> {
        (0..size)
            .map(|i| {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                if i % 2 == 0 {
                    let addr = Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(n));
                    PiiValue { kind: PiiKind::Ip.into(), value: addr.to_string() }
                } else {
                    PiiValue { kind: PiiKind::DeviceId.into(), value: format!("device-{n:012}") }
                }
            })
            .collect()
    }
}

/// A vault serving on port 0 and a client to it.
struct RunningVault {
    client: VaultServiceClient<Channel>,
    _running: Spawned<Result<(), StartError>>,
}

async fn start_vault(stack: &Stack, db: &TestDatabase, key_id: &str, cache: &str) -> RunningVault {
    let env: HashMap<&str, &str> = HashMap::from([
        ("DATABASE_URL", db.url.as_str()),
        ("KMS_KEY_ID", key_id),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("VAULT_TOKEN_CACHE_CAPACITY", cache),
        // Plaintext on loopback: the benchmark's client is anonymous.
        ("AUTHZ_TOKENIZE", "anonymous"),
    ]);
    let config = VaultConfig::from_env(&env).expect("a valid configuration");
    let kms = KmsKeyProvider::from_sdk_config(
        &stack.aws_config(&stack.kms_endpoint),
        KmsSettings::single_key(key_id.to_owned()),
    );
    let app = Application::build(config, std::sync::Arc::new(kms))
        .await
        .expect("the vault starts (run `make up`)");
    let addr = app.grpc_addr();
    let running = Spawned::new(|shutdown| app.run_until_stopped(shutdown));
    let client = VaultServiceClient::connect(format!("http://{addr}")).await.expect("connects");
    RunningVault { client, _running: running }
}

async fn tokenize(client: &VaultServiceClient<Channel>, values: Vec<PiiValue>) {
    let tokens = client
        .clone()
        .tokenize(TokenizeRequest { values })
        .await
        .expect("tokenized")
        .into_inner()
        .tokens;
    std::hint::black_box(tokens);
}

fn throughput(
    criterion: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    cached: &RunningVault,
    uncached: &RunningVault,
    fresh: &FreshValues,
) {
    let known = fresh.batch(BATCH);
    runtime.block_on(tokenize(&cached.client, known.clone()));

    let mut group = criterion.benchmark_group("tokenize");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("new_values", BATCH), |bench| {
        bench.to_async(runtime).iter(|| tokenize(&cached.client, fresh.batch(BATCH)));
    });
    group.bench_function(BenchmarkId::new("known_values_cached", BATCH), |bench| {
        bench.to_async(runtime).iter(|| tokenize(&cached.client, known.clone()));
    });
    group.bench_function(BenchmarkId::new("known_values_uncached", BATCH), |bench| {
        bench.to_async(runtime).iter(|| tokenize(&uncached.client, known.clone()));
    });
    group.finish();
}

/// Sequential calls of `SMALL_BATCH` values; returns each call's latency, sorted.
async fn latencies(
    client: &VaultServiceClient<Channel>,
    mut values: impl FnMut() -> Vec<PiiValue>,
) -> Vec<Duration> {
    for _ in 0..100 {
        tokenize(client, values()).await;
    }
    let mut samples = Vec::with_capacity(LATENCY_CALLS);
    for _ in 0..LATENCY_CALLS {
        let batch = values();
        let started = Instant::now();
        tokenize(client, batch).await;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    samples
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_latencies(
    runtime: &tokio::runtime::Runtime,
    cached: &RunningVault,
    uncached: &RunningVault,
    fresh: &FreshValues,
) {
    let known = fresh.batch(SMALL_BATCH);
    runtime.block_on(tokenize(&cached.client, known.clone()));
    let cases = [
        ("new values", runtime.block_on(latencies(&cached.client, || fresh.batch(SMALL_BATCH)))),
        ("known values, cache", runtime.block_on(latencies(&cached.client, || known.clone()))),
        ("known values, no cache", runtime.block_on(latencies(&uncached.client, || known.clone()))),
    ];
    println!();
    println!("Tokenize latency, {SMALL_BATCH} values per call, {LATENCY_CALLS} sequential calls:");
    println!("| values | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (name, samples) in cases {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(&samples, 50.0)),
            ms(percentile(&samples, 90.0)),
            ms(percentile(&samples, 99.0)),
            ms(*samples.last().expect("samples")),
        );
    }
}

fn main() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::from_env();
    let (cached, uncached) = runtime.block_on(async {
        let db = TestDatabase::create(&stack).await;
        let key_id = create_kms_key(&stack.kms()).await;
        let cached = start_vault(&stack, &db, &key_id, "250000").await;
        let uncached = start_vault(&stack, &db, &key_id, "0").await;
        (cached, uncached)
    });
    let fresh = FreshValues { next: AtomicU64::new(0) };

    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion, &runtime, &cached, &uncached, &fresh);
    criterion.final_summary();

    // `cargo test --benches` runs this binary too; the latency run is for `cargo bench` only.
    if std::env::args().any(|arg| arg == "--bench") {
        print_latencies(&runtime, &cached, &uncached, &fresh);
    }
}
