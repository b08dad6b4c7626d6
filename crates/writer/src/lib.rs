//! The writer: the only service that writes `user_logins`.
//!
//! It accepts batches of masked rows over gRPC (`WriteLogins`), refuses, one by one, the rows
//! that break a rule of the model (a masked field that is not a token, say) or that the
//! database refuses for their content, and commits the others of each batch in one
//! transaction with `ON CONFLICT (message_id) DO NOTHING`, so redelivered messages and retried
//! calls never duplicate a row. Its migrations create `user_logins` as Fetch's take-home database does, or
//! extend that table when it is already there.

mod config;
mod error;
mod grpc;
mod store;

use std::net::SocketAddr;

use fetchreward_runtime::postgres;
use fetchreward_telemetry::OpsServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::WriterConfig;
pub use error::{StartError, WriteError};
pub use store::{DatabaseRefusal, LoginStore, WriteOutcome};

/// The service name the writer's binary, logs and traces use.
pub const SERVICE: &str = "fetchreward-writer";

/// Key of the advisory lock that serialises migrations of replicas starting together.
const MIGRATION_LOCK_KEY: i64 = 0x6672_7772_6974_6572; // "frwriter"

/// Embedded migrations of `public.user_logins`.
const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::embed_migrations!();

/// A writer whose listeners are bound and whose database is migrated, ready to serve.
pub struct Application {
    grpc_listener: TcpListener,
    ops: OpsServer,
    store: LoginStore,
    config: WriterConfig,
}

impl Application {
    /// Connects to the database, runs the migrations and binds both listeners.
    pub async fn build(config: WriterConfig) -> Result<Self, StartError> {
        let pool = postgres::client_pool(&config.database)?;
        postgres::migrate_with(&config.database, MIGRATIONS, "public", MIGRATION_LOCK_KEY).await?;
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .map_err(|err| StartError::Bind(config.grpc_addr, err))?;
        let ops = OpsServer::bind(config.common.http_addr, postgres::readiness(pool.clone()))
            .await
            .map_err(|err| StartError::Bind(config.common.http_addr, err))?;
        Ok(Application { grpc_listener, ops, store: LoginStore::new(pool), config })
    }

    /// The address of the gRPC listener.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr().expect("a bound listener has an address")
    }

    /// The address of the operations server.
    pub fn http_addr(&self) -> SocketAddr {
        self.ops.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight batches finish within the
    /// grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let Application { grpc_listener, ops, store, config } = self;
        let routes = tonic::service::Routes::new(grpc::service(store, config.policy.clone()));
        let tls = config.tls.as_ref().map(|files| files.server_config()).transpose()?;
        if tls.is_none() {
            tracing::warn!(
                "serving gRPC without TLS: callers are anonymous (local development only)"
            );
        }
        tracing::info!(grpc_addr = %config.grpc_addr, tls = tls.is_some(), "writer serving");
        fetchreward_runtime::grpc::serve_with_ops(
            grpc_listener,
            grpc::SERVICE_NAME,
            routes,
            tls,
            ops,
            shutdown,
            config.common.grace,
        )
        .await?;
        Ok(())
    }
}
