//! What the writer's benchmarks share: rows with unique message_ids, a writer on a database.

use std::sync::atomic::{AtomicU64, Ordering};

use fetchreward_model::{MAC_LEN, PiiKind, Token};
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest};
use fetchreward_testkit::Spawned;
use fetchreward_writer::{Application, StartError, WriterConfig};
use tonic::transport::Channel;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// `rows` rows never written before, their tokens drawn from 251 values.
pub fn batch(rows: usize) -> Vec<MaskedLogin> {
    (0..rows)
        .map(|_| {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let seed = (id % 251) as u8;
            MaskedLogin {
                message_id: format!("bench-{id:012}"),
                user_id: format!("user-{}", id % 10_000),
                device_type: Some("android".into()),
                masked_ip: Some(Token::new(PiiKind::Ip, 1, [seed; MAC_LEN]).to_string()),
                masked_device_id: Some(
                    Token::new(PiiKind::DeviceId, 1, [seed; MAC_LEN]).to_string(),
                ),
                locale: Some("RU".into()),
                app_version: Some("2.3.0".into()),
                sent_timestamp_ms: 1_709_208_000_000,
            }
        })
        .collect()
}

/// A writer on `database_url` (anonymous writes, plaintext) and a client to it.
pub async fn writer_on(
    database_url: &str,
) -> (WriterServiceClient<Channel>, Spawned<Result<(), StartError>>) {
    let env = std::collections::HashMap::from([
        ("DATABASE_URL", database_url),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("AUTHZ_WRITE", "anonymous"),
    ]);
    let config = WriterConfig::from_env(&env).expect("valid");
    let app = Application::build(config).await.expect("the writer starts");
    let addr = app.grpc_addr();
    let running = Spawned::new(|shutdown| app.run_until_stopped(shutdown));
    let client = WriterServiceClient::connect(format!("http://{addr}")).await.expect("connects");
    (client, running)
}

/// `callers` concurrent WriteLogins calls of `rows` new rows each.
pub async fn write_concurrently(
    client: &WriterServiceClient<Channel>,
    callers: usize,
    rows: usize,
) {
    let calls = (0..callers).map(|_| {
        let mut client = client.clone();
        let rows = batch(rows);
        async move { client.write_logins(WriteLoginsRequest { rows }).await.expect("written") }
    });
    futures::future::join_all(calls).await;
}
