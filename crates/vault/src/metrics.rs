//! The vault's metric names. Labels hold method names, kinds and outcomes only: never a value
//! or a token.

/// Counter: values received by Tokenize, by `kind` (`ip`, `device_id`).
pub const TOKENIZE_VALUES: &str = "fetchreward_vault_tokenize_values_total";

/// Counter: tokens whose original was written to the database (new, or refilled after Forget).
pub const TOKENS_STORED: &str = "fetchreward_vault_tokens_stored_total";

/// Counter: distinct tokens of a Tokenize batch answered from the known-tokens cache.
pub const TOKEN_CACHE_HITS: &str = "fetchreward_vault_token_cache_hits_total";

/// Counter: distinct tokens of a Tokenize batch that went to the database.
pub const TOKEN_CACHE_MISSES: &str = "fetchreward_vault_token_cache_misses_total";

/// Counter: audited calls, by `method` (`Detokenize`, `Forget`) and `outcome`.
pub const AUDITED_CALLS: &str = "fetchreward_vault_audited_calls_total";

/// Counter: tokens answered by Detokenize and Forget, by `method` and `status`.
pub const TOKEN_RESULTS: &str = "fetchreward_vault_token_results_total";

/// Histogram (seconds): gRPC call latency, by `method` and `code`.
pub const CALL_SECONDS: &str = "fetchreward_vault_call_duration_seconds";

/// Histogram (seconds): the database statement that stores a Tokenize batch.
pub const STORE_SECONDS: &str = "fetchreward_vault_store_duration_seconds";
