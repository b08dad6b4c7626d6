//! Archive runs, lists and restores against the local stack's Postgres and moto's S3.

use chrono::NaiveDate;
use fetchreward_archive::{
    ArchiveTarget, ArchivedRow, Archiver, Month, PartitionState, read_rows, select_list,
};
use fetchreward_runtime::postgres::PgConfig;
use fetchreward_testkit::{Stack, TestDatabase};
use tokio_postgres::{Client, NoTls};

struct Fixture {
    db: Client,
    s3: aws_sdk_s3::Client,
    target: ArchiveTarget,
}

impl Fixture {
    /// A migrated database with the partitions of `months`, and an empty bucket.
    async fn new(months: &[&str]) -> Fixture {
        let stack = Stack::from_env();
        let database = TestDatabase::create(&stack).await;
        fetchreward_writer::migrate(&PgConfig::plain(database.url.clone()))
            .await
            .expect("the writer's migrations");
        let (db, connection) =
            tokio_postgres::connect(&database.url, NoTls).await.expect("connects");
        tokio::spawn(connection);
        for month in months {
            let month: Month = month.parse().unwrap();
            db.execute(
                "SELECT public.fetchreward_ensure_login_partition($1)",
                &[&month.first_day()],
            )
            .await
            .expect("a partition");
        }
        let bucket = stack.s3_bucket().await;
        let target: ArchiveTarget = format!("s3://{bucket}/archive/test").parse().unwrap();
        Fixture { s3: stack.s3(), db, target }
    }

    fn archiver(&self) -> Archiver<'_> {
        Archiver::new(&self.db, &self.s3, &self.target, false)
    }

    /// Inserts `n` rows spread over `month`, some with NULLs as Fetch's table allows.
    async fn seed(&self, month: &str, n: u32) -> Vec<ArchivedRow> {
        let month: Month = month.parse().unwrap();
        let rows: Vec<ArchivedRow> = (0..n)
            .map(|i| ArchivedRow {
                user_id: Some(format!("user-{}", i % 7)),
                device_type: (!i.is_multiple_of(4)).then(|| "android".to_owned()),
                masked_ip: Some(format!("ip_v1_{month}_{i}")),
                masked_device_id: (!i.is_multiple_of(3)).then(|| format!("dev_v1_{month}_{i}")),
                locale: (i.is_multiple_of(2)).then(|| "RU".to_owned()),
                app_version: Some(i32::try_from(i % 9).unwrap()),
                create_date: Some(month.first_day() + chrono::Days::new(u64::from(i % 28))),
                message_id: Some(format!("{month}-{i:05}")),
                app_version_raw: Some(format!("{}.1.0", i % 9)),
            })
            .collect();
        for chunk in rows.chunks(1000) {
            let inserted = insert(&self.db, chunk).await;
            assert_eq!(inserted, chunk.len() as u64);
        }
        rows
    }

    async fn rows_of(&self, month: &str) -> Vec<ArchivedRow> {
        let month: Month = month.parse().unwrap();
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT {} FROM user_logins WHERE create_date >= $1 AND create_date < $2",
                    select_list()
                ),
                &[&month.first_day(), &month.next_first_day()],
            )
            .await
            .unwrap();
        let mut rows: Vec<ArchivedRow> = rows.iter().map(ArchivedRow::from_row).collect();
        rows.sort();
        rows
    }

    async fn table_exists(&self, name: &str) -> bool {
        self.db
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{name}")])
            .await
            .unwrap()
            .get(0)
    }

    /// The object of `month` as it is in the bucket, read back with the parquet crate.
    async fn archived_rows(&self, month: &str) -> Vec<ArchivedRow> {
        let month: Month = month.parse().unwrap();
        let key = self
            .target
            .key(&format!("user_logins/month={month}/{}.parquet", month.partition_name()));
        let object =
            self.s3.get_object().bucket(&self.target.bucket).key(key).send().await.unwrap();
        let bytes = object.body.collect().await.unwrap().into_bytes();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let mut rows = read_rows(file.path()).unwrap();
        rows.sort();
        rows
    }
}

async fn insert(db: &Client, rows: &[ArchivedRow]) -> u64 {
    let mut inserted = 0;
    for row in rows {
        inserted += db
            .execute(
                "INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, \
                                          app_version, create_date, message_id, app_version_raw) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &row.user_id,
                    &row.device_type,
                    &row.masked_ip,
                    &row.masked_device_id,
                    &row.locale,
                    &row.app_version,
                    &row.create_date,
                    &row.message_id,
                    &row.app_version_raw,
                ],
            )
            .await
            .expect("a row");
    }
    inserted
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn sorted(mut rows: Vec<ArchivedRow>) -> Vec<ArchivedRow> {
    rows.sort();
    rows
}

#[tokio::test]
async fn old_months_go_to_s3_as_parquet_and_come_back_row_for_row() {
    let fx = Fixture::new(&["2020-01", "2020-02", "2020-03"]).await;
    let january = sorted(fx.seed("2020-01", 1200).await);
    let february = sorted(fx.seed("2020-02", 300).await);
    let march = sorted(fx.seed("2020-03", 50).await);

    // Months that end on or before the cutoff go; March ends after it.
    let done = fx.archiver().run(day("2020-03-15"), false).await.expect("an archive run");
    let months: Vec<String> = done.iter().map(|m| m.month.to_string()).collect();
    assert_eq!(months, ["2020-01", "2020-02"]);
    assert!(done.iter().all(|m| m.exported && m.dropped));
    assert_eq!(done[0].rows, 1200);

    assert!(!fx.table_exists("user_logins_2020_01").await);
    assert!(!fx.table_exists("user_logins_2020_02").await);
    assert!(fx.rows_of("2020-01").await.is_empty());
    assert_eq!(fx.rows_of("2020-03").await, march);

    // What S3 holds is the rows, read back by the parquet crate, and what the manifest says.
    assert_eq!(fx.archived_rows("2020-01").await, january);
    assert_eq!(fx.archived_rows("2020-02").await, february);
    let manifest =
        fx.archiver().manifest("2020-01".parse().unwrap()).await.unwrap().expect("a manifest");
    assert_eq!(manifest.rows, 1200);
    assert_eq!(manifest.min_create_date, Some(day("2020-01-01")));
    assert_eq!(manifest.max_create_date, Some(day("2020-01-28")));
    assert_eq!((manifest.range_from, manifest.range_to), (day("2020-01-01"), day("2020-02-01")));
    assert_eq!(manifest.compression, "zstd(3)");
    assert_eq!(manifest.columns.len(), 9);
    assert_eq!(manifest.sha256.len(), 64);

    let listed = fx.archiver().list(&fx.db).await.unwrap();
    let states: Vec<(String, PartitionState)> =
        listed.iter().map(|l| (l.manifest.month.to_string(), l.in_database)).collect();
    assert_eq!(
        states,
        [
            ("2020-01".to_owned(), PartitionState::Absent),
            ("2020-02".to_owned(), PartitionState::Absent)
        ]
    );

    // A restore brings the month back exactly; a second restore adds nothing.
    let restored = fx.archiver().restore("2020-01".parse().unwrap()).await.expect("a restore");
    assert_eq!((restored.rows, restored.inserted), (1200, 1200));
    assert!(fx.table_exists("user_logins_2020_01").await);
    assert_eq!(fx.rows_of("2020-01").await, january);
    let again = fx.archiver().restore("2020-01".parse().unwrap()).await.expect("a second restore");
    assert_eq!(again.inserted, 0);
    assert_eq!(fx.rows_of("2020-01").await, january);
    let listed = fx.archiver().list(&fx.db).await.unwrap();
    assert_eq!(listed[0].in_database, PartitionState::Attached);

    // A month without an archive is refused, naming where to look.
    let err = fx.archiver().restore("2019-12".parse().unwrap()).await.unwrap_err();
    assert!(format!("{err:#}").contains("has no archive of 2019-12"), "{err:#}");
}

#[tokio::test]
async fn an_interrupted_run_resumes_without_losing_or_duplicating_rows() {
    let fx = Fixture::new(&["2021-05", "2021-06", "2021-07"]).await;
    let may = sorted(fx.seed("2021-05", 400).await);
    let june = sorted(fx.seed("2021-06", 250).await);
    let july = sorted(fx.seed("2021-07", 90).await);

    // A run stopped after May's manifest, before its partition was retired.
    fx.archiver().export("2021-05".parse().unwrap()).await.expect("May exported");
    assert!(fx.table_exists("user_logins_2021_05").await);
    // A run stopped in the middle of June's upload: an object, no manifest.
    let june_key = fx.target.key("user_logins/month=2021-06/user_logins_2021_06.parquet");
    fx.s3
        .put_object()
        .bucket(&fx.target.bucket)
        .key(&june_key)
        .body(b"half an upload".to_vec().into())
        .send()
        .await
        .unwrap();
    // July exported, then a late row arrived before its partition was retired.
    fx.archiver().export("2021-07".parse().unwrap()).await.expect("July exported");
    let late = ArchivedRow {
        message_id: Some("2021-07-late".to_owned()),
        create_date: Some(day("2021-07-30")),
        masked_ip: Some("ip_v1_late".to_owned()),
        ..ArchivedRow::default()
    };
    insert(&fx.db, std::slice::from_ref(&late)).await;
    let july = sorted([july, vec![late]].concat());

    let done = fx.archiver().run(day("2021-08-01"), false).await.expect("the resumed run");
    let summary: Vec<(String, u64, bool)> =
        done.iter().map(|m| (m.month.to_string(), m.rows, m.exported)).collect();
    assert_eq!(
        summary,
        [
            ("2021-05".to_owned(), 400, false),
            ("2021-06".to_owned(), 250, true),
            ("2021-07".to_owned(), 91, true),
        ]
    );
    assert_eq!(fx.archived_rows("2021-05").await, may);
    assert_eq!(fx.archived_rows("2021-06").await, june);
    assert_eq!(fx.archived_rows("2021-07").await, july);
    for month in ["2021_05", "2021_06", "2021_07"] {
        assert!(!fx.table_exists(&format!("user_logins_{month}")).await, "{month}");
    }

    // Nothing left to do: a run after a finished one changes nothing.
    assert!(fx.archiver().run(day("2021-08-01"), false).await.unwrap().is_empty());
    for (month, rows) in [("2021-05", &may), ("2021-06", &june), ("2021-07", &july)] {
        fx.archiver().restore(month.parse().unwrap()).await.expect("a restore");
        assert_eq!(&fx.rows_of(month).await, rows, "{month}");
    }
}

#[tokio::test]
async fn a_kept_detached_partition_is_listed_and_not_restored_over() {
    let fx = Fixture::new(&["2022-02"]).await;
    fx.seed("2022-02", 20).await;
    let done = fx.archiver().run(day("2022-03-01"), true).await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(!done[0].dropped);
    assert!(fx.table_exists("user_logins_2022_02").await);
    assert!(fx.rows_of("2022-02").await.is_empty(), "detached: no longer part of user_logins");

    let listed = fx.archiver().list(&fx.db).await.unwrap();
    assert_eq!(listed[0].in_database, PartitionState::Detached);
    let err = fx.archiver().restore("2022-02".parse().unwrap()).await.unwrap_err();
    assert!(format!("{err:#}").contains("exists, detached"), "{err:#}");
}
