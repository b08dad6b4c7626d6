//! A bounded in-process memory of tokens recently stored, so that repeated values (most of
//! them: the same devices and addresses log in again and again) skip the database.
//!
//! An entry means "this token's original was stored, as far as this replica knows". It can be
//! stale in one way: another replica may Forget the token. This replica then keeps answering
//! Tokenize for that value from memory without storing it again, until the entry expires.
//! So a value forgotten on another replica is stored again at the latest one TTL after it
//! comes back. Forget on this replica removes its entries at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fetchreward_model::Token;
use quick_cache::sync::Cache;

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
        // About 19 MB at capacity (some 75 bytes a token); ten minutes bounds how long a
        // Forget on another replica can go unnoticed here.
        KnownTokensConfig { capacity: 250_000, ttl: Duration::from_secs(600) }
    }
}

/// Tokens known to be stored, each with the second (counted from `epoch`) it was stored or
/// seen stored. Past its TTL an entry counts as absent and is dropped when next looked up;
/// entries never looked up again leave when the cache evicts them for newer ones.
#[derive(Clone)]
pub struct KnownTokens {
    cache: Option<Arc<Cache<Token, u32>>>,
    epoch: Instant,
    ttl_secs: u32,
}

impl std::fmt::Debug for KnownTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownTokens")
            .field("entries", &self.cache.as_ref().map(|cache| cache.len()))
            .finish()
    }
}

impl KnownTokens {
    /// A cache of the given size and lifetime.
    pub fn new(config: KnownTokensConfig) -> Self {
        let ttl_secs = u32::try_from(config.ttl.as_secs()).unwrap_or(u32::MAX);
        let cache = (config.capacity > 0 && ttl_secs > 0).then(|| {
            let capacity = usize::try_from(config.capacity).unwrap_or(usize::MAX);
            Arc::new(Cache::new(capacity))
        });
        KnownTokens { cache, epoch: Instant::now(), ttl_secs }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Whether `token` is known to be stored.
    pub fn contains(&self, token: &Token) -> bool {
        let Some(cache) = &self.cache else { return false };
        let Some(noted) = cache.get(token) else { return false };
        if self.now().saturating_sub(noted) < self.ttl_secs {
            return true;
        }
        cache.remove_if(token, |&at| at == noted);
        false
    }

    /// Remembers tokens that are now stored.
    pub fn insert_all<'a>(&self, tokens: impl IntoIterator<Item = &'a Token>) {
        if let Some(cache) = &self.cache {
            let now = self.now();
            for token in tokens {
                cache.insert(*token, now);
            }
        }
    }

    /// Forgets tokens whose originals were destroyed.
    pub fn remove_all<'a>(&self, tokens: impl IntoIterator<Item = &'a Token>) {
        if let Some(cache) = &self.cache {
            for token in tokens {
                cache.remove(token);
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
    fn an_entry_past_its_ttl_is_absent() {
        let known =
            KnownTokens::new(KnownTokensConfig { capacity: 10, ttl: Duration::from_secs(1) });
        known.insert_all(&[token(1)]);
        assert!(known.contains(&token(1)));
        std::thread::sleep(Duration::from_millis(2_100));
        assert!(!known.contains(&token(1)));
        // Stored again, it is known again.
        known.insert_all(&[token(1)]);
        assert!(known.contains(&token(1)));
    }

    #[test]
    fn holds_at_most_its_capacity() {
        let known =
            KnownTokens::new(KnownTokensConfig { capacity: 100, ttl: Duration::from_secs(60) });
        let tokens: Vec<Token> = (0..=255).map(token).collect();
        known.insert_all(&tokens);
        let remembered = tokens.iter().filter(|token| known.contains(token)).count();
        assert!(remembered > 0 && remembered <= 100, "{remembered} remembered");
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
