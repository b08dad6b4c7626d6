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
async fn a_raw_looking_ip_is_refused_alone_and_the_rest_written() {
    let mut writer = spawn_writer().await;
    let mut batch = rows("raw", 3);
    batch[1].masked_ip = Some("203.0.113.77".into());
    let reply = writer.write(batch).await;
    assert_eq!(reply.inserted, 2);
    assert_eq!(reply.refused.len(), 1);
    let refused = &reply.refused[0];
    assert_eq!((refused.index, refused.code.as_str()), (1, "not_a_token"));
    assert!(refused.reason.starts_with("field `masked_ip`"), "{}", refused.reason);
    assert!(!refused.reason.contains("203.0.113"), "{}", refused.reason);
    assert_eq!(count_rows(&writer.db).await, 2);
}

#[tokio::test]
async fn a_token_of_the_wrong_kind_or_a_raw_device_id_is_refused() {
    let mut writer = spawn_writer().await;
    let mut batch = rows("kind", 4);
    batch[0].masked_device_id = Some(token(PiiKind::Ip, 9));
    batch[3].masked_device_id = Some("593-47-5928".into());
    let reply = writer.write(batch).await;
    let refused: Vec<(u32, &str)> =
        reply.refused.iter().map(|r| (r.index, r.code.as_str())).collect();
    assert_eq!(refused, [(0, "wrong_token_kind"), (3, "not_a_token")]);
    assert!(reply.refused.iter().all(|r| !r.reason.contains("593-47")));
    assert_eq!(count_rows(&writer.db).await, 2);
}

#[tokio::test]
async fn rows_breaking_the_models_rules_are_refused_by_index_with_their_code() {
    let mut writer = spawn_writer().await;
    let mut batch = rows("rules", 6);
    batch[0].user_id = "  ".into();
    batch[2].locale = Some("R\0U".into());
    batch[4].device_type = Some("x".repeat(33));
    batch[5].sent_timestamp_ms = -210_866_803_200_001;
    let reply = writer.write(batch).await;
    let refused: Vec<(u32, &str)> =
        reply.refused.iter().map(|r| (r.index, r.code.as_str())).collect();
    assert_eq!(
        refused,
        [(0, "missing_field"), (2, "nul_character"), (4, "too_long"), (5, "bad_timestamp")]
    );
    assert_eq!(reply.inserted, 2);
    let stored: HashSet<Option<String>> =
        stored_rows(&writer.db).await.into_iter().map(|r| r.message_id).collect();
    assert_eq!(stored, HashSet::from([Some("rules-1".to_owned()), Some("rules-3".to_owned())]));
}

#[tokio::test]
async fn rows_the_database_refuses_are_isolated_and_the_others_committed() {
    let mut writer = spawn_writer().await;
    // Rules the model does not know, so the rows get past it and the database refuses them:
    // a check constraint (SQLSTATE 23514) and a trigger raising a data exception (22023).
    let mut conn = writer.db.connect().await;
    for statement in [
        "ALTER TABLE user_logins ADD CONSTRAINT no_blocked_users CHECK (user_id NOT LIKE 'blocked%')",
        "CREATE FUNCTION refuse_odd_locale() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.locale = 'odd' THEN RAISE EXCEPTION 'odd locale' USING ERRCODE = '22023'; END IF; \
           RETURN NEW; END $$",
        "CREATE TRIGGER refuse_odd_locale BEFORE INSERT ON user_logins \
           FOR EACH ROW EXECUTE FUNCTION refuse_odd_locale()",
    ] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(statement), &mut conn)
            .await
            .expect("prepares the table");
    }
    let mut batch = rows("iso", 500);
    batch[3].user_id = "blocked-3".into();
    batch[250].locale = Some("odd".into());
    batch[499].user_id = "blocked-499".into();

    let reply = writer.write(batch.clone()).await;

    assert_eq!(reply.inserted, 497);
    let refused: Vec<(u32, &str, &str)> =
        reply.refused.iter().map(|r| (r.index, r.code.as_str(), r.reason.as_str())).collect();
    assert_eq!(
        refused,
        [
            (
                3,
                "db_constraint_violation",
                "the database refused the row: SQLSTATE 23514 on no_blocked_users"
            ),
            (250, "db_data_exception", "the database refused the row: SQLSTATE 22023"),
            (
                499,
                "db_constraint_violation",
                "the database refused the row: SQLSTATE 23514 on no_blocked_users"
            ),
        ]
    );
    assert_eq!(count_rows(&writer.db).await, 497);

    // The same batch again: the committed rows are already there, the refused ones refused.
    let again = writer.write(batch).await;
    assert_eq!(again.inserted, 0);
    assert_eq!(again.already_present_message_ids.len(), 497);
    assert_eq!(again.refused.len(), 3);
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

#[tokio::test]
async fn a_nul_character_past_the_model_is_isolated_to_its_row() {
    use fetchreward_model::MaskedLoginFields;
    use fetchreward_runtime::postgres::{self, PgConfig};
    use fetchreward_writer::LoginStore;

    // The store below the model's check: Postgres itself refuses the NUL (SQLSTATE 22021).
    let writer = spawn_writer().await;
    let pool = postgres::client_pool(&PgConfig::plain(&writer.db.url)).expect("a pool");
    let store = LoginStore::new(pool);
    let mut batch: Vec<fetchreward_model::MaskedLogin> = rows("nul", 500)
        .into_iter()
        .map(|row| MaskedLoginFields::from(row).check().expect("a valid row"))
        .collect();
    batch[7].user_id = "nul\0user".into();
    batch[400].locale = Some("R\0U".into());

    let outcome = store.write(batch).await.expect("the batch commits");

    assert_eq!(outcome.inserted, 498);
    let refused: Vec<(usize, &str, &str)> = outcome
        .refused
        .iter()
        .map(|(position, refusal)| (*position, refusal.sqlstate.as_str(), refusal.code()))
        .collect();
    assert_eq!(refused, [(7, "22021", "db_data_exception"), (400, "22021", "db_data_exception")]);
    assert_eq!(count_rows(&writer.db).await, 498);
}
