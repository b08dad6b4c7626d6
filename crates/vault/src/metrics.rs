//! The vault's metric names. Labels hold method names, kinds and outcomes only: never a value
//! or a token.

/// Counter: values received by Tokenize, by `kind` (`ip`, `device_id`).
pub const TOKENIZE_VALUES: &str = "fetchreward_vault_tokenize_values_total";

/// Counter: values Tokenize refused, by `code` (e.g. `invalid_ip`).
pub const TOKENIZE_REFUSED: &str = "fetchreward_vault_tokenize_refused_total";

/// Counter: tokens whose original was written to the database (new, or refilled after Forget).
pub const TOKENS_STORED: &str = "fetchreward_vault_tokens_stored_total";

/// Counter: distinct tokens of a Tokenize batch answered from the known-tokens cache.
pub const TOKEN_CACHE_HITS: &str = "fetchreward_vault_token_cache_hits_total";

/// Counter: distinct tokens of a Tokenize batch that went to the database.
pub const TOKEN_CACHE_MISSES: &str = "fetchreward_vault_token_cache_misses_total";

/// Counter: audited calls, by `method` (`Detokenize`, `Forget`, `RotateKeys`, `Rewrap`) and
/// `outcome`.
pub const AUDITED_CALLS: &str = "fetchreward_vault_audited_calls_total";

/// Counter: tokens answered by Detokenize and Forget, by `method` and `status`.
pub const TOKEN_RESULTS: &str = "fetchreward_vault_token_results_total";

/// Histogram (seconds): the database statement that stores a Tokenize batch.
pub const STORE_SECONDS: &str = "fetchreward_vault_store_duration_seconds";

/// Gauge: the key version new tokens (`purpose="tokenization"`) or ciphertexts
/// (`purpose="data"`) use, updated at every key refresh. All replicas show the same value a
/// refresh interval after a rotation takes over.
pub const ACTIVE_KEY_VERSION: &str = "fetchreward_vault_active_key_version";

/// Counter: background key reloads that failed (database or KMS unreachable, a bad row).
pub const KEY_REFRESH_FAILURES: &str = "fetchreward_vault_key_refresh_failures_total";

/// Counter: stored originals re-encrypted under the active data key by Rewrap.
pub const REWRAPPED_ROWS: &str = "fetchreward_vault_rewrapped_rows_total";

/// Histogram (seconds): one database operation of the vault, by `operation` (e.g.
/// `store_tokens`, `lookup`, `audit`) and `outcome` (`ok`, `error`).
pub const DB_SECONDS: &str = "fetchreward_vault_db_seconds";

/// Counter: audited calls refused without an audit row, by `method` and `reason`
/// (`control_character` in the purpose; `denied`, `invalid`: the audit write failed).
pub const UNAUDITED_CALLS: &str = "fetchreward_vault_unaudited_calls_total";
