//! Tokenize volume: a per-caller rate limit, and an audit row per caller per minute.
//!
//! Tokenize answers whether a value was seen before (its token exists or not) to whoever may
//! call it, so a caller with that right could confirm values by trying them: every IPv4
//! address of a /16 takes a few calls. Two controls bound and expose that:
//!
//! - **A limit**: a token bucket (GCRA) per caller identity, `VAULT_TOKENIZE_RATE` values a
//!   second sustained and `VAULT_TOKENIZE_BURST` at once, on each replica. A call over it is
//!   refused whole with `RESOURCE_EXHAUSTED` (the ingestor retries it with backoff) and
//!   counted in `fetchreward_vault_tokenize_rate_limited_total{caller}` (service identities,
//!   a bounded set).
//! - **A volume audit row** per caller per minute: the values tokenized, how many were new
//!   (stored for the first time) and how many were refused by the limit. An enumeration
//!   shows up as a caller whose values are all new, far above its usual volume.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use fetchreward_runtime::config::ConfigReader;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::Vault;
use super::tokenize::MAX_TOKENIZE_VALUES;
use crate::audit::{AuditEntry, AuditOutcome, StatusCounts};
use crate::authz::{Caller, Method};
use crate::error::VaultError;
use crate::metrics;

/// How often the volume of each caller is written to the audit trail.
pub const VOLUME_AUDIT_INTERVAL: Duration = Duration::from_secs(60);

/// The purpose of the volume audit rows.
const PURPOSE: &str = "tokenize volume";

/// The Tokenize rate limit of each caller, on each replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizeLimit {
    /// Values a second, sustained (`VAULT_TOKENIZE_RATE`, default 50,000).
    pub rate: NonZeroU32,
    /// Values at once above the rate (`VAULT_TOKENIZE_BURST`, default 100,000; at least the
    /// largest call, 10,000 values).
    pub burst: NonZeroU32,
}

impl Default for TokenizeLimit {
    /// About twice what one ingestor replica tokenizes at its peak on two cores (some 12,000
    /// messages, 24,000 values a second): the pipeline never meets it, an enumeration does.
    fn default() -> Self {
        TokenizeLimit {
            rate: NonZeroU32::new(50_000).expect("not zero"),
            burst: NonZeroU32::new(100_000).expect("not zero"),
        }
    }
}

impl TokenizeLimit {
    /// Reads `VAULT_TOKENIZE_RATE` and `VAULT_TOKENIZE_BURST`.
    pub fn from_env(reader: &mut ConfigReader<'_>) -> TokenizeLimit {
        let defaults = TokenizeLimit::default();
        let rate: u32 =
            reader.or_default("VAULT_TOKENIZE_RATE", defaults.rate.get(), "values per second");
        let burst: u32 =
            reader.or_default("VAULT_TOKENIZE_BURST", defaults.burst.get(), "a number of values");
        let Some(rate) = NonZeroU32::new(rate) else {
            reader.problem("VAULT_TOKENIZE_RATE must be at least 1 value per second");
            return defaults;
        };
        if (burst as usize) < MAX_TOKENIZE_VALUES {
            reader.problem(format!(
                "VAULT_TOKENIZE_BURST must be at least {MAX_TOKENIZE_VALUES}, the largest Tokenize \
                 call, or such a call could never pass"
            ));
            return defaults;
        }
        TokenizeLimit { rate, burst: NonZeroU32::new(burst).expect("checked above") }
    }
}

/// What a caller tokenized since the last volume row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Volume {
    values: u64,
    new: u64,
    limited: u64,
}

/// The limiter and the counts of a vault.
pub(crate) struct TokenizeVolume {
    limit: TokenizeLimit,
    limiter: DefaultKeyedRateLimiter<String>,
    counts: Mutex<HashMap<String, Volume>>,
}

impl std::fmt::Debug for TokenizeVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizeVolume").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl TokenizeVolume {
    pub(crate) fn new(limit: TokenizeLimit) -> Self {
        let quota = Quota::per_second(limit.rate).allow_burst(limit.burst);
        TokenizeVolume {
            limit,
            limiter: RateLimiter::keyed(quota),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `values` from `caller`'s bucket, or refuses the whole call.
    pub(crate) fn admit(&self, caller: &Caller, values: usize) -> Result<(), VaultError> {
        let Some(n) = NonZeroU32::new(u32::try_from(values).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        let identity = caller.identity();
        let refusal = match self.limiter.check_key_n(&identity.to_owned(), n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(DefaultClock::default().now()),
            // More than the burst: cannot pass, ever (the burst is at least the largest call).
            Err(_) => Duration::MAX,
        };
        self.count(identity, Volume { limited: values as u64, ..Volume::default() });
        ::metrics::counter!(metrics::TOKENIZE_LIMITED, "caller" => identity.to_owned())
            .increment(values as u64);
        Err(VaultError::RateLimited {
            caller: identity.to_owned(),
            rate: self.limit.rate.get(),
            burst: self.limit.burst.get(),
            retry_after: refusal,
        })
    }

    /// Counts a call of `caller` that tokenized `values`, `new` of them stored for the first
    /// time.
    pub(crate) fn record(&self, caller: &Caller, values: usize, new: usize) {
        self.count(
            caller.identity(),
            Volume { values: values as u64, new: new as u64, limited: 0 },
        );
    }

    fn count(&self, identity: &str, add: Volume) {
        let mut counts = self.counts.lock().expect("the volume lock is never poisoned");
        let volume = counts.entry(identity.to_owned()).or_default();
        volume.values += add.values;
        volume.new += add.new;
        volume.limited += add.limited;
    }

    /// The counts since the last call, emptied.
    fn take(&self) -> HashMap<String, Volume> {
        std::mem::take(&mut *self.counts.lock().expect("the volume lock is never poisoned"))
    }

    /// Puts counts that could not be audited back, to go into the next row.
    fn put_back(&self, identity: String, volume: Volume) {
        self.count(&identity, volume);
    }
}

impl Vault {
    /// Writes one audit row per caller that tokenized since the last one, every `interval`
    /// until `shutdown` is cancelled, and once more then. Counts whose row could not be
    /// written are kept for the next.
    pub async fn audit_tokenize_volume_every(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                () = shutdown.cancelled() => true,
                _ = ticks.tick() => false,
            };
            self.audit_tokenize_volume(interval).await;
            if stopping {
                break;
            }
        }
    }

    /// Writes the volume rows now; returns how many were written.
    pub async fn audit_tokenize_volume(&self, interval: Duration) -> usize {
        let mut written = 0;
        for (identity, volume) in self.volume.take() {
            let entry = volume_entry(&identity, volume, interval);
            match self.write_audit(&entry).await {
                Ok(_) => written += 1,
                Err(err) => {
                    tracing::error!(error = %err, "tokenize volume not audited; kept for the next row");
                    self.volume.put_back(identity, volume);
                }
            }
        }
        written
    }
}

/// The audit row of `volume` for the caller `identity`.
fn volume_entry(identity: &str, volume: Volume, interval: Duration) -> AuditEntry {
    let Volume { values, new, limited } = volume;
    AuditEntry {
        caller: Caller::identified(identity),
        method: Method::Tokenize,
        purpose: PURPOSE.to_owned(),
        token_count: u32::try_from(values).unwrap_or(u32::MAX),
        outcome: if values == 0 { AuditOutcome::Denied } else { AuditOutcome::Allowed },
        counts: StatusCounts::default(),
        detail: Some(format!(
            "{values} values tokenized, {new} of them new, {limited} refused by the rate limit, \
             in the last {} s or less",
            interval.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn limit(rate: u32, burst: u32) -> TokenizeLimit {
        TokenizeLimit {
            rate: NonZeroU32::new(rate).expect("rate"),
            burst: NonZeroU32::new(burst).expect("burst"),
        }
    }

    #[test]
    fn each_caller_has_its_own_bucket_and_a_refused_call_is_counted_whole() {
        let volume = TokenizeVolume::new(limit(1, 10_000));
        let (a, b) = (Caller::identified("spiffe://t/a"), Caller::identified("spiffe://t/b"));
        volume.admit(&a, 9_000).expect("within the burst");
        let refused = volume.admit(&a, 2_000).expect_err("over the burst");
        assert!(matches!(refused, VaultError::RateLimited { .. }), "{refused:?}");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.client_message().contains("spiffe://t/a"), "{}", refused.client_message());
        volume.admit(&b, 10_000).expect("another caller's bucket is full");
        volume.record(&a, 9_000, 12);
        let counts = volume.take();
        assert_eq!(counts["spiffe://t/a"], Volume { values: 9_000, new: 12, limited: 2_000 });
        assert!(volume.take().is_empty(), "taken once");
    }

    #[test]
    fn the_volume_row_names_the_caller_and_the_counts() {
        let entry = volume_entry(
            "spiffe://t/a",
            Volume { values: 5, new: 2, limited: 0 },
            VOLUME_AUDIT_INTERVAL,
        );
        assert_eq!(entry.caller.identity(), "spiffe://t/a");
        assert_eq!(
            (entry.method, entry.outcome, entry.token_count),
            (Method::Tokenize, AuditOutcome::Allowed, 5)
        );
        assert_eq!(
            entry.detail.as_deref(),
            Some(
                "5 values tokenized, 2 of them new, 0 refused by the rate limit, in the last 60 s or less"
            )
        );
        let only_refused =
            volume_entry("x", Volume { values: 0, new: 0, limited: 3 }, VOLUME_AUDIT_INTERVAL);
        assert_eq!(only_refused.outcome, AuditOutcome::Denied);
    }

    #[test]
    fn the_limit_comes_from_the_environment_and_a_burst_below_one_call_is_refused() {
        let read = |pairs: &[(&str, &str)]| {
            let env: HashMap<&str, &str> = pairs.iter().copied().collect();
            let mut reader = ConfigReader::new(&env);
            let limit = TokenizeLimit::from_env(&mut reader);
            reader.finish().map(|()| limit).map_err(|err| err.to_string())
        };
        assert_eq!(read(&[]), Ok(TokenizeLimit::default()));
        assert_eq!(
            read(&[("VAULT_TOKENIZE_RATE", "50"), ("VAULT_TOKENIZE_BURST", "10000")]),
            Ok(limit(50, 10_000))
        );
        let error = read(&[("VAULT_TOKENIZE_BURST", "500")]).expect_err("too small");
        assert!(error.contains("VAULT_TOKENIZE_BURST must be at least 10000"), "{error}");
        let error = read(&[("VAULT_TOKENIZE_RATE", "0")]).expect_err("zero");
        assert!(error.contains("VAULT_TOKENIZE_RATE must be at least 1"), "{error}");
    }
}
