//! The writer: the only service that writes `user_logins`.
//!
//! It accepts batches of masked rows over gRPC (`WriteLogins`), refuses, one by one, the rows
//! that break a rule of the model (a masked field that is not a token, say) or that the
//! database refuses for their content, and commits the others of each batch in one
//! transaction with `ON CONFLICT DO NOTHING` on the key `(message_id, create_date)`, so
//! redelivered messages and retried calls never duplicate a row. Its migrations create
//! `user_logins` as Fetch's take-home database does, or extend that table when it is already
//! there, and partition it by month of `create_date`; the writer makes the partitions ahead at
//! start-up and daily. [`shards`] spreads the table across shard servers behind one endpoint.

mod config;
mod error;
mod grpc;
pub mod shards;
mod store;

use std::net::SocketAddr;

use fetchreward_runtime::calls::{CallPolicy, MethodRule};
use fetchreward_runtime::config::{CommonConfig, ConfigErrors, EnvSource};
use fetchreward_runtime::grpc::{Api, GrpcServer};
use fetchreward_runtime::postgres;
use fetchreward_runtime::service::Service;
use tokio_util::sync::CancellationToken;

pub use config::WriterConfig;
pub use error::WriteError;
pub use fetchreward_runtime::service::StartError;
pub use store::{DatabaseRefusal, LoginStore, WriteOutcome};

/// The service name the writer's binary, logs and traces use.
pub const SERVICE: &str = "fetchreward-writer";

/// Key of the advisory lock that serialises migrations of replicas starting together.
const MIGRATION_LOCK_KEY: i64 = 0x6672_7772_6974_6572; // "frwriter"

/// Embedded migrations of `public.user_logins`.
const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::embed_migrations!();

/// Runs the pending migrations of `user_logins` (the writer does at start-up; shard set-up
/// and tests call it for databases no writer starts on). Returns the versions applied.
pub async fn migrate(database: &postgres::PgConfig) -> Result<Vec<String>, postgres::PgError> {
    postgres::migrate_with(database, MIGRATIONS, "public", MIGRATION_LOCK_KEY).await
}

/// A writer whose listeners are bound and whose database is migrated, ready to serve.
pub struct Application {
    server: GrpcServer,
    store: LoginStore,
    config: WriterConfig,
    /// Stops the writer's background tasks (pool gauges, partitions ahead) when it stops.
    background: CancellationToken,
}

impl Application {
    /// Connects to the database, runs the migrations, loads the TLS files and binds both
    /// listeners.
    pub async fn build(config: WriterConfig) -> Result<Self, StartError> {
        fetchreward_telemetry::metrics::record_build_info(SERVICE);
        let pool = postgres::client_pool(&config.database)?;
        migrate(&config.database).await?;
        let store = LoginStore::open(pool.clone()).await?;
        store.ensure_partitions().await?;
        let server = GrpcServer::bind(
            &config.grpc,
            &config.common,
            config.tls.as_ref(),
            postgres::readiness(pool.clone()),
        )
        .await?;
        let background = CancellationToken::new();
        let pool_state = {
            let pool = pool.clone();
            move || pool.state()
        };
        tokio::spawn(postgres::publish_pool_state_every(
            pool_state,
            "writer",
            config.database.pool_size,
            postgres::POOL_STATE_INTERVAL,
            background.clone(),
        ));
        tokio::spawn(ensure_partitions_every(store.clone(), background.clone()));
        Ok(Application { server, store, config, background })
    }

    /// The address of the gRPC listener.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    /// The address of the operations server.
    pub fn http_addr(&self) -> SocketAddr {
        self.server.http_addr()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight batches finish within the
    /// grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let Application { server, store, config, background } = self;
        let _stop_background = background.drop_guard();
        let api = Api {
            name: grpc::SERVICE_NAME,
            routes: tonic::service::Routes::new(grpc::service(store)),
            descriptor_set: fetchreward_proto::writer::FILE_DESCRIPTOR_SET,
            calls: CallPolicy::new(
                "writer",
                grpc::SERVICE_NAME,
                &[MethodRule::guarded("WriteLogins", config::WRITE)],
                config.policy,
            ),
        };
        tracing::info!(grpc_addr = %config.grpc.addr, tls = config.tls.is_some(), "writer serving");
        server.serve(api, shutdown).await
    }
}

/// Makes the partitions ahead every [`store::PARTITION_CHECK_INTERVAL`] until `stop`; a
/// failure is logged and counted, and tried again at the next tick (three months of partitions
/// stand ready meanwhile).
async fn ensure_partitions_every(store: LoginStore, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(store::PARTITION_CHECK_INTERVAL);
    ticks.tick().await; // the first tick is now: start-up has just made them
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(err) = store.ensure_partitions().await {
            metrics::counter!("fetchreward_writer_partition_failures_total").increment(1);
            tracing::warn!(error = %err, "cannot make the monthly partitions of user_logins");
        }
    }
}

impl Service for Application {
    const NAME: &'static str = SERVICE;
    type Config = WriterConfig;

    fn read_config(env: &dyn EnvSource) -> Result<WriterConfig, ConfigErrors> {
        WriterConfig::from_env(env)
    }

    fn common(config: &WriterConfig) -> &CommonConfig {
        &config.common
    }

    async fn start(config: WriterConfig) -> Result<Self, StartError> {
        Application::build(config).await
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        Application::run_until_stopped(self, shutdown).await
    }
}
