//! Rows per second written through one writer into `user_logins` on one database, and through
//! a coordinator onto 1 and 2 shard clusters (postgres_fdw): 1,000-row batches from 4
//! concurrent callers. The coordinator is the local stack's Postgres; the shards are clusters
//! of the benchmark's own on the same machine, so they share its cores.

mod common;

use common::{write_concurrently, writer_on};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fetchreward_runtime::postgres::PgConfig;
use fetchreward_testkit::{PgCluster, Stack, TestDatabase, unique_name};
use fetchreward_writer::shards::{self, Shard};

const ROWS: usize = 1_000;
const CALLERS: usize = 4;

/// A coordinator database spread over `count` new shard clusters (none: a plain database).
async fn database_with_shards(count: usize) -> (TestDatabase, Vec<PgCluster>) {
    let db = TestDatabase::create(&Stack::from_env()).await;
    let mut clusters = Vec::new();
    let mut list = Vec::new();
    for index in 0..count {
        let cluster = PgCluster::start(&format!("bench_shard{index}"));
        let url = cluster.create_database(&unique_name("shard")).await;
        list.push(Shard::from_url(&url).expect("a shard URL"));
        clusters.push(cluster);
    }
    if count > 0 {
        fetchreward_writer::migrate(&PgConfig::plain(db.url.clone())).await.expect("migrated");
        let (mut client, connection) =
            tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connects");
        tokio::spawn(connection);
        shards::init(&mut client, &list).await.expect("sharded");
    }
    (db, clusters)
}

fn write_through_shards(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut group = c.benchmark_group("shards");
    group.throughput(Throughput::Elements((ROWS * CALLERS) as u64));
    group.sample_size(20);
    for count in [0usize, 1, 2] {
        let (client, _writer, _clusters) = runtime.block_on(async {
            let (db, clusters) = database_with_shards(count).await;
            let (client, writer) = writer_on(&db.url).await;
            (client, writer, clusters)
        });
        let name = if count == 0 { "no_shards".to_owned() } else { format!("{count}_shards") };
        group.bench_with_input(BenchmarkId::new(name, ROWS), &ROWS, |b, &rows| {
            b.to_async(&runtime).iter(|| write_concurrently(&client, CALLERS, rows));
        });
    }
    group.finish();
}

criterion_group!(benches, write_through_shards);
criterion_main!(benches);
