//! Tokenize: every value of a batch to its token, the originals of new tokens stored first.

use std::fmt;
use std::time::Instant;

use fetchreward_model::{PiiKind, Token};
use foldhash::{HashSet, HashSetExt as _};
use tracing::instrument;

use super::Vault;
use super::audited::denied;
use crate::authz::{Access, Method};
use crate::error::VaultError;
use crate::keys::KeyRing;
use crate::known_tokens::KnownTokens;
use crate::metrics;
use crate::store::{NewToken, StoreError};
use crate::version::KeyVersion;

/// Most values in one Tokenize call.
pub const MAX_TOKENIZE_VALUES: usize = 10_000;

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

/// A Tokenize batch after hashing: every token, and the sealed originals to store.
struct PreparedBatch {
    tokens: Vec<Option<Token>>,
    refused: Vec<RefusedValue>,
    to_store: Vec<NewToken>,
    to_remember: Vec<Token>,
    cache_hits: u64,
    data_key_version: KeyVersion,
}

impl Vault {
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
        self.volume.admit(&access.caller, values.len())?;
        let count = values.len();
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
        let mut new = 0;
        if !to_store.is_empty() {
            let started = Instant::now();
            let written = match self.store.store_tokens(data_key_version, &mut to_store).await {
                Ok(written) => written,
                Err(StoreError::Database(err)) => return Err(err.into()),
                Err(StoreError::Retired(version)) => {
                    // Only a replica whose keys are stale seals under a retired generation.
                    if let Err(err) = self.refresh_keys().await {
                        tracing::warn!(error = %err, "vault keys not reloaded");
                    }
                    return Err(VaultError::KeyRetired(version));
                }
            };
            ::metrics::histogram!(metrics::STORE_SECONDS).record(started.elapsed().as_secs_f64());
            ::metrics::counter!(metrics::TOKENS_STORED).increment(written as u64);
            new = written;
            self.known.insert_all(&to_remember);
        }
        for value in &refused {
            ::metrics::counter!(metrics::TOKENIZE_REFUSED, "code" => value.code).increment(1);
        }
        self.volume.record(&access.caller, count, new);
        Ok(Tokenized { tokens, refused })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::known_tokens::KnownTokensConfig;
    use crate::vault::test_ring::ring;

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
    fn raw_values_do_not_show_in_debug() {
        let printed = format!("{:?}", raw(PiiKind::Ip, "203.0.113.5"));
        assert!(!printed.contains("203.0.113.5"), "{printed}");
    }
}
