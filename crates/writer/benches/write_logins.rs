//! Rows per second written through WriteLogins into local Postgres, by batch size, with one
//! caller and with four concurrent callers. Needs the local stack (`make up`).

mod common;

use common::{write_concurrently, writer_on};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fetchreward_testkit::{Stack, TestDatabase};

fn write_logins(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (client, _writer) = runtime.block_on(async {
        let db = TestDatabase::create(&Stack::from_env()).await;
        writer_on(&db.url).await
    });

    let mut group = c.benchmark_group("write_logins");
    for rows in [10usize, 100, 1_000] {
        for callers in [1usize, 4] {
            group.throughput(Throughput::Elements((rows * callers) as u64));
            let id = BenchmarkId::new(format!("{callers}_callers"), rows);
            group.bench_with_input(id, &rows, |b, &rows| {
                b.to_async(&runtime).iter(|| write_concurrently(&client, callers, rows));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, write_logins);
criterion_main!(benches);
