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

    // The table is now partitioned by month, with Fetch's columns as they were.
    assert_eq!(relkind(&db, "user_logins").await, "p");
    let placed = partitions_of(&db).await;
    assert!(placed.contains(&("user_logins_2020_01".to_owned(), 1)), "{placed:?}");
    // No date: the default partition; the new rows' month (2024-02) has no partition either.
    assert!(placed.contains(&("user_logins_default".to_owned(), 4)), "{placed:?}");
    let columns = column_types(&db).await;
    for (column, kind) in [
        ("user_id", "character varying(128)"),
        ("device_type", "character varying(32)"),
        ("masked_ip", "character varying(256)"),
        ("masked_device_id", "character varying(256)"),
        ("locale", "character varying(32)"),
        ("app_version", "integer"),
        ("create_date", "date"),
    ] {
        assert!(columns.contains(&(column.to_owned(), kind.to_owned())), "{column}: {columns:?}");
    }
}

#[tokio::test]
async fn partitions_stand_ahead_and_a_redelivery_lands_once_after_its_rows_moved() {
    let db = TestDatabase::create(&Stack::from_env()).await;
    let mut writer = spawn_writer_on(db.clone(), &[]).await;
    let ahead = partitions_of_month_ahead(&db).await;
    assert_eq!(ahead, 4, "this month and the three after it");

    let batch = rows("redelivered", 5);
    writer.write(batch.clone()).await;
    assert_eq!(partitions_of(&db).await, vec![("user_logins_default".to_owned(), 5)]);

    // The month's partition made later takes its rows out of the default partition.
    let mut conn = db.connect().await;
    diesel::sql_query("SELECT public.fetchreward_ensure_login_partition('2024-02-10')")
        .execute(&mut conn)
        .await
        .expect("makes the partition");
    assert_eq!(partitions_of(&db).await, vec![("user_logins_2024_02".to_owned(), 5)]);

    let again = writer.write(batch).await;
    assert_eq!(again.already_present_message_ids.len(), 5, "{again:?}");
    assert_eq!(count_rows(&db).await, 5);
}

#[tokio::test]
async fn a_role_that_may_only_insert_can_still_make_the_partitions() {
    let db = TestDatabase::create(&Stack::from_env()).await;
    let _writer = spawn_writer_on(db.clone(), &[]).await;
    let role = fetchreward_testkit::unique_name("inserter");
    let mut owner = db.connect().await;
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT SELECT, INSERT ON user_logins TO {role}"),
    ] {
        diesel::sql_query(&statement).execute(&mut owner).await.expect("prepares the role");
    }
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let mut inserter =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url)
            .await
            .expect("connects as the role");
    let refused = diesel::sql_query("CREATE TABLE public.user_logins_2031_04 (LIKE user_logins)")
        .execute(&mut inserter)
        .await;
    assert!(refused.is_err(), "the role cannot make tables itself");
    diesel::sql_query("SELECT public.fetchreward_ensure_login_partition('2031-05-01')")
        .execute(&mut inserter)
        .await
        .expect("the function runs with its owner's rights");
    diesel::sql_query(
        "INSERT INTO user_logins (message_id, create_date) VALUES ('m-2031', '2031-05-20')",
    )
    .execute(&mut inserter)
    .await
    .expect("inserts");
    let placed = partitions_of(&db).await;
    assert!(placed.contains(&("user_logins_2031_05".to_owned(), 1)), "{placed:?}");
}

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

#[derive(diesel::QueryableByName)]
struct Column {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Placed {
    #[diesel(sql_type = diesel::sql_types::Text)]
    partition: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn relkind(db: &TestDatabase, table: &str) -> String {
    let mut conn = db.connect().await;
    let kinds: Vec<Text> =
        diesel::sql_query("SELECT relkind::text AS value FROM pg_class WHERE relname = $1")
            .bind::<diesel::sql_types::Text, _>(table)
            .load(&mut conn)
            .await
            .expect("pg_class");
    kinds.into_iter().next().expect("the table exists").value
}

/// Rows per partition, by partition name.
async fn partitions_of(db: &TestDatabase) -> Vec<(String, i64)> {
    let mut conn = db.connect().await;
    let placed: Vec<Placed> = diesel::sql_query(
        "SELECT tableoid::regclass::text AS partition, count(*) AS n FROM user_logins \
         GROUP BY 1 ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .expect("rows by partition");
    placed.into_iter().map(|p| (p.partition, p.n)).collect()
}

/// Monthly partitions from this month on.
async fn partitions_of_month_ahead(db: &TestDatabase) -> i64 {
    let mut conn = db.connect().await;
    let found: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'public.user_logins'::regclass \
           AND c.relname >= 'user_logins_' || to_char(current_date, 'YYYY_MM') \
           AND c.relname <> 'user_logins_default'",
    )
    .load(&mut conn)
    .await
    .expect("partitions");
    found[0].n
}

async fn column_types(db: &TestDatabase) -> Vec<(String, String)> {
    let mut conn = db.connect().await;
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT attname::text AS name, format_type(atttypid, atttypmod) AS kind \
         FROM pg_attribute \
         WHERE attrelid = 'public.user_logins'::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .load(&mut conn)
    .await
    .expect("columns");
    columns.into_iter().map(|c| (c.name, c.kind)).collect()
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let db = TestDatabase::create(&Stack::from_env()).await;
    let starts = (0..3).map(|_| spawn_writer_on(db.clone(), &[]));
    let writers = futures::future::join_all(starts).await;
    assert_eq!(writers.len(), 3);
    let mut conn = db.connect().await;
    let applied: Vec<Count> =
        diesel::sql_query("SELECT count(*) AS n FROM public.__diesel_schema_migrations")
            .load(&mut conn)
            .await
            .expect("migration history");
    assert_eq!(applied[0].n, 2);
}
