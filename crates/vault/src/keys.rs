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
//!
//! Rotation adds version N+1 of a purpose with an activation time a little in the future
//! ([`KeyTiming`]); every replica reloads `vault.keys` more often than that delay, so all of
//! them hold the new version before it takes over and switch to it at the same moment of the
//! database clock. See `docs/vault.md`, "Key rotation".

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use zeroize::Zeroizing;

use crate::crypto::{AuditChain, DataKey, KEY_LEN, KeyBinding, TokenizationKey};
use crate::store::{KeyRow, NewKey, VaultStore};
use crate::version::KeyVersion;

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
/// context, with the provider's deployment id), so a blob stored under another purpose,
/// version or deployment does not unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLabel {
    /// What the key is for.
    pub purpose: KeyPurpose,
    /// Its version.
    pub version: KeyVersion,
    /// A row made before keys were bound to a deployment: its context names none.
    pub legacy: bool,
}

impl KeyLabel {
    /// The label of a key made now.
    pub fn new(purpose: KeyPurpose, version: KeyVersion) -> Self {
        KeyLabel { purpose, version, legacy: false }
    }
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

/// Makes and unwraps the vault's keys under master keys it never hands out (AWS KMS in
/// production).
pub trait KeyProvider: Send + Sync + fmt::Debug + 'static {
    /// The id of the master key that wraps tokenization keys (and data keys, unless each
    /// data key generation gets a master key of its own).
    fn master_key_id(&self) -> &str;

    /// The deployment this provider's keys belong to, bound into every wrapping.
    fn deployment(&self) -> &str;

    /// A new random 32-byte key and its wrapped form under master key `master`, bound to
    /// `label`.
    fn generate<'a>(
        &'a self,
        master: &'a str,
        label: KeyLabel,
    ) -> BoxFuture<'a, Result<GeneratedKey, KeyProviderError>>;

    /// The plaintext of a key made for `label` and wrapped under master key `master`.
    fn unwrap_key<'a>(
        &'a self,
        master: &'a str,
        label: KeyLabel,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<[u8; KEY_LEN]>, KeyProviderError>>;

    /// A master key of its own for data key generation `version` (KMS `CreateKey`), or `None`
    /// when [`KeyProvider::master_key_id`] wraps every generation.
    fn generation_master<'a>(
        &'a self,
        version: KeyVersion,
    ) -> BoxFuture<'a, Result<Option<String>, KeyProviderError>> {
        let _ = version;
        Box::pin(async { Ok(None) })
    }

    /// Schedules the deletion of a retired generation's own master key; returns when the
    /// deletion happens (Unix milliseconds).
    fn delete_generation_master<'a>(
        &'a self,
        master: &'a str,
    ) -> BoxFuture<'a, Result<i64, KeyProviderError>> {
        let _ = master;
        Box::pin(async {
            Err(KeyProviderError::Refused {
                endpoint: "this key provider".to_owned(),
                detail: "it makes no master key per generation".to_owned(),
            })
        })
    }
}

/// The fields of a key row that its binding covers.
struct BoundFields<'a> {
    purpose: KeyPurpose,
    version: KeyVersion,
    deployment: &'a str,
    kms_key_id: &'a str,
    own_master: bool,
    wrapped: &'a [u8],
}

impl BoundFields<'_> {
    /// The fields in their bound order, `f(..)` applied to them.
    fn with<T>(&self, f: impl FnOnce(&[&[u8]]) -> T) -> T {
        let version = self.version.get().to_be_bytes();
        f(&[
            self.purpose.as_str().as_bytes(),
            &version,
            self.deployment.as_bytes(),
            self.kms_key_id.as_bytes(),
            &[u8::from(self.own_master)],
            self.wrapped,
        ])
    }
}

/// The binding of a new key row (see [`KeyBinding`]).
pub fn bind(binding: &KeyBinding, key: &NewKey<'_>) -> Vec<u8> {
    BoundFields {
        purpose: key.purpose,
        version: key.version,
        deployment: key.deployment,
        kms_key_id: key.kms_key_id,
        own_master: key.own_master,
        wrapped: key.wrapped,
    }
    .with(|fields| binding.bind(fields))
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
        version: KeyVersion,
        /// The provider's answer.
        source: KeyProviderError,
    },
    /// The database could not be read or written.
    #[error("cannot load the vault keys from the database: {0}")]
    Database(#[from] fetchreward_runtime::postgres::PgError),
    /// A row of `vault.keys` cannot be used.
    #[error("vault.keys holds an unusable row: {0}")]
    BadRow(String),
    /// A row of `vault.keys` that this vault did not make: its binding does not verify, or it
    /// belongs to another deployment.
    #[error(
        "vault.keys holds {purpose} key v{version}, which this vault did not make ({why}); \
         refusing to use it: remove the row, or restore vault.keys from a backup"
    )]
    Foreign {
        /// The key's purpose.
        purpose: KeyPurpose,
        /// The key's version.
        version: KeyVersion,
        /// What gave it away.
        why: String,
    },
}

impl KeyError {
    /// Whether the failure is worth retrying later (KMS or the database unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            KeyError::UnwrapUnreachable { .. } | KeyError::CreateUnreachable { .. } => true,
            KeyError::Database(err) => err.is_transient(),
            KeyError::Provider { .. } | KeyError::BadRow(_) | KeyError::Foreign { .. } => false,
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

/// When a rotated key version takes over, and how often replicas look for new versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTiming {
    /// How long after a rotation its new version starts being used
    /// (`VAULT_ROTATION_DELAY_SECS`, default 30 s). Every replica must have loaded the new
    /// version by then, so that all of them switch at the same moment.
    pub rotation_delay: Duration,
    /// How often each replica reloads `vault.keys` (`VAULT_KEY_REFRESH_SECS`, default 10 s).
    /// Shorter than the delay, unless the delay is zero.
    pub refresh_interval: Duration,
}

impl Default for KeyTiming {
    fn default() -> Self {
        // Two refreshes fit in one delay, so one failed refresh still leaves time to load a new
        // version before it takes over.
        KeyTiming {
            rotation_delay: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(10),
        }
    }
}

/// One key version held in memory and the moment it takes over.
struct Scheduled<K> {
    key: Arc<K>,
    /// When new tokens or ciphertexts start using it, on this process's monotonic clock
    /// (translated from the database clock when the ring was loaded).
    activates: Instant,
}

impl<K> Clone for Scheduled<K> {
    fn clone(&self) -> Self {
        Scheduled { key: self.key.clone(), activates: self.activates }
    }
}

/// Every unwrapped key version the vault holds, each with its activation time.
///
/// New tokens and ciphertexts use the *active* version of each purpose: the highest one whose
/// activation time has passed. Older versions stay for reading what they made (a token names
/// its tokenization version; a stored row names its data key version); newer ones wait for
/// their activation time.
pub struct KeyRing {
    tokenization: BTreeMap<KeyVersion, Scheduled<TokenizationKey>>,
    data: BTreeMap<KeyVersion, Scheduled<DataKey>>,
    /// The master key that wraps each data key version.
    data_masters: BTreeMap<KeyVersion, String>,
    /// When the rows behind this ring were read.
    loaded_at: Instant,
}

/// The active key among `versions` at `now`: the highest version already activated.
fn active_at<K>(versions: &BTreeMap<KeyVersion, Scheduled<K>>, now: Instant) -> &K {
    let scheduled = versions
        .values()
        .rev()
        .find(|scheduled| scheduled.activates <= now)
        // Version 1 activates when it is created, so some version is always active; were the
        // clocks ever to say otherwise, the oldest version is the one every replica had.
        .or_else(|| versions.values().next())
        .expect("a ring holds at least one version of each purpose");
    &scheduled.key
}

impl KeyRing {
    /// A ring of keys that are all active now; `None` unless each purpose has a version.
    pub fn new(
        tokenization: impl IntoIterator<Item = TokenizationKey>,
        data: impl IntoIterator<Item = DataKey>,
    ) -> Option<Self> {
        let now = Instant::now();
        Self::scheduled(
            tokenization.into_iter().map(|key| (key, now)),
            data.into_iter().map(|key| (key, now)),
            now,
        )
    }

    /// A ring of keys with their activation times, read at `loaded_at`; `None` unless each
    /// purpose has a version.
    pub fn scheduled(
        tokenization: impl IntoIterator<Item = (TokenizationKey, Instant)>,
        data: impl IntoIterator<Item = (DataKey, Instant)>,
        loaded_at: Instant,
    ) -> Option<Self> {
        let tokenization = tokenization
            .into_iter()
            .map(|(key, activates)| (key.version(), Scheduled { key: Arc::new(key), activates }))
            .collect();
        let data = data
            .into_iter()
            .map(|(key, activates)| (key.version(), Scheduled { key: Arc::new(key), activates }))
            .collect();
        Self::from_versions(tokenization, data, loaded_at)
    }

    fn from_versions(
        tokenization: BTreeMap<KeyVersion, Scheduled<TokenizationKey>>,
        data: BTreeMap<KeyVersion, Scheduled<DataKey>>,
        loaded_at: Instant,
    ) -> Option<Self> {
        (!tokenization.is_empty() && !data.is_empty()).then_some(KeyRing {
            tokenization,
            data,
            data_masters: BTreeMap::new(),
            loaded_at,
        })
    }

    /// Every tokenization key held, newest version first (one not active yet included).
    pub fn tokenization_keys(&self) -> impl Iterator<Item = &TokenizationKey> {
        self.tokenization.values().rev().map(|scheduled| scheduled.key.as_ref())
    }

    /// The tokenization key new tokens are made with now.
    pub fn active_tokenization(&self) -> &TokenizationKey {
        self.active_tokenization_at(Instant::now())
    }

    /// The tokenization key new tokens are made with at `now`.
    pub fn active_tokenization_at(&self, now: Instant) -> &TokenizationKey {
        active_at(&self.tokenization, now)
    }

    /// The data key new ciphertexts are made with now.
    pub fn active_data(&self) -> &DataKey {
        self.active_data_at(Instant::now())
    }

    /// The data key new ciphertexts are made with at `now`.
    pub fn active_data_at(&self, now: Instant) -> &DataKey {
        active_at(&self.data, now)
    }

    /// The audit chain's key: derived from the oldest tokenization root, version 1, which no
    /// rotation removes, so every replica and every later start link with the same key.
    pub fn audit_chain(&self) -> AuditChain {
        self.anchor().audit_chain()
    }

    /// The key rows' binding key: derived from tokenization key version 1, like the audit
    /// chain's.
    pub fn key_binding(&self) -> KeyBinding {
        self.anchor().key_binding()
    }

    fn anchor(&self) -> &TokenizationKey {
        &self
            .tokenization
            .values()
            .next()
            .expect("a ring holds at least one version of each purpose")
            .key
    }

    /// The master key that wraps data key `version`, if held.
    pub fn data_master(&self, version: KeyVersion) -> Option<&str> {
        self.data_masters.get(&version).map(String::as_str)
    }

    /// The data key of `version`, if held.
    pub fn data_key(&self, version: KeyVersion) -> Option<&DataKey> {
        self.data.get(&version).map(|scheduled| &*scheduled.key)
    }

    /// The versions held of `purpose`, oldest first.
    pub fn versions(&self, purpose: KeyPurpose) -> Vec<KeyVersion> {
        match purpose {
            KeyPurpose::Tokenization => self.tokenization.keys().copied().collect(),
            KeyPurpose::Data => self.data.keys().copied().collect(),
        }
    }

    /// When the rows behind this ring were read from the database.
    pub fn loaded_at(&self) -> Instant {
        self.loaded_at
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("tokenization_versions", &self.versions(KeyPurpose::Tokenization))
            .field("active_tokenization", &self.active_tokenization().version())
            .field("data_versions", &self.versions(KeyPurpose::Data))
            .field("active_data", &self.active_data().version())
            .finish()
    }
}

/// Makes a new key version with the provider (KMS `GenerateDataKey` under `master`, bound to
/// `label`). The first key set and every rotation make their keys here.
pub async fn generate(
    provider: &Arc<dyn KeyProvider>,
    master: &str,
    label: KeyLabel,
) -> Result<GeneratedKey, KeyError> {
    provider.generate(master, label).await.map_err(|err| KeyError::creating(label, err))
}

/// The master key for data key generation `version`, and whether it is its own: one made
/// for it when the provider makes them, else the provider's.
pub async fn data_master(
    provider: &Arc<dyn KeyProvider>,
    version: KeyVersion,
) -> Result<(String, bool), KeyError> {
    let label = KeyLabel::new(KeyPurpose::Data, version);
    match provider.generation_master(version).await {
        Ok(Some(master)) => Ok((master, true)),
        Ok(None) => Ok((provider.master_key_id().to_owned(), false)),
        Err(err) => Err(KeyError::creating(label, err)),
    }
}

/// Loads every stored key, creating version 1 of a purpose that has none, and unwraps them.
///
/// Tokenization key v1 comes first: it is the anchor from which the binding key of every row
/// is derived, so data key v1 is made only once the v1 that won a race of first starts is
/// known.
#[tracing::instrument(skip_all)]
pub async fn load_or_create(
    store: &VaultStore,
    provider: &Arc<dyn KeyProvider>,
) -> Result<KeyRing, KeyError> {
    let mut rows = store.key_rows().await?;
    for purpose in KeyPurpose::ALL {
        if rows.iter().any(|row| row.purpose == purpose.as_str()) {
            continue;
        }
        let version = KeyVersion::FIRST;
        let label = KeyLabel::new(purpose, version);
        let (master, own_master) = match purpose {
            KeyPurpose::Tokenization => (provider.master_key_id().to_owned(), false),
            KeyPurpose::Data => data_master(provider, version).await?,
        };
        let generated = generate(provider, &master, label).await?;
        let binding = match purpose {
            // The anchor binds itself.
            KeyPurpose::Tokenization => {
                TokenizationKey::derive(version, &generated.plaintext).key_binding()
            }
            KeyPurpose::Data => anchor_binding(&rows, provider).await?,
        };
        let mut key = NewKey {
            purpose,
            version,
            wrapped: &generated.wrapped,
            kms_key_id: &master,
            own_master,
            deployment: provider.deployment(),
            binding: Vec::new(),
            delay: Duration::ZERO,
        };
        key.binding = bind(&binding, &key);
        if store.insert_key(&key).await?.is_some() {
            tracing::info!(purpose = purpose.as_str(), version = 1, "vault key created");
        }
        // Another replica may have won the insert: go on with whatever is stored now.
        rows = store.key_rows().await?;
    }
    let ring = build_ring(&rows, Instant::now(), provider, None).await?;
    tracing::info!(keys = ?ring, "vault keys unwrapped");
    Ok(ring)
}

/// Tokenization key v1 as stored: the anchor whose derived keys bind every key row and link
/// the audit trail.
async fn anchor(
    rows: &[KeyRow],
    provider: &Arc<dyn KeyProvider>,
) -> Result<TokenizationKey, KeyError> {
    let row = rows
        .iter()
        .find(|row| row.purpose == KeyPurpose::Tokenization.as_str() && row.version == 1)
        .ok_or_else(|| KeyError::BadRow("tokenization key v1 is missing".to_owned()))?;
    let label = label_of(row)?;
    let root = unwrap(provider, provider.master_key_id(), label, &row.wrapped).await?;
    Ok(TokenizationKey::derive(KeyVersion::FIRST, &root))
}

/// The binding key of the stored tokenization key v1.
async fn anchor_binding(
    rows: &[KeyRow],
    provider: &Arc<dyn KeyProvider>,
) -> Result<KeyBinding, KeyError> {
    Ok(anchor(rows, provider).await?.key_binding())
}

/// Reads `vault.keys` again and returns the ring it describes now, creating none: picks up
/// versions that a rotation added (on any replica) and drops versions retired or deleted.
/// Only versions `held` lacks are unwrapped, so a refresh without news costs no KMS call.
#[tracing::instrument(skip_all)]
pub async fn refresh(
    store: &VaultStore,
    provider: &Arc<dyn KeyProvider>,
    held: &KeyRing,
) -> Result<KeyRing, KeyError> {
    let loaded_at = Instant::now();
    let rows = store.key_rows().await?;
    build_ring(&rows, loaded_at, provider, Some(held)).await
}

/// The master key that unwraps a data key row. Tokenization keys are always unwrapped with the
/// configured master key (`KMS_KEY_ID`), so that a blob wrapped under any other key is refused;
/// a data key row names its own, which its binding vouches for (a generation's KMS key), or,
/// made before rows were bound, the configured one.
fn data_master_of<'a>(row: &'a KeyRow, configured: &'a str) -> &'a str {
    if row.legacy { configured } else { &row.kms_key_id }
}

/// A row's purpose and version, checked.
fn label_of(row: &KeyRow) -> Result<KeyLabel, KeyError> {
    let purpose = KeyPurpose::from_name(&row.purpose)
        .ok_or_else(|| KeyError::BadRow(format!("unknown purpose {:?}", row.purpose)))?;
    let version = KeyVersion::from_db(row.version)
        .ok_or_else(|| KeyError::BadRow(format!("{purpose} key has version {}", row.version)))?;
    Ok(KeyLabel { purpose, version, legacy: row.legacy })
}

/// Refuses a row this vault did not make: one of another deployment, or one whose binding
/// does not verify under `binding`.
fn check_origin(
    row: &KeyRow,
    label: KeyLabel,
    binding: &KeyBinding,
    deployment: &str,
) -> Result<(), KeyError> {
    if row.legacy {
        return Ok(());
    }
    let foreign =
        |why: String| KeyError::Foreign { purpose: label.purpose, version: label.version, why };
    let (Some(row_deployment), Some(row_binding)) = (&row.deployment, &row.binding) else {
        return Err(foreign("it carries no binding".to_owned()));
    };
    if row_deployment != deployment {
        return Err(foreign(format!(
            "it belongs to deployment {row_deployment:?}, this vault is {deployment:?}"
        )));
    }
    let fields = BoundFields {
        purpose: label.purpose,
        version: label.version,
        deployment: row_deployment,
        kms_key_id: &row.kms_key_id,
        own_master: row.own_master,
        wrapped: &row.wrapped,
    };
    if !fields.with(|fields| binding.verify(fields, row_binding)) {
        return Err(foreign("its binding does not verify".to_owned()));
    }
    Ok(())
}

/// The ring of `rows`, read at `loaded_at`; keys already in `held` are reused, others
/// unwrapped. Every row must have been made by this vault (see [`check_origin`]).
async fn build_ring(
    rows: &[KeyRow],
    loaded_at: Instant,
    provider: &Arc<dyn KeyProvider>,
    held: Option<&KeyRing>,
) -> Result<KeyRing, KeyError> {
    // Without a ring to reuse, the anchor is unwrapped first, and once.
    let (binding, mut fresh_anchor) = match held {
        Some(ring) => (ring.key_binding(), None),
        None => {
            let anchor = anchor(rows, provider).await?;
            (anchor.key_binding(), Some(Arc::new(anchor)))
        }
    };
    let legacy = rows.iter().filter(|row| row.legacy).count();
    if legacy > 0 && held.is_none() {
        tracing::warn!(
            rows = legacy,
            "vault.keys holds key rows made before rows were bound to their deployment; they \
             are trusted as they are (rotate and retire data keys to replace them)"
        );
    }
    let mut tokenization = BTreeMap::new();
    let mut data = BTreeMap::new();
    let mut data_masters = BTreeMap::new();
    for row in rows {
        let label = label_of(row)?;
        check_origin(row, label, &binding, provider.deployment())?;
        let version = label.version;
        // The database said how far in the future the activation is; counting that from the
        // moment of the query puts every replica's switch at the same instant of the database
        // clock, whatever the replicas' own clocks say.
        let activates =
            loaded_at + Duration::from_millis(u64::try_from(row.activates_in_ms).unwrap_or(0));
        match label.purpose {
            KeyPurpose::Tokenization => {
                let reused = held.and_then(|ring| ring.tokenization.get(&version));
                let key = match reused {
                    Some(scheduled) => scheduled.key.clone(),
                    None if version == KeyVersion::FIRST && fresh_anchor.is_some() => {
                        fresh_anchor.take().expect("checked")
                    }
                    None => {
                        let master = provider.master_key_id();
                        let root = unwrap(provider, master, label, &row.wrapped).await?;
                        Arc::new(TokenizationKey::derive(version, &root))
                    }
                };
                tokenization.insert(version, Scheduled { key, activates });
            }
            KeyPurpose::Data => {
                let key = match held.and_then(|ring| ring.data.get(&version)) {
                    Some(scheduled) => scheduled.key.clone(),
                    None => {
                        let master = data_master_of(row, provider.master_key_id());
                        let bytes = unwrap(provider, master, label, &row.wrapped).await?;
                        Arc::new(DataKey::new(version, &bytes))
                    }
                };
                data.insert(version, Scheduled { key, activates });
                data_masters
                    .insert(version, data_master_of(row, provider.master_key_id()).to_owned());
            }
        }
    }
    let mut ring = KeyRing::from_versions(tokenization, data, loaded_at)
        .ok_or_else(|| KeyError::BadRow("a purpose has no key".to_owned()))?;
    ring.data_masters = data_masters;
    Ok(ring)
}

/// The plaintext of one stored key.
async fn unwrap(
    provider: &Arc<dyn KeyProvider>,
    master: &str,
    label: KeyLabel,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let plaintext = provider
        .unwrap_key(master, label, wrapped)
        .await
        .map_err(|err| KeyError::unwrapping(label, err))?;
    tracing::debug!(
        purpose = label.purpose.as_str(),
        version = label.version.get(),
        "vault key unwrapped"
    );
    Ok(plaintext)
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

    fn wrapping_key() -> RandomizedNonceKey {
        RandomizedNonceKey::new(&AES_256_GCM, &FAKE_MASTER_KEY).expect("32-byte key")
    }

    /// The fake's deployment.
    pub(crate) const DEPLOYMENT: &str = "test";

    fn aad(master: &str, label: KeyLabel) -> Vec<u8> {
        let deployment = if label.legacy { "" } else { DEPLOYMENT };
        format!("{master}:{deployment}:{}:{}", label.purpose, label.version).into_bytes()
    }

    fn refused(detail: &str) -> KeyProviderError {
        KeyProviderError::Refused { endpoint: "fake".into(), detail: detail.into() }
    }

    impl KeyProvider for FakeKeyProvider {
        fn master_key_id(&self) -> &str {
            "fake-master-key"
        }

        fn deployment(&self) -> &str {
            DEPLOYMENT
        }

        fn generate<'a>(
            &'a self,
            master: &'a str,
            label: KeyLabel,
        ) -> BoxFuture<'a, Result<GeneratedKey, KeyProviderError>> {
            self.generated.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let mut plaintext = Zeroizing::new([0u8; KEY_LEN]);
                aws_lc_rs::rand::fill(plaintext.as_mut_slice()).map_err(|_| refused("rand"))?;
                let mut sealed = plaintext.to_vec();
                let nonce = wrapping_key()
                    .seal_in_place_append_tag(Aad::from(aad(master, label)), &mut sealed)
                    .map_err(|_| refused("seal"))?;
                let mut wrapped = nonce.as_ref().to_vec();
                wrapped.extend_from_slice(&sealed);
                Ok(GeneratedKey { plaintext, wrapped })
            })
        }

        fn unwrap_key<'a>(
            &'a self,
            master: &'a str,
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
                let plain = wrapping_key()
                    .open_in_place(nonce, Aad::from(aad(master, label)), buffer.as_mut_slice())
                    .map_err(|_| refused("wrong label or blob"))?;
                let key: [u8; KEY_LEN] = (&*plain).try_into().map_err(|_| refused("length"))?;
                Ok(Zeroizing::new(key))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use fetchreward_model::{PiiKind, canonical_ip};

    use super::fake::FakeKeyProvider;
    use super::*;

    const MASTER: &str = "fake-master-key";

    fn label(purpose: KeyPurpose, version: u32) -> KeyLabel {
        KeyLabel::new(purpose, KeyVersion::of(version))
    }

    /// Makes key rows as the vault does: bound under the binding key of the first tokenization
    /// key v1 made.
    struct Rows {
        provider: Arc<dyn KeyProvider>,
        binding: Option<KeyBinding>,
    }

    impl Rows {
        fn new(provider: &Arc<dyn KeyProvider>) -> Self {
            Rows { provider: provider.clone(), binding: None }
        }

        /// A stored row of a freshly generated key that activates `activates_in_ms` after the
        /// read.
        async fn row(&mut self, purpose: KeyPurpose, version: u32, activates_in_ms: i64) -> KeyRow {
            let label = label(purpose, version);
            let generated = self.provider.generate(MASTER, label).await.expect("generates");
            let binding = self.binding.get_or_insert_with(|| {
                assert_eq!((purpose, version), (KeyPurpose::Tokenization, 1), "the anchor first");
                TokenizationKey::derive(KeyVersion::FIRST, &generated.plaintext).key_binding()
            });
            let key = NewKey {
                purpose,
                version: label.version,
                wrapped: &generated.wrapped,
                kms_key_id: MASTER,
                own_master: false,
                deployment: fake::DEPLOYMENT,
                binding: Vec::new(),
                delay: Duration::ZERO,
            };
            let binding = bind(binding, &key);
            KeyRow {
                purpose: purpose.as_str().into(),
                version: label.version.to_db(),
                wrapped: generated.wrapped,
                kms_key_id: MASTER.into(),
                own_master: false,
                deployment: Some(fake::DEPLOYMENT.into()),
                binding: Some(binding),
                legacy: false,
                activates_in_ms,
            }
        }
    }

    fn key_bytes(fill: u8) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new([fill; KEY_LEN])
    }

    #[tokio::test]
    async fn the_fake_provider_unwraps_what_it_generated_only_for_the_same_label() {
        let provider = FakeKeyProvider::default();
        let generated =
            provider.generate(MASTER, label(KeyPurpose::Data, 1)).await.expect("generates");
        let unwrapped = provider
            .unwrap_key(MASTER, label(KeyPurpose::Data, 1), &generated.wrapped)
            .await
            .expect("unwraps");
        assert_eq!(*unwrapped, *generated.plaintext);
        assert!(!generated.wrapped.windows(KEY_LEN).any(|w| w == generated.plaintext.as_slice()));
        let legacy = KeyLabel { legacy: true, ..label(KeyPurpose::Data, 1) };
        for other in [label(KeyPurpose::Tokenization, 1), label(KeyPurpose::Data, 2), legacy] {
            assert!(provider.unwrap_key(MASTER, other, &generated.wrapped).await.is_err());
        }
        let other_master =
            provider.unwrap_key("another", label(KeyPurpose::Data, 1), &generated.wrapped);
        assert!(other_master.await.is_err());
    }

    #[tokio::test]
    async fn unwrapped_keys_rebuild_the_same_ring() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let mut maker = Rows::new(&provider);
        let rows = vec![
            maker.row(KeyPurpose::Tokenization, 1, -5).await,
            maker.row(KeyPurpose::Data, 1, -5).await,
        ];
        let first = build_ring(&rows, Instant::now(), &provider, None).await.expect("unwraps");
        let second = build_ring(&rows, Instant::now(), &provider, None).await.expect("unwraps");
        let value = canonical_ip("192.0.2.44").expect("valid");
        assert_eq!(
            first.active_tokenization().token(PiiKind::Ip, &value),
            second.active_tokenization().token(PiiKind::Ip, &value)
        );
        let sealed = first.active_data().seal("t", &value).expect("seals");
        let opened = second.data_key(KeyVersion::of(1)).expect("v1").open(
            "t",
            &sealed.nonce,
            &sealed.ciphertext,
        );
        assert_eq!(opened, Ok(value));
    }

    #[tokio::test]
    async fn a_ring_uses_the_highest_activated_versions_and_keeps_the_older_data_keys() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let mut maker = Rows::new(&provider);
        let rows = vec![
            maker.row(KeyPurpose::Tokenization, 1, -60_000).await,
            maker.row(KeyPurpose::Tokenization, 2, -1).await,
            maker.row(KeyPurpose::Data, 1, -60_000).await,
            maker.row(KeyPurpose::Data, 2, 0).await,
        ];
        let ring = build_ring(&rows, Instant::now(), &provider, None).await.expect("unwraps");
        assert_eq!(ring.active_tokenization().version(), 2);
        assert_eq!(ring.active_data().version(), 2);
        assert!(ring.data_key(KeyVersion::of(1)).is_some());
        assert_eq!(
            format!("{ring:?}"),
            "KeyRing { tokenization_versions: [1, 2], active_tokenization: 2, \
             data_versions: [1, 2], active_data: 2 }"
        );
    }

    #[tokio::test]
    async fn a_version_activating_later_waits_for_its_time_and_is_loaded_meanwhile() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let mut maker = Rows::new(&provider);
        let rows = vec![
            maker.row(KeyPurpose::Tokenization, 1, -60_000).await,
            maker.row(KeyPurpose::Tokenization, 2, 30_000).await,
            maker.row(KeyPurpose::Data, 1, -60_000).await,
            maker.row(KeyPurpose::Data, 2, 30_000).await,
        ];
        let loaded_at = Instant::now();
        let ring = build_ring(&rows, loaded_at, &provider, None).await.expect("unwraps");
        for (elapsed, expected) in [(0, 1), (29_999, 1), (30_000, 2), (90_000, 2)] {
            let now = loaded_at + Duration::from_millis(elapsed);
            assert_eq!(ring.active_tokenization_at(now).version(), expected, "at +{elapsed} ms");
            assert_eq!(ring.active_data_at(now).version(), expected, "at +{elapsed} ms");
        }
        // The pending data key is held already: rows another replica seals under it at the
        // switch can be read here.
        assert!(ring.data_key(KeyVersion::of(2)).is_some());
    }

    #[test]
    fn the_active_version_is_the_highest_whose_time_has_come_not_the_latest_activating() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let ring = KeyRing::scheduled(
            [
                (TokenizationKey::derive(KeyVersion::of(1), &key_bytes(1)), at(0)),
                (TokenizationKey::derive(KeyVersion::of(2), &key_bytes(2)), at(10)),
                (TokenizationKey::derive(KeyVersion::of(3), &key_bytes(3)), at(20)),
            ],
            [
                (DataKey::new(KeyVersion::of(1), &key_bytes(4)), at(0)),
                (DataKey::new(KeyVersion::of(2), &key_bytes(5)), at(5)),
            ],
            start,
        )
        .expect("ring");
        let versions = |secs| {
            (
                ring.active_tokenization_at(at(secs)).version().get(),
                ring.active_data_at(at(secs)).version().get(),
            )
        };
        assert_eq!(versions(0), (1, 1));
        assert_eq!(versions(5), (1, 2));
        assert_eq!(versions(10), (2, 2));
        assert_eq!(versions(19), (2, 2));
        assert_eq!(versions(20), (3, 2));
    }

    #[test]
    fn when_no_version_has_activated_the_oldest_is_used() {
        let start = Instant::now();
        let later = start + Duration::from_secs(60);
        let ring = KeyRing::scheduled(
            [
                (TokenizationKey::derive(KeyVersion::of(2), &key_bytes(2)), later),
                (TokenizationKey::derive(KeyVersion::of(1), &key_bytes(1)), later),
            ],
            [(DataKey::new(KeyVersion::of(1), &key_bytes(3)), later)],
            start,
        )
        .expect("ring");
        assert_eq!(ring.active_tokenization_at(start).version(), 1);
    }

    #[tokio::test]
    async fn a_refresh_unwraps_only_new_versions_and_drops_deleted_ones() {
        let fake = Arc::new(FakeKeyProvider::default());
        let provider: Arc<dyn KeyProvider> = fake.clone();
        let mut maker = Rows::new(&provider);
        let tokenization_v1 = maker.row(KeyPurpose::Tokenization, 1, -1).await;
        let data_v1 = maker.row(KeyPurpose::Data, 1, -1).await;
        let data_v2 = maker.row(KeyPurpose::Data, 2, -1).await;
        let rows = vec![tokenization_v1.clone(), data_v1.clone()];
        let first = build_ring(&rows, Instant::now(), &provider, None).await.expect("unwraps");
        assert_eq!(fake.unwrapped.load(Ordering::SeqCst), 2, "the anchor once, data v1");

        let rows = vec![tokenization_v1.clone(), data_v1, data_v2.clone()];
        let second =
            build_ring(&rows, Instant::now(), &provider, Some(&first)).await.expect("unwraps");
        assert_eq!(fake.unwrapped.load(Ordering::SeqCst), 3, "only data v2 was unwrapped");
        assert_eq!(second.versions(KeyPurpose::Data), [1, 2]);
        assert!(Arc::ptr_eq(
            &first.data[&KeyVersion::FIRST].key,
            &second.data[&KeyVersion::FIRST].key
        ));

        let rows = vec![tokenization_v1, data_v2];
        let third =
            build_ring(&rows, Instant::now(), &provider, Some(&second)).await.expect("unwraps");
        assert_eq!(fake.unwrapped.load(Ordering::SeqCst), 3);
        assert_eq!(third.versions(KeyPurpose::Data), [2], "a deleted version leaves memory");
    }

    #[tokio::test]
    async fn a_blob_stored_under_another_label_does_not_unwrap() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let mut maker = Rows::new(&provider);
        let tokenization = maker.row(KeyPurpose::Tokenization, 1, -1).await;
        let mut data = maker.row(KeyPurpose::Data, 1, -1).await;
        // The data key's row presented as data key v2: its binding names v1, and even a
        // binding made for v2 would not help, for KMS bound the blob to v1.
        data.version = 2;
        let rows = vec![tokenization, maker.row(KeyPurpose::Data, 1, -1).await, data];
        let err = build_ring(&rows, Instant::now(), &provider, None).await.expect_err("refused");
        assert!(
            matches!(err, KeyError::Foreign { purpose: KeyPurpose::Data, version, .. } if version.get() == 2),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_row_made_behind_the_vaults_back_is_refused() {
        let provider: Arc<dyn KeyProvider> = Arc::new(FakeKeyProvider::default());
        let mut maker = Rows::new(&provider);
        let mut rows = vec![
            maker.row(KeyPurpose::Tokenization, 1, -1).await,
            maker.row(KeyPurpose::Data, 1, -1).await,
        ];
        // Someone with write access to vault.keys and the right to wrap keys adds a data key of
        // their own: it unwraps, but its binding is one they could not compute.
        let mut intruder = Rows::new(&provider);
        intruder.row(KeyPurpose::Tokenization, 1, -1).await;
        rows.push(intruder.row(KeyPurpose::Data, 2, -1).await);
        let err = build_ring(&rows, Instant::now(), &provider, None).await.expect_err("refused");
        assert!(
            err.to_string().contains(
                "data key v2, which this vault did not make (its binding does not verify)"
            ),
            "{err}"
        );

        // Without a binding at all, or bound to another deployment: refused likewise.
        let last = rows.len() - 1;
        rows[last] = maker.row(KeyPurpose::Data, 2, -1).await;
        rows[last].binding = None;
        let err = build_ring(&rows, Instant::now(), &provider, None).await.expect_err("refused");
        assert!(err.to_string().contains("carries no binding"), "{err}");
        rows[last] = maker.row(KeyPurpose::Data, 2, -1).await;
        rows[last].deployment = Some("staging".into());
        let err = build_ring(&rows, Instant::now(), &provider, None).await.expect_err("refused");
        assert!(err.to_string().contains("belongs to deployment \"staging\""), "{err}");

        // The same row as the vault makes it is accepted.
        rows[last] = maker.row(KeyPurpose::Data, 2, -1).await;
        let ring = build_ring(&rows, Instant::now(), &provider, None).await.expect("bound rows");
        assert_eq!(ring.versions(KeyPurpose::Data), [1, 2]);
    }

    #[test]
    fn a_ring_needs_both_purposes() {
        let root = key_bytes(1);
        assert!(KeyRing::new([TokenizationKey::derive(KeyVersion::of(1), &root)], []).is_none());
        assert!(KeyRing::new([], [DataKey::new(KeyVersion::of(1), &root)]).is_none());
    }
}
