//! A bounded in-process memory of tokens recently stored, so that repeated values (most of
//! them: the same devices and addresses log in again and again) skip the database.
//!
//! An entry means "this token's original was stored, as far as this replica knows". It can be
//! stale in one way: another replica may Forget the token. This replica then keeps answering
//! Tokenize for that value from memory without storing it again, until the entry expires.
//! So a value forgotten on another replica is stored again at the latest one TTL after it
//! comes back. Forget on this replica removes its entries at once.

use std::time::Duration;

use fetchreward_model::Token;
use moka::sync::Cache;

/// Size and lifetime of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownTokensConfig {
    /// Most tokens remembered; 0 turns the cache off.
    pub capacity: u64,
    /// How long a token is remembered after it was stored or seen stored.
    pub ttl: Duration,
}

impl Default for KnownTokensConfig {
    fn default() -> Self {
        // About 40 MB at capacity; ten minutes bounds how long a Forget on another replica
        // can go unnoticed here.
        KnownTokensConfig { capacity: 250_000, ttl: Duration::from_secs(600) }
    }
}

/// Tokens known to be stored.
#[derive(Clone)]
pub struct KnownTokens {
    cache: Option<Cache<Token, ()>>,
}

impl std::fmt::Debug for KnownTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownTokens")
            .field("entries", &self.cache.as_ref().map(Cache::entry_count))
            .finish()
    }
}

impl KnownTokens {
    /// A cache of the given size and lifetime.
    pub fn new(config: KnownTokensConfig) -> Self {
        let cache = (config.capacity > 0 && !config.ttl.is_zero()).then(|| {
            Cache::builder().max_capacity(config.capacity).time_to_live(config.ttl).build()
        });
        KnownTokens { cache }
    }

    /// Whether `token` is known to be stored.
    pub fn contains(&self, token: &Token) -> bool {
        self.cache.as_ref().is_some_and(|cache| cache.contains_key(token))
    }

    /// Remembers tokens that are now stored.
    pub fn insert_all<'a>(&self, tokens: impl IntoIterator<Item = &'a Token>) {
        if let Some(cache) = &self.cache {
            for token in tokens {
                cache.insert(*token, ());
            }
        }
    }

    /// Forgets tokens whose originals were destroyed.
    pub fn remove_all<'a>(&self, tokens: impl IntoIterator<Item = &'a Token>) {
        if let Some(cache) = &self.cache {
            for token in tokens {
                cache.invalidate(token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fetchreward_model::PiiKind;

    use super::*;

    fn token(byte: u8) -> Token {
        Token::new(PiiKind::Ip, 1, [byte; 32])
    }

    #[test]
    fn remembers_and_forgets() {
        let known = KnownTokens::new(KnownTokensConfig::default());
        assert!(!known.contains(&token(1)));
        known.insert_all(&[token(1), token(2)]);
        assert!(known.contains(&token(1)) && known.contains(&token(2)));
        known.remove_all(&[token(1)]);
        assert!(!known.contains(&token(1)) && known.contains(&token(2)));
    }

    #[test]
    fn a_zero_capacity_or_ttl_turns_it_off() {
        for config in [
            KnownTokensConfig { capacity: 0, ttl: Duration::from_secs(60) },
            KnownTokensConfig { capacity: 10, ttl: Duration::ZERO },
        ] {
            let known = KnownTokens::new(config);
            known.insert_all(&[token(1)]);
            assert!(!known.contains(&token(1)));
        }
    }
}
