//! The generation keeper: what makes a Forget final without anyone's help (see
//! [`crate::erasure`]). One replica at a time (an advisory lock), every refresh interval:
//!
//! 1. rotates the data key once the newest generation has been active for
//!    `VAULT_GENERATION_SECS`;
//! 2. moves up to [`KEEPER_REWRAP_ROWS`] live values a run off replaced generations;
//! 3. retires each replaced generation that no live value needs any more (its wrapped key is
//!    removed from `vault.keys`);
//! 4. schedules the deletion of a retired generation's own KMS key.
//!
//! Every step is audited under the caller [`KEEPER`], like the same step asked for by an admin.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Vault;
use crate::audit::{AuditEntry, AuditOutcome, StatusCounts};
use crate::authz::{Access, Caller, Method};
use crate::erasure::unix_ms_text;
use crate::error::VaultError;
use crate::keys::{KeyError, KeyPurpose};
use crate::metrics;
use crate::store::{Generation, KEEPER_LOCK_KEY};
use crate::version::KeyVersion;

/// The caller the keeper's audit rows name. Not a SPIFFE id, so no peer can be it.
pub const KEEPER: &str = "vault:generation-keeper";

/// Values one keeper run moves to the active generation: a run stays short (a few seconds),
/// and at one run per refresh interval (10 s) a day moves over forty million values.
pub const KEEPER_REWRAP_ROWS: u32 = 5_000;

/// The purpose of the keeper's audit rows.
const PURPOSE: &str = "scheduled erasure (VAULT_GENERATION_SECS)";

/// What one keeper run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperRun {
    /// Whether another replica was keeping the generations (this one did nothing).
    pub skipped: bool,
    /// The data key version a scheduled rotation made.
    pub rotated: Option<KeyVersion>,
    /// Values moved to the active generation.
    pub rewrapped: u32,
    /// Generations retired.
    pub retired: Vec<KeyVersion>,
    /// Generations whose own KMS key was scheduled for deletion, and when it is deleted (Unix
    /// milliseconds).
    pub kms_deletions: Vec<(KeyVersion, i64)>,
}

impl Vault {
    /// Runs the keeper once, unless another replica is running it.
    pub async fn keep_generations_once(&self) -> Result<KeeperRun, VaultError> {
        let run = self
            .store
            .while_holding_lock(KEEPER_LOCK_KEY, async || self.keep_generations().await)
            .await?;
        run.unwrap_or_else(|| Ok(KeeperRun { skipped: true, ..KeeperRun::default() }))
    }

    /// Runs the keeper every `interval` until `shutdown` is cancelled; a failed run is logged
    /// and the next one starts over (every step is idempotent).
    pub async fn keep_generations_every(&self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let run = tokio::select! {
                () = shutdown.cancelled() => break,
                run = self.keep_generations_once() => run,
            };
            match run {
                Ok(run) if run != KeeperRun::default() && !run.skipped => {
                    tracing::info!(?run, "data key generations kept");
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(error = %err, "data key generations not kept this time")
                }
            }
        }
        tracing::debug!("generation keeper stopped");
    }

    /// The four steps, with the keeper's lock held.
    async fn keep_generations(&self) -> Result<KeeperRun, VaultError> {
        let access = Access::admin(Caller::identified(KEEPER));
        let mut run = KeeperRun::default();
        let generations = self.store.generations().await?;
        if self.rotation_due(&generations) {
            let rotated =
                self.rotate_keys(&access, Some(KeyPurpose::Data), PURPOSE.to_owned()).await?;
            run.rotated = Some(rotated.version);
        }
        let ring = self.refresh_keys().await?;
        let active = ring.active_data().version();
        let pending = ring.versions(KeyPurpose::Data).into_iter().any(|v| v > active);
        if !pending && self.store.count_to_rewrap(active).await? > 0 {
            let rewrapped = self.rewrap(&access, PURPOSE.to_owned(), KEEPER_REWRAP_ROWS).await?;
            run.rewrapped = rewrapped.rewrapped;
        }
        let generations = self.store.generations().await?;
        let margin = self.timing.refresh_interval * 2;
        for generation in retirable(&generations, active, margin) {
            let Some(version) = KeyVersion::from_db(generation.version) else { continue };
            let detail = format!(
                "data key v{version} retired: no live value needs it, its wrapped key is removed"
            );
            let entry = keeper_entry(&access, Method::Retire, detail);
            let retired = self
                .store
                .retire_and_audit(version, entry, &self.chain)
                .await
                .map_err(super::audited::audited_write_error(Method::Retire))?;
            if retired.is_some() {
                super::audited::count_audited(Method::Retire, AuditOutcome::Allowed);
                ::metrics::counter!(metrics::RETIREMENTS, "step" => "retired").increment(1);
                tracing::info!(version = version.get(), "data key generation retired");
                run.retired.push(version);
            }
        }
        if !run.retired.is_empty() {
            self.refresh_keys().await?;
        }
        let generations = self.store.generations().await?;
        for generation in generations.iter().filter(|g| awaits_kms_deletion(g)) {
            let Some(version) = KeyVersion::from_db(generation.version) else { continue };
            let detail = format!(
                "the KMS key of retired data key v{version} is scheduled for deletion \
                 (VAULT_KMS_DELETION_WINDOW_DAYS)"
            );
            self.write_audit(&keeper_entry(&access, Method::Retire, detail)).await?;
            let deletion =
                self.provider.delete_generation_master(&generation.kms_key_id).await.map_err(
                    |source| KeyError::Provider { purpose: KeyPurpose::Data, version, source },
                )?;
            self.store.record_kms_deletion(version, deletion).await?;
            ::metrics::counter!(metrics::RETIREMENTS, "step" => "kms_deletion_scheduled")
                .increment(1);
            tracing::info!(
                version = version.get(),
                deleted_at = %unix_ms_text(deletion),
                "generation KMS key scheduled for deletion"
            );
            run.kms_deletions.push((version, deletion));
        }
        record_generations(&generations, active);
        Ok(run)
    }

    /// Whether the newest data key generation has been active for a whole generation length.
    fn rotation_due(&self, generations: &[Generation]) -> bool {
        let length = self.erasure.generation;
        let Some(newest) = generations.last() else { return false };
        let age_ms = newest.now_unix_ms - newest.activates_at_unix_ms;
        !length.is_zero() && age_ms >= 0 && age_ms as u128 >= length.as_millis()
    }
}

/// The generations older than `active`, not retired, whose successor took over at least
/// `margin` ago (every replica has switched to it by then).
fn retirable(
    generations: &[Generation],
    active: KeyVersion,
    margin: Duration,
) -> impl Iterator<Item = &Generation> {
    let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
    generations.iter().filter(move |generation| {
        generation.version < active.to_db()
            && generation.retired_at_unix_ms.is_none()
            && generation
                .replaced_at(generations)
                .is_some_and(|at| generation.now_unix_ms - at >= margin_ms)
    })
}

/// Whether `generation` is retired, was wrapped by a KMS key of its own, and that key's
/// deletion is not scheduled yet.
fn awaits_kms_deletion(generation: &Generation) -> bool {
    generation.own_master
        && generation.retired_at_unix_ms.is_some()
        && generation.kms_deletion_at_unix_ms.is_none()
}

/// The audit row of a keeper step.
fn keeper_entry(access: &Access, method: Method, detail: String) -> AuditEntry {
    AuditEntry {
        caller: access.caller.clone(),
        method,
        purpose: PURPOSE.to_owned(),
        token_count: 0,
        outcome: AuditOutcome::Allowed,
        counts: StatusCounts::default(),
        detail: Some(detail),
    }
}

/// Publishes the generations by state, and how long the oldest replaced one has waited.
fn record_generations(generations: &[Generation], active: KeyVersion) {
    let mut counts = [("active", 0u32), ("retiring", 0), ("retired", 0)];
    let mut oldest_wait_ms = 0i64;
    for generation in generations {
        let state = if generation.retired_at_unix_ms.is_some() {
            2
        } else if generation.version >= active.to_db() {
            0
        } else {
            let replaced_at = generation.replaced_at(generations).unwrap_or(generation.now_unix_ms);
            oldest_wait_ms = oldest_wait_ms.max(generation.now_unix_ms - replaced_at);
            1
        };
        counts[state].1 += 1;
    }
    for (state, n) in counts {
        ::metrics::gauge!(metrics::GENERATIONS, "state" => state).set(f64::from(n));
    }
    ::metrics::gauge!(metrics::RETIRING_FOR_SECONDS).set(oldest_wait_ms.max(0) as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_MS: i64 = 60_000;

    fn generation(version: i32, activates: i64, retired: Option<i64>) -> Generation {
        Generation {
            version,
            kms_key_id: format!("key-{version}"),
            own_master: true,
            activates_at_unix_ms: activates,
            retired_at_unix_ms: retired,
            kms_deletion_at_unix_ms: None,
            now_unix_ms: 10 * MIN_MS,
        }
    }

    fn versions<'a>(generations: impl Iterator<Item = &'a Generation>) -> Vec<i32> {
        generations.map(|g| g.version).collect()
    }

    #[test]
    fn a_generation_retires_once_its_successor_has_been_active_for_the_margin() {
        let margin = Duration::from_secs(120);
        let v = |n| KeyVersion::from_db(n).expect("version");
        // v2 took over 9 minutes ago, v3 one minute ago.
        let generations =
            [generation(1, 0, None), generation(2, MIN_MS, None), generation(3, 9 * MIN_MS, None)];
        assert_eq!(versions(retirable(&generations, v(3), margin)), [1]);
        assert_eq!(versions(retirable(&generations, v(3), Duration::from_secs(30))), [1, 2]);
        // While v3 waits to take over, v2 is active and only v1 may go.
        assert_eq!(versions(retirable(&generations, v(2), margin)), [1]);
        let retired = [generation(1, 0, Some(MIN_MS)), generation(2, MIN_MS, None)];
        assert!(versions(retirable(&retired, v(2), margin)).is_empty());
    }

    #[test]
    fn only_retired_generations_with_their_own_kms_key_await_its_deletion() {
        let mut retired = generation(1, 0, Some(MIN_MS));
        assert!(awaits_kms_deletion(&retired));
        retired.kms_deletion_at_unix_ms = Some(8 * 86_400_000);
        assert!(!awaits_kms_deletion(&retired));
        assert!(!awaits_kms_deletion(&generation(2, 0, None)));
        let shared = Generation { own_master: false, ..generation(3, 0, Some(MIN_MS)) };
        assert!(!awaits_kms_deletion(&shared));
    }
}
