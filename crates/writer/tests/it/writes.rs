//! What lands in `user_logins`, and idempotency.

use std::collections::HashSet;

use fetchreward_model::PiiKind;
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest};
use fetchreward_testkit::{Stack, TcpProxy, TestDatabase};
use tonic::Code;

use crate::helpers::{
    StoredRow, count_rows, row, rows, spawn_writer, spawn_writer_on, stored_rows, token,
};

#[tokio::test]
async fn rows_land_with_every_column_as_designed() {
    let mut writer = spawn_writer().await;
    let full = row("m-1");
    let sparse = MaskedLogin {
        message_id: "m-2".into(),
        user_id: "u-2".into(),
        device_type: None,
        masked_ip: None,
        masked_device_id: None,
        locale: None,
        app_version: Some("2.3.0-beta".into()),
        // 2023-12-31T23:59:59.999Z
        sent_timestamp_ms: 1_704_067_199_999,
    };
    let reply = writer
        .client
        .write_logins(WriteLoginsRequest { rows: vec![full.clone(), sparse] })
        .await
        .expect("written")
        .into_inner();
    assert_eq!(reply.inserted, 2);
    assert!(reply.already_present_message_ids.is_empty());

    let stored = stored_rows(&writer.db).await;
    assert_eq!(
        stored,
        vec![
            StoredRow {
                message_id: Some("m-1".into()),
                user_id: Some("user-m-1".into()),
                device_type: Some("android".into()),
                masked_ip: full.masked_ip.clone(),
                masked_device_id: full.masked_device_id.clone(),
                locale: Some("RU".into()),
                app_version: Some(20300),
                app_version_raw: Some("2.3.0".into()),
                create_date: chrono::NaiveDate::from_ymd_opt(2024, 2, 29),
            },
            StoredRow {
                message_id: Some("m-2".into()),
                user_id: Some("u-2".into()),
                device_type: None,
                masked_ip: None,
                masked_device_id: None,
                locale: None,
                app_version: None,
                app_version_raw: Some("2.3.0-beta".into()),
                create_date: chrono::NaiveDate::from_ymd_opt(2023, 12, 31),
            },
        ]
    );
}

#[tokio::test]
async fn the_same_batch_written_twice_is_stored_once() {
    let mut writer = spawn_writer().await;
    let batch = rows("dup", 50);
    let first = writer
        .client
        .write_logins(WriteLoginsRequest { rows: batch.clone() })
        .await
        .expect("first write")
        .into_inner();
    assert_eq!(first.inserted, 50);
    let second = writer
        .client
        .write_logins(WriteLoginsRequest { rows: batch.clone() })
        .await
        .expect("second write")
        .into_inner();
    assert_eq!(second.inserted, 0);
    let expected: HashSet<String> = batch.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(second.already_present_message_ids.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(count_rows(&writer.db).await, 50);
}

#[tokio::test]
async fn a_message_id_repeated_within_a_batch_is_written_once() {
    let mut writer = spawn_writer().await;
    let reply = writer
        .client
        .write_logins(WriteLoginsRequest { rows: vec![row("same"), row("same"), row("other")] })
        .await
        .expect("written")
        .into_inner();
    assert_eq!(reply.inserted, 2);
    assert_eq!(count_rows(&writer.db).await, 2);
}

#[tokio::test]
async fn concurrent_writers_with_overlapping_batches_neither_duplicate_nor_fail() {
    let first = spawn_writer().await;
    let second = spawn_writer_on(first.db.clone(), &[]).await;
    // Eight callers over two writers, each batch overlapping its neighbours by half, in
    // different orders so that lock order would matter if the writer did not sort.
    let mut calls = Vec::new();
    for caller in 0..8usize {
        let mut client = if caller % 2 == 0 { first.client.clone() } else { second.client.clone() };
        let mut batch: Vec<MaskedLogin> =
            (caller * 250..caller * 250 + 500).map(|i| row(&format!("c-{i:05}"))).collect();
        if caller % 3 == 0 {
            batch.reverse();
        }
        calls.push(tokio::spawn(async move {
            client.write_logins(WriteLoginsRequest { rows: batch }).await.map(|r| r.into_inner())
        }));
    }
    let mut inserted = 0;
    for call in calls {
        inserted += call.await.expect("joined").expect("no caller sees an error").inserted;
    }
    let distinct = 7 * 250 + 500;
    assert_eq!(inserted as usize, distinct);
    assert_eq!(count_rows(&first.db).await, distinct);
}

#[tokio::test]
async fn batches_above_the_parameter_limit_are_chunked() {
    let mut writer = spawn_writer().await;
    // 9 columns × 8,000 rows would be 72,000 parameters as a plain multi-row INSERT.
    let batch = rows("big", 8_000);
    let reply = writer
        .client
        .write_logins(WriteLoginsRequest { rows: batch })
        .await
        .expect("written")
        .into_inner();
    assert_eq!(reply.inserted, 8_000);
    assert_eq!(count_rows(&writer.db).await, 8_000);
}

#[tokio::test]
async fn a_raw_looking_ip_refuses_the_whole_batch() {
    let mut writer = spawn_writer().await;
    let mut batch = rows("raw", 3);
    batch[1].masked_ip = Some("203.0.113.77".into());
    let status =
        writer.client.write_logins(WriteLoginsRequest { rows: batch }).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("rows[1]"), "{}", status.message());
    assert!(status.message().contains("masked_ip"), "{}", status.message());
    assert!(!status.message().contains("203.0.113"), "{}", status.message());
    assert_eq!(count_rows(&writer.db).await, 0, "nothing of the batch is written");
}

#[tokio::test]
async fn a_token_of_the_wrong_kind_or_a_raw_device_id_is_refused() {
    let mut writer = spawn_writer().await;
    let mut swapped = rows("kind", 2);
    swapped[0].masked_device_id = Some(token(PiiKind::Ip, 9));
    let status = writer.client.write_logins(WriteLoginsRequest { rows: swapped }).await;
    assert_eq!(status.expect_err("refused").code(), Code::InvalidArgument);

    let mut raw = rows("raw-dev", 2);
    raw[1].masked_device_id = Some("593-47-5928".into());
    let status = writer.client.write_logins(WriteLoginsRequest { rows: raw }).await;
    let status = status.expect_err("refused");
    assert!(
        status.message().starts_with("rows[1]: field `masked_device_id`"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("593-47"));
    assert_eq!(count_rows(&writer.db).await, 0);
}

#[tokio::test]
async fn too_many_rows_are_refused() {
    let mut writer = spawn_writer().await;
    let status = writer
        .client
        .write_logins(WriteLoginsRequest { rows: rows("many", 10_001) })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(count_rows(&writer.db).await, 0);
}

#[tokio::test]
async fn the_writer_survives_a_database_restart_between_two_calls() {
    let stack = Stack::from_env();
    let db = TestDatabase::create(&stack).await;
    // The writer reaches Postgres through a proxy that the test can take down and bring back.
    let postgres: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let postgres = std::net::SocketAddr::new(postgres.ip(), postgres_port(&stack));
    let proxy = TcpProxy::start(postgres).await;
    let via_proxy = TestDatabase {
        name: db.name.clone(),
        url: db.url.replace(&format!(":{}/", postgres.port()), &format!(":{}/", proxy.addr.port())),
    };
    let mut writer = spawn_writer_on(via_proxy, &[]).await;
    writer
        .client
        .write_logins(WriteLoginsRequest { rows: rows("before", 5) })
        .await
        .expect("first write");

    proxy.stop();
    let while_down = writer.client.write_logins(WriteLoginsRequest { rows: rows("down", 5) }).await;
    assert_eq!(while_down.expect_err("the database is down").code(), Code::Unavailable);
    proxy.resume().await;

    let reply = writer
        .client
        .write_logins(WriteLoginsRequest { rows: rows("after", 5) })
        .await
        .expect("the writer reconnects by itself")
        .into_inner();
    assert_eq!(reply.inserted, 5);
    assert_eq!(count_rows(&db).await, 10, "nothing of the refused call was written");
}

/// The port of the local cluster.
fn postgres_port(stack: &Stack) -> u16 {
    let after_host = stack.database_url.rsplit('@').next().unwrap_or_default();
    let port = after_host.split(['/', '?']).next().unwrap_or_default().rsplit(':').next();
    port.and_then(|p| p.parse().ok()).expect("a port in DATABASE_URL")
}
