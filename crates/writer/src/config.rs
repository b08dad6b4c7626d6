//! The writer's configuration, read from the environment.

use fetchreward_runtime::authz::Policy;
use fetchreward_runtime::config::{CommonConfig, ConfigErrors, ConfigReader, EnvSource};
use fetchreward_runtime::grpc::GrpcSettings;
use fetchreward_runtime::postgres::PgConfig;
use fetchreward_runtime::tls::TlsFiles;

/// The policy group of WriteLogins.
pub(crate) const WRITE: &str = "write";

/// Everything the writer needs to start.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Logging, the operations server, the shutdown grace period.
    pub common: CommonConfig,
    /// gRPC listen address (`GRPC_ADDR`, default `0.0.0.0:50052`) and reflection
    /// (`GRPC_REFLECTION`, default off).
    pub grpc: GrpcSettings,
    /// The database holding `user_logins`.
    pub database: PgConfig,
    /// Mutual TLS (`TLS_CA_FILE`, `TLS_CERT_FILE`, `TLS_KEY_FILE`); plaintext when absent.
    pub tls: Option<TlsFiles>,
    /// Who may call WriteLogins (`AUTHZ_WRITE`); nobody when unset.
    pub policy: Policy,
}

impl WriterConfig {
    /// Reads the configuration; on failure, every problem found.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigErrors> {
        let mut reader = ConfigReader::new(env);
        let common = CommonConfig::from_env(&mut reader, crate::SERVICE, "0.0.0.0:9102");
        let grpc = GrpcSettings::from_env(&mut reader, "0.0.0.0:50052");
        let database = PgConfig::from_env(&mut reader);
        let tls = TlsFiles::from_env(&mut reader);
        let trust_domain = tls.as_ref().map(|tls| tls.trust_domain.as_str());
        let policy = Policy::from_env(&mut reader, &[(WRITE, "AUTHZ_WRITE")], trust_domain);
        reader.finish()?;
        Ok(WriterConfig {
            common,
            grpc,
            database: database.expect("a missing DATABASE_URL is reported by finish"),
            tls,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_fill_everything_but_the_database() {
        let env: HashMap<&str, &str> =
            HashMap::from([("DATABASE_URL", "postgres://db/x?sslmode=require")]);
        let config = WriterConfig::from_env(&env).expect("valid");
        assert_eq!(config.grpc.addr.port(), 50052);
        assert_eq!(config.common.http_addr.port(), 9102);
        assert_eq!(config.database.pool_size, 10);
    }

    #[test]
    fn every_problem_is_listed() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("GRPC_ADDR", "nowhere"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_POOL_SIZE", "0"),
        ]);
        let errors = WriterConfig::from_env(&env).expect_err("invalid");
        let text = errors.to_string();
        for expected in [
            "DATABASE_URL or DATABASE_URL_FILE is required",
            "GRPC_ADDR",
            "LOG_FORMAT",
            "DATABASE_POOL_SIZE",
        ] {
            assert!(text.contains(expected), "{expected} missing from: {text}");
        }
    }
}
