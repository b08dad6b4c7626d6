//! The vault: the only service that holds personal values after a message is parsed.
//!
//! It replaces each ip and device id with a deterministic token (a keyed HMAC), keeps the
//! original encrypted under a KMS-wrapped data key, and gives it back only to authorized
//! callers, with an audit row per call. See `docs/vault.md` for the design.
//!
//! - [`Application`]: builds the service from a [`VaultConfig`] (migrations, keys, listeners)
//!   and serves gRPC and the operations server until shut down.
//! - [`vault::Vault`]: the operations, free of gRPC; [`grpc`] only translates.
//! - Key rotation: [`keys::KeyTiming`] and [`vault::Vault::refresh_keys_every`], a background
//!   task of [`Application::run_until_stopped`].
//! - [`keys`], [`crypto`], [`kms`]: the key hierarchy and the cryptography.
//! - [`store`]: the `vault` schema in Postgres.

pub mod audit;
pub mod authz;
pub mod config;
pub mod crypto;
pub mod erasure;
pub mod error;
pub mod grpc;
pub mod keys;
pub mod kms;
pub mod known_tokens;
pub mod metrics;
pub mod privacy;
pub mod schema;
pub mod spool;
pub mod store;
pub mod vault;
pub mod version;

use std::net::SocketAddr;
use std::sync::Arc;

use fetchreward_runtime::calls::CallPolicy;
use fetchreward_runtime::config::{CommonConfig, ConfigErrors, EnvSource};
use fetchreward_runtime::grpc::{Api, GrpcServer, MAX_MESSAGE_BYTES};
use fetchreward_runtime::postgres;
use fetchreward_runtime::service::Service;
pub use fetchreward_runtime::service::StartError;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::authz::Method;
pub use crate::config::{SERVICE, VaultConfig};
pub use crate::error::VaultError;
use crate::grpc::{SERVICE_NAME, VaultGrpc};
use crate::keys::KeyProvider;
use crate::kms::KmsKeyProvider;
use crate::spool::AuditSpool;
use crate::store::VaultStore;
use crate::vault::{VOLUME_AUDIT_INTERVAL, Vault};

/// How often the read replica's lag is measured.
const REPLICA_LAG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The vault, started: schema migrated, keys unwrapped, listeners bound.
pub struct Application {
    server: GrpcServer,
    vault: Arc<Vault>,
    config: VaultConfig,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("grpc_addr", &self.grpc_addr())
            .field("http_addr", &self.http_addr())
            .field("vault", &self.vault)
            .finish()
    }
}

impl Application {
    /// Starts the vault with its keys wrapped by `provider` (KMS in production; tests pass a
    /// KMS client on the emulator).
    ///
    /// In order: database pool, migrations (serialised across replicas), keys (created on the
    /// first start), TLS files, listeners. Any failure stops the start with a message naming
    /// what failed.
    pub async fn build(
        config: VaultConfig,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<Self, StartError> {
        fetchreward_telemetry::metrics::record_build_info(SERVICE);
        let pool = postgres::pool(&config.database)?;
        let mut store = VaultStore::new(pool);
        if let Some(replica) = &config.read_database {
            store = store.with_replica(postgres::pool(replica)?);
        }
        match &config.migration_database {
            Some(owner) => {
                fetchreward_runtime::postgres::migrate_with(
                    owner,
                    store::MIGRATIONS,
                    store::SCHEMA,
                    store::MIGRATION_LOCK_KEY,
                )
                .await?;
            }
            None => {
                store.migrate().await?;
            }
        }
        if store.may_rewrite_audit().await? {
            tracing::warn!(
                "the vault's database role may rewrite the audit trail (it is a superuser or \
                 owns the schema): run it as a member of fetchreward_vault_runtime with \
                 DATABASE_MIGRATION_URL set to the owner (docs/security.md); for local \
                 development only"
            );
        }
        let vault = Vault::open(
            store,
            provider,
            config.known_tokens,
            config.keys,
            config.erasure,
            config.tokenize_limit,
        )
        .await
        .map_err(StartError::own)?
        .with_privacy(config.privacy.clone());
        let vault = match &config.audit_spool {
            Some(path) => vault.with_audit_spool(AuditSpool::new(path.clone())),
            None => vault,
        };
        let vault = Arc::new(vault);
        let server = GrpcServer::bind(
            &config.grpc,
            &config.common,
            config.tls.as_ref(),
            postgres::readiness(vault.store().pool().clone()),
        )
        .await?;
        let app = Application { server, vault, config };
        tracing::info!(grpc_addr = %app.grpc_addr(), http_addr = %app.http_addr(), "vault started");
        Ok(app)
    }

    /// The bound gRPC address (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    /// The bound operations server address.
    pub fn http_addr(&self) -> SocketAddr {
        self.server.http_addr()
    }

    /// The vault behind the gRPC service.
    pub fn vault(&self) -> Arc<Vault> {
        self.vault.clone()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight calls finish for at most the
    /// grace period. Returns early with an error if the gRPC server fails. Meanwhile the key
    /// ring is reloaded every `VAULT_KEY_REFRESH_SECS`, to pick up rotations, and the data key
    /// generations are kept ([`Vault::keep_generations_every`]) at the same interval.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let Application { server, vault, config } = self;
        let refresh = tokio::spawn({
            let vault = vault.clone();
            let shutdown = shutdown.clone();
            async move {
                let interval = vault.key_timing().refresh_interval;
                vault.refresh_keys_every(interval, shutdown).await;
            }
        });
        let pool = vault.store().pool().clone();
        let pool_metrics = tokio::spawn(fetchreward_runtime::postgres::publish_pool_state_every(
            move || pool.state(),
            "vault",
            config.database.pool_size,
            fetchreward_runtime::postgres::POOL_STATE_INTERVAL,
            shutdown.clone(),
        ));
        let keeper = tokio::spawn({
            let vault = vault.clone();
            let shutdown = shutdown.clone();
            async move {
                let interval = vault.key_timing().refresh_interval;
                vault.keep_generations_every(interval, shutdown).await;
            }
        });
        let spool = tokio::spawn({
            let vault = vault.clone();
            let shutdown = shutdown.clone();
            async move { vault.replay_audit_spool_every(spool::REPLAY_INTERVAL, shutdown).await }
        });
        let replica_lag = tokio::spawn({
            let store = vault.store().clone();
            let shutdown = shutdown.clone();
            async move { store.publish_replica_lag_every(REPLICA_LAG_INTERVAL, shutdown).await }
        });
        let volume = tokio::spawn({
            let vault = vault.clone();
            let shutdown = shutdown.clone();
            async move { vault.audit_tokenize_volume_every(VOLUME_AUDIT_INTERVAL, shutdown).await }
        });
        let api = Api {
            name: SERVICE_NAME,
            routes: Routes::new(
                VaultGrpc::new(vault, config.policy.clone()).into_server(MAX_MESSAGE_BYTES),
            ),
            descriptor_set: fetchreward_proto::vault::FILE_DESCRIPTOR_SET,
            calls: CallPolicy::new("vault", SERVICE_NAME, &Method::RULES, config.policy),
        };
        tracing::info!("vault serving");
        let served = server.serve(api, shutdown).await;
        let tasks = [
            (refresh, "key refresh"),
            (keeper, "generation keeper"),
            (volume, "tokenize volume"),
            (pool_metrics, "pool metrics"),
            (spool, "audit spool"),
            (replica_lag, "replica lag"),
        ];
        for (task, name) in tasks {
            if let Err(err) = task.await {
                tracing::error!(error = %err, task = name, "a background task failed");
            }
        }
        served
    }
}

impl Service for Application {
    const NAME: &'static str = SERVICE;
    type Config = VaultConfig;

    fn read_config(env: &dyn EnvSource) -> Result<VaultConfig, ConfigErrors> {
        VaultConfig::from_env(env)
    }

    fn common(config: &VaultConfig) -> &CommonConfig {
        &config.common
    }

    /// KMS reached through the standard AWS settings and credentials.
    async fn start(config: VaultConfig) -> Result<Self, StartError> {
        let provider = KmsKeyProvider::from_environment(config.kms.clone()).await;
        Application::build(config, Arc::new(provider)).await
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        Application::run_until_stopped(self, shutdown).await
    }
}
