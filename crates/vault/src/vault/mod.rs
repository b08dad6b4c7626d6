//! The vault's operations, free of gRPC: tokenize, detokenize, forget, rotate keys, rewrap.
//!
//! - `tokenize`: canonicalizes each value, computes its token with the active tokenization
//!   key, and stores the originals of tokens not known to be stored yet, encrypted under the
//!   active data key, in one statement per batch, before answering.
//! - `recovery`: Detokenize and Forget, authorized per caller and always audited: the audit
//!   row is committed before the answer, and a call whose audit row cannot be written fails
//!   without returning anything.
//! - `admin`: RotateKeys adds a key version that takes over after the rotation delay; Rewrap
//!   re-encrypts stored originals under the active data key. Both are audited the same way,
//!   and neither changes anything without its audit row.
//! - `audited`: the one path every audited call takes (authorize, audit a denial, validate,
//!   audit an invalid request, act, audit a failure).
//! - `trail`: reading the audit trail back, and verifying its hash chain.
//! - `volume`: the per-caller Tokenize rate limit and the volume audit rows.
//! - `keeper`: scheduled rotation, rewrap and retirement of data key generations, which makes
//!   a Forget final ([`crate::erasure`]).
//! - Here: the key ring. Every replica reloads it in the background
//!   ([`Vault::refresh_keys_every`]), and Tokenize refuses to use a ring older than the rotation
//!   delay: all replicas issue tokens of a new version from the same moment, or a lagging one
//!   fails instead of issuing old ones.

mod admin;
mod audited;
mod keeper;
mod recovery;
mod tokenize;
mod trail;
mod volume;
mod workflows;

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use self::admin::{DEFAULT_REWRAP_ROWS, MAX_REWRAP_ROWS, Rewrapped, Rotated};
pub use self::audited::MAX_PURPOSE_CHARS;
pub use self::keeper::{KEEPER, KEEPER_REWRAP_ROWS, KeeperRun};
pub use self::recovery::{
    Detokenized, ForgetStatus, Forgotten, MAX_RECOVERY_TOKENS, Recovery, RestoreStatus, Restored,
};
pub use self::tokenize::{MAX_TOKENIZE_VALUES, RawPii, RefusedValue, Tokenized};
pub use self::trail::{AuditVerification, BrokenChain, ListedAuditRow, MAX_LISTED_ROWS};
use self::volume::TokenizeVolume;
pub use self::volume::{TokenizeLimit, VOLUME_AUDIT_INTERVAL};
use self::workflows::LookupLimit;
pub use self::workflows::{
    LiftedQuota, LookedUp, Lookup, MAX_DECOYS, MAX_LOOKUP_VALUES, MAX_QUOTA_LIFT, PlantedDecoys,
};
use crate::authz::Method;
use crate::crypto::AuditChain;
use crate::erasure::ErasureSettings;
use crate::error::VaultError;
use crate::keys::{self, KeyError, KeyProvider, KeyPurpose, KeyRing, KeyTiming};
use crate::known_tokens::{KnownTokens, KnownTokensConfig};
use crate::metrics;
use crate::privacy::PrivacySettings;
use crate::spool::AuditSpool;
use crate::store::VaultStore;
use crate::version::KeyVersion;

/// The vault: keys in memory, originals in Postgres.
pub struct Vault {
    store: VaultStore,
    provider: Arc<dyn KeyProvider>,
    ring: RwLock<Arc<KeyRing>>,
    /// Serialises key reloads, so a burst of rows under a new data key unwraps it once.
    reload: tokio::sync::Mutex<()>,
    known: KnownTokens,
    timing: KeyTiming,
    /// When forgotten values become unrecoverable, and whether they come back.
    erasure: ErasureSettings,
    /// The key that links every audit row to the one before.
    chain: AuditChain,
    /// The Tokenize rate limit and volume counts of each caller.
    volume: TokenizeVolume,
    /// Where Detokenize's audit rows wait while the primary is unreachable.
    spool: Option<AuditSpool>,
    /// Roles, purpose codes, masks and the daily reveal limit.
    privacy: PrivacySettings,
    /// The Lookup rate limit of each caller.
    lookups: LookupLimit,
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

impl Vault {
    /// Loads the keys (creating them on the first start) and opens the vault.
    pub async fn open(
        store: VaultStore,
        provider: Arc<dyn KeyProvider>,
        known: KnownTokensConfig,
        timing: KeyTiming,
        erasure: ErasureSettings,
        tokenize_limit: TokenizeLimit,
    ) -> Result<Self, KeyError> {
        let ring = keys::load_or_create(&store, &provider).await?;
        record_active_versions(&ring);
        record_refresh();
        // Failures are counted from zero, so that a rate over them exists before the first.
        ::metrics::counter!(metrics::KEY_REFRESH_FAILURES).increment(0);
        for method in Method::AUDITED {
            ::metrics::counter!(metrics::AUDIT_WRITE_FAILURES, "method" => method.as_str())
                .increment(0);
        }
        for method in [Method::Detokenize, Method::RevealMasked] {
            ::metrics::counter!(metrics::DECOY_HITS, "method" => method.as_str()).increment(0);
        }
        ::metrics::counter!(metrics::QUOTA_REFUSALS, "method" => Method::Detokenize.as_str())
            .increment(0);
        for step in ["spooled", "replayed"] {
            ::metrics::counter!(metrics::AUDIT_SPOOL, "step" => step).increment(0);
        }
        let chain = ring.audit_chain();
        Ok(Vault {
            chain,
            store,
            provider,
            ring: RwLock::new(Arc::new(ring)),
            reload: tokio::sync::Mutex::new(()),
            known: KnownTokens::new(known),
            timing,
            erasure,
            volume: TokenizeVolume::new(tokenize_limit),
            spool: None,
            lookups: LookupLimit::new(PrivacySettings::default().lookup_rate),
            privacy: PrivacySettings::default(),
        })
    }

    /// Spools Detokenize's audit rows to `spool` while the primary is unreachable.
    pub fn with_audit_spool(self, spool: AuditSpool) -> Self {
        Vault { spool: Some(spool), ..self }
    }

    /// Moves spooled audit rows into the trail every `interval` until `stop` (nothing to do
    /// without a spool).
    pub async fn replay_audit_spool_every(&self, interval: Duration, stop: CancellationToken) {
        if let Some(spool) = &self.spool {
            spool.replay_every(&self.store, &self.chain, interval, stop).await;
        }
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

    /// The key ring, reloaded from the database if it lacks data key `version` (another
    /// replica rotated the data key after this one started).
    async fn ring_with_data_key(
        &self,
        token: &str,
        version: i32,
    ) -> Result<Arc<KeyRing>, VaultError> {
        let unknown = || VaultError::UnknownDataKey { token: token.to_owned(), version };
        let wanted = KeyVersion::from_db(version).ok_or_else(unknown)?;
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
        record_refresh();
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
                    tokenization = now_active.0.get(),
                    data = now_active.1.get(),
                    "active key versions changed"
                );
                active = now_active;
            }
            record_active_versions(&ring);
        }
        tracing::debug!("key refresh stopped");
    }
}

/// The active tokenization and data key versions of `ring`.
fn active_versions(ring: &KeyRing) -> (KeyVersion, KeyVersion) {
    (ring.active_tokenization().version(), ring.active_data().version())
}

/// Publishes the time of a successful key load.
fn record_refresh() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    ::metrics::gauge!(metrics::KEY_REFRESH_TIMESTAMP).set(now);
}

/// Publishes the active versions as gauges, so a dashboard shows every replica switching.
fn record_active_versions(ring: &KeyRing) {
    let (tokenization, data) = active_versions(ring);
    for (purpose, version) in [(KeyPurpose::Tokenization, tokenization), (KeyPurpose::Data, data)] {
        ::metrics::gauge!(metrics::ACTIVE_KEY_VERSION, "purpose" => purpose.as_str())
            .set(f64::from(version.get()));
    }
}

#[cfg(test)]
pub(crate) mod test_ring {
    //! A key ring of fixed test keys.

    use zeroize::Zeroizing;

    use crate::crypto::{DataKey, KEY_LEN, TokenizationKey};
    use crate::keys::KeyRing;
    use crate::version::KeyVersion;

    /// Version 1 of each key, from a fixed root.
    pub(crate) fn ring() -> KeyRing {
        let root = Zeroizing::new([3u8; KEY_LEN]);
        KeyRing::new(
            [TokenizationKey::derive(KeyVersion::FIRST, &root)],
            [DataKey::new(KeyVersion::FIRST, &root)],
        )
        .expect("ring")
    }
}
