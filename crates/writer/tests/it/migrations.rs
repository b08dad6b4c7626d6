//! Migrations on an empty database and on Fetch's pre-created table.

use diesel_async::RunQueryDsl;
use fetchreward_proto::writer::v1::WriteLoginsRequest;
use fetchreward_testkit::{Stack, TestDatabase};

use crate::helpers::{count_rows, rows, spawn_writer_on, stored_rows};

/// The DDL of Fetch's take-home database, verbatim.
const FETCH_DDL: &str = "CREATE TABLE IF NOT EXISTS user_logins(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date
);";

#[tokio::test]
async fn fetch_table_with_rows_is_extended_and_keeps_every_row() {
    let db = TestDatabase::create(&Stack::from_env()).await;
    let mut conn = db.connect().await;
    diesel::sql_query(FETCH_DDL).execute(&mut conn).await.expect("Fetch's DDL");
    diesel::sql_query(
        "INSERT INTO user_logins VALUES \
         ('u-old-1', 'ios', 'masked-a', 'masked-b', 'US', 230, '2020-01-01'), \
         ('u-old-2', NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .execute(&mut conn)
    .await
    .expect("pre-existing rows");

    let mut writer = spawn_writer_on(db.clone(), &[]).await;
    let kept = stored_rows(&db).await;
    assert_eq!(kept.len(), 2);
    let old = kept.iter().find(|r| r.user_id.as_deref() == Some("u-old-1")).expect("kept");
    assert_eq!(old.masked_ip.as_deref(), Some("masked-a"));
    assert_eq!(old.app_version, Some(230));
    assert_eq!(old.message_id, None);

    writer
        .client
        .write_logins(WriteLoginsRequest { rows: rows("new", 3) })
        .await
        .expect("writes into the migrated table");
    assert_eq!(count_rows(&db).await, 5);
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let db = TestDatabase::create(&Stack::from_env()).await;
    let starts = (0..3).map(|_| spawn_writer_on(db.clone(), &[]));
    let writers = futures::future::join_all(starts).await;
    assert_eq!(writers.len(), 3);
    let mut conn = db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let applied: Vec<Count> =
        diesel::sql_query("SELECT count(*) AS n FROM public.__diesel_schema_migrations")
            .load(&mut conn)
            .await
            .expect("migration history");
    assert_eq!(applied[0].n, 1);
}
