//! When a forgotten value becomes unrecoverable, and what Forget promises until then.
//!
//! Forget removes a value's ciphertext from the live table at once. Copies remain where the
//! vault cannot reach: backups, WAL archives, replicas that have not replayed the change yet,
//! row versions not vacuumed yet. Every such copy is sealed under the data key *generation*
//! (version) that was active when the value was stored, and is unreadable once no copy of that
//! generation's data key can be unwrapped. So erasure becomes final in three steps, all run by
//! the vault itself ([`crate::vault::Vault::keep_generations_every`]):
//!
//! 1. **Rotation.** The data key rotates every `VAULT_GENERATION_SECS` (default 7 days).
//! 2. **Rewrap and retirement.** Live values move to the new generation; once no live value
//!    needs the old one, its wrapped key is removed from `vault.keys` (the row stays, retired).
//!    The allowance for this is [`RETIRE_ALLOWANCE`].
//! 3. **Destruction of the last copies of the key.** With a KMS key per generation
//!    (`VAULT_GENERATION_KMS_KEYS`, production), the retired generation's KMS key is scheduled
//!    for deletion (`VAULT_KMS_DELETION_WINDOW_DAYS`, default 7): from the deletion on, no
//!    backup's copy of the wrapped key unwraps. With one KMS key for all generations, the
//!    backups taken before the retirement keep an unwrappable copy until they expire
//!    (`VAULT_BACKUP_RETENTION_DAYS`, default 7, which must match the database's retention).
//!
//! A Forget receipt states the time by which all three have happened for the generations that
//! held the forgotten values.

use std::fmt;
use std::time::Duration;

use fetchreward_runtime::config::ConfigReader;

use crate::kms::GenerationKeys;
use crate::store::{ChangedToken, Generation};

/// How long after a generation is replaced its retirement may take: the vault rewraps
/// about 500 values a second per deployment, so a day covers some forty million values.
pub const RETIRE_ALLOWANCE: Duration = Duration::from_secs(24 * 3600);

/// The default generation length: a week.
pub const DEFAULT_GENERATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a Tokenize does with a value whose token was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetMode {
    /// The token stays forgotten: the value is not stored again unless an admin restores the
    /// token (audited). The default: an erasure is not undone by the next login.
    Tombstone,
    /// The value is stored again, and recoverable again, from then on.
    Refill,
}

impl ForgetMode {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "tombstone" => Some(ForgetMode::Tombstone),
            "refill" => Some(ForgetMode::Refill),
            _ => None,
        }
    }
}

/// What destroys the last copies of a retired generation's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destruction {
    /// KMS deletes the generation's own KMS key this long after its retirement.
    KmsKeyDeletion(Duration),
    /// The backups that still hold the wrapped key expire this long after the retirement.
    BackupExpiry(Duration),
}

impl Destruction {
    /// How long after the retirement the last copy of the key is gone.
    pub fn delay(self) -> Duration {
        match self {
            Destruction::KmsKeyDeletion(delay) | Destruction::BackupExpiry(delay) => delay,
        }
    }
}

impl fmt::Display for Destruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.delay().as_secs() / 86_400;
        match self {
            Destruction::KmsKeyDeletion(_) => {
                write!(f, "its KMS key is deleted {days} days after the retirement")
            }
            Destruction::BackupExpiry(_) => {
                write!(f, "backups holding its wrapped key expire {days} days after the retirement")
            }
        }
    }
}

/// The erasure settings of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureSettings {
    /// How long a data key generation is in use before the next takes over
    /// (`VAULT_GENERATION_SECS`); zero turns scheduled rotation off, and with it any date of
    /// final erasure.
    pub generation: Duration,
    /// What destroys a retired generation's key for good.
    pub destruction: Destruction,
    /// What Tokenize does with a forgotten token (`VAULT_FORGET_MODE`).
    pub forget_mode: ForgetMode,
}

impl Default for ErasureSettings {
    fn default() -> Self {
        ErasureSettings {
            generation: DEFAULT_GENERATION,
            destruction: Destruction::BackupExpiry(Duration::from_secs(7 * 86_400)),
            forget_mode: ForgetMode::Tombstone,
        }
    }
}

impl ErasureSettings {
    /// Reads `VAULT_GENERATION_SECS`, `VAULT_BACKUP_RETENTION_DAYS` and `VAULT_FORGET_MODE`;
    /// the destruction is the KMS deletion window when `generation_keys` is set.
    pub fn from_env(
        reader: &mut ConfigReader<'_>,
        generation_keys: Option<&GenerationKeys>,
    ) -> ErasureSettings {
        let defaults = ErasureSettings::default();
        let generation = reader.seconds("VAULT_GENERATION_SECS", defaults.generation.as_secs());
        let retention: u64 =
            reader.or_default("VAULT_BACKUP_RETENTION_DAYS", 7, "a number of days");
        let destruction = match generation_keys {
            Some(keys) => Destruction::KmsKeyDeletion(days(keys.deletion_window_days as u64)),
            None => Destruction::BackupExpiry(days(retention)),
        };
        let forget_mode = match reader.raw("VAULT_FORGET_MODE") {
            None => defaults.forget_mode,
            Some(text) => ForgetMode::parse(text.trim()).unwrap_or_else(|| {
                reader.problem("VAULT_FORGET_MODE must be tombstone or refill");
                defaults.forget_mode
            }),
        };
        ErasureSettings { generation, destruction, forget_mode }
    }

    /// When a value sealed under a generation that took over at `activated_unix_ms` is
    /// unrecoverable everywhere, given when the next generation takes over (if one exists):
    /// replacement + [`RETIRE_ALLOWANCE`] + the destruction delay. `None` when no replacement
    /// is scheduled (rotation off and no newer generation).
    pub fn final_by(&self, activated_unix_ms: i64, next_unix_ms: Option<i64>) -> Option<i64> {
        let replaced = match next_unix_ms {
            Some(next) => next,
            None if self.generation.is_zero() => return None,
            None => activated_unix_ms.saturating_add(millis(self.generation)),
        };
        Some(replaced.saturating_add(millis(RETIRE_ALLOWANCE) + millis(self.destruction.delay())))
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// What a Forget call promises about the values it destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// When the values left the live table (database clock, Unix milliseconds): the earliest
    /// first-forget time among them; 0 when none existed.
    pub forgotten_at_unix_ms: i64,
    /// When no copy anywhere can be decrypted any more; `None` when no date can be promised.
    pub final_by_unix_ms: Option<i64>,
    /// The data key generations that held the values.
    pub generations: Vec<i32>,
    /// The guarantee in words.
    pub statement: String,
}

impl Receipt {
    /// The receipt when the generations could not be read: the values are gone from the live
    /// table, and nothing more is promised.
    pub fn unknown(forgotten: &[ChangedToken]) -> Receipt {
        Receipt {
            forgotten_at_unix_ms: earliest(forgotten),
            final_by_unix_ms: None,
            generations: generations_of(forgotten),
            statement: "The values are gone from the live table. When copies in backups become \
                        undecryptable could not be computed now: ask again with the same \
                        tokens (Forget is idempotent)."
                .to_owned(),
        }
    }
}

fn earliest(forgotten: &[ChangedToken]) -> i64 {
    forgotten.iter().map(|row| row.forgotten_at_unix_ms).min().unwrap_or(0)
}

fn generations_of(forgotten: &[ChangedToken]) -> Vec<i32> {
    let mut versions: Vec<i32> = forgotten.iter().map(|row| row.data_key_version).collect();
    versions.sort_unstable();
    versions.dedup();
    versions
}

impl ErasureSettings {
    /// The receipt of a Forget that destroyed `forgotten`, given the data key `generations`.
    pub fn receipt(&self, forgotten: &[ChangedToken], generations: &[Generation]) -> Receipt {
        let versions = generations_of(forgotten);
        if versions.is_empty() {
            return Receipt {
                forgotten_at_unix_ms: 0,
                final_by_unix_ms: None,
                generations: versions,
                statement: "No value was stored for these tokens: nothing to erase.".to_owned(),
            };
        }
        let final_by = versions
            .iter()
            .map(|version| self.generation_final_by(*version, generations))
            .try_fold(i64::MIN, |latest, at| at.map(|at| latest.max(at)));
        let list = versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
        let mut statement = format!(
            "The values are gone from the live table. Copies in backups, WAL archives and \
             replicas stay sealed under data key generation {list} until "
        );
        match final_by {
            Some(at) => statement.push_str(&format!(
                "{}: by then the generation is replaced, its live values moved to the next one \
                 and it is retired, and {}. From then on no copy can be decrypted by anyone.",
                unix_ms_text(at),
                self.destruction
            )),
            None => statement.push_str(
                "it is replaced and retired, which is not scheduled (VAULT_GENERATION_SECS=0): \
                 rotate the data key to make the erasure final.",
            ),
        }
        statement.push_str(match self.forget_mode {
            ForgetMode::Tombstone => {
                " The tokens are tombstones: a value tokenized again is not stored again unless \
                 an admin restores its token."
            }
            ForgetMode::Refill => " A value tokenized again is stored again.",
        });
        Receipt {
            forgotten_at_unix_ms: earliest(forgotten),
            final_by_unix_ms: final_by,
            generations: versions,
            statement,
        }
    }

    /// When generation `version` is destroyed for good, by the rows of `generations`.
    fn generation_final_by(&self, version: i32, generations: &[Generation]) -> Option<i64> {
        let Some(generation) = generations.iter().find(|g| g.version == version) else {
            // Not a stored generation: nothing holds it.
            return Some(0);
        };
        if let Some(deleted) = generation.kms_deletion_at_unix_ms {
            return Some(deleted);
        }
        if let Some(retired) = generation.retired_at_unix_ms {
            return Some(retired.saturating_add(millis(self.destruction.delay())));
        }
        self.final_by(generation.activates_at_unix_ms, generation.replaced_at(generations))
    }
}

/// A Unix time in milliseconds as RFC 3339 UTC text, to the second.
pub fn unix_ms_text(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms).map_or_else(
        || format!("{unix_ms} ms after the Unix epoch"),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn final_erasure_is_the_replacement_plus_the_allowance_plus_the_destruction() {
        let settings = ErasureSettings {
            generation: Duration::from_secs(7 * 86_400),
            destruction: Destruction::KmsKeyDeletion(Duration::from_secs(7 * 86_400)),
            forget_mode: ForgetMode::Tombstone,
        };
        assert_eq!(settings.final_by(0, None), Some(7 * DAY_MS + DAY_MS + 7 * DAY_MS));
        assert_eq!(settings.final_by(0, Some(2 * DAY_MS)), Some(2 * DAY_MS + DAY_MS + 7 * DAY_MS));
        let off = ErasureSettings { generation: Duration::ZERO, ..settings };
        assert_eq!(off.final_by(0, None), None);
        assert_eq!(off.final_by(0, Some(DAY_MS)), Some(DAY_MS + DAY_MS + 7 * DAY_MS));
    }

    fn generation(version: i32, activates: i64, retired: Option<i64>) -> Generation {
        Generation {
            version,
            kms_key_id: "k".into(),
            own_master: false,
            activates_at_unix_ms: activates,
            retired_at_unix_ms: retired,
            kms_deletion_at_unix_ms: None,
            now_unix_ms: 0,
        }
    }

    fn forgotten(version: i32) -> ChangedToken {
        ChangedToken {
            token: format!("ip_v1_{version}"),
            data_key_version: version,
            forgotten_at_unix_ms: 5,
        }
    }

    #[test]
    fn a_receipt_dates_the_latest_generation_that_held_a_value() {
        let settings = ErasureSettings::default();
        let generations = [
            generation(1, 0, Some(DAY_MS)),
            generation(2, DAY_MS, None),
            generation(3, 3 * DAY_MS, None),
        ];
        let receipt = settings.receipt(&[forgotten(1), forgotten(2)], &generations);
        // v2 is replaced by v3 at day 3: final a day later plus the 7 days of backups.
        assert_eq!(receipt.final_by_unix_ms, Some(3 * DAY_MS + DAY_MS + 7 * DAY_MS));
        assert_eq!(receipt.generations, [1, 2]);
        assert!(
            receipt.statement.contains("generation v1, v2 until 1970-01-12T00:00:00Z"),
            "{}",
            receipt.statement
        );
        assert!(receipt.statement.contains("tombstones"), "{}", receipt.statement);
        // The retired v1 alone: a week after its retirement.
        let receipt = settings.receipt(&[forgotten(1)], &generations);
        assert_eq!(receipt.final_by_unix_ms, Some(DAY_MS + 7 * DAY_MS));
        // The active v3 without scheduled rotation: no date.
        let off = ErasureSettings { generation: Duration::ZERO, ..settings };
        let receipt = off.receipt(&[forgotten(3)], &generations);
        assert_eq!(receipt.final_by_unix_ms, None);
        assert!(receipt.statement.contains("VAULT_GENERATION_SECS=0"), "{}", receipt.statement);
    }

    #[test]
    fn settings_come_from_the_environment_with_tombstones_by_default() {
        let read = |pairs: &[(&str, &str)], keys: Option<&GenerationKeys>| {
            let env: HashMap<&str, &str> = pairs.iter().copied().collect();
            let mut reader = ConfigReader::new(&env);
            let settings = ErasureSettings::from_env(&mut reader, keys);
            reader.finish().map(|()| settings).map_err(|err| err.to_string())
        };
        assert_eq!(read(&[], None), Ok(ErasureSettings::default()));
        let keys = GenerationKeys { policy: "{}".into(), deletion_window_days: 10 };
        let settings = read(&[("VAULT_FORGET_MODE", "refill")], Some(&keys)).expect("valid");
        assert_eq!(settings.forget_mode, ForgetMode::Refill);
        assert_eq!(settings.destruction, Destruction::KmsKeyDeletion(days(10)));
        let error = read(&[("VAULT_FORGET_MODE", "shred")], None).expect_err("invalid");
        assert!(error.contains("VAULT_FORGET_MODE must be tombstone or refill"), "{error}");
    }
}
