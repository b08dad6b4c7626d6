//! Rows per second written through WriteLogins into local Postgres, by batch size, with one
//! caller and with four concurrent callers. Needs the local stack (`make up`).

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fetchreward_model::{MAC_LEN, PiiKind, Token};
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest};
use fetchreward_testkit::{Spawned, Stack, TestDatabase};
use fetchreward_writer::{Application, WriterConfig};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn batch(rows: usize) -> Vec<MaskedLogin> {
    (0..rows)
        .map(|_| {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let seed = (id % 251) as u8;
            MaskedLogin {
                message_id: format!("bench-{id:012}"),
                user_id: format!("user-{}", id % 10_000),
                device_type: Some("android".into()),
                masked_ip: Some(Token::new(PiiKind::Ip, 1, [seed; MAC_LEN]).to_string()),
                masked_device_id: Some(
                    Token::new(PiiKind::DeviceId, 1, [seed; MAC_LEN]).to_string(),
                ),
                locale: Some("RU".into()),
                app_version: Some("2.3.0".into()),
                sent_timestamp_ms: 1_709_208_000_000,
            }
        })
        .collect()
}

fn write_logins(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (client, _writer) = runtime.block_on(async {
        let db = TestDatabase::create(&Stack::from_env()).await;
        let env = std::collections::HashMap::from([
            ("DATABASE_URL", db.url.as_str()),
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("AUTHZ_WRITE", "anonymous"),
        ]);
        let config = WriterConfig::from_env(&env).expect("valid");
        let app = Application::build(config).await.expect("the writer starts");
        let addr = app.grpc_addr();
        let running = Spawned::new(|shutdown| app.run_until_stopped(shutdown));
        let client =
            WriterServiceClient::connect(format!("http://{addr}")).await.expect("connects");
        (client, running)
    });

    let mut group = c.benchmark_group("write_logins");
    for rows in [10usize, 100, 1_000] {
        for callers in [1usize, 4] {
            group.throughput(Throughput::Elements((rows * callers) as u64));
            let id = BenchmarkId::new(format!("{callers}_callers"), rows);
            group.bench_with_input(id, &rows, |b, &rows| {
                b.to_async(&runtime).iter(|| {
                    let calls = (0..callers).map(|_| {
                        let mut client = client.clone();
                        let rows = batch(rows);
                        async move {
                            client.write_logins(WriteLoginsRequest { rows }).await.expect("written")
                        }
                    });
                    futures::future::join_all(calls)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, write_logins);
criterion_main!(benches);
