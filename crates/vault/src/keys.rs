//! The vault's key ring and how it is loaded: envelope encryption under a KMS key.
//!
//! ```text
//! KMS key (KMS_KEY_ID, never leaves KMS)
//!  ├─ wraps ─► tokenization root key v1, v2, ...  ──HKDF──► HMAC key per kind (ip, dev)
//!  └─ wraps ─► data key v1, v2, ...               ──────► AES-256-GCM of stored originals
//! ```
//!
//! Only the wrapped forms are stored (`vault.keys`). On start-up the vault reads them, asks the
//! [`KeyProvider`] to unwrap each, and keeps the plaintext keys in memory only. The first start
//! against an empty schema creates version 1 of each purpose; replicas racing to do so each
//! generate a candidate and `INSERT ... ON CONFLICT DO NOTHING`, then all read back and use the
//! one row that won, so they end with one key set.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use zeroize::Zeroizing;

use crate::crypto::{DataKey, KEY_LEN, TokenizationKey};
use crate::store::{KeyRow, VaultStore};

/// What a key is used for; also its `purpose` in `vault.keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPurpose {
    /// A tokenization root key, from which the per-kind HMAC keys are derived.
    Tokenization,
    /// A data key, which encrypts stored originals.
    Data,
}

impl KeyPurpose {
    /// Both purposes.
    pub const ALL: [KeyPurpose; 2] = [KeyPurpose::Tokenization, KeyPurpose::Data];

    /// The name stored in `vault.keys.purpose` and bound into the KMS encryption context.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Tokenization => "tokenization",
            KeyPurpose::Data => "data",
        }
    }

    /// The purpose stored as `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "tokenization" => Some(KeyPurpose::Tokenization),
            "data" => Some(KeyPurpose::Data),
            _ => None,
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which key a wrapped blob holds. The provider binds it to the blob (the KMS encryption
/// context), so a blob stored under another purpose or version does not unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLabel {
    /// What the key is for.
    pub purpose: KeyPurpose,
    /// Its version, from 1.
    pub version: u32,
}

/// A freshly generated key: the plaintext for use now, the wrapped form for storage.
pub struct GeneratedKey {
    /// The key itself, wiped on drop.
    pub plaintext: Zeroizing<[u8; KEY_LEN]>,
    /// The key encrypted under the provider's master key.
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("wrapped_len", &self.wrapped.len())
            .finish_non_exhaustive()
    }
}

/// Errors of a [`KeyProvider`]. They never carry key material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyProviderError {
    /// The provider cannot be reached (network, timeout).
    #[error("cannot reach KMS at {endpoint}: {detail}")]
    Unreachable {
        /// Where the provider was looked for.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
    /// The provider answered with a refusal (access denied, unknown key, invalid blob).
    #[error("KMS at {endpoint} refused: {detail}")]
    Refused {
        /// Where the provider answered.
        endpoint: String,
        /// Its answer.
        detail: String,
    },
    /// The provider answered with something that is not a 32-byte key.
    #[error("KMS at {endpoint} returned a malformed key: {detail}")]
    Malformed {
        /// Where the provider answered.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// Makes and unwraps the vault's keys under a master key it never hands out (AWS KMS in
/// production).
pub trait KeyProvider: Send + Sync + fmt::Debug + 'static {
    /// The id of the master key, stored beside every wrapped key.
    fn master_key_id(&self) -> &str;

    /// A new random 32-byte key and its wrapped form, bound to `label`.
    fn generate(&self, label: KeyLabel) -> BoxFuture<'_, Result<GeneratedKey, KeyProviderError>>;

    /// The plaintext of a wrapped key made for `label`.
    fn unwrap_key<'a>(
        &'a self,
        label: KeyLabel,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<[u8; KEY_LEN]>, KeyProviderError>>;
}

/// Why the key ring cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// KMS could not be reached while unwrapping stored keys.
    #[error("cannot reach KMS at {endpoint} to unwrap the vault keys: {detail}")]
    UnwrapUnreachable {
        /// The KMS endpoint.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
    /// KMS could not be reached while creating the first keys.
    #[error("cannot reach KMS at {endpoint} to create the vault keys: {detail}")]
    CreateUnreachable {
        /// The KMS endpoint.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
    /// KMS refused or answered nonsense.
    #[error("KMS cannot provide the {purpose} key v{version}: {source}")]
    Provider {
        /// The key's purpose.
        purpose: KeyPurpose,
        /// The key's version.
        version: u32,
        /// The provider's answer.
        source: KeyProviderError,
    },
    /// The database could not be read or written.
    #[error("cannot load the vault keys from the database: {0}")]
    Database(#[from] fetchreward_runtime::postgres::PgError),
    /// A row of `vault.keys` cannot be used.
    #[error("vault.keys holds an unusable row: {0}")]
    BadRow(String),
}

impl KeyError {
    /// Whether the failure is worth retrying later (KMS or the database unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            KeyError::UnwrapUnreachable { .. } | KeyError::CreateUnreachable { .. } => true,
            KeyError::Database(err) => err.is_transient(),
            KeyError::Provider { .. } | KeyError::BadRow(_) => false,
        }
    }

    fn unwrapping(label: KeyLabel, err: KeyProviderError) -> Self {
        match err {
            KeyProviderError::Unreachable { endpoint, detail } => {
                KeyError::UnwrapUnreachable { endpoint, detail }
            }
            source @ (KeyProviderError::Refused { .. } | KeyProviderError::Malformed { .. }) => {
                KeyError::Provider { purpose: label.purpose, version: label.version, source }
            }
        }
    }

    fn creating(label: KeyLabel, err: KeyProviderError) -> Self {
        match err {
            KeyProviderError::Unreachable { endpoint, detail } => {
                KeyError::CreateUnreachable { endpoint, detail }
            }
            source @ (KeyProviderError::Refused { .. } | KeyProviderError::Malformed { .. }) => {
                KeyError::Provider { purpose: label.purpose, version: label.version, source }
            }
        }
    }
}

/// Every unwrapped key version the vault holds. New tokens and ciphertexts use the highest
/// version of each purpose; older data keys stay for reading what they encrypted.
pub struct KeyRing {
    tokenization: BTreeMap<u32, TokenizationKey>,
    data: BTreeMap<u32, DataKey>,
}

impl KeyRing {
    /// A ring of the given keys; `None` unless each purpose has at least one version.
    pub fn new(
        tokenization: impl IntoIterator<Item = TokenizationKey>,
        data: impl IntoIterator<Item = DataKey>,
    ) -> Option<Self> {
        let tokenization: BTreeMap<_, _> =
            tokenization.into_iter().map(|key| (key.version(), key)).collect();
        let data: BTreeMap<_, _> = data.into_iter().map(|key| (key.version(), key)).collect();
        (!tokenization.is_empty() && !data.is_empty()).then_some(KeyRing { tokenization, data })
    }

    /// The tokenization key new tokens are made with.
    pub fn active_tokenization(&self) -> &TokenizationKey {
        self.tokenization.values().next_back().expect("a ring holds at least one tokenization key")
    }

    /// The data key new ciphertexts are made with.
    pub fn active_data(&self) -> &DataKey {
        self.data.values().next_back().expect("a ring holds at least one data key")
    }

    /// The data key of `version`, if held.
    pub fn data_key(&self, version: u32) -> Option<&DataKey> {
        self.data.get(&version)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("tokenization_versions", &self.tokenization.keys().collect::<Vec<_>>())
            .field("data_versions", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Loads every stored key, creating version 1 of a purpose that has none, and unwraps them.
#[tracing::instrument(skip_all)]
pub async fn load_or_create(
    store: &VaultStore,
    provider: &Arc<dyn KeyProvider>,
) -> Result<KeyRing, KeyError> {
    let mut rows = store.key_rows().await?;
    let mut created = false;
    for purpose in KeyPurpose::ALL {
        if rows.iter().any(|row| row.purpose == purpose.as_str()) {
            continue;
        }
        let label = KeyLabel { purpose, version: 1 };
        let generated =
            provider.generate(label).await.map_err(|err| KeyError::creating(label, err))?;
        let inserted = store
            .insert_key_if_absent(purpose, 1, &generated.wrapped, provider.master_key_id())
            .await?;
        if inserted {
            tracing::info!(purpose = purpose.as_str(), version = 1, "vault key created");
        }
        created = true;
    }
    if created {
        // Another replica may have won the insert: use whatever is stored now.
        rows = store.key_rows().await?;
    }
    unwrap_rows(&rows, provider).await
}

/// Loads and unwraps every stored key, creating none: picks up versions that another replica
/// added since this one started.
#[tracing::instrument(skip_all)]
pub async fn reload(
    store: &VaultStore,
    provider: &Arc<dyn KeyProvider>,
) -> Result<KeyRing, KeyError> {
    unwrap_rows(&store.key_rows().await?, provider).await
}

/// Unwraps every stored key into a ring.
async fn unwrap_rows(
    rows: &[KeyRow],
    provider: &Arc<dyn KeyProvider>,
) -> Result<KeyRing, KeyError> {
    let mut tokenization = Vec::new();
    let mut data = Vec::new();
    for row in rows {
        let purpose = KeyPurpose::from_name(&row.purpose)
            .ok_or_else(|| KeyError::BadRow(format!("unknown purpose {:?}", row.purpose)))?;
        let version = u32::try_from(row.version).ok().filter(|v| *v >= 1).ok_or_else(|| {
            KeyError::BadRow(format!("{purpose} key has version {}", row.version))
        })?;
        let label = KeyLabel { purpose, version };
        let plaintext = provider
            .unwrap_key(label, &row.wrapped)
            .await
            .map_err(|err| KeyError::unwrapping(label, err))?;
        match purpose {
            KeyPurpose::Tokenization => {
                tokenization.push(TokenizationKey::derive(version, &plaintext));
            }
            KeyPurpose::Data => data.push(DataKey::new(version, &plaintext)),
        }
    }
    let ring = KeyRing::new(tokenization, data)
        .ok_or_else(|| KeyError::BadRow("a purpose has no key".to_owned()))?;
    tracing::info!(keys = ?ring, "vault keys unwrapped");
    Ok(ring)
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory [`KeyProvider`] for unit tests: keys are wrapped with AES-256-GCM under a
    //! fixed test master key, with the label as associated data, like KMS's encryption context.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

    use super::*;

    /// A master key that exists only in tests.
    const FAKE_MASTER_KEY: [u8; KEY_LEN] = [0x5A; KEY_LEN];

    /// The fake provider.
    #[derive(Debug, Default)]
    pub(crate) struct FakeKeyProvider {
        /// Calls of `generate`.
        pub(crate) generated: AtomicUsize,
        /// Calls of `unwrap_key`.
        pub(crate) unwrapped: AtomicUsize,
    }

    fn master() -> RandomizedNonceKey {
        RandomizedNonceKey::new(&AES_256_GCM, &FAKE_MASTER_KEY).expect("32-byte key")
    }

    fn aad(label: KeyLabel) -> Vec<u8> {
        format!("{}:{}", label.purpose, label.version).into_bytes()
    }

    fn refused(detail: &str) -> KeyProviderError {
        KeyProviderError::Refused { endpoint: "fake".into(), detail: detail.into() }
    }

    impl KeyProvider for FakeKeyProvider {
        fn master_key_id(&self) -> &str {
            "fake-master-key"
        }

        fn generate(
            &self,
            label: KeyLabel,
        ) -> BoxFuture<'_, Result<GeneratedKey, KeyProviderError>> {
            self.generated.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let mut plaintext = Zeroizing::new([0u8; KEY_LEN]);
                aws_lc_rs::rand::fill(plaintext.as_mut_slice()).map_err(|_| refused("rand"))?;
                let mut sealed = plaintext.to_vec();
                let nonce = master()
                    .seal_in_place_append_tag(Aad::from(aad(label)), &mut sealed)
                    .map_err(|_| refused("seal"))?;
                let mut wrapped = nonce.as_ref().to_vec();
                wrapped.extend_from_slice(&sealed);
                Ok(GeneratedKey { plaintext, wrapped })
            })
        }

        fn unwrap_key<'a>(
            &'a self,
            label: KeyLabel,
            wrapped: &'a [u8],
        ) -> BoxFuture<'a, Result<Zeroizing<[u8; KEY_LEN]>, KeyProviderError>> {
            self.unwrapped.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if wrapped.len() < NONCE_LEN {
                    return Err(refused("short blob"));
                }
                let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
                let nonce =
                    Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused("nonce"))?;
                let mut buffer = Zeroizing::new(sealed.to_vec());
                let plain = master()
                    .open_in_place(nonce, Aad::from(aad(label)), buffer.as_mut_slice())
                    .map_err(|_| refused("wrong label or blob"))?;
                let key: [u8; KEY_LEN] = (&*plain).try_into().map_err(|_| refused("length"))?;
                Ok(Zeroizing::new(key))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use fetchreward_model::{PiiKind, canonical_ip};

    use super::fake::FakeKeyProvider;
    use super::*;

    fn label(purpose: KeyPurpose, version: u32) -> KeyLabel {
        KeyLabel { purpose, version }
    }

    #[tokio::test]
    async fn the_fake_provider_unwraps_what_it_generated_only_for_the_same_label() {
        let provider = FakeKeyProvider::default();
        let generated = provider.generate(label(KeyPurpose::Data, 1)).await.expect("generates");
        let unwrapped = provider
            .unwrap_key(label(KeyPurpose::Data, 1), &generated.wrapped)
            .await
            .expect("unwraps");
        assert_eq!(*unwrapped, *generated.plaintext);
        assert!(!generated.wrapped.windows(KEY_LEN).any(|w| w == generated.plaintext.as_slice()));
        for other in [label(KeyPurpose::Tokenization, 1), label(KeyPurpose::Data, 2)] {
            assert!(provider.unwrap_key(other, &generated.wrapped).await.is_err());
        }
    }

    #[tokio::test]
    async fn unwrapped_keys_rebuild_the_same_ring() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let mut rows = Vec::new();
        for purpose in KeyPurpose::ALL {
            let generated = provider.generate(label(purpose, 1)).await.expect("generates");
            rows.push(KeyRow {
                purpose: purpose.as_str().into(),
                version: 1,
                wrapped: generated.wrapped,
            });
        }
        let first = unwrap_rows(&rows, &provider).await.expect("unwraps");
        let second = unwrap_rows(&rows, &provider).await.expect("unwraps");
        let value = canonical_ip("192.0.2.44").expect("valid");
        assert_eq!(
            first.active_tokenization().token(PiiKind::Ip, &value),
            second.active_tokenization().token(PiiKind::Ip, &value)
        );
        let sealed = first.active_data().seal("t", &value).expect("seals");
        let opened = second.data_key(1).expect("v1").open("t", &sealed.nonce, &sealed.ciphertext);
        assert_eq!(opened, Ok(value));
    }

    #[tokio::test]
    async fn a_ring_uses_the_highest_versions_and_keeps_the_older_data_keys() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let mut rows = Vec::new();
        for (purpose, version) in [
            (KeyPurpose::Tokenization, 1),
            (KeyPurpose::Tokenization, 2),
            (KeyPurpose::Data, 1),
            (KeyPurpose::Data, 2),
        ] {
            let generated = provider.generate(label(purpose, version)).await.expect("generates");
            rows.push(KeyRow {
                purpose: purpose.as_str().into(),
                version: version as i32,
                wrapped: generated.wrapped,
            });
        }
        let ring = unwrap_rows(&rows, &provider).await.expect("unwraps");
        assert_eq!(ring.active_tokenization().version(), 2);
        assert_eq!(ring.active_data().version(), 2);
        assert!(ring.data_key(1).is_some());
        assert_eq!(
            format!("{ring:?}"),
            "KeyRing { tokenization_versions: [1, 2], data_versions: [1, 2] }"
        );
    }

    #[tokio::test]
    async fn a_blob_stored_under_another_label_does_not_unwrap() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let data = provider.generate(label(KeyPurpose::Data, 1)).await.expect("generates");
        // The data key's blob stored as the tokenization key: refused, not silently used.
        let rows = vec![
            KeyRow { purpose: "tokenization".into(), version: 1, wrapped: data.wrapped.clone() },
            KeyRow { purpose: "data".into(), version: 1, wrapped: data.wrapped },
        ];
        let err = unwrap_rows(&rows, &provider).await.expect_err("refused");
        assert!(
            matches!(err, KeyError::Provider { purpose: KeyPurpose::Tokenization, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_ring_needs_both_purposes() {
        let root = Zeroizing::new([1u8; KEY_LEN]);
        assert!(KeyRing::new([TokenizationKey::derive(1, &root)], []).is_none());
        assert!(KeyRing::new([], [DataKey::new(1, &root)]).is_none());
    }
}
