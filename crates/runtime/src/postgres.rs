//! Postgres: a pool of diesel-async connections, TLS, and migrations under an advisory lock.
//!
//! TLS follows libpq's `sslmode` (given in `DATABASE_URL`), with one rule added: when a CA file
//! is configured, the server's certificate is always verified, chain and host name.
//!
//! | sslmode | without `DATABASE_CA_FILE` | with it |
//! |---|---|---|
//! | `disable` | plaintext | plaintext |
//! | `prefer` (default) | TLS if offered, certificate not checked | TLS if offered, verified |
//! | `require` | TLS, certificate not checked | TLS, verified |
//! | `verify-full` | refused at start-up | TLS, verified |
//!
//! RDS enforces TLS (`rds.force_ssl`); production uses `verify-full` with the RDS CA bundle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

use crate::config::ConfigReader;

/// The connection pool.
pub type PgPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// A connection borrowed from the pool.
pub type PgConn<'a> = bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

/// How long to wait for a pooled connection before reporting the database unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Database settings of a service.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/db?sslmode=...`; holds the password, so it is secret.
    pub url: SecretString,
    /// PEM CA bundle that verifies the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: u32,
}

impl PgConfig {
    /// Reads `DATABASE_URL`, `DATABASE_CA_FILE` and `DATABASE_POOL_SIZE`.
    pub fn from_env(reader: &mut ConfigReader<'_>) -> Option<Self> {
        let url = reader.secret("DATABASE_URL", "postgres://user:password@host:port/database");
        let ca_file = reader.file("DATABASE_CA_FILE");
        let pool_size = reader.or_default("DATABASE_POOL_SIZE", 10u32, "a number of connections");
        if pool_size == 0 {
            reader.problem("DATABASE_POOL_SIZE must be at least 1");
        }
        let config = PgConfig { url: url?, ca_file, pool_size };
        if let Err(problem) = config.tls_mode() {
            reader.problem(problem);
        }
        Some(config)
    }

    /// A configuration for a URL without TLS settings (tests, local development).
    pub fn plain(url: impl Into<String>) -> Self {
        PgConfig { url: SecretString::from(url.into()), ca_file: None, pool_size: 4 }
    }

    fn tls_mode(&self) -> Result<TlsMode, String> {
        let mode = TlsMode::of_url(self.url.expose_secret())?;
        if mode == TlsMode::VerifyFull && self.ca_file.is_none() {
            return Err(
                "DATABASE_URL has sslmode=verify-full but DATABASE_CA_FILE is not set".into()
            );
        }
        Ok(mode)
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

impl TlsMode {
    /// The `sslmode` of a URL or key=value connection string.
    fn of_url(url: &str) -> Result<TlsMode, String> {
        let Some(start) = url.find("sslmode=") else { return Ok(TlsMode::Prefer) };
        let value = url[start + "sslmode=".len()..].split(['&', ' ']).next().unwrap_or_default();
        match value {
            "disable" => Ok(TlsMode::Disable),
            "prefer" => Ok(TlsMode::Prefer),
            "require" => Ok(TlsMode::Require),
            "verify-full" => Ok(TlsMode::VerifyFull),
            _ => Err(
                "DATABASE_URL has an unsupported sslmode (use disable, prefer, require or verify-full)"
                    .into(),
            ),
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
    /// Migrations failed.
    #[error("migrations failed: {0}")]
    Migration(String),
    /// The TLS settings cannot be used.
    #[error("database TLS set-up failed: {0}")]
    Tls(String),
}

impl PgError {
    /// Whether retrying later may succeed (the database is down or the connection broke).
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Unavailable(_) => true,
            PgError::Query(err) => matches!(
                err,
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ClosedConnection
                        | diesel::result::DatabaseErrorKind::SerializationFailure,
                    _
                ) | diesel::result::Error::BrokenTransactionManager
            ),
            PgError::Migration(_) | PgError::Tls(_) => false,
        }
    }
}

impl From<bb8::RunError<PoolError>> for PgError {
    fn from(err: bb8::RunError<PoolError>) -> Self {
        PgError::Unavailable(err.to_string())
    }
}

/// Builds the pool. Connections are opened lazily, so this succeeds while the database is down;
/// [`migrate`] or [`ping`] tell whether it is reachable.
pub fn pool(config: &PgConfig) -> Result<PgPool, PgError> {
    let mode = config.tls_mode().map_err(PgError::Tls)?;
    // tokio-postgres knows no verify-full: it gets `require`, and the verifier does the rest.
    let url = config.url.expose_secret().replace("sslmode=verify-full", "sslmode=require");
    let tls = match mode {
        TlsMode::Disable => None,
        _ => Some(tokio_postgres_rustls::MakeRustlsConnect::new(client_tls(
            config.ca_file.as_ref(),
        )?)),
    };
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.custom_setup = Box::new(move |url: &str| {
        let url = url.to_owned();
        let tls = tls.clone();
        async move {
            match tls {
                None => {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .map_err(|err| ConnectionError::BadConnection(err.to_string()))?;
                    AsyncPgConnection::try_from_client_and_connection(client, connection).await
                }
                Some(tls) => {
                    let (client, connection) = tokio_postgres::connect(&url, tls)
                        .await
                        .map_err(|err| ConnectionError::BadConnection(err.to_string()))?;
                    AsyncPgConnection::try_from_client_and_connection(client, connection).await
                }
            }
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::new_with_config(url, manager_config);
    Ok(bb8::Pool::builder()
        .max_size(config.pool_size)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .test_on_check_out(true)
        .build_unchecked(manager))
}

/// Borrows a connection, mapping a timeout to [`PgError::Unavailable`].
pub async fn conn(pool: &PgPool) -> Result<PgConn<'_>, PgError> {
    Ok(pool.get().await?)
}

/// Checks that the database answers.
pub async fn ping(pool: &PgPool) -> Result<(), PgError> {
    let mut conn = conn(pool).await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// How long `/readyz` waits for the database to answer.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/readyz` check of a service whose work needs the database: ready when it answers a
/// query within two seconds.
pub fn readiness(pool: PgPool) -> fetchreward_telemetry::ReadinessCheck {
    use fetchreward_telemetry::Readiness;
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            match tokio::time::timeout(READINESS_TIMEOUT, ping(&pool)).await {
                Ok(Ok(())) => Readiness::Ready,
                Ok(Err(err)) => Readiness::NotReady(format!("database: {err}")),
                Err(_) => Readiness::NotReady("database: no answer within 2 s".to_owned()),
            }
        })
    })
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
    debug_assert!(schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    let mut conn =
        pool.dedicated_connection().await.map_err(|err| PgError::Unavailable(err.to_string()))?;
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

    #[test]
    fn sslmode_is_read_from_either_form() {
        assert_eq!(TlsMode::of_url("postgres://h/db"), Ok(TlsMode::Prefer));
        assert_eq!(TlsMode::of_url("postgres://h/db?sslmode=disable"), Ok(TlsMode::Disable));
        assert_eq!(
            TlsMode::of_url("postgres://h/db?application_name=x&sslmode=verify-full&a=b"),
            Ok(TlsMode::VerifyFull)
        );
        assert_eq!(TlsMode::of_url("host=h sslmode=require user=u"), Ok(TlsMode::Require));
        assert!(TlsMode::of_url("postgres://h/db?sslmode=verify-ca").is_err());
    }

    #[test]
    fn verify_full_needs_a_ca_file() {
        let mut config = PgConfig::plain("postgres://h/db?sslmode=verify-full");
        assert!(config.tls_mode().is_err());
        config.ca_file = Some(PathBuf::from("/some/ca.pem"));
        assert_eq!(config.tls_mode(), Ok(TlsMode::VerifyFull));
    }

    #[test]
    fn the_url_never_shows_in_debug() {
        let config = PgConfig::plain("postgres://app:hunter2@db/x");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
