//! Spawning vaults and reading what they stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, DetokenizeResponse, KeyTarget, PiiKind, PiiValue, RewrapRequest,
    RewrapResponse, RotateKeysRequest, RotateKeysResponse, TokenizeRequest,
};
use fetchreward_testkit::{Spawned, Stack, TestDatabase, create_kms_key, unique_name};
use fetchreward_vault::keys::{GeneratedKey, KeyLabel, KeyProvider, KeyProviderError};
use fetchreward_vault::kms::{KmsKeyProvider, KmsSettings};
use fetchreward_vault::version::KeyVersion;
use fetchreward_vault::{Application, StartError, VaultConfig};
use futures::future::BoxFuture;
use tonic::transport::Channel;
use zeroize::Zeroizing;

/// A database and a KMS key made for one test.
#[derive(Debug, Clone)]
pub struct Resources {
    pub stack: Stack,
    pub db: TestDatabase,
    pub kms_key_id: String,
}

impl Resources {
    /// A new database and KMS key on the local stack.
    pub async fn create() -> Resources {
        let stack = Stack::from_env();
        let db = TestDatabase::create(&stack).await;
        let kms_key_id = create_kms_key(&stack.kms()).await;
        Resources { stack, db, kms_key_id }
    }

    /// The vault's configuration on these resources, on free ports.
    pub fn config(&self, extra: &[(&str, &str)]) -> VaultConfig {
        let mut env: HashMap<&str, &str> = HashMap::from([
            ("DATABASE_URL", self.db.url.as_str()),
            ("DATABASE_POOL_SIZE", "4"),
            ("KMS_KEY_ID", self.kms_key_id.as_str()),
            ("GRPC_ADDR", "127.0.0.1:0"),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("LOG_FORMAT", "text"),
            ("SHUTDOWN_GRACE_SECS", "5"),
            // Plaintext tests: tokenizing is open to the anonymous test client.
            ("AUTHZ_TOKENIZE", "anonymous"),
        ]);
        env.extend(extra.iter().copied());
        VaultConfig::from_env(&env).expect("a valid test configuration")
    }

    /// A KMS key provider on moto.
    pub fn kms(&self) -> Arc<dyn KeyProvider> {
        kms_at(&self.stack, &self.stack.kms_endpoint, &self.kms_key_id)
    }
}

/// A KMS key provider for `key_id` at `endpoint`, with the vault's timeouts.
pub fn kms_at(stack: &Stack, endpoint: &str, key_id: &str) -> Arc<dyn KeyProvider> {
    Arc::new(KmsKeyProvider::from_sdk_config(
        &stack.aws_config(endpoint),
        KmsSettings::single_key(key_id.to_owned()),
    ))
}

/// A login role of the vault's runtime role (`fetchreward_vault_runtime`, made by the vault's
/// migrations when missing) on `resources`; returns its database URL. The test database's own
/// user stays the owner, for `DATABASE_MIGRATION_URL`.
pub async fn runtime_role(resources: &Resources) -> String {
    let role = unique_name("vault_rt");
    let mut owner = resources.db.connect().await;
    for statement in [
        "DO $$ BEGIN CREATE ROLE fetchreward_vault_runtime NOLOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            .to_owned(),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT fetchreward_vault_runtime TO {role}"),
    ] {
        diesel::sql_query(&statement).execute(&mut owner).await.expect("prepares the roles");
    }
    resources.db.url.replacen("postgres@", &format!("{role}@"), 1)
}

/// A running vault and a client to it.
pub struct TestVault {
    pub client: VaultServiceClient<Channel>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub running: Spawned<Result<(), StartError>>,
}

/// The setting that lets the anonymous test client detokenize (plaintext only).
pub const ALLOW_ANONYMOUS: (&str, &str) = ("AUTHZ_DETOKENIZE", "anonymous");

/// The setting that lets the anonymous test client forget and rotate (plaintext only).
pub const ALLOW_ANONYMOUS_ADMIN: (&str, &str) = ("AUTHZ_ADMIN", "anonymous");

/// Starts a vault on new resources, anonymous recovery and forgetting allowed.
pub async fn spawn_vault() -> (TestVault, Resources) {
    let resources = Resources::create().await;
    let vault = spawn_vault_on(&resources, &[ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN]).await;
    (vault, resources)
}

/// Starts a vault on `resources` with extra settings.
pub async fn spawn_vault_on(resources: &Resources, extra: &[(&str, &str)]) -> TestVault {
    let app = Application::build(resources.config(extra), resources.kms())
        .await
        .expect("the vault starts");
    serve(app).await
}

/// Starts a vault on `resources` that lets anonymous callers call everything, the admin
/// methods included, with extra settings: for tests of RotateKeys and Rewrap while no caller
/// proves an admin identity.
pub async fn spawn_admin_vault_on(resources: &Resources, extra: &[(&str, &str)]) -> TestVault {
    spawn_admin_vault_with(resources, extra, resources.kms()).await
}

/// [`spawn_admin_vault_on`] with a given key provider.
pub async fn spawn_admin_vault_with(
    resources: &Resources,
    extra: &[(&str, &str)],
    provider: Arc<dyn KeyProvider>,
) -> TestVault {
    let mut settings = vec![ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN];
    settings.extend_from_slice(extra);
    let app =
        Application::build(resources.config(&settings), provider).await.expect("the vault starts");
    serve(app).await
}

/// Serves a built vault and connects a client.
pub async fn serve(app: Application) -> TestVault {
    let grpc_addr = app.grpc_addr();
    let http_addr = app.http_addr();
    let running = Spawned::new(|shutdown| app.run_until_stopped(shutdown));
    let client = VaultServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .expect("connects to the vault");
    TestVault { client, grpc_addr, http_addr, running }
}

/// A key provider whose `generate` waits, for the labels `hold` picks, until as many callers as
/// the barrier counts have generated theirs: it forces the races the vault must survive (first
/// starts and rotations that all reach the insert with a key of their own).
#[derive(Debug)]
pub struct HeldAtBarrier {
    pub inner: Arc<dyn KeyProvider>,
    pub barrier: Arc<tokio::sync::Barrier>,
    pub hold: fn(KeyLabel) -> bool,
}

impl KeyProvider for HeldAtBarrier {
    fn master_key_id(&self) -> &str {
        self.inner.master_key_id()
    }

    fn deployment(&self) -> &str {
        self.inner.deployment()
    }

    fn generate<'a>(
        &'a self,
        master: &'a str,
        label: KeyLabel,
    ) -> BoxFuture<'a, Result<GeneratedKey, KeyProviderError>> {
        Box::pin(async move {
            let generated = self.inner.generate(master, label).await;
            if (self.hold)(label) {
                self.barrier.wait().await;
            }
            generated
        })
    }

    fn unwrap_key<'a>(
        &'a self,
        master: &'a str,
        label: KeyLabel,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<[u8; 32]>, KeyProviderError>> {
        self.inner.unwrap_key(master, label, wrapped)
    }

    fn generation_master<'a>(
        &'a self,
        version: KeyVersion,
    ) -> BoxFuture<'a, Result<Option<String>, KeyProviderError>> {
        self.inner.generation_master(version)
    }

    fn delete_generation_master<'a>(
        &'a self,
        master: &'a str,
    ) -> BoxFuture<'a, Result<i64, KeyProviderError>> {
        self.inner.delete_generation_master(master)
    }
}

/// An ip value.
pub fn ip(value: &str) -> PiiValue {
    PiiValue { kind: PiiKind::Ip.into(), value: value.to_owned() }
}

/// A device_id value.
pub fn device(value: &str) -> PiiValue {
    PiiValue { kind: PiiKind::DeviceId.into(), value: value.to_owned() }
}

impl TestVault {
    /// The tokens of `values`.
    pub async fn tokenize(&mut self, values: Vec<PiiValue>) -> Vec<String> {
        self.client
            .tokenize(TokenizeRequest { values })
            .await
            .expect("tokenized")
            .into_inner()
            .tokens
    }

    /// Rotates the `target` key for a test purpose.
    pub async fn rotate(&mut self, target: KeyTarget) -> Result<RotateKeysResponse, tonic::Status> {
        self.client
            .rotate_keys(RotateKeysRequest {
                target: target.into(),
                purpose: "integration test".into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Rewraps up to `max_rows` stored values for a test purpose.
    pub async fn rewrap(&mut self, max_rows: u32) -> Result<RewrapResponse, tonic::Status> {
        self.client
            .rewrap(RewrapRequest { purpose: "integration test".into(), max_rows })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Detokenizes `tokens` for a test purpose.
    pub async fn detokenize(
        &mut self,
        tokens: &[String],
    ) -> Result<DetokenizeResponse, tonic::Status> {
        self.client
            .detokenize(DetokenizeRequest {
                tokens: tokens.to_vec(),
                purpose: "integration test".into(),
                note: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// One row of `vault.pii_tokens`.
#[derive(Debug, Clone, QueryableByName)]
pub struct StoredToken {
    #[diesel(sql_type = Text)]
    pub token: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Integer)]
    pub data_key_version: i32,
    #[diesel(sql_type = Nullable<Binary>)]
    pub nonce: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Binary>)]
    pub ciphertext: Option<Vec<u8>>,
}

/// Every row of `vault.pii_tokens`.
pub async fn stored_tokens(db: &TestDatabase) -> Vec<StoredToken> {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT token, kind, data_key_version, nonce, ciphertext FROM vault.pii_tokens \
         ORDER BY token",
    )
    .load(&mut conn)
    .await
    .expect("reads vault.pii_tokens")
}

/// One row of `vault.audit_log`.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct AuditRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub caller: String,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Text)]
    pub purpose: String,
    #[diesel(sql_type = Integer)]
    pub token_count: i32,
    #[diesel(sql_type = Text)]
    pub outcome: String,
    #[diesel(sql_type = Integer)]
    pub found: i32,
    #[diesel(sql_type = Integer)]
    pub not_found: i32,
    #[diesel(sql_type = Integer)]
    pub forgotten: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub detail: Option<String>,
}

/// Every row of `vault.audit_log`, oldest first.
pub async fn audit_rows(db: &TestDatabase) -> Vec<AuditRow> {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT id, caller, method, purpose, token_count, outcome, found, not_found, forgotten, \
         detail FROM vault.audit_log ORDER BY id",
    )
    .load(&mut conn)
    .await
    .expect("reads vault.audit_log")
}

/// Rows of `vault.keys` per purpose.
pub async fn key_counts(db: &TestDatabase) -> Vec<(String, i64)> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = Text)]
        purpose: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let counts: Vec<Count> = diesel::sql_query(
        "SELECT purpose, count(*) AS n FROM vault.keys GROUP BY purpose ORDER BY purpose",
    )
    .load(&mut conn)
    .await
    .expect("reads vault.keys");
    counts.into_iter().map(|c| (c.purpose, c.n)).collect()
}
