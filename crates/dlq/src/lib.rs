//! Sealed dead-letter bodies.
//!
//! A message the ingestor dead-letters may still hold a valid `ip` or `device_id`, and the DLQ
//! keeps it for days, out of Forget's reach. So the ingestor never sends a body as it is: it
//! seals it ([`Sealer`]) with AES-256-GCM under a data key that the DLQ's own KMS key wraps
//! (`GenerateDataKey`, encryption context `fetchreward:purpose=dlq`), and binds the message's
//! source id and reason code as associated data, so that a body moved under another message's
//! attributes, or attributes edited, no longer opens. Only a holder of `kms:Decrypt` on the DLQ
//! key (the triage role) can open one ([`Opener`]); [`redact`] shows what may be shown
//! without it.
//!
//! A data key seals up to [`KEY_USES`] bodies over at most [`KEY_LIFETIME`], each under a
//! fresh random nonce chosen by the library, so a flood of invalid messages costs one KMS call
//! per few thousand messages, not one per message.
//!
//! The envelope is JSON (an SQS body is text):
//! `{"sealed":1,"kms_key_id":"arn:…","key":"<wrapped data key>","nonce":"…","ciphertext":"…"}`
//! with the binary fields in standard base64.

use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

/// The value of the `fetchreward-sealed` attribute on a sealed DLQ copy, and the envelope's
/// version.
pub const SEAL_VERSION: u32 = 1;

/// The encryption context of every DLQ data key: the DLQ key's policy requires it.
pub const CONTEXT: (&str, &str) = ("fetchreward:purpose", "dlq");

/// How long one data key seals bodies.
pub const KEY_LIFETIME: Duration = Duration::from_secs(300);

/// How many bodies one data key seals at most.
pub const KEY_USES: u32 = 10_000;

/// What a redacted field shows instead of its value.
pub const REDACTED: &str = "<redacted>";

/// The fields whose values [`redact`] hides, compared without regard to case.
const PII_FIELDS: [&str; 2] = ["ip", "device_id"];

/// Why a body could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// KMS refused or could not be reached.
    #[error("KMS cannot make a DLQ data key: {detail}")]
    Kms {
        /// Whether a retry may succeed (throttling, a timeout, a server error).
        transient: bool,
        /// What KMS said (never a body).
        detail: String,
    },
    /// KMS answered with something that is not a 256-bit key.
    #[error("KMS returned a DLQ data key that is not 256 bits")]
    BadKey,
    /// The cipher failed.
    #[error("sealing a DLQ body failed")]
    Crypto,
}

impl SealError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SealError::Kms { transient: true, .. })
    }
}

/// Why a sealed body could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The body is not a sealed envelope.
    #[error("the body is not a sealed envelope: {0}")]
    NotSealed(&'static str),
    /// KMS refused to unwrap the data key (no decrypt right on the DLQ key) or failed.
    #[error("KMS cannot unwrap the DLQ data key: {0}")]
    Kms(String),
    /// The body does not open under its data key with these attributes: the body, its source
    /// id or its reason code was changed.
    #[error(
        "the seal is broken: the body or its source id or reason code was changed after sealing"
    )]
    Broken,
}

/// A data key in use, and its wrapped form.
struct SealingKey {
    key: RandomizedNonceKey,
    wrapped: Vec<u8>,
    kms_key_id: String,
    made: Instant,
    uses: u32,
}

/// Seals dead-letter bodies under data keys from the DLQ's KMS key.
pub struct Sealer {
    kms: Client,
    key_id: String,
    current: tokio::sync::Mutex<Option<SealingKey>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// The associated data of a body: what it was refused as.
fn aad(source_message_id: &str, reason_code: &str) -> Vec<u8> {
    let mut aad = b"fetchreward dlq v1\0".to_vec();
    aad.extend_from_slice(source_message_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(reason_code.as_bytes());
    aad
}

/// The KMS error as text, and whether a retry may help.
fn kms_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    err: SdkError<E, R>,
) -> (bool, String) {
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some(
                "ThrottlingException"
                    | "KMSInternalException"
                    | "DependencyTimeoutException"
                    | "KeyUnavailableException"
            )
        ),
        _ => false,
    };
    (transient, DisplayErrorContext(&err).to_string())
}

impl Sealer {
    /// A sealer with KMS key `key_id` (id, ARN or alias) of `kms`.
    pub fn new(kms: Client, key_id: impl Into<String>) -> Self {
        Sealer { kms, key_id: key_id.into(), current: tokio::sync::Mutex::new(None) }
    }

    /// The sealed envelope of `body`, refused as `reason_code` with source id
    /// `source_message_id`.
    pub async fn seal(
        &self,
        source_message_id: &str,
        reason_code: &str,
        body: &str,
    ) -> Result<String, SealError> {
        let mut current = self.current.lock().await;
        let fresh = current
            .as_ref()
            .is_some_and(|key| key.uses < KEY_USES && key.made.elapsed() < KEY_LIFETIME);
        if !fresh {
            *current = Some(self.new_key().await?);
        }
        let key = current.as_mut().expect("set above");
        key.uses += 1;
        let mut in_out = body.as_bytes().to_vec();
        let nonce = key
            .key
            .seal_in_place_append_tag(Aad::from(aad(source_message_id, reason_code)), &mut in_out)
            .map_err(|_| SealError::Crypto)?;
        let envelope = json!({
            "sealed": SEAL_VERSION,
            "kms_key_id": key.kms_key_id,
            "key": STANDARD.encode(&key.wrapped),
            "nonce": STANDARD.encode(nonce.as_ref()),
            "ciphertext": STANDARD.encode(&in_out),
        });
        Ok(envelope.to_string())
    }

    async fn new_key(&self) -> Result<SealingKey, SealError> {
        let output = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .map_err(|err| {
                let (transient, detail) = kms_error(err);
                SealError::Kms { transient, detail }
            })?;
        let plaintext =
            Zeroizing::new(output.plaintext.map(Blob::into_inner).ok_or(SealError::BadKey)?);
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, &plaintext).map_err(|_| SealError::BadKey)?;
        Ok(SealingKey {
            key,
            wrapped: output.ciphertext_blob.map(Blob::into_inner).ok_or(SealError::BadKey)?,
            kms_key_id: output.key_id.unwrap_or_else(|| self.key_id.clone()),
            made: Instant::now(),
            uses: 0,
        })
    }
}

/// The fields of an envelope.
struct Envelope {
    kms_key_id: String,
    wrapped: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl Envelope {
    fn parse(sealed: &str) -> Result<Envelope, OpenError> {
        let value: Value =
            serde_json::from_str(sealed).map_err(|_| OpenError::NotSealed("not JSON"))?;
        if value.get("sealed").and_then(Value::as_u64) != Some(u64::from(SEAL_VERSION)) {
            return Err(OpenError::NotSealed("no seal of version 1"));
        }
        let text = |name: &'static str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .ok_or(OpenError::NotSealed("a field is missing"))
        };
        let bytes = |name: &'static str| {
            STANDARD.decode(text(name)?).map_err(|_| OpenError::NotSealed("a field is not base64"))
        };
        let nonce: [u8; NONCE_LEN] = bytes("nonce")?
            .try_into()
            .map_err(|_| OpenError::NotSealed("the nonce is not 96 bits"))?;
        Ok(Envelope {
            kms_key_id: text("kms_key_id")?.to_owned(),
            wrapped: bytes("key")?,
            nonce,
            ciphertext: bytes("ciphertext")?,
        })
    }
}

/// Opens sealed dead-letter bodies; needs `kms:Decrypt` on the DLQ key.
#[derive(Debug, Clone)]
pub struct Opener {
    kms: Client,
}

impl Opener {
    /// An opener that unwraps data keys with `kms`.
    pub fn new(kms: Client) -> Self {
        Opener { kms }
    }

    /// The body sealed in `sealed`, if it was sealed with this source id and reason code.
    pub async fn open(
        &self,
        sealed: &str,
        source_message_id: &str,
        reason_code: &str,
    ) -> Result<String, OpenError> {
        let envelope = Envelope::parse(sealed)?;
        let output = self
            .kms
            .decrypt()
            .key_id(&envelope.kms_key_id)
            .ciphertext_blob(Blob::new(envelope.wrapped))
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .map_err(|err| OpenError::Kms(kms_error(err).1))?;
        let plaintext = Zeroizing::new(
            output.plaintext.map(Blob::into_inner).ok_or(OpenError::Kms("no plaintext".into()))?,
        );
        let key = RandomizedNonceKey::new(&AES_256_GCM, &plaintext)
            .map_err(|_| OpenError::Kms("the data key is not 256 bits".into()))?;
        let mut in_out = envelope.ciphertext;
        let body = key
            .open_in_place(
                Nonce::assume_unique_for_key(envelope.nonce),
                Aad::from(aad(source_message_id, reason_code)),
                &mut in_out,
            )
            .map_err(|_| OpenError::Broken)?;
        String::from_utf8(body.to_vec()).map_err(|_| OpenError::Broken)
    }
}

/// Whether `body` is a sealed envelope (by its shape; only [`Opener::open`] proves it).
pub fn looks_sealed(body: &str) -> bool {
    Envelope::parse(body).is_ok()
}

/// `body` with the values of its `ip` and `device_id` fields (at any depth, any case) replaced
/// by [`REDACTED`]; a body that is not JSON is withheld whole, since nothing says where its
/// personal data is.
pub fn redact(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value);
            value.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON: withheld>", body.len()),
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(fields) => redact_fields(fields),
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

fn redact_fields(fields: &mut Map<String, Value>) {
    for (name, value) in fields.iter_mut() {
        if PII_FIELDS.iter().any(|pii| name.eq_ignore_ascii_case(pii)) {
            *value = Value::String(REDACTED.to_owned());
        } else {
            redact_value(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_personal_fields_wherever_they_are_and_keeps_the_rest() {
        let body = r#"{"user_id":"u1","IP":"66.194.53.215","device_id":"593-47-5928",
                       "nested":{"ip":["10.0.0.1"]},"locale":"RU"}"#;
        let redacted: Value = serde_json::from_str(&redact(body)).expect("JSON");
        assert_eq!(redacted["user_id"], "u1");
        assert_eq!(redacted["IP"], REDACTED);
        assert_eq!(redacted["device_id"], REDACTED);
        assert_eq!(redacted["nested"]["ip"], REDACTED);
        assert_eq!(redacted["locale"], "RU");
        let withheld = redact("ip=66.194.53.215 not json");
        assert_eq!(withheld, "<25 bytes, not JSON: withheld>");
        assert!(!withheld.contains("66.194"));
    }

    #[test]
    fn only_a_version_1_envelope_looks_sealed() {
        let envelope = json!({"sealed": 1, "kms_key_id": "k", "key": "AA==",
                              "nonce": STANDARD.encode([0u8; NONCE_LEN]), "ciphertext": "AA=="});
        assert!(looks_sealed(&envelope.to_string()));
        assert!(!looks_sealed(r#"{"sealed": 2}"#));
        assert!(!looks_sealed(r#"{"user_id":"u1","ip":"10.0.0.1"}"#));
        assert!(!looks_sealed("not json"));
    }

    #[test]
    fn the_associated_data_separates_the_id_from_the_code() {
        assert_ne!(aad("a", "bc"), aad("ab", "c"));
    }
}
