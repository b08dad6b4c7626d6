//! Postgres: pools, TLS, migrations under an advisory lock, and what a failure means.
//!
//! Two pools share one way of connecting: [`PgPool`] of diesel-async connections (the vault's
//! queries), and [`PgClientPool`] of plain tokio-postgres clients for statements whose failures
//! must be told apart by their SQLSTATE (the writer's batch inserts: a data exception caused by
//! one row is that row's fault, a deadlock or a shutdown is nobody's). diesel reports only a
//! few kinds of database error and drops the SQLSTATE of the rest.
//!
//! `DATABASE_URL` is a `postgres://` URL, read by the `url` crate and then by tokio-postgres's
//! own parser; a key=value connection string is refused. TLS follows libpq's `sslmode`, with
//! two rules added: when a CA file is configured, the server's certificate is always verified,
//! chain and host name; and `prefer` (libpq's default, which falls back to plaintext without a
//! word when the server offers no TLS) is accepted only when every host is this machine.
//!
//! | sslmode | without `DATABASE_CA_FILE` | with it |
//! |---|---|---|
//! | `disable` | plaintext | plaintext |
//! | `prefer` (default) | loopback only: TLS if offered, not checked | loopback only: TLS if offered, verified |
//! | `require` | TLS, certificate not checked | TLS, verified |
//! | `verify-full` | refused at start-up | TLS, verified |
//!
//! RDS enforces TLS (`rds.force_ssl`); production uses `verify-full` with the RDS CA bundle.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bb8_postgres::PostgresConnectionManager;
use diesel::ConnectionError;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, PoolError};
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures::FutureExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::ConfigReader;
use crate::service::error_chain;

/// The pool of diesel-async connections.
pub type PgPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// A connection borrowed from the pool.
pub type PgConn<'a> = bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

/// The pool of tokio-postgres clients, whose errors keep their SQLSTATE.
pub type PgClientPool = bb8::Pool<PostgresConnectionManager<MakeRustlsConnect>>;

/// A client borrowed from [`PgClientPool`].
pub type PgClient<'a> = bb8::PooledConnection<'a, PostgresConnectionManager<MakeRustlsConnect>>;

/// How long to wait for a pooled connection before reporting the database unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Database settings of a service.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The variable the URL was read from, named in errors.
    pub variable: &'static str,
    /// `postgres://user:password@host:port/db?sslmode=...`; holds the password, so it is secret.
    pub url: SecretString,
    /// PEM CA bundle that verifies the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// The `sslmode` for a URL that gives none, and that a URL giving one must agree with
    /// (`DATABASE_SSLMODE`: the Helm chart sets `verify-full`, so that a connection URL kept in
    /// a Secret cannot quietly ask for less).
    pub sslmode: Option<String>,
    /// Connections in the pool.
    pub pool_size: u32,
}

/// How `DATABASE_URL` is written.
const URL_FORM: &str = "postgres://user:password@host:port/database?sslmode=verify-full";

impl PgConfig {
    /// Reads `DATABASE_URL` (or `DATABASE_URL_FILE`, a file holding it), `DATABASE_CA_FILE`,
    /// `DATABASE_SSLMODE` and `DATABASE_POOL_SIZE`.
    pub fn from_env(reader: &mut ConfigReader<'_>) -> Option<Self> {
        let url = reader.secret_or_file("DATABASE_URL", URL_FORM, true);
        let ca_file = reader.file("DATABASE_CA_FILE");
        let sslmode = reader.raw("DATABASE_SSLMODE");
        let pool_size = reader.or_default("DATABASE_POOL_SIZE", 10u32, "a number of connections");
        if pool_size == 0 {
            reader.problem("DATABASE_POOL_SIZE must be at least 1");
        }
        let config = PgConfig { variable: "DATABASE_URL", url: url?, ca_file, sslmode, pool_size };
        config.check(reader);
        Some(config)
    }

    /// A second URL of the same database (`variable`, or `{variable}_FILE`; optional), read
    /// like `DATABASE_URL` and held to the same TLS settings, with a pool of `pool_size`.
    pub fn sibling_from_env(
        &self,
        reader: &mut ConfigReader<'_>,
        variable: &'static str,
        pool_size: u32,
    ) -> Option<Self> {
        let url = reader.secret_or_file(variable, URL_FORM, false)?;
        let config = PgConfig { variable, url, pool_size, ..self.clone() };
        config.check(reader);
        Some(config)
    }

    /// A configuration for a URL without TLS settings (tests, local development).
    pub fn plain(url: impl Into<String>) -> Self {
        PgConfig {
            variable: "DATABASE_URL",
            url: SecretString::from(url.into()),
            ca_file: None,
            sslmode: None,
            pool_size: 4,
        }
    }

    fn check(&self, reader: &mut ConfigReader<'_>) {
        if let Err(problem) = ParsedUrl::parse(self) {
            reader.problem(problem);
        }
    }

    #[cfg(test)]
    fn tls_mode(&self) -> Result<TlsMode, String> {
        Ok(ParsedUrl::parse(self)?.mode)
    }
}

/// libpq's `sslmode` values that are supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// A database URL taken apart: the driver's configuration and the TLS mode asked for.
struct ParsedUrl {
    driver: tokio_postgres::Config,
    mode: TlsMode,
}

impl ParsedUrl {
    /// Parses the URL of `config`; every error names the rule broken and never quotes the URL
    /// (it holds the password).
    fn parse(config: &PgConfig) -> Result<ParsedUrl, String> {
        let variable = config.variable;
        let mut url = url::Url::parse(config.url.expose_secret())
            .map_err(|err| format!("{variable} is not a URL ({err}); write {URL_FORM}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!("{variable} must be a postgres:// URL, like {URL_FORM}"));
        }
        let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let given: Vec<&str> =
            pairs.iter().filter(|(key, _)| key == "sslmode").map(|(_, v)| v.as_str()).collect();
        let requested = match (given.as_slice(), config.sslmode.as_deref()) {
            ([], required) => required.map(str::to_owned),
            ([given], Some(required)) if *given != required => {
                return Err(format!(
                    "{variable} has sslmode={given} but DATABASE_SSLMODE is {required}"
                ));
            }
            ([given], _) => Some((*given).to_owned()),
            _ => return Err(format!("{variable} gives sslmode more than once")),
        };
        let verify_full = requested.as_deref() == Some("verify-full");
        pairs.retain(|(key, _)| key != "sslmode");
        if let Some(mode) = &requested {
            // tokio-postgres knows no verify-full: it is `require` to the driver, and the
            // certificate verifier built from the CA file does the rest.
            let mode = if verify_full { "require" } else { mode.as_str() };
            pairs.push(("sslmode".to_owned(), mode.to_owned()));
        }
        url.query_pairs_mut().clear().extend_pairs(&pairs);
        // The driver's errors name the option at fault, never a value.
        let driver: tokio_postgres::Config = url
            .as_str()
            .parse()
            .map_err(|err: tokio_postgres::Error| format!("{variable}: {}", error_chain(&err)))?;
        let mode = match driver.get_ssl_mode() {
            _ if verify_full => TlsMode::VerifyFull,
            SslMode::Disable => TlsMode::Disable,
            SslMode::Require => TlsMode::Require,
            _ => TlsMode::Prefer,
        };
        if mode == TlsMode::VerifyFull && config.ca_file.is_none() {
            return Err(format!(
                "{variable} has sslmode=verify-full but DATABASE_CA_FILE is not set"
            ));
        }
        if mode == TlsMode::Prefer && !driver.get_hosts().iter().all(is_this_machine) {
            return Err(format!(
                "{variable} {} sslmode=prefer for a host that is not this machine: a server \
                 that offers no TLS would be spoken to in plaintext. Use sslmode=verify-full with \
                 DATABASE_CA_FILE (or require, or disable if plaintext is meant)",
                if requested.is_none() { "gives no sslmode, which means" } else { "asks for" }
            ));
        }
        Ok(ParsedUrl { driver, mode })
    }
}

/// Whether a host is reached without leaving this machine: a Unix socket, `localhost`, or a
/// loopback address.
fn is_this_machine(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// Errors talking to Postgres.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No connection could be had from the pool in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    /// A statement run on a [`PgClientPool`] client failed; the SQLSTATE is kept. Displayed
    /// with the SQLSTATE and the server's one-line message, never its detail (which can quote
    /// the row).
    #[error("database error: {}", statement_error_text(.0))]
    Statement(#[from] tokio_postgres::Error),
    /// Migrations failed.
    #[error("migrations failed: {0}")]
    Migration(String),
    /// The TLS settings cannot be used.
    #[error("database TLS set-up failed: {0}")]
    Tls(String),
}

impl PgError {
    /// Whether retrying later may succeed: the database is down or restarting, the connection
    /// broke, or the statement lost a race (serialization failure, deadlock, lock timeout).
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Unavailable(_) => true,
            PgError::Query(err) => matches!(
                err,
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ClosedConnection
                        | diesel::result::DatabaseErrorKind::UnableToSendCommand
                        | diesel::result::DatabaseErrorKind::SerializationFailure,
                    _
                ) | diesel::result::Error::BrokenTransactionManager
            ),
            // Without a SQLSTATE the server never answered: the connection failed.
            PgError::Statement(err) => err.code().is_none_or(is_transient_sqlstate),
            PgError::Migration(_) | PgError::Tls(_) => false,
        }
    }

    /// The SQLSTATE the server answered with, when known (statements on a [`PgClientPool`]).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::Statement(err) => err.code().map(SqlState::code),
            _ => None,
        }
    }

    /// The kind of failure, a bounded metric label: `connection` when the server never
    /// answered, else the name of the SQLSTATE class (`data_exception`,
    /// `integrity_constraint_violation`, `transaction_rollback`, ...), `other` for the rest.
    pub fn class(&self) -> &'static str {
        let Some(code) = self.sqlstate() else {
            return if self.is_transient() { "connection" } else { "other" };
        };
        match code.get(..2) {
            Some("08") => "connection_exception",
            Some("22") => "data_exception",
            Some("23") => "integrity_constraint_violation",
            Some("25") => "invalid_transaction_state",
            Some("28") => "invalid_authorization",
            Some("40") => "transaction_rollback",
            Some("42") => "syntax_error_or_access_rule_violation",
            Some("53") => "insufficient_resources",
            Some("54") => "program_limit_exceeded",
            Some("57") => "operator_intervention",
            Some("58") => "system_error",
            Some("XX") => "internal_error",
            _ => "other",
        }
    }

    /// Whether the failure was caused by the data the statement carried: a data exception
    /// (SQLSTATE class 22) or an integrity constraint violation (class 23). Such a statement
    /// fails the same way every time; other data would not have failed.
    pub fn is_caused_by_data(&self) -> bool {
        self.sqlstate().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
    }

    /// The constraint named by a constraint violation.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            PgError::Statement(err) => err.as_db_error().and_then(|db| db.constraint()),
            _ => None,
        }
    }

    /// The column named by the error (a not-null violation, say).
    pub fn column(&self) -> Option<&str> {
        match self {
            PgError::Statement(err) => err.as_db_error().and_then(|db| db.column()),
            _ => None,
        }
    }
}

/// SQLSTATEs that say "try again later": connection exceptions (class 08), transaction
/// rollbacks (40: serialization failure, deadlock), insufficient resources (53: too many
/// connections, disk full), operator intervention (57: shutdown, restart, cancelled statement),
/// system errors (58: I/O), and a lock that could not be had (55P03).
fn is_transient_sqlstate(code: &SqlState) -> bool {
    let code = code.code();
    ["08", "40", "53", "57", "58"].iter().any(|class| code.starts_with(class)) || code == "55P03"
}

fn statement_error_text(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => err.to_string(),
    }
}

impl From<bb8::RunError<PoolError>> for PgError {
    fn from(err: bb8::RunError<PoolError>) -> Self {
        PgError::Unavailable(err.to_string())
    }
}

impl From<bb8::RunError<tokio_postgres::Error>> for PgError {
    fn from(err: bb8::RunError<tokio_postgres::Error>) -> Self {
        PgError::Unavailable(err.to_string())
    }
}

/// How a service connects: the driver's configuration, and the TLS connector (used unless
/// the URL says `sslmode=disable`).
struct Connector {
    driver: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl Connector {
    fn new(config: &PgConfig) -> Result<Connector, PgError> {
        let ParsedUrl { driver, mode } = ParsedUrl::parse(config).map_err(PgError::Tls)?;
        let verified = config.ca_file.is_some() && mode != TlsMode::Disable;
        tracing::info!(url = config.variable, sslmode = ?mode, verified, "database TLS settings");
        let tls = MakeRustlsConnect::new(client_tls(config.ca_file.as_ref())?);
        Ok(Connector { driver, tls })
    }

    /// A diesel-async connection on a fresh tokio-postgres connection.
    async fn diesel(
        driver: tokio_postgres::Config,
        tls: MakeRustlsConnect,
    ) -> diesel::ConnectionResult<AsyncPgConnection> {
        let (client, connection) = driver
            .connect(tls)
            .await
            .map_err(|err| ConnectionError::BadConnection(err.to_string()))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// Builds the diesel-async pool. Connections are opened lazily, so this succeeds while the
/// database is down; [`migrate`] or [`Ping::ping`] tell whether it is reachable.
pub fn pool(config: &PgConfig) -> Result<PgPool, PgError> {
    let Connector { driver, tls } = Connector::new(config)?;
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.custom_setup =
        Box::new(move |_: &str| Connector::diesel(driver.clone(), tls.clone()).boxed());
    // The set-up above connects with the parsed configuration; the manager needs no URL.
    let manager = AsyncDieselConnectionManager::new_with_config("", manager_config);
    Ok(bb8::Pool::builder()
        .max_size(config.pool_size)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .test_on_check_out(true)
        .build_unchecked(manager))
}

/// Builds the tokio-postgres pool, lazily connected like [`pool`].
pub fn client_pool(config: &PgConfig) -> Result<PgClientPool, PgError> {
    let Connector { driver, tls } = Connector::new(config)?;
    Ok(bb8::Pool::builder()
        .max_size(config.pool_size)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .test_on_check_out(true)
        .build_unchecked(PostgresConnectionManager::new(driver, tls)))
}

/// Borrows a client, mapping a timeout to [`PgError::Unavailable`].
pub async fn client(pool: &PgClientPool) -> Result<PgClient<'_>, PgError> {
    Ok(pool.get().await?)
}

/// Borrows a connection, mapping a timeout to [`PgError::Unavailable`].
pub async fn conn(pool: &PgPool) -> Result<PgConn<'_>, PgError> {
    Ok(pool.get().await?)
}

/// A pool whose database can be asked whether it answers.
pub trait Ping: Clone + Send + Sync + 'static {
    /// Runs a trivial query.
    fn ping(&self) -> impl Future<Output = Result<(), PgError>> + Send;
}

impl Ping for PgPool {
    async fn ping(&self) -> Result<(), PgError> {
        let mut conn = conn(self).await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }
}

impl Ping for PgClientPool {
    async fn ping(&self) -> Result<(), PgError> {
        client(self).await?.simple_query("SELECT 1").await?;
        Ok(())
    }
}

/// How long `/readyz` waits for the database to answer.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/readyz` check of a service whose work needs the database: ready when it answers a
/// query within two seconds.
pub fn readiness(pool: impl Ping) -> fetchreward_telemetry::ReadinessCheck {
    use fetchreward_telemetry::Readiness;
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            match tokio::time::timeout(READINESS_TIMEOUT, pool.ping()).await {
                Ok(Ok(())) => Readiness::Ready,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "readiness: the database does not answer");
                    Readiness::NotReady("the database does not answer")
                }
                Err(_) => Readiness::NotReady("the database does not answer within 2 s"),
            }
        })
    })
}

/// How often [`publish_pool_state_every`] publishes the pool's connections.
pub const POOL_STATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes `fetchreward_db_pool_connections{service, state="in_use"|"idle"}` (from `state`,
/// a pool's `state()`) and the pool's size every `interval` until `shutdown`: a pool always in use is the first sign of a database
/// that cannot keep up.
pub async fn publish_pool_state_every(
    state: impl Fn() -> bb8::State + Send,
    service: &'static str,
    size: u32,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let state = state();
        let idle = f64::from(state.idle_connections);
        let in_use = f64::from(state.connections) - idle;
        for (label, value) in [("in_use", in_use), ("idle", idle)] {
            metrics::gauge!("fetchreward_db_pool_connections", "service" => service, "state" => label)
                .set(value);
        }
        metrics::gauge!("fetchreward_db_pool_size", "service" => service).set(f64::from(size));
    }
}

/// Runs the pending `migrations` in `schema` (created if missing; diesel's bookkeeping table
/// lives there too, so services sharing a database keep separate migration histories).
///
/// Replicas starting together are serialised by a session-level advisory lock on `lock_key`:
/// the first runs the migrations, the others wait and then find nothing pending. The lock is
/// released with the dedicated connection, even if a migration fails.
pub async fn migrate(
    pool: &PgPool,
    migrations: EmbeddedMigrations,
    schema: &str,
    lock_key: i64,
) -> Result<Vec<String>, PgError> {
    let conn =
        pool.dedicated_connection().await.map_err(|err| PgError::Unavailable(err.to_string()))?;
    migrate_on(conn, migrations, schema, lock_key).await
}

/// [`migrate`] for a service without a diesel pool, on a connection of its own.
pub async fn migrate_with(
    config: &PgConfig,
    migrations: EmbeddedMigrations,
    schema: &str,
    lock_key: i64,
) -> Result<Vec<String>, PgError> {
    let Connector { driver, tls } = Connector::new(config)?;
    let conn = tokio::time::timeout(CHECKOUT_TIMEOUT, Connector::diesel(driver, tls))
        .await
        .map_err(|_| PgError::Unavailable("no connection within 5 s".to_owned()))?
        .map_err(|err| PgError::Unavailable(err.to_string()))?;
    migrate_on(conn, migrations, schema, lock_key).await
}

async fn migrate_on(
    mut conn: AsyncPgConnection,
    migrations: EmbeddedMigrations,
    schema: &str,
    lock_key: i64,
) -> Result<Vec<String>, PgError> {
    debug_assert!(schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(lock_key)
        .execute(&mut conn)
        .await?;
    diesel::sql_query(format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut conn).await?;
    diesel::sql_query(format!("SET search_path TO {schema}")).execute(&mut conn).await?;
    let applied = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(migrations)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|err| PgError::Migration(err.to_string()));
        drop(harness.into_inner());
        applied
    })
    .await
    .map_err(|err| PgError::Migration(err.to_string()))??;
    if !applied.is_empty() {
        tracing::info!(schema, versions = ?applied, "migrations applied");
    }
    Ok(applied)
}

/// The rustls client configuration for Postgres.
fn client_tls(ca_file: Option<&PathBuf>) -> Result<ClientConfig, PgError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| PgError::Tls(err.to_string()))?;
    let config = match ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let pem = std::fs::read(path)
                .map_err(|err| PgError::Tls(format!("cannot read {}: {err}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|err| PgError::Tls(format!("{}: {err}", path.display())))?;
                roots.add(cert).map_err(|err| PgError::Tls(err.to_string()))?;
            }
            if roots.is_empty() {
                return Err(PgError::Tls(format!("{} holds no certificate", path.display())));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// libpq's `sslmode=require` without a root certificate: the session is encrypted and the
/// handshake signatures are checked, but the certificate is not, so it protects against
/// eavesdropping and not against an active impostor. Used only when no CA file is configured.
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> Result<TlsMode, String> {
        PgConfig { ca_file: Some(PathBuf::from("/ca.pem")), ..PgConfig::plain(url) }.tls_mode()
    }

    #[test]
    fn sslmode_is_the_query_pair_of_that_name() {
        assert_eq!(mode("postgres://h/db?sslmode=disable"), Ok(TlsMode::Disable));
        assert_eq!(mode("postgres://h/db?sslmode=require"), Ok(TlsMode::Require));
        assert_eq!(
            mode(
                "postgresql://u:p@h:5432/db?application_name=x&sslmode=verify-full&connect_timeout=5"
            ),
            Ok(TlsMode::VerifyFull)
        );
        // Found by its key, not by a substring elsewhere in the URL.
        assert_eq!(mode("postgres://u:sslmode=disable@h/db?sslmode=require"), Ok(TlsMode::Require));
        assert_eq!(
            mode("postgres://h/db?application_name=x_sslmode=disable&sslmode=verify-full"),
            Ok(TlsMode::VerifyFull)
        );
    }

    #[test]
    fn unsupported_repeated_or_unparsable_settings_are_refused() {
        let unsupported = mode("postgres://h/db?sslmode=verify-ca").unwrap_err();
        assert!(unsupported.contains("`sslmode`"), "{unsupported}");
        let twice = mode("postgres://h/db?sslmode=disable&sslmode=require").unwrap_err();
        assert!(twice.contains("more than once"), "{twice}");
        let key_value = mode("host=h sslmode=require user=u password=hunter2").unwrap_err();
        assert!(key_value.contains("not a URL"), "{key_value}");
        assert!(!key_value.contains("hunter2"));
        let scheme = mode("mysql://h/db").unwrap_err();
        assert!(scheme.contains("postgres://"), "{scheme}");
    }

    #[test]
    fn prefer_is_accepted_only_when_every_host_is_this_machine() {
        for local in [
            "postgres://127.0.0.1:5432/db",
            "postgres://localhost/db?sslmode=prefer",
            "postgres://[::1]:5432/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
        ] {
            assert_eq!(mode(local), Ok(TlsMode::Prefer), "{local}");
        }
        let absent = mode("postgres://u:hunter2@db.internal:5432/db").unwrap_err();
        assert!(absent.contains("gives no sslmode"), "{absent}");
        assert!(!absent.contains("hunter2") && !absent.contains("db.internal"), "{absent}");
        let asked = mode("postgres://db.internal/db?sslmode=prefer").unwrap_err();
        assert!(asked.contains("asks for sslmode=prefer"), "{asked}");
        assert!(mode("postgres://127.0.0.1,db.internal/db").is_err(), "every host counts");
        // An explicit choice of plaintext is honoured (docker-compose's network, say).
        assert_eq!(mode("postgres://postgres:5432/db?sslmode=disable"), Ok(TlsMode::Disable));
    }

    #[test]
    fn database_sslmode_fills_a_url_without_one_and_must_agree_with_one_that_has_it() {
        let with = |url: &str, sslmode: &str| {
            PgConfig {
                ca_file: Some(PathBuf::from("/ca.pem")),
                sslmode: Some(sslmode.to_owned()),
                ..PgConfig::plain(url)
            }
            .tls_mode()
        };
        assert_eq!(with("postgres://db.internal/x", "verify-full"), Ok(TlsMode::VerifyFull));
        assert_eq!(
            with("postgres://db.internal/x?sslmode=verify-full", "verify-full"),
            Ok(TlsMode::VerifyFull)
        );
        let weaker = with("postgres://db.internal/x?sslmode=require", "verify-full").unwrap_err();
        assert!(weaker.contains("sslmode=require but DATABASE_SSLMODE is verify-full"), "{weaker}");
        assert!(with("postgres://db.internal/x", "prefer").is_err(), "still not for a remote host");
    }

    #[test]
    fn verify_full_needs_a_ca_file() {
        let mut config = PgConfig::plain("postgres://h/db?sslmode=verify-full");
        assert!(config.tls_mode().is_err());
        config.ca_file = Some(PathBuf::from("/some/ca.pem"));
        assert_eq!(config.tls_mode(), Ok(TlsMode::VerifyFull));
    }

    #[test]
    fn verify_full_reaches_the_driver_as_require_with_the_other_settings_kept() {
        let config = PgConfig {
            ca_file: Some(PathBuf::from("/ca.pem")),
            ..PgConfig::plain("postgres://u@h:6543/db?sslmode=verify-full&application_name=x")
        };
        let parsed = ParsedUrl::parse(&config).expect("parses");
        assert_eq!(parsed.driver.get_ssl_mode(), SslMode::Require);
        assert_eq!(parsed.driver.get_application_name(), Some("x"));
        assert_eq!(parsed.driver.get_ports(), [6543]);
        assert_eq!(parsed.driver.get_user(), Some("u"));
    }

    #[test]
    fn sqlstates_of_a_passing_condition_are_transient_and_those_of_the_data_are_not() {
        for transient in [
            SqlState::CONNECTION_FAILURE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::DISK_FULL,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::IO_ERROR,
        ] {
            assert!(is_transient_sqlstate(&transient), "{}", transient.code());
        }
        for lasting in [
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            SqlState::STRING_DATA_RIGHT_TRUNCATION,
            SqlState::CHECK_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::UNDEFINED_TABLE,
            SqlState::INSUFFICIENT_PRIVILEGE,
        ] {
            assert!(!is_transient_sqlstate(&lasting), "{}", lasting.code());
        }
    }

    #[tokio::test]
    async fn readiness_names_the_database_and_nothing_it_said() {
        let pool = pool(&PgConfig::plain("postgres://app:hunter2@127.0.0.1:1/x")).expect("pool");
        let fetchreward_telemetry::Readiness::NotReady(reason) = readiness(pool)().await else {
            panic!("nothing listens on port 1");
        };
        assert!(reason.starts_with("the database does not answer"), "{reason}");
    }

    #[test]
    fn the_url_never_shows_in_debug() {
        let config = PgConfig::plain("postgres://app:hunter2@db/x");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
