//! The vault's configuration, read from an [`EnvSource`] (the process environment in
//! production, a map in tests). Every problem is collected and reported at once.
//!
//! Variables: see `docs/configuration.md`; the vault-specific ones are described on
//! [`VaultConfig`]'s fields.

use fetchreward_runtime::authz::Policy;
use fetchreward_runtime::config::{CommonConfig, ConfigErrors, ConfigReader, EnvSource};
use fetchreward_runtime::grpc::GrpcSettings;
use fetchreward_runtime::postgres::PgConfig;
use fetchreward_runtime::tls::TlsFiles;

use crate::authz::Method;

use crate::erasure::ErasureSettings;
use crate::keys::KeyTiming;
use crate::kms::{GenerationKeys, KmsSettings};
use crate::known_tokens::KnownTokensConfig;
use crate::privacy::PrivacySettings;
use crate::vault::TokenizeLimit;

/// The service name, as logged and traced.
pub const SERVICE: &str = "fetchreward-vault";

/// Everything the vault needs to start.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Logging, the operations server (`HTTP_ADDR`, default `0.0.0.0:9101`), the shutdown
    /// grace period.
    pub common: CommonConfig,
    /// gRPC listen address (`GRPC_ADDR`, default `0.0.0.0:50051`) and reflection
    /// (`GRPC_REFLECTION`, default off).
    pub grpc: GrpcSettings,
    /// The database holding the `vault` schema (`DATABASE_URL`, `DATABASE_CA_FILE`,
    /// `DATABASE_POOL_SIZE`).
    pub database: PgConfig,
    /// The role that owns the `vault` schema and runs its migrations
    /// (`DATABASE_MIGRATION_URL`, with `DATABASE_CA_FILE`), when it is not the one above: then
    /// the vault runs as a member of `fetchreward_vault_runtime`, which may only append to the
    /// audit trail. Without it, `DATABASE_URL` migrates too (local development).
    pub migration_database: Option<PgConfig>,
    /// A streaming replica of the database (`DATABASE_READ_URL`, with `DATABASE_CA_FILE` and
    /// the pool size of `DATABASE_URL`): Detokenize's lookups and the audit list read it,
    /// falling back to the primary for what it lacks.
    pub read_database: Option<PgConfig>,
    /// Where Detokenize's audit rows wait while the primary is unreachable
    /// (`VAULT_AUDIT_SPOOL_FILE`; needs `DATABASE_READ_URL`): see [`crate::spool`].
    pub audit_spool: Option<std::path::PathBuf>,
    /// The KMS key and endpoint (`KMS_KEY_ID`, `AWS_ENDPOINT_URL_KMS`), the deployment id
    /// (`VAULT_DEPLOYMENT_ID`, default `local`), and a KMS key per data key generation
    /// (`VAULT_GENERATION_KMS_KEYS`, `VAULT_GENERATION_KEY_POLICY_FILE`,
    /// `VAULT_KMS_DELETION_WINDOW_DAYS`, default 7).
    pub kms: KmsSettings,
    /// When forgotten values become unrecoverable, and whether they come back
    /// (`VAULT_GENERATION_SECS`, `VAULT_BACKUP_RETENTION_DAYS`, `VAULT_FORGET_MODE`).
    pub erasure: ErasureSettings,
    /// Mutual TLS (`TLS_CA_FILE`, `TLS_CERT_FILE`, `TLS_KEY_FILE`); plaintext when absent.
    pub tls: Option<TlsFiles>,
    /// Who may call what (`AUTHZ_TOKENIZE`, `AUTHZ_DETOKENIZE`, `AUTHZ_REVEAL_MASKED`,
    /// `AUTHZ_LOOKUP`, `AUTHZ_ADMIN`, `AUTHZ_AUDIT`, and the people `VAULT_GRANTS` gives roles):
    /// nobody when unset; `anonymous` may be listed only without TLS.
    pub policy: Policy,
    /// Roles, grants, purpose codes, masks, the daily reveal limit and the Lookup rate
    /// (`VAULT_ROLES`, `VAULT_GRANTS`, `VAULT_PURPOSES`, `VAULT_MASK_IP`,
    /// `VAULT_MASK_DEVICE_ID`, `VAULT_DAILY_REVEAL_LIMIT`, `VAULT_LOOKUP_RATE`).
    pub privacy: PrivacySettings,
    /// The known-tokens cache (`VAULT_TOKEN_CACHE_CAPACITY`, default 250000 tokens, 0 turns it
    /// off; `VAULT_TOKEN_CACHE_TTL_SECS`, default 600).
    pub known_tokens: KnownTokensConfig,
    /// Key rotation timing (`VAULT_ROTATION_DELAY_SECS`, default 30, 0 switches at once;
    /// `VAULT_KEY_REFRESH_SECS`, default 10, at least 1 and shorter than the delay unless the
    /// delay is 0).
    pub keys: KeyTiming,
    /// The Tokenize rate limit of each caller on each replica (`VAULT_TOKENIZE_RATE` values a
    /// second, default 50000; `VAULT_TOKENIZE_BURST`, default 100000, at least 10000).
    pub tokenize_limit: TokenizeLimit,
}

impl VaultConfig {
    /// Reads the configuration, or every problem found.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigErrors> {
        let mut reader = ConfigReader::new(env);
        let common = CommonConfig::from_env(&mut reader, SERVICE, "0.0.0.0:9101");
        let grpc = GrpcSettings::from_env(&mut reader, "0.0.0.0:50051");
        let database = PgConfig::from_env(&mut reader);
        let migration_database = database.as_ref().and_then(|database| {
            database.sibling_from_env(&mut reader, "DATABASE_MIGRATION_URL", 1)
        });
        let read_database = database.as_ref().and_then(|database| {
            database.sibling_from_env(&mut reader, "DATABASE_READ_URL", database.pool_size)
        });
        let audit_spool = reader.raw("VAULT_AUDIT_SPOOL_FILE").map(std::path::PathBuf::from);
        if let Some(path) = &audit_spool {
            if read_database.is_none() {
                reader.problem(
                    "VAULT_AUDIT_SPOOL_FILE needs DATABASE_READ_URL: only Detokenize from a read \
                     replica answers while the primary is down",
                );
            }
            let parent = path.parent().filter(|dir| !dir.as_os_str().is_empty());
            if parent.is_some_and(|dir| !dir.is_dir()) {
                reader.problem(format!(
                    "VAULT_AUDIT_SPOOL_FILE: the directory of {} does not exist",
                    path.display()
                ));
            }
        }
        let key_id: Option<String> =
            reader.required("KMS_KEY_ID", "a KMS key id, ARN or alias such as alias/fetchreward");
        let endpoint = reader.raw("AWS_ENDPOINT_URL_KMS");
        if reader.raw("VAULT_ALLOW_ANONYMOUS_DETOKENIZE").is_some() {
            reader.problem(
                "VAULT_ALLOW_ANONYMOUS_DETOKENIZE is no longer read: list `anonymous` in \
                 AUTHZ_DETOKENIZE / AUTHZ_ADMIN instead (plaintext local runs only)",
            );
        }
        let tls = TlsFiles::from_env(&mut reader);
        let trust_domain = tls.as_ref().map(|tls| tls.trust_domain.as_str());
        let policy = Policy::from_env(&mut reader, &Method::POLICY_GROUPS, trust_domain);
        let privacy = PrivacySettings::from_env(&mut reader, trust_domain);
        let policy = privacy.extend(policy);
        let defaults = KnownTokensConfig::default();
        let known_tokens = KnownTokensConfig {
            capacity: reader.or_default(
                "VAULT_TOKEN_CACHE_CAPACITY",
                defaults.capacity,
                "a number of tokens (0 turns the cache off)",
            ),
            ttl: reader.seconds("VAULT_TOKEN_CACHE_TTL_SECS", defaults.ttl.as_secs()),
        };
        let keys = key_timing(&mut reader);
        let tokenize_limit = TokenizeLimit::from_env(&mut reader);
        let deployment = reader
            .raw("VAULT_DEPLOYMENT_ID")
            .unwrap_or_else(|| crate::kms::DEFAULT_DEPLOYMENT.to_owned());
        if !deployment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            || deployment.len() > 128
        {
            reader.problem(
                "VAULT_DEPLOYMENT_ID: at most 128 letters, digits, `-`, `_`, `.` and `/`, \
                 e.g. fetchreward-prod",
            );
        }
        let generation_keys = generation_keys(&mut reader);
        let erasure = ErasureSettings::from_env(&mut reader, generation_keys.as_ref());
        reader.finish()?;
        let database = database.expect("finish() reports a missing DATABASE_URL");
        Ok(VaultConfig {
            common,
            grpc,
            migration_database,
            database,
            read_database,
            audit_spool,
            kms: KmsSettings {
                key_id: key_id.expect("finish() reports a missing KMS_KEY_ID"),
                endpoint,
                deployment,
                generation_keys,
            },
            erasure,
            tls,
            policy,
            privacy,
            known_tokens,
            keys,
            tokenize_limit,
        })
    }
}

/// A KMS key per data key generation: its key policy, and the days from a retirement to the
/// deletion.
fn generation_keys(reader: &mut ConfigReader<'_>) -> Option<GenerationKeys> {
    let days: i32 = reader.or_default("VAULT_KMS_DELETION_WINDOW_DAYS", 7, "a number of days");
    if !(7..=30).contains(&days) {
        reader.problem("VAULT_KMS_DELETION_WINDOW_DAYS must be between 7 and 30 (KMS's limits)");
    }
    if !reader.flag("VAULT_GENERATION_KMS_KEYS") {
        return None;
    }
    let Some(path) = reader.file("VAULT_GENERATION_KEY_POLICY_FILE") else {
        if reader.raw("VAULT_GENERATION_KEY_POLICY_FILE").is_none() {
            reader.problem(
                "VAULT_GENERATION_KMS_KEYS needs VAULT_GENERATION_KEY_POLICY_FILE (the key policy \
                 of each generation's KMS key: Terraform output generation_key_policy_json)",
            );
        }
        return None;
    };
    match std::fs::read_to_string(&path) {
        Ok(policy) if serde_json::from_str::<serde_json::Value>(&policy).is_ok() => {
            Some(GenerationKeys { policy, deletion_window_days: days })
        }
        Ok(_) => {
            reader.problem(format!(
                "VAULT_GENERATION_KEY_POLICY_FILE: {} is not JSON",
                path.display()
            ));
            None
        }
        Err(err) => {
            reader.problem(format!("VAULT_GENERATION_KEY_POLICY_FILE: {}: {err}", path.display()));
            None
        }
    }
}

/// The rotation delay and refresh interval, and the rule between them: a replica that reloads
/// the keys less often than a rotation's delay could miss the new version when it takes over,
/// and go on issuing tokens of the old one while the others issue the new one.
fn key_timing(reader: &mut ConfigReader<'_>) -> KeyTiming {
    let defaults = KeyTiming::default();
    let rotation_delay =
        reader.seconds("VAULT_ROTATION_DELAY_SECS", defaults.rotation_delay.as_secs());
    let refresh_interval =
        reader.seconds("VAULT_KEY_REFRESH_SECS", defaults.refresh_interval.as_secs());
    if refresh_interval.is_zero() {
        reader.problem("VAULT_KEY_REFRESH_SECS must be at least 1");
    } else if !rotation_delay.is_zero() && refresh_interval >= rotation_delay {
        reader.problem(format!(
            "VAULT_KEY_REFRESH_SECS ({}) must be shorter than VAULT_ROTATION_DELAY_SECS ({}), \
             or a replica may not hold a new key version when it takes over",
            refresh_interval.as_secs(),
            rotation_delay.as_secs()
        ));
    }
    KeyTiming { rotation_delay, refresh_interval }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use fetchreward_telemetry::LogFormat;

    use super::*;

    #[test]
    fn defaults_fill_everything_but_the_database_and_the_key() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("DATABASE_URL", "postgres://vault:secret@db/fetchreward?sslmode=require"),
            ("KMS_KEY_ID", "alias/fetchreward"),
        ]);
        let config = VaultConfig::from_env(&env).expect("valid");
        assert_eq!(config.grpc.addr, "0.0.0.0:50051".parse().expect("addr"));
        assert_eq!(config.common.http_addr, "0.0.0.0:9101".parse().expect("addr"));
        assert_eq!(config.kms.key_id, "alias/fetchreward");
        assert_eq!(config.kms.endpoint, None);
        assert!(config.tls.is_none());
        assert!(!config.policy.allows("detokenize", "anonymous"), "deny by default");
        assert_eq!(config.known_tokens, KnownTokensConfig::default());
        assert_eq!(config.keys.rotation_delay, Duration::from_secs(30));
        assert_eq!(config.keys.refresh_interval, Duration::from_secs(10));
        assert_eq!(config.common.logging.format, LogFormat::Json);
        assert_eq!(config.common.grace, Duration::from_secs(20));
        assert!(!format!("{config:?}").contains("secret"), "the database password is hidden");
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("GRPC_ADDR", "everywhere"),
            ("VAULT_ALLOW_ANONYMOUS_DETOKENIZE", "true"),
            ("AUTHZ_DETOKENIZE", "CN=reader"),
            ("VAULT_TOKEN_CACHE_CAPACITY", "lots"),
            ("LOG_FORMAT", "xml"),
        ]);
        let errors = VaultConfig::from_env(&env).expect_err("invalid").to_string();
        for variable in [
            "GRPC_ADDR",
            "DATABASE_URL",
            "KMS_KEY_ID",
            "VAULT_ALLOW_ANONYMOUS_DETOKENIZE",
            "AUTHZ_DETOKENIZE",
            "VAULT_TOKEN_CACHE_CAPACITY",
            "LOG_FORMAT",
        ] {
            assert!(errors.contains(variable), "{variable} missing from: {errors}");
        }
    }

    #[test]
    fn development_settings_are_read() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:55432/fetchreward"),
            ("KMS_KEY_ID", "alias/fetchreward"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:54599"),
            ("AUTHZ_DETOKENIZE", "anonymous"),
            ("VAULT_TOKEN_CACHE_CAPACITY", "0"),
            ("LOG_FORMAT", "text"),
        ]);
        let config = VaultConfig::from_env(&env).expect("valid");
        assert_eq!(config.kms.endpoint.as_deref(), Some("http://127.0.0.1:54599"));
        assert!(config.policy.allows("detokenize", "anonymous"));
        assert!(config.policy.admits_anonymous());
        assert_eq!(config.known_tokens.capacity, 0);
        assert_eq!(config.common.logging.format, LogFormat::Text);
    }

    fn timing(delay: &str, refresh: &str) -> Result<KeyTiming, String> {
        let env: HashMap<&str, &str> = HashMap::from([
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:55432/fetchreward"),
            ("KMS_KEY_ID", "alias/fetchreward"),
            ("VAULT_ROTATION_DELAY_SECS", delay),
            ("VAULT_KEY_REFRESH_SECS", refresh),
        ]);
        VaultConfig::from_env(&env).map(|config| config.keys).map_err(|err| err.to_string())
    }

    #[test]
    fn the_refresh_interval_must_be_shorter_than_the_rotation_delay() {
        let ok = timing("60", "20").expect("valid");
        assert_eq!(ok.rotation_delay, Duration::from_secs(60));
        assert_eq!(ok.refresh_interval, Duration::from_secs(20));
        for (delay, refresh) in [("30", "30"), ("5", "10")] {
            let err = timing(delay, refresh).expect_err("refused");
            assert!(
                err.contains("VAULT_KEY_REFRESH_SECS") && err.contains("VAULT_ROTATION_DELAY_SECS"),
                "{err}"
            );
        }
        assert!(timing("30", "0").expect_err("refused").contains("at least 1"));
        assert!(timing("soon", "10").expect_err("refused").contains("VAULT_ROTATION_DELAY_SECS"));
    }

    #[test]
    fn a_zero_delay_switches_at_once_with_any_refresh_interval() {
        let keys = timing("0", "10").expect("valid");
        assert_eq!(keys.rotation_delay, Duration::ZERO);
        assert_eq!(keys.refresh_interval, Duration::from_secs(10));
    }
}
