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

/// Gauge: when this replica last loaded the key ring (Unix seconds); alert when it falls more
/// than a minute behind.
pub const KEY_REFRESH_TIMESTAMP: &str = "fetchreward_vault_key_refresh_timestamp_seconds";

/// Counter: background key reloads that failed (database or KMS unreachable, a bad row).
pub const KEY_REFRESH_FAILURES: &str = "fetchreward_vault_key_refresh_failures_total";

/// Counter: stored originals re-encrypted under the active data key by Rewrap.
pub const REWRAPPED_ROWS: &str = "fetchreward_vault_rewrapped_rows_total";

/// Histogram (seconds): one database operation of the vault, by `operation` (e.g.
/// `store_tokens`, `lookup`, `audit`) and `outcome` (`ok`, `error`).
pub const DB_SECONDS: &str = "fetchreward_vault_db_seconds";

/// Counter: audit rows that could not be written (the call failed closed), by `method`.
pub const AUDIT_WRITE_FAILURES: &str = "fetchreward_vault_audit_write_failures_total";

/// Counter: audited calls refused without an audit row, by `method` and `reason`
/// (`control_character` in the purpose; `denied`, `invalid`: the audit write failed).
pub const UNAUDITED_CALLS: &str = "fetchreward_vault_unaudited_calls_total";

/// Counter: stored originals their data key did not open, found by a rewrap and marked
/// unreadable.
pub const REWRAP_UNREADABLE: &str = "fetchreward_vault_rewrap_unreadable_total";

/// Gauge: data key generations by `state`: `active` (the one in use, or waiting to take
/// over), `retiring` (replaced, values still being moved off it), `retired`.
pub const GENERATIONS: &str = "fetchreward_vault_data_key_generations";

/// Gauge: seconds since the oldest generation still retiring was replaced; 0 when none is.
/// Above a day (`erasure::RETIRE_ALLOWANCE`), Forget receipts are late.
pub const RETIRING_FOR_SECONDS: &str = "fetchreward_vault_retiring_generation_age_seconds";

/// Counter: data key generations retired, and KMS key deletions scheduled (`step`).
pub const RETIREMENTS: &str = "fetchreward_vault_retirements_total";

/// Counter: Tokenize values refused by the per-caller rate limit, by `caller` (an identity the
/// Tokenize policy lists: a bounded set of services).
pub const TOKENIZE_LIMITED: &str = "fetchreward_vault_tokenize_rate_limited_total";

/// Counter: Detokenize lookups with a read replica configured, by `result`: `hit` (every
/// token from the replica), `fallback` (some from the primary: written since the replica's
/// last replay), `error` (the replica failed; all from the primary), `stale` (the replica lags
/// over `store::REPLICA_MAX_LAG`; all from the primary).
pub const REPLICA_READS: &str = "fetchreward_vault_replica_reads_total";

/// Gauge: how far the read replica's replay is behind (seconds since the last transaction it
/// replayed, 0 when it has replayed all it received); -1 when it does not answer.
pub const REPLICA_LAG: &str = "fetchreward_vault_replica_lag_seconds";

/// Counter: audit rows written to the spool file because the primary could not take them
/// (`VAULT_AUDIT_SPOOL_FILE`), and those moved from it into the trail (`step`: `spooled`,
/// `replayed`).
pub const AUDIT_SPOOL: &str = "fetchreward_vault_audit_spool_rows_total";

/// Detokenize and RevealMasked calls refused for naming a decoy token, by method: a tripwire.
pub const DECOY_HITS: &str = "fetchreward_vault_decoy_hits_total";

/// Detokenize calls refused because the caller's daily reveal limit was used up, by method.
pub const QUOTA_REFUSALS: &str = "fetchreward_vault_quota_refusals_total";

/// Lookup calls refused by the per-caller rate limit.
pub const LOOKUP_LIMITED: &str = "fetchreward_vault_lookup_rate_limited_total";
