//! The ingestor's configuration, read from the environment.

use std::time::Duration;

use fetchreward_runtime::config::{CommonConfig, ConfigErrors, ConfigReader, EnvSource};
use fetchreward_runtime::tls::TlsFiles;

/// Most messages in one batch: each has at most two personal values, and the vault takes at
/// most 10,000 values per call.
pub const MAX_BATCH_LIMIT: usize = 5_000;

/// Most concurrent batches.
pub const MAX_WORKERS: usize = 64;

/// Everything the ingestor needs to start.
#[derive(Debug, Clone)]
pub struct IngestorConfig {
    /// Logging, the operations server (`HTTP_ADDR`, default `0.0.0.0:9103`), the grace period.
    pub common: CommonConfig,
    /// The source queue (`QUEUE_URL`).
    pub queue_url: String,
    /// Its dead-letter queue (`DLQ_URL`).
    pub dlq_url: String,
    /// The KMS key that seals dead-lettered bodies (`DLQ_KMS_KEY_ID`: id, ARN or alias).
    pub dlq_kms_key_id: String,
    /// The KMS endpoint (`AWS_ENDPOINT_URL_KMS`), when not AWS's own.
    pub kms_endpoint: Option<String>,
    /// The vault's gRPC endpoint (`VAULT_ENDPOINT`).
    pub vault_endpoint: String,
    /// The writer's gRPC endpoint (`WRITER_ENDPOINT`).
    pub writer_endpoint: String,
    /// Concurrent receive loops (`POLLERS`, default 16); also the most `DeleteMessageBatch`
    /// calls one batch's delete keeps in flight.
    pub pollers: usize,
    /// Concurrent batches (`WORKERS`, default 2: fewer, larger batches cost less per message than
    /// four, at the same rate; docs/performance.md).
    pub workers: usize,
    /// Most messages per batch (`MAX_BATCH`, default 500).
    pub max_batch: usize,
    /// Most messages received and waiting for a worker (`PREFETCH`, default `MAX_BATCH` ×
    /// `WORKERS`): the pollers stop receiving while the channel holds this many.
    pub prefetch: usize,
    /// Long-polling wait (`RECEIVE_WAIT_SECS`, default 20, at most 20).
    pub receive_wait: Duration,
    /// Visibility timeout asked for on receive (`VISIBILITY_TIMEOUT_SECS`, default 30).
    pub visibility: Duration,
    /// How long a failing step is retried before its batch is left for redelivery
    /// (`RETRY_GIVE_UP_SECS`, default 20).
    pub retry_give_up: Duration,
    /// How often the queues' depths and the oldest received age are published
    /// (`QUEUE_METRICS_SECS`, default 15; 0 turns it off).
    pub queue_metrics: Duration,
    /// Mutual TLS to the vault and the writer (`TLS_CA_FILE`, `TLS_CERT_FILE`,
    /// `TLS_KEY_FILE`); the endpoints are then `https://`.
    pub tls: Option<TlsFiles>,
}

impl IngestorConfig {
    /// Reads the configuration; on failure, every problem found.
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigErrors> {
        let mut reader = ConfigReader::new(env);
        let common = CommonConfig::from_env(&mut reader, crate::SERVICE, "0.0.0.0:9103");
        let queue_url: Option<String> = reader.required("QUEUE_URL", "the URL of the login queue");
        let dlq_url: Option<String> =
            reader.required("DLQ_URL", "the URL of its dead-letter queue");
        let dlq_kms_key_id: Option<String> = reader.required(
            "DLQ_KMS_KEY_ID",
            "the KMS key that seals dead-lettered bodies, e.g. alias/fetchreward-dlq",
        );
        let kms_endpoint = reader.raw("AWS_ENDPOINT_URL_KMS");
        let vault_endpoint = endpoint(&mut reader, "VAULT_ENDPOINT", "http://127.0.0.1:50051");
        let writer_endpoint = endpoint(&mut reader, "WRITER_ENDPOINT", "http://127.0.0.1:50052");
        let pollers = reader.count("POLLERS", 16, 64);
        let workers = reader.count("WORKERS", 2, MAX_WORKERS);
        let max_batch = reader.count("MAX_BATCH", 500, MAX_BATCH_LIMIT);
        let prefetch = reader.count("PREFETCH", max_batch * workers, MAX_BATCH_LIMIT * MAX_WORKERS);
        let receive_wait = reader.seconds("RECEIVE_WAIT_SECS", 20);
        if receive_wait > Duration::from_secs(20) {
            reader.problem("RECEIVE_WAIT_SECS must be at most 20 (the SQS limit)");
        }
        let visibility = reader.seconds("VISIBILITY_TIMEOUT_SECS", 30);
        if visibility < Duration::from_secs(3) {
            reader.problem("VISIBILITY_TIMEOUT_SECS must be at least 3");
        }
        let retry_give_up = reader.seconds("RETRY_GIVE_UP_SECS", 20);
        let queue_metrics = reader.seconds("QUEUE_METRICS_SECS", 15);
        let tls = TlsFiles::from_env(&mut reader);
        let scheme = if tls.is_some() { "https://" } else { "http://" };
        for (key, endpoint) in
            [("VAULT_ENDPOINT", &vault_endpoint), ("WRITER_ENDPOINT", &writer_endpoint)]
        {
            if !endpoint.starts_with(scheme) {
                reader.problem(format!(
                    "{key} must start with {scheme} when TLS is {}",
                    if tls.is_some() { "configured" } else { "not configured" }
                ));
            }
        }
        reader.finish()?;
        Ok(IngestorConfig {
            common,
            queue_url: queue_url.expect("reported by finish"),
            dlq_url: dlq_url.expect("reported by finish"),
            dlq_kms_key_id: dlq_kms_key_id.expect("reported by finish"),
            kms_endpoint,
            vault_endpoint,
            writer_endpoint,
            pollers,
            workers,
            max_batch,
            prefetch,
            receive_wait,
            visibility,
            retry_give_up,
            queue_metrics,
            tls,
        })
    }
}

fn endpoint(reader: &mut ConfigReader<'_>, key: &str, default: &str) -> String {
    let value = reader.raw(key).unwrap_or_else(|| default.to_owned());
    if tonic::transport::Endpoint::from_shared(value.clone()).is_err()
        || !(value.starts_with("http://") || value.starts_with("https://"))
    {
        reader.problem(format!("{key} must be an http:// or https:// URL"));
    }
    value
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_need_only_the_queues_and_the_dlq_key() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("QUEUE_URL", "http://q/1/login-queue"),
            ("DLQ_URL", "http://q/1/dlq"),
            ("DLQ_KMS_KEY_ID", "alias/fetchreward-dlq"),
        ]);
        let config = IngestorConfig::from_env(&env).expect("valid");
        assert_eq!(config.pollers, 16);
        assert_eq!(config.max_batch, 500);
        assert_eq!(config.prefetch, 1000, "two workers' full batches");
        assert_eq!(config.vault_endpoint, "http://127.0.0.1:50051");
        assert_eq!(config.common.http_addr.port(), 9103);
    }

    #[test]
    fn prefetch_follows_the_batches_unless_set() {
        let mut env: HashMap<&str, &str> = HashMap::from([
            ("QUEUE_URL", "http://q/1/login-queue"),
            ("DLQ_URL", "http://q/1/dlq"),
            ("DLQ_KMS_KEY_ID", "alias/fetchreward-dlq"),
            ("WORKERS", "3"),
            ("MAX_BATCH", "200"),
        ]);
        assert_eq!(IngestorConfig::from_env(&env).expect("valid").prefetch, 600);
        env.insert("PREFETCH", "50");
        assert_eq!(IngestorConfig::from_env(&env).expect("valid").prefetch, 50);
    }

    #[test]
    fn every_problem_is_listed() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("VAULT_ENDPOINT", "vault:50051"),
            ("MAX_BATCH", "6000"),
            ("POLLERS", "0"),
            ("PREFETCH", "0"),
            ("RECEIVE_WAIT_SECS", "30"),
        ]);
        let text = IngestorConfig::from_env(&env).expect_err("invalid").to_string();
        for expected in [
            "QUEUE_URL",
            "DLQ_URL",
            "DLQ_KMS_KEY_ID",
            "VAULT_ENDPOINT",
            "MAX_BATCH",
            "POLLERS",
            "PREFETCH",
            "RECEIVE_WAIT_SECS",
        ] {
            assert!(text.contains(expected), "{expected} missing from: {text}");
        }
    }
}
