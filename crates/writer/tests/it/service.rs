//! The service around the store: readiness, TLS to Postgres, configuration errors.

use std::process::Command;

use diesel_async::RunQueryDsl;
use fetchreward_proto::writer::v1::WriteLoginsRequest;
use fetchreward_testkit::{Stack, TestDatabase, http_get};

use crate::helpers::{rows, spawn_writer, spawn_writer_on};

#[tokio::test]
async fn ready_and_counting_once_migrated() {
    let mut writer = spawn_writer().await;
    assert!(http_get(writer.http_addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(writer.http_addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    writer.client.write_logins(WriteLoginsRequest { rows: rows("m", 2) }).await.expect("written");
    let metrics = http_get(writer.http_addr, "/metrics").await;
    // Other tests of this process may count too: at least this test's two rows are there.
    let inserted = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"fetchreward_writer_rows_total{outcome="inserted"} "#))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(inserted.is_some_and(|n| n >= 2.0), "{metrics}");
    writer.running.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn writes_over_verified_tls_to_postgres() {
    let stack = Stack::from_env();
    let db = TestDatabase::create(&stack).await;
    let url = format!("{}?sslmode=verify-full", db.url.split('?').next().unwrap_or(&db.url));
    let tls_db = TestDatabase { name: db.name.clone(), url };
    let mut writer = spawn_writer_on(tls_db, &[("DATABASE_CA_FILE", &stack.pg_ca_file)]).await;
    writer
        .client
        .write_logins(WriteLoginsRequest { rows: rows("tls", 2) })
        .await
        .expect("written over TLS");

    #[derive(diesel::QueryableByName)]
    struct Encrypted {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        all_ssl: bool,
    }
    let mut conn = db.connect().await;
    let check: Vec<Encrypted> = diesel::sql_query(
        "SELECT bool_and(s.ssl) AS all_ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind::<diesel::sql_types::Text, _>(&db.name)
    .load(&mut conn)
    .await
    .expect("pg_stat_ssl");
    assert!(check[0].all_ssl, "every connection of the writer is encrypted");
}

#[tokio::test]
async fn verify_full_rejects_a_server_certificate_from_another_ca() {
    let stack = Stack::from_env();
    let db = TestDatabase::create(&stack).await;
    let base = db.url.split('?').next().unwrap_or(&db.url).to_owned();
    let other_ca = std::env::temp_dir().join(format!("{}-other-ca.pem", db.name));
    let cert = unrelated_ca_pem();
    std::fs::write(&other_ca, cert).expect("writes the CA");
    let config = crate::helpers::config(
        &format!("{base}?sslmode=verify-full"),
        &[("DATABASE_CA_FILE", other_ca.to_str().expect("utf-8 path"))],
    );
    let started = fetchreward_writer::Application::build(config).await;
    assert!(started.is_err(), "the migration connection must fail certificate verification");
}

/// A self-signed certificate that signed nothing the local cluster uses.
fn unrelated_ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["another-ca".to_owned()])
        .expect("generates a certificate")
        .cert
        .pem()
}

#[test]
fn a_bad_configuration_exits_with_every_problem_listed() {
    let output = Command::new(env!("CARGO_BIN_EXE_fetchreward-writer"))
        .env_clear()
        .env("GRPC_ADDR", "not-an-address")
        .env("LOG_FORMAT", "xml")
        .output()
        .expect("runs the binary");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in ["DATABASE_URL or DATABASE_URL_FILE is required", "GRPC_ADDR", "LOG_FORMAT"] {
        assert!(stderr.contains(expected), "{expected} missing from: {stderr}");
    }
}
