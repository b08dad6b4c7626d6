//! `fetchreward archive` and `fetchreward counts` as an operator runs them: the binary, on a
//! database of the local stack and a bucket of moto's S3; the read-only commands on
//! `DATABASE_READ_URL`.

use std::process::{Command, Output};

use fetchreward_runtime::postgres::PgConfig;
use fetchreward_testkit::{Stack, TestDatabase};

/// A migrated database whose `user_logins` holds `rows` rows of `month` (YYYY-MM), in their
/// partition.
async fn database_with(stack: &Stack, month: &str, rows: u32) -> TestDatabase {
    let db = TestDatabase::create(stack).await;
    fetchreward_writer::migrate(&PgConfig::plain(db.url.clone())).await.expect("migrated");
    let (client, connection) =
        tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    let first_day = format!("{month}-01");
    client
        .batch_execute(&format!(
            "SELECT public.fetchreward_ensure_login_partition('{first_day}'); \
             INSERT INTO user_logins (message_id, user_id, masked_ip, create_date) \
             SELECT 'm-' || i, 'u-' || i, 'ip_v1_' || (i % 3), date '{first_day}' + (i % 20) \
             FROM generate_series(1, {rows}) AS i;"
        ))
        .await
        .expect("rows");
    db
}

fn fetchreward(
    stack: &Stack,
    db: &TestDatabase,
    read: Option<&TestDatabase>,
    args: &[&str],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fetchreward"));
    command
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("DATABASE_READ_URL")
        .env_remove("ARCHIVE_URL")
        .env("AWS_ENDPOINT_URL_S3", &stack.s3_endpoint)
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("AWS_REGION", fetchreward_testkit::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    if let Some(read) = read {
        command.env("DATABASE_READ_URL", &read.url);
    }
    command.output().expect("fetchreward runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn an_operator_archives_lists_counts_and_restores_a_month() {
    let stack = Stack::from_env();
    let primary = database_with(&stack, "2021-03", 10).await;
    let replica = database_with(&stack, "2022-01", 3).await;
    let target = format!("s3://{}/ops", stack.s3_bucket().await);

    // counts reads DATABASE_READ_URL when it is set, the primary otherwise.
    let from_replica =
        stdout(&fetchreward(&stack, &primary, Some(&replica), &["counts", "--json"]));
    assert!(
        from_replica.contains("\"month\":\"2022-01\"") && from_replica.contains("\"rows\":3"),
        "{from_replica}"
    );
    let from_primary = stdout(&fetchreward(&stack, &primary, None, &["counts", "--json"]));
    assert!(
        from_primary.contains("\"month\":\"2021-03\"") && from_primary.contains("\"rows\":10"),
        "{from_primary}"
    );

    let dry = stdout(&fetchreward(
        &stack,
        &primary,
        None,
        &["archive", "run", "--to", &target, "--dry-run"],
    ));
    assert!(dry.contains("2021-03 (user_logins_2021_03)"), "{dry}");
    let run = stdout(&fetchreward(
        &stack,
        &primary,
        Some(&replica),
        &["archive", "run", "--older-than", "13mo", "--to", &target],
    ));
    assert!(run.contains("archived 1 month(s), 10 row(s)"), "{run}");

    let listed = stdout(&fetchreward(
        &stack,
        &primary,
        None,
        &["archive", "list", "--from", &target, "--json"],
    ));
    let manifest: serde_json::Value =
        serde_json::from_str(listed.lines().next().expect("a month")).unwrap();
    assert_eq!(manifest["month"], "2021-03");
    assert_eq!(manifest["rows"], 10);
    assert_eq!(manifest["in_database"], "dropped");

    let restored = stdout(&fetchreward(
        &stack,
        &primary,
        None,
        &["archive", "restore", "2021-03", "--from", &target],
    ));
    assert!(restored.contains("10 inserted"), "{restored}");
    let after = stdout(&fetchreward(&stack, &primary, None, &["counts", "--json"]));
    assert!(
        after.contains("\"table\":\"user_logins_2021_03\"") && after.contains("\"rows\":10"),
        "{after}"
    );

    // A month written wrong is refused with the form to use, and nothing runs.
    let wrong =
        fetchreward(&stack, &primary, None, &["archive", "restore", "2021-3", "--from", &target]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("write it as YYYY-MM"));
}
