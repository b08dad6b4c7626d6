//! The vault's operations, free of gRPC: tokenize, detokenize, forget, rotate keys, rewrap.
//!
//! - Tokenize canonicalizes each value, computes its token with the active tokenization key,
//!   and stores the originals of tokens not known to be stored yet, encrypted under the active
//!   data key, in one statement per batch, before answering.
//! - Detokenize and Forget are authorized per caller and always audited: the audit row is
//!   committed before the answer, and a call whose audit row cannot be written fails without
//!   returning anything.
//! - RotateKeys (admin) adds a key version that takes over after the rotation delay; Rewrap
//!   (admin) re-encrypts stored originals under the active data key. Both are audited the same
//!   way, and neither changes anything without its audit row.
//! - Every replica reloads the key ring in the background ([`Vault::refresh_keys_every`]), and
//!   Tokenize refuses to use a ring older than the rotation delay: all replicas issue tokens of
//!   a new version from the same moment, or a lagging one fails instead of issuing old ones.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fetchreward_model::{Pii, PiiKind, Token};
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::audit::{AuditEntry, AuditOutcome, StatusCounts};
use crate::authz::{Access, Caller, Method};
use crate::crypto::{DataKey, Sealed};
use crate::error::VaultError;
use crate::keys::{self, KeyError, KeyLabel, KeyProvider, KeyPurpose, KeyRing, KeyTiming};
use crate::known_tokens::{KnownTokens, KnownTokensConfig};
use crate::metrics;
use crate::store::{
    AuditedWriteFailure, NewToken, RewrapFailure, SealedRow, StoredToken, VaultStore,
};

/// Most values in one Tokenize call.
pub const MAX_TOKENIZE_VALUES: usize = 10_000;

/// Most tokens in one Detokenize or Forget call.
pub const MAX_RECOVERY_TOKENS: usize = 1_000;

/// Longest purpose of an audited call, in characters.
pub const MAX_PURPOSE_CHARS: usize = 512;

/// Rows one Rewrap call re-encrypts when the request names no number.
pub const DEFAULT_REWRAP_ROWS: u32 = 1_000;

/// Most rows one Rewrap call re-encrypts.
pub const MAX_REWRAP_ROWS: u32 = 10_000;

/// Rows re-encrypted per transaction: short transactions hold few row locks for little time,
/// so Tokenize and Forget on the same rows wait at most one chunk.
const REWRAP_CHUNK_ROWS: u32 = 500;

/// Batches up to this size are hashed and sealed on the calling task; larger ones on a
/// blocking thread, so a 10,000-value batch does not stall other calls on the same worker.
const INLINE_BATCH_MAX: usize = 256;

/// A value to tokenize, as received.
#[derive(Clone, PartialEq, Eq)]
pub struct RawPii {
    /// The field it comes from.
    pub kind: PiiKind,
    /// The value, not yet canonical.
    pub value: String,
}

impl fmt::Debug for RawPii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawPii").field("kind", &self.kind).field("value", &"<redacted>").finish()
    }
}

/// A value Tokenize will not accept, by its position in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedValue {
    /// Its position in the request.
    pub index: usize,
    /// A stable code for the rule, e.g. `invalid_ip`.
    pub code: &'static str,
    /// The field and the rule, e.g. "ip is not a valid IPv4 or IPv6 address"; never the value.
    pub reason: String,
}

/// The answer to a Tokenize call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// One entry per value, in request order: its token, or `None` when it was refused.
    pub tokens: Vec<Option<Token>>,
    /// The refused values, in request order.
    pub refused: Vec<RefusedValue>,
}

/// What the vault holds for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The original value.
    Found(Pii),
    /// Never stored (or stored under a key this vault does not hold).
    NotFound,
    /// Stored once, destroyed by Forget.
    Forgotten,
}

/// The answer to a Detokenize call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detokenized {
    /// One result per requested token, in request order.
    pub results: Vec<(String, Recovery)>,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// The outcome of Forget for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetStatus {
    /// A stored value was destroyed, now or earlier.
    Forgotten,
    /// No value was ever stored.
    NotFound,
}

/// The answer to a Forget call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// One result per requested token, in request order.
    pub results: Vec<(String, ForgetStatus)>,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// The answer to a RotateKeys call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// The rotated key.
    pub purpose: KeyPurpose,
    /// The new version.
    pub version: u32,
    /// When it takes over, in Unix milliseconds (database clock).
    pub activates_at_unix_ms: i64,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// The answer to a Rewrap call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// The data key version the rows were re-encrypted under (the active one).
    pub data_key_version: u32,
    /// Rows re-encrypted by this call.
    pub rewrapped: u32,
    /// Stored originals still under older data key versions after this call.
    pub remaining: u64,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// The vault: keys in memory, originals in Postgres.
pub struct Vault {
    store: VaultStore,
    provider: Arc<dyn KeyProvider>,
    ring: RwLock<Arc<KeyRing>>,
    /// Serialises key reloads, so a burst of rows under a new data key unwraps it once.
    reload: tokio::sync::Mutex<()>,
    known: KnownTokens,
    timing: KeyTiming,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("keys", &self.ring())
            .field("known", &self.known)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// A Tokenize batch after hashing: every token, and the sealed originals to store.
struct PreparedBatch {
    tokens: Vec<Option<Token>>,
    refused: Vec<RefusedValue>,
    to_store: Vec<NewToken>,
    to_remember: Vec<Token>,
    cache_hits: u64,
    data_key_version: u32,
}

impl Vault {
    /// Loads the keys (creating them on the first start) and opens the vault.
    pub async fn open(
        store: VaultStore,
        provider: Arc<dyn KeyProvider>,
        known: KnownTokensConfig,
        timing: KeyTiming,
    ) -> Result<Self, KeyError> {
        let ring = keys::load_or_create(&store, &provider).await?;
        record_active_versions(&ring);
        Ok(Vault {
            store,
            provider,
            ring: RwLock::new(Arc::new(ring)),
            reload: tokio::sync::Mutex::new(()),
            known: KnownTokens::new(known),
            timing,
        })
    }

    /// The rotation delay and the refresh interval.
    pub fn key_timing(&self) -> KeyTiming {
        self.timing
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &VaultStore {
        &self.store
    }

    /// The keys in use now.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().expect("the key ring lock is never poisoned").clone()
    }

    /// Tokens of `values`, in order, with every original stored before returning; a value
    /// that breaks a rule is refused on its own and the others are tokenized.
    #[instrument(skip_all, fields(caller = %access.caller, values = values.len()))]
    pub async fn tokenize(
        &self,
        access: &Access,
        values: Vec<RawPii>,
    ) -> Result<Tokenized, VaultError> {
        if !access.allowed {
            return Err(denied(&access.caller, Method::Tokenize));
        }
        if values.len() > MAX_TOKENIZE_VALUES {
            return Err(VaultError::InvalidArgument(format!(
                "values: at most {MAX_TOKENIZE_VALUES} values per call, got {}",
                values.len()
            )));
        }
        let ring = self.ring_for_new_tokens().await?;
        let batch = if values.len() <= INLINE_BATCH_MAX {
            prepare_batch(&ring, &self.known, values)?
        } else {
            let known = self.known.clone();
            tokio::task::spawn_blocking(move || prepare_batch(&ring, &known, values))
                .await
                .map_err(|err| VaultError::Task(err.to_string()))??
        };
        ::metrics::counter!(metrics::TOKEN_CACHE_HITS).increment(batch.cache_hits);
        ::metrics::counter!(metrics::TOKEN_CACHE_MISSES).increment(batch.to_store.len() as u64);

        let PreparedBatch { tokens, refused, mut to_store, to_remember, data_key_version, .. } =
            batch;
        if !to_store.is_empty() {
            let started = Instant::now();
            let written = self.store.store_tokens(data_key_version, &mut to_store).await?;
            ::metrics::histogram!(metrics::STORE_SECONDS).record(started.elapsed().as_secs_f64());
            ::metrics::counter!(metrics::TOKENS_STORED).increment(written as u64);
            self.known.insert_all(&to_remember);
        }
        for value in &refused {
            ::metrics::counter!(metrics::TOKENIZE_REFUSED, "code" => value.code).increment(1);
        }
        Ok(Tokenized { tokens, refused })
    }

    /// The originals of `tokens`, for `purpose`, if `caller` may recover them.
    #[instrument(skip_all, fields(caller = %access.caller, tokens = tokens.len()))]
    pub async fn detokenize(
        &self,
        access: &Access,
        tokens: Vec<String>,
        purpose: String,
    ) -> Result<Detokenized, VaultError> {
        let method = Method::Detokenize;
        let audit = |outcome, counts| {
            audit_entry(&access.caller, method, &purpose, tokens.len(), outcome, counts)
        };
        let caller = &access.caller;
        if !access.allowed {
            self.write_audit(&audit(AuditOutcome::Denied, StatusCounts::default())).await?;
            return Err(denied(caller, method));
        }
        if let Err(err) = validate_recovery(&tokens, &purpose) {
            self.write_audit(&audit(AuditOutcome::Invalid, StatusCounts::default())).await?;
            return Err(err);
        }
        let results = match self.recover(&tokens).await {
            Ok(results) => results,
            Err(err) => {
                self.audit_failure(&audit(AuditOutcome::Failed, StatusCounts::default())).await;
                return Err(err);
            }
        };
        let mut counts = StatusCounts::default();
        for (_, recovery) in &results {
            match recovery {
                Recovery::Found(_) => counts.found += 1,
                Recovery::NotFound => counts.not_found += 1,
                Recovery::Forgotten => counts.forgotten += 1,
            }
        }
        let audit_id = self.write_audit(&audit(AuditOutcome::Allowed, counts)).await?;
        record_results(method, counts);
        Ok(Detokenized { results, audit_id })
    }

    /// Destroys the originals of `tokens`, for `purpose`, if `caller` may.
    #[instrument(skip_all, fields(caller = %access.caller, tokens = tokens.len()))]
    pub async fn forget(
        &self,
        access: &Access,
        tokens: Vec<String>,
        purpose: String,
    ) -> Result<Forgotten, VaultError> {
        let method = Method::Forget;
        let audit = |outcome, counts| {
            audit_entry(&access.caller, method, &purpose, tokens.len(), outcome, counts)
        };
        let caller = &access.caller;
        if !access.allowed {
            self.write_audit(&audit(AuditOutcome::Denied, StatusCounts::default())).await?;
            return Err(denied(caller, method));
        }
        let parsed = match validate_recovery(&tokens, &purpose) {
            Ok(parsed) => parsed,
            Err(err) => {
                self.write_audit(&audit(AuditOutcome::Invalid, StatusCounts::default())).await?;
                return Err(err);
            }
        };
        let distinct = distinct(&tokens);
        let forgotten_counts = |existing: &[String]| {
            let existing: HashSet<&str> = existing.iter().map(String::as_str).collect();
            let forgotten = tokens.iter().filter(|t| existing.contains(t.as_str())).count();
            StatusCounts {
                found: 0,
                forgotten: forgotten as u32,
                not_found: (tokens.len() - forgotten) as u32,
            }
        };
        let outcome = self
            .store
            .forget_and_audit(&distinct, |existing| {
                audit(AuditOutcome::Allowed, forgotten_counts(existing))
            })
            .await;
        let (existing, audit_id) = match outcome {
            Ok(done) => done,
            Err(err) => {
                self.audit_failure(&audit(AuditOutcome::Failed, StatusCounts::default())).await;
                return Err(audited_write_error(err));
            }
        };
        self.known.remove_all(&parsed);
        count_audited(method, AuditOutcome::Allowed);
        let counts = forgotten_counts(&existing);
        record_results(method, counts);
        let existing: HashSet<String> = existing.into_iter().collect();
        let results = tokens
            .into_iter()
            .map(|token| {
                let status = if existing.contains(&token) {
                    ForgetStatus::Forgotten
                } else {
                    ForgetStatus::NotFound
                };
                (token, status)
            })
            .collect();
        Ok(Forgotten { results, audit_id })
    }

    /// Looks up and decrypts well-formed tokens.
    async fn recover(&self, tokens: &[String]) -> Result<Vec<(String, Recovery)>, VaultError> {
        let stored: HashMap<String, StoredToken> = self
            .store
            .lookup(&distinct(tokens))
            .await?
            .into_iter()
            .map(|row| (row.token.clone(), row))
            .collect();
        let mut ring = self.ring();
        let mut results = Vec::with_capacity(tokens.len());
        for token in tokens {
            let recovery = match stored.get(token) {
                None => Recovery::NotFound,
                Some(StoredToken { sealed: None, .. }) => Recovery::Forgotten,
                Some(StoredToken {
                    sealed: Some((nonce, ciphertext)), data_key_version, ..
                }) => {
                    let version = u32::try_from(*data_key_version).unwrap_or(0);
                    if ring.data_key(version).is_none() {
                        ring = self.ring_with_data_key(token, *data_key_version).await?;
                    }
                    let key = ring.data_key(version).expect("checked just above");
                    let value = key
                        .open(token, nonce, ciphertext)
                        .map_err(|source| VaultError::Crypto { token: token.clone(), source })?;
                    Recovery::Found(value)
                }
            };
            results.push((token.clone(), recovery));
        }
        Ok(results)
    }

    /// The key ring, reloaded from the database if it lacks data key `version` (another
    /// replica rotated the data key after this one started).
    async fn ring_with_data_key(
        &self,
        token: &str,
        version: i32,
    ) -> Result<Arc<KeyRing>, VaultError> {
        let unknown = || VaultError::UnknownDataKey { token: token.to_owned(), version };
        let wanted = u32::try_from(version).map_err(|_| unknown())?;
        let _reloading = self.reload.lock().await;
        let current = self.ring();
        if current.data_key(wanted).is_some() {
            return Ok(current);
        }
        let fresh = self.refresh_locked().await?;
        if fresh.data_key(wanted).is_none() {
            return Err(unknown());
        }
        Ok(fresh)
    }

    /// The key ring to make new tokens and ciphertexts with.
    ///
    /// A rotation takes over one rotation delay after it was made, and every replica reloads
    /// the ring more often than that. A ring read longer ago than the delay may therefore miss
    /// a version that has taken over on the other replicas (this replica's refreshes failed):
    /// it is reloaded first, and if that fails the call fails, rather than issuing tokens of a
    /// version the others no longer issue. With a zero delay there is no such promise to keep.
    async fn ring_for_new_tokens(&self) -> Result<Arc<KeyRing>, VaultError> {
        let ring = self.ring();
        let max_age = self.timing.rotation_delay;
        if max_age.is_zero() || ring.loaded_at().elapsed() < max_age {
            return Ok(ring);
        }
        let _reloading = self.reload.lock().await;
        let current = self.ring();
        if current.loaded_at().elapsed() < max_age {
            // Another call reloaded it while this one waited.
            return Ok(current);
        }
        tracing::warn!(
            age_ms = current.loaded_at().elapsed().as_millis() as u64,
            "vault keys older than the rotation delay; reloading before tokenizing"
        );
        Ok(self.refresh_locked().await?)
    }

    /// Reloads the key ring from `vault.keys` and uses it from now on: new versions are
    /// unwrapped, versions deleted from the table are dropped.
    pub async fn refresh_keys(&self) -> Result<Arc<KeyRing>, KeyError> {
        let _reloading = self.reload.lock().await;
        self.refresh_locked().await
    }

    /// [`Vault::refresh_keys`], with the reload lock held by the caller.
    async fn refresh_locked(&self) -> Result<Arc<KeyRing>, KeyError> {
        let current = self.ring();
        let fresh = Arc::new(keys::refresh(&self.store, &self.provider, &current).await?);
        let changed = KeyPurpose::ALL
            .into_iter()
            .any(|purpose| fresh.versions(purpose) != current.versions(purpose));
        if changed {
            tracing::info!(keys = ?fresh, "vault keys reloaded");
        }
        *self.ring.write().expect("the key ring lock is never poisoned") = fresh.clone();
        Ok(fresh)
    }

    /// Reloads the key ring every `interval` until `shutdown` is cancelled, so that a rotation
    /// made through any replica is held here before it takes over. A failed reload is logged
    /// and counted; the ring in use stays, and Tokenize stops using it once it is older than
    /// the rotation delay.
    pub async fn refresh_keys_every(&self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut active = active_versions(&self.ring());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let refreshed = tokio::select! {
                () = shutdown.cancelled() => break,
                refreshed = self.refresh_keys() => refreshed,
            };
            if let Err(err) = refreshed {
                ::metrics::counter!(metrics::KEY_REFRESH_FAILURES).increment(1);
                tracing::error!(error = %err, "vault keys not refreshed");
            }
            let ring = self.ring();
            let now_active = active_versions(&ring);
            if now_active != active {
                tracing::info!(
                    tokenization = now_active.0,
                    data = now_active.1,
                    "active key versions changed"
                );
                active = now_active;
            }
            record_active_versions(&ring);
        }
        tracing::debug!("key refresh stopped");
    }

    /// Makes a new version of the `target` key, taking over after the rotation delay, if
    /// `caller` may. `target` is `None` when the request named no valid key.
    #[instrument(skip_all, fields(caller = %access.caller))]
    pub async fn rotate_keys(
        &self,
        access: &Access,
        target: Option<KeyPurpose>,
        purpose: String,
    ) -> Result<Rotated, VaultError> {
        let method = Method::RotateKeys;
        let audit = |outcome, detail: String| {
            admin_audit_entry(&access.caller, method, &purpose, outcome, detail)
        };
        let asked = match target {
            Some(target) => format!("rotate the {target} key"),
            None => "rotate an unspecified key".to_owned(),
        };
        let caller = &access.caller;
        if !access.allowed {
            self.write_audit(&audit(AuditOutcome::Denied, asked)).await?;
            return Err(denied(caller, method));
        }
        let checked = validate_purpose(&purpose).and_then(|()| {
            target.ok_or_else(|| {
                VaultError::InvalidArgument(
                    "target must be KEY_TARGET_TOKENIZATION or KEY_TARGET_DATA".to_owned(),
                )
            })
        });
        let target = match checked {
            Ok(target) => target,
            Err(err) => {
                self.write_audit(&audit(AuditOutcome::Invalid, asked)).await?;
                return Err(err);
            }
        };
        let delay = self.timing.rotation_delay;
        let rotated = match self.create_key_version(target, delay, &audit).await {
            Ok(rotated) => rotated,
            Err(err) => {
                self.audit_failure(&audit(AuditOutcome::Failed, asked)).await;
                return Err(err);
            }
        };
        count_audited(method, AuditOutcome::Allowed);
        tracing::info!(
            purpose = target.as_str(),
            version = rotated.version,
            delay_secs = delay.as_secs(),
            "key rotated"
        );
        // This replica holds the new version at once; the others within a refresh interval,
        // which is shorter than the delay.
        if let Err(err) = self.refresh_keys().await {
            tracing::warn!(error = %err, "rotated key not loaded yet; the next refresh retries");
        }
        Ok(rotated)
    }

    /// Generates version N+1 of `target` with KMS and stores it with its audit row.
    async fn create_key_version(
        &self,
        target: KeyPurpose,
        delay: Duration,
        audit: &(dyn Fn(AuditOutcome, String) -> AuditEntry + Sync),
    ) -> Result<Rotated, VaultError> {
        let version = self.store.next_key_version(target).await?;
        let generated =
            keys::generate(&self.provider, KeyLabel { purpose: target, version }).await?;
        let stored = self
            .store
            .insert_key_and_audit(
                target,
                version,
                &generated.wrapped,
                self.provider.master_key_id(),
                delay,
                |activates_at_unix_ms| {
                    let detail = format!(
                        "{target} key v{version}, activates at {}",
                        unix_ms_text(activates_at_unix_ms)
                    );
                    audit(AuditOutcome::Allowed, detail)
                },
            )
            .await
            .map_err(audited_write_error)?;
        match stored {
            Some((activates_at_unix_ms, audit_id)) => {
                Ok(Rotated { purpose: target, version, activates_at_unix_ms, audit_id })
            }
            // Two rotations read the same highest version: this one lost the insert. Trying
            // again with the next version would make two versions within milliseconds, the
            // first of them barely used, so the caller is told instead.
            None => Err(VaultError::RotationConflict { purpose: target, version }),
        }
    }

    /// Re-encrypts up to `max_rows` stored originals sealed under older data key versions
    /// with the active data key, if `caller` may. `max_rows` 0 means [`DEFAULT_REWRAP_ROWS`].
    ///
    /// The audit row is written first, so no row changes unaudited; the rows then move in
    /// chunks of one transaction each. Rows locked by concurrent calls are skipped and left
    /// for a later call, so this is safe while the vault serves and idempotent.
    ///
    /// Refused while a newer data key version waits for its activation time: the rows would
    /// stay under the version about to be replaced, and "nothing remaining" would wrongly
    /// suggest that it can be retired.
    #[instrument(skip_all, fields(caller = %access.caller, max_rows))]
    pub async fn rewrap(
        &self,
        access: &Access,
        purpose: String,
        max_rows: u32,
    ) -> Result<Rewrapped, VaultError> {
        let method = Method::Rewrap;
        let audit = |outcome, detail: String| {
            admin_audit_entry(&access.caller, method, &purpose, outcome, detail)
        };
        let limit = if max_rows == 0 { DEFAULT_REWRAP_ROWS } else { max_rows };
        let asked = |version: u32| {
            format!("re-encrypt up to {limit} stored values under data key v{version}")
        };
        let caller = &access.caller;
        if !access.allowed {
            let version = self.ring().active_data().version();
            self.write_audit(&audit(AuditOutcome::Denied, asked(version))).await?;
            return Err(denied(caller, method));
        }
        let checked = validate_purpose(&purpose).and_then(|()| {
            if limit > MAX_REWRAP_ROWS {
                Err(VaultError::InvalidArgument(format!(
                    "max_rows: at most {MAX_REWRAP_ROWS} rows per call, got {limit}"
                )))
            } else {
                Ok(())
            }
        });
        if let Err(err) = checked {
            let version = self.ring().active_data().version();
            self.write_audit(&audit(AuditOutcome::Invalid, asked(version))).await?;
            return Err(err);
        }
        // The versions as stored now, not as of the last background refresh.
        let ring = match self.refresh_keys().await {
            Ok(ring) => ring,
            Err(err) => {
                let version = self.ring().active_data().version();
                self.audit_failure(&audit(AuditOutcome::Failed, asked(version))).await;
                return Err(err.into());
            }
        };
        let active = ring.active_data();
        let version = active.version();
        let pending = ring.versions(KeyPurpose::Data).into_iter().filter(|v| *v > version).max();
        if let Some(pending) = pending {
            self.write_audit(&audit(AuditOutcome::Invalid, asked(version))).await?;
            return Err(VaultError::FailedPrecondition(format!(
                "data key v{pending} has not taken over yet (see its activation time); rewrap \
                 once it has, or the values would stay under v{version}, which it replaces"
            )));
        }
        let audit_id = self.write_audit(&audit(AuditOutcome::Allowed, asked(version))).await?;
        let mut rewrapped = 0;
        while rewrapped < limit {
            let chunk = REWRAP_CHUNK_ROWS.min(limit - rewrapped);
            let done = match self
                .store
                .rewrap_chunk(version, chunk, |row| reseal(&ring, active, row))
                .await
            {
                Ok(done) => u32::try_from(done).expect("at most one chunk of rows"),
                Err(err) => {
                    let detail = format!(
                        "stopped after {rewrapped} stored values re-encrypted under data key \
                         v{version}"
                    );
                    self.audit_failure(&audit(AuditOutcome::Failed, detail)).await;
                    return Err(match err {
                        RewrapFailure::Database(err) => VaultError::Database(err),
                        RewrapFailure::Reseal(err) => err,
                    });
                }
            };
            rewrapped += done;
            ::metrics::counter!(metrics::REWRAPPED_ROWS).increment(u64::from(done));
            if done < chunk {
                break;
            }
        }
        let remaining = self.store.count_to_rewrap(version).await?;
        tracing::info!(version, rewrapped, remaining, "stored values rewrapped");
        Ok(Rewrapped { data_key_version: version, rewrapped, remaining, audit_id })
    }

    /// Writes an audit row; a failure fails the call.
    async fn write_audit(&self, entry: &AuditEntry) -> Result<i64, VaultError> {
        let id = self.store.audit(entry).await.map_err(VaultError::AuditUnavailable)?;
        count_audited(entry.method, entry.outcome);
        Ok(id)
    }

    /// Records a failed call. The call fails anyway, so a failure to audit it is only logged.
    async fn audit_failure(&self, entry: &AuditEntry) {
        if let Err(err) = self.write_audit(entry).await {
            tracing::error!(method = entry.method.as_str(), error = %err, "failed call not audited");
        }
    }
}

/// Hashes a batch and seals the originals of tokens not known to be stored.
fn prepare_batch(
    ring: &KeyRing,
    known: &KnownTokens,
    values: Vec<RawPii>,
) -> Result<PreparedBatch, VaultError> {
    let tokenization = ring.active_tokenization();
    let data = ring.active_data();
    let mut tokens = Vec::with_capacity(values.len());
    let mut refused = Vec::new();
    let mut seen = HashSet::with_capacity(values.len());
    let mut to_store = Vec::new();
    let mut to_remember = Vec::new();
    let mut cache_hits = 0;
    let mut per_kind = [0u64; PiiKind::ALL.len()];
    for (index, raw) in values.into_iter().enumerate() {
        per_kind[raw.kind as usize] += 1;
        let value = match raw.kind.canonicalize(&raw.value) {
            Ok(value) => value,
            Err(err) => {
                let reason = format!("{} {err}", raw.kind);
                refused.push(RefusedValue { index, code: err.code(), reason });
                tokens.push(None);
                continue;
            }
        };
        let token = tokenization.token(raw.kind, &value);
        tokens.push(Some(token));
        if !seen.insert(token) {
            continue;
        }
        if known.contains(&token) {
            cache_hits += 1;
            continue;
        }
        let text = token.to_string();
        let sealed = data
            .seal(&text, &value)
            .map_err(|source| VaultError::Crypto { token: text.clone(), source })?;
        to_store.push(NewToken { token: text, kind: raw.kind.token_prefix(), sealed });
        to_remember.push(token);
    }
    for kind in PiiKind::ALL {
        ::metrics::counter!(metrics::TOKENIZE_VALUES, "kind" => kind.field_name())
            .increment(per_kind[kind as usize]);
    }
    Ok(PreparedBatch {
        tokens,
        refused,
        to_store,
        to_remember,
        cache_hits,
        data_key_version: data.version(),
    })
}

/// Checks the purpose of an audited call.
fn validate_purpose(purpose: &str) -> Result<(), VaultError> {
    if purpose.trim().is_empty() {
        return Err(VaultError::InvalidArgument(format!(
            "purpose is required (1 to {MAX_PURPOSE_CHARS} characters)"
        )));
    }
    if purpose.chars().count() > MAX_PURPOSE_CHARS {
        return Err(VaultError::InvalidArgument(format!(
            "purpose is longer than {MAX_PURPOSE_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks the purpose, the batch size and every token of a Detokenize or Forget call.
fn validate_recovery(tokens: &[String], purpose: &str) -> Result<Vec<Token>, VaultError> {
    validate_purpose(purpose)?;
    if tokens.len() > MAX_RECOVERY_TOKENS {
        return Err(VaultError::InvalidArgument(format!(
            "tokens: at most {MAX_RECOVERY_TOKENS} tokens per call, got {}",
            tokens.len()
        )));
    }
    tokens
        .iter()
        .enumerate()
        .map(|(index, text)| {
            text.parse::<Token>()
                .map_err(|err| VaultError::InvalidArgument(format!("tokens[{index}]: {err}")))
        })
        .collect()
}

/// The tokens without repeats, in first-seen order.
fn distinct(tokens: &[String]) -> Vec<String> {
    let mut seen = HashSet::with_capacity(tokens.len());
    tokens.iter().filter(|token| seen.insert(token.as_str())).cloned().collect()
}

fn audit_entry(
    caller: &Caller,
    method: Method,
    purpose: &str,
    token_count: usize,
    outcome: AuditOutcome,
    counts: StatusCounts,
) -> AuditEntry {
    AuditEntry {
        caller: caller.clone(),
        method,
        // An over-long purpose is refused, but its refusal is still audited with what fits.
        purpose: purpose.chars().take(MAX_PURPOSE_CHARS).collect(),
        token_count: u32::try_from(token_count).unwrap_or(u32::MAX),
        outcome,
        counts,
        detail: None,
    }
}

/// The audit row of an admin call (RotateKeys, Rewrap): no tokens, a detail of what it did.
fn admin_audit_entry(
    caller: &Caller,
    method: Method,
    purpose: &str,
    outcome: AuditOutcome,
    detail: String,
) -> AuditEntry {
    AuditEntry {
        detail: Some(detail),
        ..audit_entry(caller, method, purpose, 0, outcome, StatusCounts::default())
    }
}

/// The error of a change written together with its audit row.
fn audited_write_error(err: AuditedWriteFailure) -> VaultError {
    match err {
        AuditedWriteFailure::Write(err) => VaultError::Database(err),
        AuditedWriteFailure::Audit(err) => VaultError::AuditUnavailable(err),
    }
}

/// The original of `row` sealed again under `active`.
fn reseal(ring: &KeyRing, active: &DataKey, row: &SealedRow) -> Result<Sealed, VaultError> {
    let old = u32::try_from(row.data_key_version)
        .ok()
        .and_then(|version| ring.data_key(version))
        .ok_or_else(|| VaultError::UnknownDataKey {
        token: row.token.clone(),
        version: row.data_key_version,
    })?;
    let crypto = |source| VaultError::Crypto { token: row.token.clone(), source };
    let value = old.open(&row.token, &row.nonce, &row.ciphertext).map_err(crypto)?;
    active.seal(&row.token, &value).map_err(crypto)
}

/// The active tokenization and data key versions of `ring`.
fn active_versions(ring: &KeyRing) -> (u32, u32) {
    (ring.active_tokenization().version(), ring.active_data().version())
}

/// Publishes the active versions as gauges, so a dashboard shows every replica switching.
fn record_active_versions(ring: &KeyRing) {
    let (tokenization, data) = active_versions(ring);
    for (purpose, version) in [(KeyPurpose::Tokenization, tokenization), (KeyPurpose::Data, data)] {
        ::metrics::gauge!(metrics::ACTIVE_KEY_VERSION, "purpose" => purpose.as_str())
            .set(f64::from(version));
    }
}

/// A Unix time in milliseconds as RFC 3339 UTC text.
fn unix_ms_text(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms).map_or_else(
        || format!("{unix_ms} ms after the Unix epoch"),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// Counts an audited call by method and outcome.
fn count_audited(method: Method, outcome: AuditOutcome) {
    ::metrics::counter!(
        metrics::AUDITED_CALLS,
        "method" => method.as_str(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
}

/// A refusal, counted in `fetchreward_authz_denied_total`.
fn denied(caller: &Caller, method: Method) -> VaultError {
    VaultError::PermissionDenied { caller: caller.identity().to_owned(), method }
}

fn record_results(method: Method, counts: StatusCounts) {
    for (status, n) in
        [("found", counts.found), ("not_found", counts.not_found), ("forgotten", counts.forgotten)]
    {
        if n > 0 {
            ::metrics::counter!(metrics::TOKEN_RESULTS, "method" => method.as_str(), "status" => status)
                .increment(u64::from(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;
    use crate::crypto::{DataKey, KEY_LEN, TokenizationKey};
    use crate::known_tokens::KnownTokensConfig;

    fn ring() -> KeyRing {
        let root = Zeroizing::new([3u8; KEY_LEN]);
        KeyRing::new([TokenizationKey::derive(1, &root)], [DataKey::new(1, &root)]).expect("ring")
    }

    fn raw(kind: PiiKind, value: &str) -> RawPii {
        RawPii { kind, value: value.to_owned() }
    }

    #[test]
    fn a_batch_is_deduplicated_and_canonicalized() {
        let known = KnownTokens::new(KnownTokensConfig::default());
        let batch = prepare_batch(
            &ring(),
            &known,
            vec![
                raw(PiiKind::Ip, "::ffff:192.0.2.1"),
                raw(PiiKind::Ip, "192.0.2.1"),
                raw(PiiKind::DeviceId, " 192.0.2.1 "),
                raw(PiiKind::DeviceId, "192.0.2.1"),
            ],
        )
        .expect("valid");
        let tokens: Vec<Token> = batch.tokens.iter().map(|t| t.expect("tokenized")).collect();
        assert_eq!(tokens.len(), 4);
        assert_eq!(tokens[0], tokens[1]);
        assert_eq!(tokens[2], tokens[3]);
        assert_ne!(tokens[0].mac(), tokens[2].mac());
        assert_eq!(batch.to_store.len(), 2);
        assert_eq!(batch.to_store[0].kind, "ip");
        assert_eq!(batch.to_store[1].kind, "dev");
    }

    #[test]
    fn known_tokens_are_not_sealed_again() {
        let known = KnownTokens::new(KnownTokensConfig::default());
        let ring = ring();
        let first = prepare_batch(&ring, &known, vec![raw(PiiKind::Ip, "192.0.2.1")]).expect("ok");
        known.insert_all(&first.to_remember);
        let second = prepare_batch(
            &ring,
            &known,
            vec![raw(PiiKind::Ip, "192.0.2.1"), raw(PiiKind::Ip, "192.0.2.2")],
        )
        .expect("ok");
        assert_eq!(second.cache_hits, 1);
        assert_eq!(second.to_store.len(), 1);
        assert_eq!(second.tokens[0], first.tokens[0]);
        assert!(second.tokens[0].is_some());
    }

    #[test]
    fn an_invalid_value_is_refused_alone_by_index_and_rule_only() {
        let known = KnownTokens::new(KnownTokensConfig::default());
        let values = vec![
            raw(PiiKind::Ip, "192.0.2.1"),
            raw(PiiKind::DeviceId, "abc"),
            raw(PiiKind::Ip, "999.1.2.3"),
            raw(PiiKind::DeviceId, "  "),
            raw(PiiKind::DeviceId, "593\0-47"),
        ];
        let batch = prepare_batch(&ring(), &known, values).expect("a batch with refusals");
        let tokenized: Vec<bool> = batch.tokens.iter().map(Option::is_some).collect();
        assert_eq!(tokenized, [true, true, false, false, false]);
        assert_eq!(batch.to_store.len(), 2, "the accepted values are stored");
        let refused: Vec<(usize, &str, &str)> =
            batch.refused.iter().map(|r| (r.index, r.code, r.reason.as_str())).collect();
        assert_eq!(
            refused,
            [
                (2, "invalid_ip", "ip is not a valid IPv4 or IPv6 address"),
                (3, "empty_value", "device_id is empty"),
                (4, "nul_character", "device_id holds a NUL character (U+0000)"),
            ]
        );
    }

    #[test]
    fn recovery_requests_are_checked_with_the_index_of_the_bad_token() {
        let token = |byte: u8| Token::new(PiiKind::Ip, 1, [byte; 32]).to_string();
        assert!(validate_recovery(&[token(1), token(2)], "ticket 7").is_ok());
        let err = validate_recovery(&[token(1), "198.51.100.4".into()], "ticket 7")
            .expect_err("not a token");
        assert_eq!(
            err.to_string(),
            "tokens[1]: does not start with a known kind (`ip_` or `dev_`)"
        );
        assert!(!err.to_string().contains("198.51"));
        assert!(validate_recovery(&[token(1)], " ").is_err());
        assert!(validate_recovery(&[token(1)], &"p".repeat(MAX_PURPOSE_CHARS + 1)).is_err());
        assert!(validate_recovery(&[token(1)], &"p".repeat(MAX_PURPOSE_CHARS)).is_ok());
        let many = vec![token(1); MAX_RECOVERY_TOKENS + 1];
        assert!(validate_recovery(&many, "x").is_err());
    }

    #[test]
    fn audited_purposes_are_cut_to_the_limit() {
        let entry = audit_entry(
            &Caller::anonymous(),
            Method::Detokenize,
            &"é".repeat(600),
            3,
            AuditOutcome::Invalid,
            StatusCounts::default(),
        );
        assert_eq!(entry.purpose.chars().count(), MAX_PURPOSE_CHARS);
    }

    #[test]
    fn raw_values_do_not_show_in_debug() {
        let printed = format!("{:?}", raw(PiiKind::Ip, "203.0.113.5"));
        assert!(!printed.contains("203.0.113.5"), "{printed}");
    }
}
