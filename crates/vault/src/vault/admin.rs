//! The admin calls: RotateKeys makes a key version that takes over after the rotation delay;
//! Rewrap re-encrypts stored originals under the active data key. Both audited
//! (`super::audited`).

use std::time::Duration;

use tracing::instrument;

use super::Vault;
use super::audited::{AuditedCall, Failure, audited_write_error, count_audited, validate_purpose};
use crate::audit::{AuditOutcome, StatusCounts};
use crate::authz::{Access, Method};
use crate::crypto::{DataKey, Sealed};
use crate::erasure::unix_ms_text;
use crate::error::VaultError;
use crate::keys::{self, KeyLabel, KeyPurpose, KeyRing};
use crate::metrics;
use crate::store::{NewKey, Reseal, RewrapFailure, SealedRow};
use crate::version::KeyVersion;

/// Rows one Rewrap call re-encrypts when the request names no number.
pub const DEFAULT_REWRAP_ROWS: u32 = 1_000;

/// Most rows one Rewrap call re-encrypts.
pub const MAX_REWRAP_ROWS: u32 = 10_000;

/// Rows re-encrypted per transaction: short transactions hold few row locks for little time,
/// so Tokenize and Forget on the same rows wait at most one chunk.
const REWRAP_CHUNK_ROWS: u32 = 500;

/// The answer to a RotateKeys call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// The rotated key.
    pub purpose: KeyPurpose,
    /// The new version.
    pub version: KeyVersion,
    /// When it takes over, in Unix milliseconds (database clock).
    pub activates_at_unix_ms: i64,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// The answer to a Rewrap call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    /// The data key version the rows were re-encrypted under (the active one).
    pub data_key_version: KeyVersion,
    /// Rows re-encrypted by this call.
    pub rewrapped: u32,
    /// Tokens whose stored original its data key did not open: marked unreadable, skipped,
    /// and not counted in `remaining` (nothing can recover them).
    pub unreadable: Vec<String>,
    /// Stored originals still under older data key versions after this call.
    pub remaining: u64,
    /// The audit row of the call.
    pub audit_id: i64,
}

impl Vault {
    /// Makes a new version of the `target` key, taking over after the rotation delay, if the
    /// caller may. `target` is `None` when the request named no valid key.
    #[instrument(skip_all, fields(caller = %access.caller))]
    pub async fn rotate_keys(
        &self,
        access: &Access,
        target: Option<KeyPurpose>,
        purpose: String,
    ) -> Result<Rotated, VaultError> {
        let asked = match target {
            Some(target) => format!("rotate the {target} key"),
            None => "rotate an unspecified key".to_owned(),
        };
        let call = AuditedCall {
            access,
            method: Method::RotateKeys,
            purpose: &purpose,
            note: "",
            token_count: 0,
            asked: Some(asked),
        };
        let validate = || {
            validate_purpose(&purpose)?;
            target.ok_or_else(|| {
                VaultError::InvalidArgument(
                    "target must be KEY_TARGET_TOKENIZATION or KEY_TARGET_DATA".to_owned(),
                )
            })
        };
        self.audited(&call, validate, async |target: KeyPurpose| {
            let delay = self.timing.rotation_delay;
            let rotated = self.create_key_version(&call, target, delay).await?;
            count_audited(Method::RotateKeys, AuditOutcome::Allowed);
            tracing::info!(
                purpose = target.as_str(),
                version = rotated.version.get(),
                delay_secs = delay.as_secs(),
                "key rotated"
            );
            // This replica holds the new version at once; the others within a refresh
            // interval, which is shorter than the delay.
            if let Err(err) = self.refresh_keys().await {
                tracing::warn!(error = %err, "rotated key not loaded yet; the next refresh retries");
            }
            Ok(rotated)
        })
        .await
    }

    /// Generates version N+1 of `target` with KMS and stores it with its audit row.
    async fn create_key_version(
        &self,
        call: &AuditedCall<'_>,
        target: KeyPurpose,
        delay: Duration,
    ) -> Result<Rotated, VaultError> {
        let version = self.store.next_key_version(target).await?;
        let (master, own_master) = match target {
            KeyPurpose::Tokenization => (self.provider.master_key_id().to_owned(), false),
            KeyPurpose::Data => keys::data_master(&self.provider, version).await?,
        };
        let generated =
            keys::generate(&self.provider, &master, KeyLabel::new(target, version)).await?;
        let mut key = NewKey {
            purpose: target,
            version,
            wrapped: &generated.wrapped,
            kms_key_id: &master,
            own_master,
            deployment: self.provider.deployment(),
            binding: Vec::new(),
            delay,
        };
        key.binding = keys::bind(&self.ring().key_binding(), &key);
        let stored = self
            .store
            .insert_key_and_audit(
                &key,
                |activates_at_unix_ms| {
                    let detail = format!(
                        "{target} key v{version}, activates at {}",
                        unix_ms_text(activates_at_unix_ms)
                    );
                    call.allowed(StatusCounts::default(), Some(detail))
                },
                &self.chain,
            )
            .await
            .map_err(audited_write_error(Method::RotateKeys))?;
        if stored.is_none() && own_master {
            // The KMS key made for the version that another rotation took serves nothing.
            if let Err(err) = self.provider.delete_generation_master(&master).await {
                tracing::warn!(error = %err, kms_key = %master, "an unused generation KMS key was not scheduled for deletion");
            }
        }
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
    /// with the active data key, if the caller may. `max_rows` 0 means
    /// [`DEFAULT_REWRAP_ROWS`].
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
        let limit = if max_rows == 0 { DEFAULT_REWRAP_ROWS } else { max_rows };
        let asked = |version: KeyVersion| {
            format!("re-encrypt up to {limit} stored values under data key v{version}")
        };
        let call = AuditedCall {
            access,
            method: Method::Rewrap,
            purpose: &purpose,
            note: "",
            token_count: 0,
            asked: Some(asked(self.ring().active_data().version())),
        };
        let validate = || {
            validate_purpose(&purpose)?;
            if limit > MAX_REWRAP_ROWS {
                return Err(VaultError::InvalidArgument(format!(
                    "max_rows: at most {MAX_REWRAP_ROWS} rows per call, got {limit}"
                )));
            }
            Ok(())
        };
        self.audited(&call, validate, async |()| {
            // The versions as stored now, not as of the last background refresh.
            let ring = self.refresh_keys().await.map_err(VaultError::from)?;
            let active = ring.active_data();
            let version = active.version();
            let pending =
                ring.versions(KeyPurpose::Data).into_iter().filter(|v| *v > version).max();
            if let Some(pending) = pending {
                let error = VaultError::FailedPrecondition(format!(
                    "data key v{pending} has not taken over yet (see its activation time); \
                     rewrap once it has, or the values would stay under v{version}, which it \
                     replaces"
                ));
                return Err(Failure::invalid(error, asked(version)));
            }
            let none = StatusCounts::default();
            let audit_id = self.write_audit(&call.allowed(none, Some(asked(version)))).await?;
            let progress = self.rewrap_rows(&ring, active, limit).await?;
            let remaining = self.store.count_to_rewrap(version).await.map_err(VaultError::from)?;
            let (rewrapped, unreadable) = (progress.rewrapped, progress.unreadable);
            tracing::info!(
                version = version.get(),
                rewrapped,
                unreadable = unreadable.len(),
                remaining,
                "stored values rewrapped"
            );
            Ok(Rewrapped { data_key_version: version, rewrapped, unreadable, remaining, audit_id })
        })
        .await
    }

    /// Re-encrypts up to `limit` rows under `active`, a chunk per transaction. A row whose
    /// ciphertext its data key does not open is marked unreadable, reported and skipped, so
    /// that one damaged row never stalls the rest.
    pub(super) async fn rewrap_rows(
        &self,
        ring: &KeyRing,
        active: &DataKey,
        limit: u32,
    ) -> Result<RewrapProgress, Failure> {
        let version = active.version();
        let mut progress = RewrapProgress::default();
        let mut selected = 0;
        while selected < limit {
            let chunk = REWRAP_CHUNK_ROWS.min(limit - selected);
            let done = match self
                .store
                .rewrap_chunk(version, chunk, |row| reseal(ring, active, row))
                .await
            {
                Ok(done) => done,
                Err(err) => {
                    let detail = format!(
                        "stopped after {} stored values re-encrypted under data key v{version}",
                        progress.rewrapped
                    );
                    let error = match err {
                        RewrapFailure::Database(err) => VaultError::Database(err),
                        RewrapFailure::Reseal(err) => err,
                    };
                    return Err(Failure::failed_after(error, detail));
                }
            };
            let rewrapped = u32::try_from(done.rewrapped).expect("at most one chunk of rows");
            selected += u32::try_from(done.selected).expect("at most one chunk of rows");
            progress.rewrapped += rewrapped;
            ::metrics::counter!(metrics::REWRAPPED_ROWS).increment(u64::from(rewrapped));
            if !done.unreadable.is_empty() {
                ::metrics::counter!(metrics::REWRAP_UNREADABLE)
                    .increment(done.unreadable.len() as u64);
                tracing::error!(
                    tokens = ?done.unreadable,
                    "stored values their data key does not open: marked unreadable and skipped"
                );
                progress.unreadable.extend(done.unreadable);
            }
            if done.selected < chunk as usize {
                break;
            }
        }
        Ok(progress)
    }
}

/// What [`Vault::rewrap_rows`] did.
#[derive(Debug, Default)]
pub(super) struct RewrapProgress {
    /// Rows re-encrypted.
    pub(super) rewrapped: u32,
    /// Tokens of rows found unreadable and marked.
    pub(super) unreadable: Vec<String>,
}

/// The original of `row` sealed again under `active`. A ciphertext that does not open is the
/// row's fault ([`Reseal::Unreadable`]); a data key this replica lacks is not.
fn reseal(ring: &KeyRing, active: &DataKey, row: &SealedRow) -> Result<Sealed, Reseal<VaultError>> {
    let old = KeyVersion::from_db(row.data_key_version)
        .and_then(|version| ring.data_key(version))
        .ok_or_else(|| {
            Reseal::Stop(VaultError::UnknownDataKey {
                token: row.token.clone(),
                version: row.data_key_version,
            })
        })?;
    let crypto = |source| VaultError::Crypto { token: row.token.clone(), source };
    let value = old
        .open(&row.token, &row.nonce, &row.ciphertext)
        .map_err(|err| Reseal::Unreadable(crypto(err)))?;
    active.seal(&row.token, &value).map_err(|err| Reseal::Stop(crypto(err)))
}
