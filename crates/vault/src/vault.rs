//! The vault's operations, free of gRPC: tokenize, detokenize, forget.
//!
//! - Tokenize canonicalizes each value, computes its token with the active tokenization key,
//!   and stores the originals of tokens not known to be stored yet, encrypted under the active
//!   data key, in one statement per batch, before answering.
//! - Detokenize and Forget are authorized per caller and always audited: the audit row is
//!   committed before the answer, and a call whose audit row cannot be written fails without
//!   returning anything.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use fetchreward_model::{Pii, PiiKind, Token};
use tracing::instrument;

use crate::audit::{AuditEntry, AuditOutcome, StatusCounts};
use crate::authz::{Authorizer, Caller, Method};
use crate::error::VaultError;
use crate::keys::{self, KeyError, KeyProvider, KeyRing};
use crate::known_tokens::{KnownTokens, KnownTokensConfig};
use crate::metrics;
use crate::store::{ForgetFailure, NewToken, StoredToken, VaultStore};

/// Most values in one Tokenize call.
pub const MAX_TOKENIZE_VALUES: usize = 10_000;

/// Most tokens in one Detokenize or Forget call.
pub const MAX_RECOVERY_TOKENS: usize = 1_000;

/// Longest purpose of a Detokenize or Forget call, in characters.
pub const MAX_PURPOSE_CHARS: usize = 512;

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

/// The vault: keys in memory, originals in Postgres.
pub struct Vault {
    store: VaultStore,
    provider: Arc<dyn KeyProvider>,
    ring: RwLock<Arc<KeyRing>>,
    /// Serialises key reloads, so a burst of rows under a new data key unwraps it once.
    reload: tokio::sync::Mutex<()>,
    known: KnownTokens,
    authorizer: Arc<dyn Authorizer>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("keys", &self.ring())
            .field("known", &self.known)
            .field("authorizer", &self.authorizer)
            .finish_non_exhaustive()
    }
}

/// A Tokenize batch after hashing: every token, and the sealed originals to store.
struct PreparedBatch {
    tokens: Vec<Token>,
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
        authorizer: Arc<dyn Authorizer>,
        known: KnownTokensConfig,
    ) -> Result<Self, KeyError> {
        let ring = keys::load_or_create(&store, &provider).await?;
        Ok(Vault {
            store,
            provider,
            ring: RwLock::new(Arc::new(ring)),
            reload: tokio::sync::Mutex::new(()),
            known: KnownTokens::new(known),
            authorizer,
        })
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &VaultStore {
        &self.store
    }

    /// The keys in use now.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().expect("the key ring lock is never poisoned").clone()
    }

    /// Tokens of `values`, in order, with every original stored before returning.
    #[instrument(skip_all, fields(caller = %caller, values = values.len()))]
    pub async fn tokenize(
        &self,
        caller: &Caller,
        values: Vec<RawPii>,
    ) -> Result<Vec<Token>, VaultError> {
        if !self.authorizer.allows(caller, Method::Tokenize) {
            return Err(denied(caller, Method::Tokenize));
        }
        if values.len() > MAX_TOKENIZE_VALUES {
            return Err(VaultError::InvalidArgument(format!(
                "values: at most {MAX_TOKENIZE_VALUES} values per call, got {}",
                values.len()
            )));
        }
        let ring = self.ring();
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

        let PreparedBatch { tokens, mut to_store, to_remember, data_key_version, .. } = batch;
        if !to_store.is_empty() {
            let started = Instant::now();
            let written = self.store.store_tokens(data_key_version, &mut to_store).await?;
            ::metrics::histogram!(metrics::STORE_SECONDS).record(started.elapsed().as_secs_f64());
            ::metrics::counter!(metrics::TOKENS_STORED).increment(written as u64);
            self.known.insert_all(&to_remember);
        }
        Ok(tokens)
    }

    /// The originals of `tokens`, for `purpose`, if `caller` may recover them.
    #[instrument(skip_all, fields(caller = %caller, tokens = tokens.len()))]
    pub async fn detokenize(
        &self,
        caller: &Caller,
        tokens: Vec<String>,
        purpose: String,
    ) -> Result<Detokenized, VaultError> {
        let method = Method::Detokenize;
        let audit =
            |outcome, counts| audit_entry(caller, method, &purpose, tokens.len(), outcome, counts);
        if !self.authorizer.allows(caller, method) {
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
    #[instrument(skip_all, fields(caller = %caller, tokens = tokens.len()))]
    pub async fn forget(
        &self,
        caller: &Caller,
        tokens: Vec<String>,
        purpose: String,
    ) -> Result<Forgotten, VaultError> {
        let method = Method::Forget;
        let audit =
            |outcome, counts| audit_entry(caller, method, &purpose, tokens.len(), outcome, counts);
        if !self.authorizer.allows(caller, method) {
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
                return Err(match err {
                    ForgetFailure::Destroy(err) => VaultError::Database(err),
                    ForgetFailure::Audit(err) => VaultError::AuditUnavailable(err),
                });
            }
        };
        self.known.remove_all(&parsed);
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
        let fresh = Arc::new(keys::reload(&self.store, &self.provider).await?);
        *self.ring.write().expect("the key ring lock is never poisoned") = fresh.clone();
        if fresh.data_key(wanted).is_none() {
            return Err(unknown());
        }
        tracing::info!(keys = ?fresh, "vault keys reloaded");
        Ok(fresh)
    }

    /// Writes an audit row; a failure fails the call.
    async fn write_audit(&self, entry: &AuditEntry) -> Result<i64, VaultError> {
        let id = self.store.audit(entry).await.map_err(VaultError::AuditUnavailable)?;
        ::metrics::counter!(
            metrics::AUDITED_CALLS,
            "method" => entry.method.as_str(),
            "outcome" => entry.outcome.as_str()
        )
        .increment(1);
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
    let mut seen = HashSet::with_capacity(values.len());
    let mut to_store = Vec::new();
    let mut to_remember = Vec::new();
    let mut cache_hits = 0;
    let mut per_kind = [0u64; PiiKind::ALL.len()];
    for (index, raw) in values.into_iter().enumerate() {
        per_kind[raw.kind as usize] += 1;
        let value = raw.kind.canonicalize(&raw.value).map_err(|err| {
            VaultError::InvalidArgument(format!("values[{index}]: {} {err}", raw.kind))
        })?;
        let token = tokenization.token(raw.kind, &value);
        tokens.push(token);
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
        to_store,
        to_remember,
        cache_hits,
        data_key_version: data.version(),
    })
}

/// Checks the purpose, the batch size and every token of a Detokenize or Forget call.
fn validate_recovery(tokens: &[String], purpose: &str) -> Result<Vec<Token>, VaultError> {
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
    }
}

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
        assert_eq!(batch.tokens.len(), 4);
        assert_eq!(batch.tokens[0], batch.tokens[1]);
        assert_eq!(batch.tokens[2], batch.tokens[3]);
        assert_ne!(batch.tokens[0].mac(), batch.tokens[2].mac());
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
    }

    #[test]
    fn an_invalid_value_is_named_by_index_and_rule_only() {
        let known = KnownTokens::new(KnownTokensConfig::default());
        let values = vec![
            raw(PiiKind::Ip, "192.0.2.1"),
            raw(PiiKind::DeviceId, "abc"),
            raw(PiiKind::Ip, "999.1.2.3"),
        ];
        let Err(VaultError::InvalidArgument(message)) = prepare_batch(&ring(), &known, values)
        else {
            panic!("expected INVALID_ARGUMENT");
        };
        assert_eq!(message, "values[2]: ip is not a valid IPv4 or IPv6 address");

        let Err(VaultError::InvalidArgument(message)) =
            prepare_batch(&ring(), &known, vec![raw(PiiKind::DeviceId, "  ")])
        else {
            panic!("expected INVALID_ARGUMENT");
        };
        assert_eq!(message, "values[0]: device_id is empty");
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
