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
pub mod error;
pub mod grpc;
pub mod keys;
pub mod kms;
pub mod known_tokens;
pub mod metrics;
pub mod schema;
pub mod store;
pub mod vault;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fetchreward_runtime::grpc::MAX_MESSAGE_BYTES;
use fetchreward_runtime::postgres;
use fetchreward_runtime::tls::TlsFiles;
use fetchreward_telemetry::OpsServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::ServerTlsConfig;

use crate::authz::Authorizer;
pub use crate::config::VaultConfig;
pub use crate::error::{ServeError, StartError, VaultError};
use crate::grpc::{SERVICE_NAME, VaultGrpc};
use crate::keys::KeyProvider;
use crate::kms::KmsKeyProvider;
use crate::store::VaultStore;
use crate::vault::Vault;

/// The vault, started: schema migrated, keys unwrapped, listeners bound.
pub struct Application {
    grpc_listener: TcpListener,
    ops: OpsServer,
    vault: Arc<Vault>,
    tls: Option<ServerTlsConfig>,
    grace: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("grpc_addr", &self.grpc_listener.local_addr().ok())
            .field("http_addr", &self.ops.local_addr().ok())
            .field("vault", &self.vault)
            .finish()
    }
}

impl Application {
    /// Starts the vault with KMS reached through the standard AWS settings and credentials.
    pub async fn build(config: VaultConfig) -> Result<Self, StartError> {
        let provider = KmsKeyProvider::from_environment(config.kms.clone()).await;
        Self::build_with(config, Arc::new(provider)).await
    }

    /// Starts the vault with a given key provider (tests pass a KMS client on the emulator).
    ///
    /// In order: database pool, migrations (serialised across replicas), keys (created on the
    /// first start), listeners. Any failure stops the start with a message naming what failed.
    pub async fn build_with(
        config: VaultConfig,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<Self, StartError> {
        let authorizer = Arc::new(config.policy.clone());
        Self::build_with_authorizer(config, provider, authorizer).await
    }

    /// Starts the vault with a given key provider and authorization policy (tests of the admin
    /// methods pass a policy that allows them).
    pub async fn build_with_authorizer(
        config: VaultConfig,
        provider: Arc<dyn KeyProvider>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Result<Self, StartError> {
        if config.tls.is_none() {
            tracing::warn!(
                "serving gRPC without TLS: callers are anonymous (local development only)"
            );
        }
        if config.policy.admits_anonymous() {
            tracing::warn!(
                "the policy lets anonymous callers in: anyone who reaches the grpc port may call \
                 what it lists for `anonymous`; for local development only"
            );
        }
        let tls = config.tls.as_ref().map(TlsFiles::server_config).transpose()?;
        let pool = postgres::pool(&config.database).map_err(StartError::Pool)?;
        let store = VaultStore::new(pool);
        store.migrate().await.map_err(StartError::Migrate)?;
        let vault = Arc::new(
            Vault::open(store, provider, authorizer, config.known_tokens, config.keys).await?,
        );

        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .map_err(|source| StartError::Bind { what: "gRPC", addr: config.grpc_addr, source })?;
        let http_addr = config.common.http_addr;
        let ops = OpsServer::bind(http_addr, postgres::readiness(vault.store().pool().clone()))
            .await
            .map_err(|source| StartError::Bind {
                what: "the operations server",
                addr: http_addr,
                source,
            })?;
        let app = Application { grpc_listener, ops, vault, tls, grace: config.common.grace };
        tracing::info!(grpc_addr = %app.grpc_addr(), http_addr = %app.http_addr(), "vault started");
        Ok(app)
    }

    /// The bound gRPC address (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr().expect("a bound listener has an address")
    }

    /// The bound operations server address.
    pub fn http_addr(&self) -> SocketAddr {
        self.ops.local_addr().expect("a bound listener has an address")
    }

    /// The vault behind the gRPC service.
    pub fn vault(&self) -> Arc<Vault> {
        self.vault.clone()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight calls finish for at most the
    /// grace period. Returns early with an error if the gRPC server fails. Meanwhile the key
    /// ring is reloaded every `VAULT_KEY_REFRESH_SECS`, to pick up rotations.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let refresh = tokio::spawn({
            let vault = self.vault.clone();
            let shutdown = shutdown.clone();
            async move {
                let interval = vault.key_timing().refresh_interval;
                vault.refresh_keys_every(interval, shutdown).await;
            }
        });
        let routes = Routes::new(VaultGrpc::new(self.vault).into_server(MAX_MESSAGE_BYTES));
        tracing::info!("vault serving");
        let served = fetchreward_runtime::grpc::serve_with_ops(
            self.grpc_listener,
            SERVICE_NAME,
            routes,
            self.tls,
            self.ops,
            shutdown,
            self.grace,
        )
        .await;
        if let Err(err) = refresh.await {
            tracing::error!(error = %err, "the key refresh task failed");
        }
        served?;
        tracing::info!("vault stopped");
        Ok(())
    }
}
