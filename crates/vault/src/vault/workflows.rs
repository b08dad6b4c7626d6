//! The privacy team's safeguards and tools beside Detokenize: decoy tokens that refuse and
//! alert, the daily reveal limit and its lifting, and Lookup, which finds a subject's tokens
//! from a value without storing it. All audited (`super::audited`).

use std::collections::HashSet;
use std::num::NonZeroU32;

use fetchreward_model::{PiiKind, Token};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tracing::instrument;

use super::Vault;
use super::audited::{
    AuditedCall, Failure, audited_write_error, count_audited, validate_note, validate_purpose,
};
use super::recovery::distinct;
use super::tokenize::RawPii;
use crate::audit::{AuditOutcome, StatusCounts};
use crate::authz::{Access, Method};
use crate::error::VaultError;
use crate::metrics;
use crate::privacy::PrivacySettings;

/// Most values in one Lookup call.
pub const MAX_LOOKUP_VALUES: usize = 100;

/// Most decoys in one PlantDecoys call.
pub const MAX_DECOYS: u32 = 100;

/// Most values one LiftQuota call adds.
pub const MAX_QUOTA_LIFT: u32 = 100_000;

/// The Lookup rate limit of each caller, on each replica.
pub(crate) struct LookupLimit {
    per_minute: NonZeroU32,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for LookupLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupLimit").field("per_minute", &self.per_minute).finish()
    }
}

impl LookupLimit {
    /// `per_minute` values a minute, all of them at once at most.
    pub(crate) fn new(per_minute: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(per_minute);
        LookupLimit { per_minute, limiter: RateLimiter::keyed(quota) }
    }

    /// Takes `values` from `caller`'s bucket, or says when they would pass.
    fn admit(&self, caller: &str, values: usize) -> Result<(), VaultError> {
        let Some(n) = NonZeroU32::new(u32::try_from(values).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        let refused = |retry_after| VaultError::LookupRateLimited {
            caller: caller.to_owned(),
            per_minute: self.per_minute.get(),
            retry_after,
        };
        match self.limiter.check_key_n(&caller.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                Err(refused(not_until.wait_time_from(DefaultClock::default().now())))
            }
            Err(_) => Err(refused(std::time::Duration::from_secs(60))),
        }
    }
}

/// What Lookup found for one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookedUp {
    /// Its tokens under every tokenization key held, newest first, and whether an original is
    /// stored under one of them.
    Tokens {
        /// The tokens.
        tokens: Vec<Token>,
        /// Whether the vault stores an original under one of them.
        stored: bool,
    },
    /// The value breaks a rule; the code names it.
    Refused(&'static str),
}

/// The answer to a Lookup call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// One result per value, in request order.
    pub results: Vec<LookedUp>,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// The answer to a LiftQuota call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiftedQuota {
    /// The limit for the rest of the day.
    pub limit: u64,
    /// What the caller revealed today.
    pub used: u64,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// The answer to a PlantDecoys call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedDecoys {
    /// The decoy tokens.
    pub tokens: Vec<Token>,
    /// The audit row of the call.
    pub audit_id: i64,
}

impl Vault {
    /// Uses `settings` for roles, purposes, masks and limits from now on.
    pub fn with_privacy(self, settings: PrivacySettings) -> Self {
        let lookups = LookupLimit::new(settings.lookup_rate);
        Vault { privacy: settings, lookups, ..self }
    }

    /// Refuses a reveal that names a decoy: counted, logged and audited as a decoy hit.
    pub(super) async fn refuse_decoys(
        &self,
        access: &Access,
        method: Method,
        tokens: &[Token],
    ) -> Result<(), Failure> {
        let decoys = self.store.decoys_among(&distinct(tokens)).await.map_err(VaultError::from)?;
        if decoys.is_empty() {
            return Ok(());
        }
        ::metrics::counter!(metrics::DECOY_HITS, "method" => method.as_str()).increment(1);
        tracing::warn!(
            caller = %access.caller,
            method = method.as_str(),
            decoys = decoys.len(),
            "a reveal named decoy tokens: refused"
        );
        Err(Failure::denied(
            VaultError::Tripwire { caller: access.caller.identity().to_owned() },
            format!("decoy hit: {} decoy token(s) asked for", decoys.len()),
        ))
    }

    /// Refuses a full reveal of `asked` tokens that would take the caller past its daily limit
    /// for `purpose` (every purpose when purposes are free text).
    pub(super) async fn check_reveal_quota(
        &self,
        access: &Access,
        method: Method,
        purpose: &str,
        asked: usize,
    ) -> Result<(), Failure> {
        let Some(base) = self.privacy.daily_reveal_limit else {
            return Ok(());
        };
        let scope = self.privacy.quota_scope(purpose);
        let (used, lifted) = self
            .store
            .reveals_today(access.caller.identity(), scope)
            .await
            .map_err(VaultError::from)?;
        let limit = u64::from(base.get()) + lifted;
        if used + asked as u64 <= limit {
            return Ok(());
        }
        ::metrics::counter!(metrics::QUOTA_REFUSALS, "method" => method.as_str()).increment(1);
        tracing::warn!(caller = %access.caller, used, limit, asked, "daily reveal limit reached");
        Err(Failure::denied(
            VaultError::QuotaExceeded {
                caller: access.caller.identity().to_owned(),
                used,
                limit,
                asked,
            },
            format!("daily reveal limit: {used} of {limit} used, {asked} asked"),
        ))
    }

    /// The tokens of `values` under every tokenization key held, and whether each is stored,
    /// for `purpose` (and `note`); nothing is stored. A `None` value is of a kind the vault
    /// does not know, and refused.
    #[instrument(skip_all, fields(caller = %access.caller, values = values.len()))]
    pub async fn lookup(
        &self,
        access: &Access,
        values: Vec<Option<RawPii>>,
        purpose: String,
        note: String,
    ) -> Result<Lookup, VaultError> {
        let call = AuditedCall {
            access,
            method: Method::Lookup,
            purpose: &purpose,
            note: &note,
            token_count: values.len(),
            asked: None,
        };
        let validate = || {
            validate_purpose(&purpose)?;
            validate_note(&note)?;
            if values.len() > MAX_LOOKUP_VALUES {
                return Err(VaultError::InvalidArgument(format!(
                    "values: at most {MAX_LOOKUP_VALUES} values per call, got {}",
                    values.len()
                )));
            }
            self.privacy.check_purpose(&access.caller, &purpose)?;
            Ok(())
        };
        self.audited(&call, validate, async |()| {
            if let Err(err) = self.lookups.admit(access.caller.identity(), values.len()) {
                ::metrics::counter!(metrics::LOOKUP_LIMITED).increment(1);
                let detail = err.to_string();
                return Err(Failure::denied(err, detail));
            }
            let ring = self.ring();
            let mut results: Vec<LookedUp> = values
                .iter()
                .map(|raw| {
                    let Some(raw) = raw else { return LookedUp::Refused("unknown_kind") };
                    match raw.kind.canonicalize(&raw.value) {
                        Ok(value) => LookedUp::Tokens {
                            tokens: ring
                                .tokenization_keys()
                                .map(|key| key.token(raw.kind, &value))
                                .collect(),
                            stored: false,
                        },
                        Err(err) => LookedUp::Refused(err.code()),
                    }
                })
                .collect();
            let all: Vec<Token> = results
                .iter()
                .flat_map(|result| match result {
                    LookedUp::Tokens { tokens, .. } => tokens.as_slice(),
                    LookedUp::Refused(_) => &[],
                })
                .copied()
                .collect();
            let stored: HashSet<String> = self
                .store
                .lookup(&distinct(&all))
                .await
                .map_err(VaultError::from)?
                .into_iter()
                .filter(|row| row.sealed.is_some())
                .map(|row| row.token)
                .collect();
            let mut counts = StatusCounts::default();
            for result in &mut results {
                if let LookedUp::Tokens { tokens, stored: is_stored } = result {
                    *is_stored = tokens.iter().any(|token| stored.contains(&token.to_string()));
                }
                match result {
                    LookedUp::Tokens { stored: true, .. } => counts.found += 1,
                    _ => counts.not_found += 1,
                }
            }
            let audit_id = self.write_audit(&call.allowed(counts, None)).await?;
            Ok(Lookup { results, audit_id })
        })
        .await
    }

    /// Adds `values` to `caller`'s daily reveal limit for `quota_purpose` for the rest of the
    /// day, for `purpose`, if the caller of this method is an admin.
    #[instrument(skip_all, fields(caller = %access.caller))]
    pub async fn lift_quota(
        &self,
        access: &Access,
        caller: String,
        quota_purpose: String,
        values: u32,
        purpose: String,
    ) -> Result<LiftedQuota, VaultError> {
        let scope = if quota_purpose.is_empty() {
            "every purpose".to_owned()
        } else {
            quota_purpose.clone()
        };
        let call = AuditedCall {
            access,
            method: Method::LiftQuota,
            purpose: &purpose,
            note: "",
            token_count: 0,
            asked: Some(format!("lift the daily reveal limit of {caller} for {scope} by {values}")),
        };
        let validate = || {
            validate_purpose(&purpose)?;
            let Some(base) = self.privacy.daily_reveal_limit else {
                return Err(VaultError::InvalidArgument(
                    "this vault has no daily reveal limit (VAULT_DAILY_REVEAL_LIMIT=0)".to_owned(),
                ));
            };
            if !(1..=MAX_QUOTA_LIFT).contains(&values) {
                return Err(VaultError::InvalidArgument(format!("values: 1 to {MAX_QUOTA_LIFT}")));
            }
            if caller.is_empty()
                || caller.chars().count() > 512
                || caller.chars().any(char::is_control)
            {
                return Err(VaultError::InvalidArgument(
                    "caller: the identity whose limit is lifted, e.g. spiffe://fetchreward/person/alice"
                        .to_owned(),
                ));
            }
            self.privacy.check_quota_purpose(&quota_purpose)?;
            Ok(base)
        };
        self.audited(&call, validate, async |base: NonZeroU32| {
            let extra = i32::try_from(values).expect("at most MAX_QUOTA_LIFT");
            let detail = format!("daily reveal limit of {caller} for {scope} lifted by {values}");
            let audit_id = self
                .store
                .lift_quota_and_audit(
                    &caller,
                    &quota_purpose,
                    extra,
                    &call.allowed(StatusCounts::default(), Some(detail)),
                    &self.chain,
                )
                .await
                .map_err(|err| Failure::failed(audited_write_error(Method::LiftQuota)(err)))?;
            count_audited(Method::LiftQuota, AuditOutcome::Allowed);
            let scope = self.privacy.quota_scope(&quota_purpose);
            let (used, lifted) =
                self.store.reveals_today(&caller, scope).await.map_err(VaultError::from)?;
            Ok(LiftedQuota { limit: u64::from(base.get()) + lifted, used, audit_id })
        })
        .await
    }

    /// Makes `count` decoy tokens of `kind` and records them, for `purpose`, if the caller is
    /// an admin.
    #[instrument(skip_all, fields(caller = %access.caller, count))]
    pub async fn plant_decoys(
        &self,
        access: &Access,
        kind: Option<PiiKind>,
        count: u32,
        purpose: String,
    ) -> Result<PlantedDecoys, VaultError> {
        let call = AuditedCall {
            access,
            method: Method::PlantDecoys,
            purpose: &purpose,
            note: "",
            token_count: 0,
            asked: Some(format!("plant {count} decoy tokens")),
        };
        let validate = || {
            validate_purpose(&purpose)?;
            let kind = kind.ok_or_else(|| {
                VaultError::InvalidArgument(
                    "kind must be PII_KIND_IP or PII_KIND_DEVICE_ID".to_owned(),
                )
            })?;
            if !(1..=MAX_DECOYS).contains(&count) {
                return Err(VaultError::InvalidArgument(format!("count: 1 to {MAX_DECOYS}")));
            }
            Ok(kind)
        };
        self.audited(&call, validate, async |kind: PiiKind| {
            let version = self.ring().active_tokenization().version().get();
            let mut tokens = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let mut mac = [0u8; fetchreward_model::MAC_LEN];
                aws_lc_rs::rand::fill(&mut mac)
                    .map_err(|_| VaultError::Task("no randomness for a decoy".to_owned()))?;
                tokens.push(Token::new(kind, version, mac));
            }
            let texts: Vec<String> = tokens.iter().map(Token::to_string).collect();
            let detail = format!("{count} {kind} decoy tokens planted");
            let audit_id = self
                .store
                .plant_decoys_and_audit(
                    &texts,
                    kind.token_prefix(),
                    &call.allowed(StatusCounts::default(), Some(detail)),
                    &self.chain,
                )
                .await
                .map_err(|err| Failure::failed(audited_write_error(Method::PlantDecoys)(err)))?;
            count_audited(Method::PlantDecoys, AuditOutcome::Allowed);
            Ok(PlantedDecoys { tokens, audit_id })
        })
        .await
    }
}
