//! `user_logins` spread over two shard clusters of the test's own behind a coordinator (the
//! local stack's Postgres), written by an unchanged writer.

use std::collections::BTreeMap;

use fetchreward_model::PiiKind;
use fetchreward_proto::writer::v1::WriteLoginsRequest;
use fetchreward_runtime::postgres::PgConfig;
use fetchreward_testkit::{PgCluster, Stack, TestDatabase, unique_name};
use fetchreward_writer::shards::{self, Shard};
use tokio_postgres::NoTls;

use crate::helpers::{rows, spawn_writer_on, token};

#[tokio::test]
async fn rows_spread_over_two_shards_land_once_and_count_across_them() {
    let shard_servers = [PgCluster::start("shard0"), PgCluster::start("shard1")];
    let mut shard_list = Vec::new();
    for server in &shard_servers {
        let url = server.create_database(&unique_name("shard")).await;
        shard_list.push(Shard::from_url(&url).expect("a shard URL"));
    }
    let coordinator = TestDatabase::create(&Stack::from_env()).await;
    fetchreward_writer::migrate(&PgConfig::plain(coordinator.url.clone())).await.unwrap();
    let (mut client, connection) = tokio_postgres::connect(&coordinator.url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let moved = shards::init(&mut client, &shard_list).await.expect("the coordinator is set up");
    assert_eq!(moved, 0);
    let again = shards::init(&mut client, &shard_list).await.expect_err("set up once only");
    assert!(again.to_string().contains("sharded already"), "{again}");

    // The writer starts on the coordinator as on any database: its partitions ahead are made
    // on every shard.
    let mut writer = spawn_writer_on(coordinator.clone(), &[]).await;
    for server in &shard_servers {
        let databases = server
            .sql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'shard_%'")
            .await;
        let made = server
            .sql(
                &databases[0],
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'user_logins'::regclass",
            )
            .await;
        assert_eq!(made, ["5"], "this month, three ahead and the default partition");
    }

    // 300 messages, their ips drawn from 7 tokens.
    let mut batch = rows("spread", 300);
    for (i, row) in batch.iter_mut().enumerate() {
        row.masked_ip = Some(token(PiiKind::Ip, u8::try_from(i % 7).unwrap()));
    }
    let first = writer
        .client
        .write_logins(WriteLoginsRequest { rows: batch.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.inserted, 300);
    let per_shard = shards::row_counts(&client).await.unwrap();
    assert_eq!(per_shard.len(), 2, "{per_shard:?}");
    assert!(per_shard.iter().all(|(_, rows)| *rows > 50), "both shards hold rows: {per_shard:?}");
    assert_eq!(per_shard.iter().map(|(_, rows)| rows).sum::<i64>(), 300);

    // A redelivery of everything, and of a part mixed with new rows, lands once.
    let second = writer
        .client
        .write_logins(WriteLoginsRequest { rows: batch.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.inserted, 0);
    assert_eq!(second.already_present_message_ids.len(), 300);
    let mut mixed = batch[..20].to_vec();
    mixed.extend(rows("late", 5));
    let third =
        writer.client.write_logins(WriteLoginsRequest { rows: mixed }).await.unwrap().into_inner();
    assert_eq!((third.inserted, third.already_present_message_ids.len()), (5, 20));
    let per_shard = shards::row_counts(&client).await.unwrap();
    assert_eq!(per_shard.iter().map(|(_, rows)| rows).sum::<i64>(), 305);

    // An analyst's GROUP BY through the coordinator counts across both shards.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for row in &batch {
        *expected.entry(row.masked_ip.clone().unwrap()).or_default() += 1;
    }
    *expected.entry(token(PiiKind::Ip, 1)).or_default() += 5; // the late rows' ip
    let counted: BTreeMap<String, i64> = client
        .query("SELECT masked_ip, count(*) FROM user_logins GROUP BY masked_ip", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(counted, expected);
    writer.running.stop().await.expect("the writer stops cleanly");
}
