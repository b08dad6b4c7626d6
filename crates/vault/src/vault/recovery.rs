//! Detokenize, Forget and Restore: the originals back to an authorized reader, destroyed by an
//! admin (with a receipt saying when the destruction is final), or, for tombstones, allowed
//! back by an admin; all audited (`super::audited`).

use std::collections::{HashMap, HashSet};

use fetchreward_model::{Pii, Token};
use tracing::instrument;

use super::Vault;
use super::audited::{
    AuditedCall, Failure, audited_write_error, count_audited, record_results, validate_note,
    validate_purpose,
};
use crate::audit::{AuditOutcome, StatusCounts};
use crate::authz::{Access, Method};
use crate::erasure::{ForgetMode, Receipt};
use crate::error::VaultError;
use crate::store::{ChangedToken, REPLICA_MAX_LAG, StoredToken};
use crate::version::KeyVersion;

/// Most tokens in one Detokenize or Forget call.
pub const MAX_RECOVERY_TOKENS: usize = 1_000;

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
    pub results: Vec<(Token, Recovery)>,
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
    pub results: Vec<(Token, ForgetStatus)>,
    /// The audit row of the call.
    pub audit_id: i64,
    /// What the vault promises about the destroyed values.
    pub receipt: Receipt,
}

/// The outcome of Restore for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStatus {
    /// It was a tombstone: its value is stored again the next time it is tokenized.
    Restored,
    /// It was no tombstone (never stored, not forgotten, or restored already).
    NotTombstone,
}

/// The answer to a Restore call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// One result per requested token, in request order.
    pub results: Vec<(Token, RestoreStatus)>,
    /// The audit row of the call.
    pub audit_id: i64,
}

impl Vault {
    /// The originals of `tokens`, for `purpose` (and `note`), if the caller may recover them.
    #[instrument(skip_all, fields(caller = %access.caller, tokens = tokens.len()))]
    pub async fn detokenize(
        &self,
        access: &Access,
        tokens: Vec<String>,
        purpose: String,
        note: String,
    ) -> Result<Detokenized, VaultError> {
        self.reveal(access, Method::Detokenize, tokens, &purpose, &note).await
    }

    /// The masked forms of the originals of `tokens` ([`crate::privacy::PrivacySettings::mask`]),
    /// for `purpose` (and `note`), if the caller may see them.
    #[instrument(skip_all, fields(caller = %access.caller, tokens = tokens.len()))]
    pub async fn reveal_masked(
        &self,
        access: &Access,
        tokens: Vec<String>,
        purpose: String,
        note: String,
    ) -> Result<Detokenized, VaultError> {
        self.reveal(access, Method::RevealMasked, tokens, &purpose, &note).await
    }

    /// Detokenize (`method` Detokenize) or RevealMasked: the purpose checked against the
    /// caller's roles, decoys refused, the daily limit applied to full reveals, the answer
    /// audited.
    async fn reveal(
        &self,
        access: &Access,
        method: Method,
        tokens: Vec<String>,
        purpose: &str,
        note: &str,
    ) -> Result<Detokenized, VaultError> {
        let call =
            AuditedCall { access, method, purpose, note, token_count: tokens.len(), asked: None };
        let validate = || {
            let tokens = validate_recovery(&tokens, purpose)?;
            validate_note(note)?;
            self.privacy.check_purpose(&access.caller, purpose)?;
            Ok(tokens)
        };
        self.audited(&call, validate, async |tokens: Vec<Token>| {
            self.refuse_decoys(access, method, &tokens).await?;
            if method == Method::Detokenize {
                self.check_reveal_quota(access, method, purpose, tokens.len()).await?;
            }
            let results = self.recover(&tokens).await?;
            let mut counts = StatusCounts::default();
            for (_, recovery) in &results {
                match recovery {
                    Recovery::Found(_) => counts.found += 1,
                    Recovery::NotFound => counts.not_found += 1,
                    Recovery::Forgotten => counts.forgotten += 1,
                }
            }
            let audit_id = self.write_audit(&call.allowed(counts, None)).await?;
            record_results(method, counts);
            let results = results
                .into_iter()
                .map(|(token, recovery)| match recovery {
                    // The audit row holds the truth; a caller who is not an admin is not told
                    // that a value existed once and was erased.
                    Recovery::Forgotten if !access.admin => (token, Recovery::NotFound),
                    Recovery::Found(value) if method == Method::RevealMasked => {
                        let masked = self.privacy.mask(token.kind()).apply(value.expose());
                        (token, Recovery::Found(Pii::from_canonical(masked)))
                    }
                    other => (token, other),
                })
                .collect();
            Ok(Detokenized { results, audit_id })
        })
        .await
    }

    /// Destroys the originals of `tokens`, for `purpose`, if the caller may.
    #[instrument(skip_all, fields(caller = %access.caller, tokens = tokens.len()))]
    pub async fn forget(
        &self,
        access: &Access,
        tokens: Vec<String>,
        purpose: String,
    ) -> Result<Forgotten, VaultError> {
        let call = AuditedCall {
            access,
            method: Method::Forget,
            purpose: &purpose,
            note: "",
            token_count: tokens.len(),
            asked: None,
        };
        let validate = || validate_recovery(&tokens, &purpose);
        self.audited(&call, validate, async |tokens: Vec<Token>| {
            let tombstone = self.erasure.forget_mode == ForgetMode::Tombstone;
            let (existing, audit_id) = self
                .store
                .forget_and_audit(
                    &distinct(&tokens),
                    tombstone,
                    |existing| call.allowed(counts_of(&tokens, existing), None),
                    &self.chain,
                )
                .await
                .map_err(|err| Failure::failed(audited_write_error(Method::Forget)(err)))?;
            self.known.remove_all(&tokens);
            // The answer promises the values are gone: a read replica must not serve them after
            // it, so it waits for the replica to replay the erasure.
            if !self.store.wait_for_replica(REPLICA_MAX_LAG).await {
                tracing::warn!("the read replica did not replay a Forget in time; it is not read until it catches up");
            }
            count_audited(Method::Forget, AuditOutcome::Allowed);
            record_results(Method::Forget, counts_of(&tokens, &existing));
            let receipt = self.receipt(&existing).await;
            let existing: HashSet<&str> = existing.iter().map(|row| row.token.as_str()).collect();
            let results = tokens
                .into_iter()
                .map(|token| {
                    let status = if existing.contains(token.to_string().as_str()) {
                        ForgetStatus::Forgotten
                    } else {
                        ForgetStatus::NotFound
                    };
                    (token, status)
                })
                .collect();
            Ok(Forgotten { results, audit_id, receipt })
        })
        .await
    }

    /// The receipt of a Forget that destroyed `forgotten`. The values are gone already; a
    /// receipt that cannot be computed says so rather than failing the call.
    async fn receipt(&self, forgotten: &[ChangedToken]) -> Receipt {
        match self.store.generations().await {
            Ok(generations) => self.erasure.receipt(forgotten, &generations),
            Err(err) => {
                tracing::error!(error = %err, "the erasure receipt could not be computed");
                Receipt::unknown(forgotten)
            }
        }
    }

    /// Lets the tombstones among `tokens` be stored again, for `purpose`, if the caller may.
    #[instrument(skip_all, fields(caller = %access.caller, tokens = tokens.len()))]
    pub async fn restore(
        &self,
        access: &Access,
        tokens: Vec<String>,
        purpose: String,
    ) -> Result<Restored, VaultError> {
        let call = AuditedCall {
            access,
            method: Method::Restore,
            purpose: &purpose,
            note: "",
            token_count: tokens.len(),
            asked: None,
        };
        let validate = || validate_recovery(&tokens, &purpose);
        self.audited(&call, validate, async |tokens: Vec<Token>| {
            let (restored, audit_id) = self
                .store
                .restore_and_audit(
                    &distinct(&tokens),
                    |restored| {
                        let detail = format!("{} tombstones may be stored again", restored.len());
                        call.allowed(StatusCounts::default(), Some(detail))
                    },
                    &self.chain,
                )
                .await
                .map_err(|err| Failure::failed(audited_write_error(Method::Restore)(err)))?;
            // The known-tokens cache may say "stored" for a tombstone: forget that too.
            self.known.remove_all(&tokens);
            count_audited(Method::Restore, AuditOutcome::Allowed);
            let restored: HashSet<&str> = restored.iter().map(|row| row.token.as_str()).collect();
            let results = tokens
                .into_iter()
                .map(|token| {
                    let status = if restored.contains(token.to_string().as_str()) {
                        RestoreStatus::Restored
                    } else {
                        RestoreStatus::NotTombstone
                    };
                    (token, status)
                })
                .collect();
            Ok(Restored { results, audit_id })
        })
        .await
    }

    /// Looks up and decrypts well-formed tokens.
    async fn recover(&self, tokens: &[Token]) -> Result<Vec<(Token, Recovery)>, VaultError> {
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
            let text = token.to_string();
            let recovery = match stored.get(&text) {
                None => Recovery::NotFound,
                Some(StoredToken { sealed: None, .. }) => Recovery::Forgotten,
                Some(StoredToken {
                    sealed: Some((nonce, ciphertext)), data_key_version, ..
                }) => {
                    let held = KeyVersion::from_db(*data_key_version)
                        .is_some_and(|version| ring.data_key(version).is_some());
                    if !held {
                        ring = self.ring_with_data_key(&text, *data_key_version).await?;
                    }
                    let key = KeyVersion::from_db(*data_key_version)
                        .and_then(|version| ring.data_key(version))
                        .expect("checked just above");
                    let value = key
                        .open(&text, nonce, ciphertext)
                        .map_err(|source| VaultError::Crypto { token: text.clone(), source })?;
                    Recovery::Found(value)
                }
            };
            results.push((*token, recovery));
        }
        Ok(results)
    }
}

/// The audit counts of a Forget of `tokens` that found `existing`.
fn counts_of(tokens: &[Token], existing: &[ChangedToken]) -> StatusCounts {
    let existing: HashSet<&str> = existing.iter().map(|row| row.token.as_str()).collect();
    let forgotten = tokens.iter().filter(|t| existing.contains(t.to_string().as_str())).count();
    StatusCounts {
        found: 0,
        forgotten: forgotten as u32,
        not_found: (tokens.len() - forgotten) as u32,
    }
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
pub(super) fn distinct(tokens: &[Token]) -> Vec<Token> {
    let mut seen = HashSet::with_capacity(tokens.len());
    tokens.iter().filter(|token| seen.insert(**token)).copied().collect()
}

#[cfg(test)]
mod tests {
    use fetchreward_model::PiiKind;

    use super::*;
    use crate::vault::MAX_PURPOSE_CHARS;

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
        let many = vec![token(1); MAX_RECOVERY_TOKENS + 1];
        assert!(validate_recovery(&many, "x").is_err());
    }

    #[test]
    fn repeats_are_looked_up_once() {
        let a = Token::new(PiiKind::Ip, 1, [1; 32]);
        let b = Token::new(PiiKind::DeviceId, 1, [1; 32]);
        assert_eq!(distinct(&[a, b, a]), [a, b]);
    }
}
