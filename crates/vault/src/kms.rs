//! [`KeyProvider`] on AWS KMS: `GenerateDataKey` (AES_256) makes keys, `Decrypt` unwraps them.
//!
//! Each wrapped key is bound to its deployment, purpose and version through the KMS encryption
//! context, so a blob copied to another row of `vault.keys`, or from another deployment, does
//! not unwrap; and `Decrypt` names the expected key id, so a blob wrapped under another KMS key
//! is refused rather than tried. The key policy and the vault role's IAM policy require that
//! context (deploy/terraform).
//!
//! With [`GenerationKeys`], every data key generation is wrapped under a KMS key of its own,
//! made with `CreateKey` (the key policy given, tags naming the deployment and the generation)
//! and scheduled for deletion with `ScheduleKeyDeletion` when the generation retires: from the
//! deletion on, no copy of that generation's data key, in any backup, can be unwrapped.
//!
//! The client fails fast: the vault needs KMS only at start-up and on key reloads, and an
//! unreachable KMS must stop a start with a clear message rather than stall it in retries.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use futures::future::BoxFuture;
use zeroize::Zeroizing;

use crate::crypto::KEY_LEN;
use crate::keys::{GeneratedKey, KeyLabel, KeyProvider, KeyProviderError};
use crate::version::KeyVersion;

/// Time to open a connection to KMS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Time for one KMS call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts per KMS call (the first included).
const MAX_ATTEMPTS: u32 = 3;

/// How KMS is found and used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsSettings {
    /// Key id, ARN or alias of the KMS key that wraps the vault's keys (`KMS_KEY_ID`).
    pub key_id: String,
    /// Endpoint override (`AWS_ENDPOINT_URL_KMS`), e.g. moto locally; `None` in AWS.
    pub endpoint: Option<String>,
    /// The deployment id bound into every encryption context (`VAULT_DEPLOYMENT_ID`).
    pub deployment: String,
    /// A KMS key per data key generation, when set.
    pub generation_keys: Option<GenerationKeys>,
}

impl KmsSettings {
    /// Settings for `key_id` in deployment `local`, one KMS key for everything (tests).
    pub fn single_key(key_id: impl Into<String>) -> Self {
        KmsSettings {
            key_id: key_id.into(),
            endpoint: None,
            deployment: DEFAULT_DEPLOYMENT.to_owned(),
            generation_keys: None,
        }
    }
}

/// The deployment id when `VAULT_DEPLOYMENT_ID` is unset (local development).
pub const DEFAULT_DEPLOYMENT: &str = "local";

/// How the vault makes a KMS key per data key generation (`VAULT_GENERATION_KMS_KEYS`).
#[derive(Clone, PartialEq, Eq)]
pub struct GenerationKeys {
    /// The key policy of each new key (`VAULT_GENERATION_KEY_POLICY_FILE`), JSON.
    pub policy: String,
    /// Days between a retirement and the deletion of the generation's key
    /// (`VAULT_KMS_DELETION_WINDOW_DAYS`, 7 to 30, as KMS allows).
    pub deletion_window_days: i32,
}

impl fmt::Debug for GenerationKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerationKeys")
            .field("policy_bytes", &self.policy.len())
            .field("deletion_window_days", &self.deletion_window_days)
            .finish()
    }
}

/// The KMS-backed key provider.
#[derive(Clone)]
pub struct KmsKeyProvider {
    client: aws_sdk_kms::Client,
    key_id: String,
    deployment: String,
    generation_keys: Option<GenerationKeys>,
    /// Where KMS is, for error messages.
    endpoint: String,
}

impl fmt::Debug for KmsKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKeyProvider")
            .field("key_id", &self.key_id)
            .field("deployment", &self.deployment)
            .field("generation_keys", &self.generation_keys)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl KmsKeyProvider {
    /// A provider with region and credentials from the standard AWS chain (environment,
    /// profile, IRSA / EKS Pod Identity, instance metadata).
    pub async fn from_environment(settings: KmsSettings) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::from_sdk_config(&sdk, settings)
    }

    /// A provider from explicit SDK settings (tests pass an emulator's).
    pub fn from_sdk_config(sdk: &SdkConfig, settings: KmsSettings) -> Self {
        let mut builder = aws_sdk_kms::config::Builder::from(sdk)
            .timeout_config(
                aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(
                aws_sdk_kms::config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
            );
        let endpoint = match settings.endpoint.or_else(|| sdk.endpoint_url().map(String::from)) {
            Some(endpoint) => {
                builder = builder.endpoint_url(&endpoint);
                endpoint
            }
            None => match sdk.region() {
                Some(region) => format!("the AWS endpoint of {region}"),
                None => "the AWS endpoint (no region configured)".to_owned(),
            },
        };
        KmsKeyProvider {
            client: aws_sdk_kms::Client::from_conf(builder.build()),
            key_id: settings.key_id,
            deployment: settings.deployment,
            generation_keys: settings.generation_keys,
            endpoint,
        }
    }

    /// The encryption context of a key: service, deployment (unless the row predates it),
    /// purpose and version.
    fn context(&self, label: KeyLabel) -> HashMap<String, String> {
        let mut context = HashMap::from([
            ("fetchreward:service".to_owned(), "vault".to_owned()),
            ("fetchreward:purpose".to_owned(), label.purpose.as_str().to_owned()),
            ("fetchreward:version".to_owned(), label.version.to_string()),
        ]);
        if !label.legacy {
            context.insert("fetchreward:deployment".to_owned(), self.deployment.clone());
        }
        context
    }

    fn tag(key: &str, value: String) -> Result<aws_sdk_kms::types::Tag, KeyProviderError> {
        aws_sdk_kms::types::Tag::builder().tag_key(key).tag_value(value).build().map_err(|err| {
            KeyProviderError::Malformed { endpoint: String::new(), detail: err.to_string() }
        })
    }

    fn error<E, R>(&self, err: SdkError<E, R>) -> KeyProviderError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let endpoint = self.endpoint.clone();
        match &err {
            SdkError::ConstructionFailure(_)
            | SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => {
                KeyProviderError::Unreachable { endpoint, detail: error_chain(&err) }
            }
            SdkError::ServiceError(service) => {
                KeyProviderError::Refused { endpoint, detail: error_chain(service.err()) }
            }
            // SdkError is non-exhaustive; a future variant is reported as it describes itself.
            _ => KeyProviderError::Unreachable { endpoint, detail: error_chain(&err) },
        }
    }

    fn plaintext(&self, blob: Option<Blob>) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyProviderError> {
        // The SDK's own buffers are beyond reach; ours are wiped from here on.
        let bytes = Zeroizing::new(blob.map(Blob::into_inner).unwrap_or_default());
        let key: [u8; KEY_LEN] =
            bytes.as_slice().try_into().map_err(|_| KeyProviderError::Malformed {
                endpoint: self.endpoint.clone(),
                detail: format!("expected {KEY_LEN} bytes of plaintext, got {}", bytes.len()),
            })?;
        Ok(Zeroizing::new(key))
    }
}

/// An error and its sources on one line, `outer: inner: root`, without the `Debug` dumps the
/// SDK's own formatter appends.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some layers repeat their source's message in their own.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl KeyProvider for KmsKeyProvider {
    fn master_key_id(&self) -> &str {
        &self.key_id
    }

    fn deployment(&self) -> &str {
        &self.deployment
    }

    fn generate<'a>(
        &'a self,
        master: &'a str,
        label: KeyLabel,
    ) -> BoxFuture<'a, Result<GeneratedKey, KeyProviderError>> {
        Box::pin(async move {
            let output = self
                .client
                .generate_data_key()
                .key_id(master)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(Some(self.context(label)))
                .send()
                .await
                .map_err(|err| self.error(err))?;
            let plaintext = self.plaintext(output.plaintext)?;
            let wrapped = output
                .ciphertext_blob
                .map(Blob::into_inner)
                .filter(|blob| !blob.is_empty())
                .ok_or_else(|| KeyProviderError::Malformed {
                    endpoint: self.endpoint.clone(),
                    detail: "GenerateDataKey returned no ciphertext".to_owned(),
                })?;
            Ok(GeneratedKey { plaintext, wrapped })
        })
    }

    fn unwrap_key<'a>(
        &'a self,
        master: &'a str,
        label: KeyLabel,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<[u8; KEY_LEN]>, KeyProviderError>> {
        Box::pin(async move {
            let output = self
                .client
                .decrypt()
                .key_id(master)
                .ciphertext_blob(Blob::new(wrapped))
                .set_encryption_context(Some(self.context(label)))
                .send()
                .await
                .map_err(|err| self.error(err))?;
            self.plaintext(output.plaintext)
        })
    }

    fn generation_master<'a>(
        &'a self,
        version: KeyVersion,
    ) -> BoxFuture<'a, Result<Option<String>, KeyProviderError>> {
        Box::pin(async move {
            let Some(generation_keys) = &self.generation_keys else { return Ok(None) };
            let output = self
                .client
                .create_key()
                .description(format!(
                    "fetchreward vault {}: data key generation {version}",
                    self.deployment
                ))
                .key_spec(aws_sdk_kms::types::KeySpec::SymmetricDefault)
                .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
                .policy(&generation_keys.policy)
                .tags(Self::tag("fetchreward:deployment", self.deployment.clone())?)
                .tags(Self::tag("fetchreward:generation", version.to_string())?)
                .send()
                .await
                .map_err(|err| self.error(err))?;
            let metadata = output.key_metadata.ok_or_else(|| KeyProviderError::Malformed {
                endpoint: self.endpoint.clone(),
                detail: "CreateKey returned no key metadata".to_owned(),
            })?;
            let id = metadata.arn().map_or_else(|| metadata.key_id().to_owned(), str::to_owned);
            tracing::info!(generation = version.get(), kms_key = %id, "KMS key of a data key generation created");
            Ok(Some(id))
        })
    }

    fn delete_generation_master<'a>(
        &'a self,
        master: &'a str,
    ) -> BoxFuture<'a, Result<i64, KeyProviderError>> {
        Box::pin(async move {
            let days = self.generation_keys.as_ref().map_or(30, |keys| keys.deletion_window_days);
            // ScheduleKeyDeletion acts on keys of the caller's own account only, so the bare key
            // id names the same key as its ARN (and the emulator takes only the id).
            let key_id = master.rsplit_once(":key/").map_or(master, |(_, id)| id);
            let output = self
                .client
                .schedule_key_deletion()
                .key_id(key_id)
                .pending_window_in_days(days)
                .send()
                .await
                .map_err(|err| self.error(err))?;
            let at = output.deletion_date.ok_or_else(|| KeyProviderError::Malformed {
                endpoint: self.endpoint.clone(),
                detail: "ScheduleKeyDeletion returned no deletion date".to_owned(),
            })?;
            Ok(at.to_millis().unwrap_or(i64::MAX))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn error_chains_read_on_one_line() {
        let err = Outer(Inner(std::io::Error::other("connection refused")));
        assert_eq!(error_chain(&err), "outer: inner: connection refused");
    }

    #[tokio::test]
    async fn the_endpoint_named_in_errors_is_the_one_used() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let settings = |endpoint: Option<&str>| KmsSettings {
            endpoint: endpoint.map(String::from),
            ..KmsSettings::single_key("alias/fetchreward")
        };
        let regional = KmsKeyProvider::from_sdk_config(&sdk, settings(None));
        assert_eq!(regional.endpoint, "the AWS endpoint of eu-west-1");
        let local = KmsKeyProvider::from_sdk_config(&sdk, settings(Some("http://127.0.0.1:1")));
        assert_eq!(local.endpoint, "http://127.0.0.1:1");
    }
}
