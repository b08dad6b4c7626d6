//! Start-up: keys created once, KMS failures that say what is wrong, configuration errors,
//! and the service around the vault (health, readiness, metrics, shutdown).

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use fetchreward_model::{PiiKind, canonical_ip};
use fetchreward_runtime::postgres::{self, PgConfig};
use fetchreward_testkit::http_get;
use fetchreward_vault::Application;
use fetchreward_vault::keys::{self, KeyProvider};
use fetchreward_vault::store::VaultStore;
use tokio::sync::Barrier;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    HeldAtBarrier, Resources, ip, key_counts, kms_at, serve, spawn_vault, spawn_vault_on,
};

/// Longest a start-up with KMS down may take: the client must fail fast, not retry for minutes.
const FAIL_FAST: Duration = Duration::from_secs(30);

/// The URL of a local port nothing listens on.
async fn closed_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("bound");
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn two_instances_starting_together_on_an_empty_schema_end_with_one_key_set() {
    let resources = Resources::create().await;
    let (first, second) = tokio::join!(
        Application::build(resources.config(&[]), resources.kms()),
        Application::build(resources.config(&[]), resources.kms()),
    );
    let mut first = serve(first.expect("the first starts")).await;
    let mut second = serve(second.expect("the second starts")).await;
    assert_eq!(
        key_counts(&resources.db).await,
        [("data".to_owned(), 1), ("tokenization".to_owned(), 1)]
    );
    let a = first.tokenize(vec![ip("192.0.2.200")]).await;
    let b = second.tokenize(vec![ip("192.0.2.200")]).await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn racing_key_loads_on_an_empty_schema_all_use_the_one_key_set_that_won() {
    const RACERS: usize = 4;
    let resources = Resources::create().await;
    let store = VaultStore::new(postgres::pool(&PgConfig::plain(&resources.db.url)).expect("pool"));
    store.migrate().await.expect("migrates");
    let barrier = Arc::new(Barrier::new(RACERS));
    let provider: Arc<dyn KeyProvider> =
        Arc::new(HeldAtBarrier { inner: resources.kms(), barrier, hold: |_| true });

    let rings =
        futures::future::join_all((0..RACERS).map(|_| keys::load_or_create(&store, &provider)))
            .await;
    let value = canonical_ip("192.0.2.250").expect("valid");
    let tokens: Vec<String> = rings
        .into_iter()
        .map(|ring| {
            ring.expect("loads").active_tokenization().token(PiiKind::Ip, &value).to_string()
        })
        .collect();
    assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]), "{tokens:?}");
    assert_eq!(
        key_counts(&resources.db).await,
        [("data".to_owned(), 1), ("tokenization".to_owned(), 1)]
    );
}

/// Starts a vault on `resources` whose KMS endpoint is a closed port; the endpoint and the
/// start-up error, which must come within `FAIL_FAST`.
async fn start_with_kms_unreachable(resources: &Resources) -> (String, String) {
    let endpoint = closed_endpoint().await;
    let kms = kms_at(&resources.stack, &endpoint, &resources.kms_key_id);
    let started = tokio::time::timeout(FAIL_FAST, Application::build(resources.config(&[]), kms))
        .await
        .expect("fails fast");
    (endpoint, started.expect_err("cannot start").to_string())
}

#[tokio::test]
async fn kms_unreachable_on_the_first_start_is_a_clear_error() {
    let resources = Resources::create().await;
    let (endpoint, message) = start_with_kms_unreachable(&resources).await;
    assert!(
        message.starts_with(&format!("cannot reach KMS at {endpoint} to create the vault keys: ")),
        "{message}"
    );
    assert!(key_counts(&resources.db).await.is_empty());
}

#[tokio::test]
async fn kms_unreachable_on_a_restart_is_a_clear_error() {
    let resources = Resources::create().await;
    spawn_vault_on(&resources, &[]).await.running.stop().await.expect("stops cleanly");
    let (endpoint, message) = start_with_kms_unreachable(&resources).await;
    assert!(
        message.starts_with(&format!("cannot reach KMS at {endpoint} to unwrap the vault keys: ")),
        "{message}"
    );
}

#[tokio::test]
async fn keys_wrapped_under_another_kms_key_are_refused() {
    let resources = Resources::create().await;
    spawn_vault_on(&resources, &[]).await.running.stop().await.expect("stops cleanly");
    let other_key = fetchreward_testkit::create_kms_key(&resources.stack.kms()).await;
    let kms = kms_at(&resources.stack, &resources.stack.kms_endpoint, &other_key);
    let message = Application::build(resources.config(&[]), kms)
        .await
        .expect_err("cannot unwrap")
        .to_string();
    assert!(message.starts_with("KMS cannot provide the "), "{message}");
    assert!(message.contains("refused"), "{message}");
}

/// The services reflection lists on the vault at `addr`, or the status it answers with.
async fn reflected_services(addr: std::net::SocketAddr) -> Result<Vec<String>, tonic::Code> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut client = ServerReflectionClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connects"),
    );
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .map_err(|status| status.code())?
        .into_inner();
    let answer = answers.message().await.map_err(|status| status.code())?.expect("an answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|service| service.name).collect())
        }
        other => panic!("not a list of services: {other:?}"),
    }
}

#[tokio::test]
async fn reflection_is_off_unless_enabled_and_then_lists_the_vault_alone() {
    let resources = Resources::create().await;
    let vault = spawn_vault_on(&resources, &[]).await;
    assert_eq!(reflected_services(vault.grpc_addr).await, Err(tonic::Code::Unimplemented));
    vault.running.stop().await.expect("stops cleanly");

    let vault = spawn_vault_on(&resources, &[("GRPC_REFLECTION", "true")]).await;
    let services = reflected_services(vault.grpc_addr).await.expect("reflection answers");
    let ours: Vec<&String> =
        services.iter().filter(|name| name.starts_with("fetchreward.")).collect();
    assert_eq!(ours, ["fetchreward.vault.v1.VaultService"], "{services:?}");
    vault.running.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn serves_health_readiness_and_metrics_then_stops_cleanly() {
    let (mut vault, _resources) = spawn_vault().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", vault.grpc_addr))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connects");
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest { service: "fetchreward.vault.v1.VaultService".into() })
        .await
        .expect("answers")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
    assert!(http_get(vault.http_addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(vault.http_addr, "/readyz").await.starts_with("HTTP/1.1 200"));

    vault.tokenize(vec![ip("192.0.2.31")]).await;
    let metrics = http_get(vault.http_addr, "/metrics").await;
    assert!(metrics.contains(r#"fetchreward_vault_tokenize_values_total{kind="ip"}"#), "{metrics}");
    assert!(
        metrics.contains(
            r#"fetchreward_grpc_calls_total{service="vault",method="Tokenize",code="ok"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("fetchreward_grpc_call_duration_seconds_bucket"), "{metrics}");
    assert!(!metrics.contains("192.0.2.31"));

    vault.running.stop().await.expect("stops cleanly");
}

/// Runs the vault binary with exactly `env`, off the async runtime.
async fn run_binary(env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fetchreward-vault"))
            .env_clear()
            .envs(env)
            .output()
            .expect("runs the binary")
    })
    .await
    .expect("joins")
}

#[tokio::test]
async fn the_binary_lists_every_configuration_problem_and_exits_non_zero() {
    let output = run_binary(vec![
        ("GRPC_ADDR", "nowhere".into()),
        ("VAULT_TOKEN_CACHE_TTL_SECS", "soon".into()),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2), "the exit status of a bad configuration");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for variable in ["GRPC_ADDR", "DATABASE_URL", "KMS_KEY_ID", "VAULT_TOKEN_CACHE_TTL_SECS"] {
        assert!(stderr.contains(variable), "{variable} missing from: {stderr}");
    }
}

#[tokio::test]
async fn the_binary_names_kms_and_its_endpoint_when_kms_is_down() {
    let resources = Resources::create().await;
    let endpoint = closed_endpoint().await;
    let output = tokio::time::timeout(
        FAIL_FAST,
        run_binary(vec![
            ("DATABASE_URL", resources.db.url.clone()),
            ("KMS_KEY_ID", resources.kms_key_id.clone()),
            ("AWS_ENDPOINT_URL_KMS", endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("GRPC_ADDR", "127.0.0.1:0".into()),
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("LOG_FORMAT", "json".into()),
        ]),
    )
    .await
    .expect("fails fast");
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("cannot reach KMS at {endpoint}")), "{stdout}");
    assert!(stdout.contains("fetchreward-vault cannot start"), "{stdout}");
}

#[tokio::test]
async fn a_key_row_inserted_behind_the_vaults_back_is_refused_at_start() {
    let resources = Resources::create().await;
    spawn_vault_on(&resources, &[]).await.running.stop().await.expect("stops cleanly");
    // Someone with write access to vault.keys and the right to use the KMS key makes data key
    // v2 exactly as the vault would, encryption context included: they know its plaintext.
    let context = [
        ("fetchreward:service", "vault"),
        ("fetchreward:deployment", "local"),
        ("fetchreward:purpose", "data"),
        ("fetchreward:version", "2"),
    ];
    let generated = resources
        .stack
        .kms()
        .generate_data_key()
        .key_id(&resources.kms_key_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .set_encryption_context(Some(
            context.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ))
        .send()
        .await
        .expect("KMS makes the key");
    let wrapped = generated.ciphertext_blob.expect("a blob").into_inner();
    let mut conn = resources.db.connect().await;
    diesel::sql_query(
        "INSERT INTO vault.keys (purpose, version, wrapped, kms_key_id, deployment, binding)
         VALUES ('data', 2, $1, $2, 'local', $3)",
    )
    .bind::<diesel::sql_types::Binary, _>(wrapped)
    .bind::<diesel::sql_types::Text, _>(&resources.kms_key_id)
    .bind::<diesel::sql_types::Binary, _>(vec![0u8; 32])
    .execute(&mut conn)
    .await
    .expect("inserted");

    let message = Application::build(resources.config(&[]), resources.kms())
        .await
        .expect_err("the vault refuses to start with a key it did not make")
        .to_string();
    assert!(
        message.contains("vault.keys holds data key v2, which this vault did not make"),
        "{message}"
    );
}
