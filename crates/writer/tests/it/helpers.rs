//! Spawning a writer and building rows.

use std::collections::HashMap;

use diesel::QueryableByName;
use diesel::sql_types::{Date, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use fetchreward_model::{MAC_LEN, PiiKind, Token};
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest, WriteLoginsResponse};
use fetchreward_testkit::{Spawned, Stack, TestDatabase};
use fetchreward_writer::{Application, StartError, WriterConfig};
use tonic::transport::Channel;

/// A writer serving a fresh database.
pub struct TestWriter {
    pub client: WriterServiceClient<Channel>,
    pub http_addr: std::net::SocketAddr,
    pub db: TestDatabase,
    pub running: Spawned<Result<(), StartError>>,
}

impl TestWriter {
    /// Writes `rows` in one call that must be answered (refusals of rows are an answer).
    pub async fn write(&mut self, rows: Vec<MaskedLogin>) -> WriteLoginsResponse {
        self.client
            .write_logins(WriteLoginsRequest { rows })
            .await
            .expect("the call is answered")
            .into_inner()
    }
}

/// The configuration of a writer on `database_url`, on free ports.
pub fn config(database_url: &str, extra: &[(&str, &str)]) -> WriterConfig {
    let mut env: HashMap<&str, &str> = HashMap::from([
        ("DATABASE_URL", database_url),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "text"),
        ("SHUTDOWN_GRACE_SECS", "5"),
        ("AUTHZ_WRITE", "anonymous"),
    ]);
    env.extend(extra.iter().copied());
    WriterConfig::from_env(&env).expect("a valid test configuration")
}

/// Starts a writer on a new database.
pub async fn spawn_writer() -> TestWriter {
    let db = TestDatabase::create(&Stack::from_env()).await;
    spawn_writer_on(db, &[]).await
}

/// Starts a writer on `db`, with extra settings.
pub async fn spawn_writer_on(db: TestDatabase, extra: &[(&str, &str)]) -> TestWriter {
    let (grpc_addr, http_addr, running) = start_writer(&db, extra).await;
    let client = WriterServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .expect("connects to the writer");
    TestWriter { client, http_addr, db, running }
}

/// Starts a writer on `db` without connecting to it: its gRPC and HTTP addresses.
pub async fn start_writer(
    db: &TestDatabase,
    extra: &[(&str, &str)],
) -> (std::net::SocketAddr, std::net::SocketAddr, Spawned<Result<(), StartError>>) {
    let app = Application::build(config(&db.url, extra)).await.expect("the writer starts");
    let (grpc_addr, http_addr) = (app.grpc_addr(), app.http_addr());
    (grpc_addr, http_addr, Spawned::new(|shutdown| app.run_until_stopped(shutdown)))
}

/// A token of `kind` whose MAC is derived from `seed`.
pub fn token(kind: PiiKind, seed: u8) -> String {
    Token::new(kind, 1, [seed; MAC_LEN]).to_string()
}

/// A complete row with message_id `id`.
pub fn row(id: &str) -> MaskedLogin {
    MaskedLogin {
        message_id: id.to_owned(),
        user_id: format!("user-{id}"),
        device_type: Some("android".into()),
        masked_ip: Some(token(PiiKind::Ip, 1)),
        masked_device_id: Some(token(PiiKind::DeviceId, 2)),
        locale: Some("RU".into()),
        app_version: Some("2.3.0".into()),
        // 2024-02-29T12:00:00Z
        sent_timestamp_ms: 1_709_208_000_000,
    }
}

/// Rows with ids `prefix-0` … `prefix-(n-1)`.
pub fn rows(prefix: &str, n: usize) -> Vec<MaskedLogin> {
    (0..n).map(|i| row(&format!("{prefix}-{i}"))).collect()
}

/// One row of `user_logins` as stored.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StoredRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub user_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub device_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub masked_ip: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub masked_device_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub locale: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub app_version: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub app_version_raw: Option<String>,
    #[diesel(sql_type = Nullable<Date>)]
    pub create_date: Option<chrono::NaiveDate>,
}

/// Every row of `user_logins`, ordered by message_id (NULLs last).
pub async fn stored_rows(db: &TestDatabase) -> Vec<StoredRow> {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT message_id, user_id, device_type, masked_ip, masked_device_id, locale, \
         app_version, app_version_raw, create_date FROM user_logins ORDER BY message_id, user_id",
    )
    .load(&mut conn)
    .await
    .expect("reads user_logins")
}

/// The number of rows of `user_logins`.
pub async fn count_rows(db: &TestDatabase) -> usize {
    stored_rows(db).await.len()
}
