//! The vault's tables in Postgres: wrapped keys, sealed originals, the audit trail.
//!
//! Each method is one round trip (or one transaction) on a pooled connection, through one
//! helper that times it by operation (`fetchreward_vault_db_seconds`). Batches go in
//! as arrays (`UNNEST`, `= ANY`), so a Tokenize of 10,000 values is still one statement.
//! Times that matter across replicas (key activation) are computed by the database, on its
//! clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Binary, Integer, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use fetchreward_model::Token;
use fetchreward_runtime::postgres::{self, PgError, PgPool};

use crate::audit::{AuditEntry, AuditRecord};
use crate::crypto::{AuditChain, Sealed};
use crate::keys::KeyPurpose;
use crate::schema::pii_tokens;
use crate::version::KeyVersion;

/// The vault's migrations, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The schema the vault owns.
pub const SCHEMA: &str = "vault";

/// Advisory lock key that serialises the vault's migrations across replicas ("vault" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x0076_6175_6c74;

/// Advisory lock key held by the replica that keeps the data key generations ("vkeep").
pub const KEEPER_LOCK_KEY: i64 = 0x0076_6b65_6570;

/// A stored wrapped key.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct KeyRow {
    /// `tokenization` or `data`.
    #[diesel(sql_type = Text)]
    pub purpose: String,
    /// From 1.
    #[diesel(sql_type = Integer)]
    pub version: i32,
    /// The key as wrapped by KMS.
    #[diesel(sql_type = Binary)]
    pub wrapped: Vec<u8>,
    /// The KMS key that wrapped it.
    #[diesel(sql_type = Text)]
    pub kms_key_id: String,
    /// Whether that KMS key was made for this generation alone.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub own_master: bool,
    /// The deployment that made it; `None` for a legacy row.
    #[diesel(sql_type = Nullable<Text>)]
    pub deployment: Option<String>,
    /// Its binding to this vault (see `crate::crypto::KeyBinding`); `None` for a legacy row.
    #[diesel(sql_type = Nullable<Binary>)]
    pub binding: Option<Vec<u8>>,
    /// Made before rows were bound.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub legacy: bool,
    /// Milliseconds from the moment of the read until the key takes over, by the database
    /// clock; zero or negative once it has.
    #[diesel(sql_type = BigInt)]
    pub activates_in_ms: i64,
}

/// A stored original still sealed, as Rewrap reads it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct SealedRow {
    /// The token text, the associated data of the ciphertext.
    #[diesel(sql_type = Text)]
    pub token: String,
    /// The data key version of the ciphertext.
    #[diesel(sql_type = Integer)]
    pub data_key_version: i32,
    /// AES-GCM nonce.
    #[diesel(sql_type = Binary)]
    pub nonce: Vec<u8>,
    /// AES-GCM ciphertext and tag.
    #[diesel(sql_type = Binary)]
    pub ciphertext: Vec<u8>,
}

/// A new token and its sealed original, ready to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The token text.
    pub token: String,
    /// `ip` or `dev`.
    pub kind: &'static str,
    /// The original, encrypted under the active data key.
    pub sealed: Sealed,
}

/// What the table holds for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The token text.
    pub token: String,
    /// The data key version of the ciphertext.
    pub data_key_version: i32,
    /// `(nonce, ciphertext)`, or `None` once forgotten.
    pub sealed: Option<(Vec<u8>, Vec<u8>)>,
}

/// The columns of `vault.pii_tokens` that recovery reads.
#[derive(Queryable)]
struct TokenRow {
    token: String,
    data_key_version: i32,
    nonce: Option<Vec<u8>>,
    ciphertext: Option<Vec<u8>>,
}

/// A token that Forget or Restore changed.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ChangedToken {
    /// The token text.
    #[diesel(sql_type = Text)]
    pub token: String,
    /// The data key generation its value was (or still is) sealed under.
    #[diesel(sql_type = Integer)]
    pub data_key_version: i32,
    /// When its value was first forgotten (Unix milliseconds, database clock).
    #[diesel(sql_type = BigInt)]
    pub forgotten_at_unix_ms: i64,
}

/// One data key generation, as [`VaultStore::generations`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Generation {
    /// Its version.
    #[diesel(sql_type = Integer)]
    pub version: i32,
    /// The master key that wraps (or wrapped) it.
    #[diesel(sql_type = Text)]
    pub kms_key_id: String,
    /// Whether that master key was made for it alone (and is deleted when it retires).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub own_master: bool,
    /// When it took over, or takes over.
    #[diesel(sql_type = BigInt)]
    pub activates_at_unix_ms: i64,
    /// When it was retired.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub retired_at_unix_ms: Option<i64>,
    /// When KMS deletes its own master key, once scheduled.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub kms_deletion_at_unix_ms: Option<i64>,
    /// The database's time of the read.
    #[diesel(sql_type = BigInt)]
    pub now_unix_ms: i64,
}

impl Generation {
    /// When the next generation after this one takes over (Unix milliseconds), if one exists.
    pub fn replaced_at(&self, generations: &[Generation]) -> Option<i64> {
        generations
            .iter()
            .filter(|g| g.version > self.version)
            .map(|g| g.activates_at_unix_ms)
            .min()
    }
}

/// What a chunk of [`VaultStore::rewrap_chunk`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapChunk {
    /// Rows selected.
    pub selected: usize,
    /// Rows re-encrypted.
    pub rewrapped: usize,
    /// Tokens of rows marked unreadable.
    pub unreadable: Vec<String>,
}

/// Why a row could not be resealed.
#[derive(Debug)]
pub enum Reseal<E> {
    /// Its ciphertext does not open under its data key: mark it and go on.
    Unreadable(E),
    /// Something else: stop, and roll the chunk back.
    Stop(E),
}

/// Why [`VaultStore::store_tokens`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data key the values were sealed under was retired meanwhile.
    #[error("data key v{0} was retired while the values were sealed under it")]
    Retired(KeyVersion),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] PgError),
}

/// The primary's current WAL position, as text: the insert position, which holds every commit
/// made so far even with `synchronous_commit` off (the write position may not yet).
const PRIMARY_LSN: &str = "SELECT pg_current_wal_insert_lsn()::text AS lsn";

/// Whether the replica has replayed up to a position of the primary.
const REPLICA_REACHED: &str =
    "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS flag";

/// The answer of [`PRIMARY_LSN`].
#[derive(QueryableByName)]
struct Lsn {
    #[diesel(sql_type = Text)]
    lsn: String,
}

/// The answer of [`REPLICA_LAG`].
#[derive(QueryableByName)]
struct Lag {
    #[diesel(sql_type = diesel::sql_types::Double)]
    seconds: f64,
}

/// How far a standby's replay is behind: 0 when it has replayed all it received (an idle
/// primary sends nothing, and the time since the last replayed transaction then says nothing),
/// else the time since the last transaction it replayed; 0 on a server that is no standby.
const REPLICA_LAG: &str = "\
SELECT CASE
         WHEN NOT pg_is_in_recovery() THEN 0
         WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
         ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS seconds";

/// The answer of [`STORE_TOKENS`].
#[derive(QueryableByName)]
struct StoreCounts {
    #[diesel(sql_type = BigInt)]
    usable: i64,
    #[diesel(sql_type = BigInt)]
    written: i64,
}

/// One row of a `SELECT version`.
#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Integer)]
    #[allow(dead_code)]
    version: i32,
}

/// One row of `INSERT INTO vault.keys ... RETURNING`.
#[derive(QueryableByName)]
struct InsertedKey {
    #[diesel(sql_type = BigInt)]
    activates_at_unix_ms: i64,
}

/// The answer of [`MAY_REWRITE_AUDIT`].
#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    flag: bool,
}

const MAY_REWRITE_AUDIT: &str = "\
SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
    OR has_table_privilege(current_user, 'vault.audit_log', 'UPDATE, DELETE, TRUNCATE') AS flag";

/// One row of a `SELECT` of one number.
#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Every stored key not retired, with how long until each takes over by the database clock.
const KEY_ROWS: &str = "\
SELECT purpose, version, wrapped, kms_key_id, own_master, deployment, binding, legacy,
       (extract(epoch FROM activates_at - now()) * 1000)::bigint AS activates_in_ms
FROM vault.keys
WHERE retired_at IS NULL
ORDER BY purpose, version";

/// Store a wrapped key that takes over `$5` milliseconds from now (database clock), unless that
/// purpose and version exist. The first key set and every rotation insert through here.
const INSERT_KEY: &str = "\
INSERT INTO vault.keys (purpose, version, wrapped, kms_key_id, activates_at, deployment, binding, own_master)
VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond', $6, $7, $8)
ON CONFLICT (purpose, version) DO NOTHING
RETURNING (extract(epoch FROM activates_at) * 1000)::bigint AS activates_at_unix_ms";

/// The version a rotation of purpose `$1` creates.
const NEXT_KEY_VERSION: &str = "\
SELECT COALESCE(max(version), 0)::bigint + 1 AS n FROM vault.keys WHERE purpose = $1";

/// Up to `$2` stored originals sealed under data keys older than `$1`, locked for this
/// transaction. Rows another transaction holds (a concurrent Rewrap, Tokenize or Forget) are
/// skipped rather than waited for, so parallel rewraps share the work and never deadlock.
const SELECT_TO_REWRAP: &str = "\
SELECT token, data_key_version, nonce, ciphertext
FROM vault.pii_tokens
WHERE data_key_version < $1 AND ciphertext IS NOT NULL AND unreadable_at IS NULL
LIMIT $2
FOR UPDATE SKIP LOCKED";

/// Mark locked rows whose ciphertext their data key does not open.
const MARK_UNREADABLE: &str = "\
UPDATE vault.pii_tokens SET unreadable_at = now() WHERE token = ANY($1)";

/// Replace the ciphertexts of locked rows with ones sealed under data key `$1`.
const UPDATE_REWRAPPED: &str = "\
UPDATE vault.pii_tokens AS p
SET data_key_version = $1, nonce = t.nonce, ciphertext = t.ciphertext
FROM UNNEST($2::text[], $3::bytea[], $4::bytea[]) AS t(token, nonce, ciphertext)
WHERE p.token = t.token";

/// Stored originals still sealed under data keys older than `$1`.
const COUNT_TO_REWRAP: &str = "\
SELECT count(*) AS n FROM vault.pii_tokens
WHERE data_key_version < $1 AND ciphertext IS NOT NULL AND unreadable_at IS NULL";

/// Insert new tokens in one statement, sealed under data key `$3`, which must not be retired:
/// its row is share-locked for the statement, so a retirement waits for the insert and then
/// sees its rows (see [`RETIRE_LOCK`]). A token already stored keeps its ciphertext; one whose
/// value was forgotten takes the new ciphertext unless it is a tombstone, so a value that comes
/// back is recoverable again under the same token only when that is allowed.
const STORE_TOKENS: &str = "\
WITH usable AS (
    SELECT version FROM vault.keys
    WHERE purpose = 'data' AND version = $3 AND retired_at IS NULL
    FOR SHARE
), written AS (
    INSERT INTO vault.pii_tokens (token, kind, data_key_version, nonce, ciphertext)
    SELECT t.token, t.kind, $3, t.nonce, t.ciphertext
    FROM UNNEST($1::text[], $2::text[], $4::bytea[], $5::bytea[]) AS t(token, kind, nonce, ciphertext)
    WHERE EXISTS (SELECT 1 FROM usable)
    ON CONFLICT (token) DO UPDATE
    SET nonce = EXCLUDED.nonce,
        ciphertext = EXCLUDED.ciphertext,
        data_key_version = EXCLUDED.data_key_version,
        forgotten_at = NULL,
        unreadable_at = NULL
    WHERE vault.pii_tokens.ciphertext IS NULL AND NOT vault.pii_tokens.tombstone
    RETURNING 1
)
SELECT (SELECT count(*) FROM usable) AS usable, (SELECT count(*) FROM written) AS written";

/// Destroy the originals of tokens; the first forget time is kept, and a token becomes a
/// tombstone when `$2` says so (it stays one once it is).
const FORGET_TOKENS: &str = "\
UPDATE vault.pii_tokens
SET nonce = NULL, ciphertext = NULL, unreadable_at = NULL,
    forgotten_at = COALESCE(forgotten_at, now()),
    tombstone = tombstone OR $2
WHERE token = ANY($1)
RETURNING token, data_key_version,
          (extract(epoch FROM forgotten_at) * 1000)::bigint AS forgotten_at_unix_ms";

/// Let tombstones among `$1` be stored again by the next Tokenize of their value (`$2` is
/// true: only tombstones change).
const RESTORE_TOKENS: &str = "\
UPDATE vault.pii_tokens
SET tombstone = false
WHERE token = ANY($1) AND tombstone = $2
RETURNING token, data_key_version,
          (extract(epoch FROM forgotten_at) * 1000)::bigint AS forgotten_at_unix_ms";

/// The data key generations: when each took over, whether it is retired, its master key.
const GENERATIONS: &str = "\
SELECT version, kms_key_id, own_master,
       (extract(epoch FROM activates_at) * 1000)::bigint AS activates_at_unix_ms,
       (extract(epoch FROM retired_at) * 1000)::bigint AS retired_at_unix_ms,
       (extract(epoch FROM kms_deletion_at) * 1000)::bigint AS kms_deletion_at_unix_ms,
       (extract(epoch FROM now()) * 1000)::bigint AS now_unix_ms
FROM vault.keys
WHERE purpose = 'data'
ORDER BY version";

/// Lock a data key generation that is not retired, waiting for the Tokenize batches that
/// share-lock it while they store values under it.
const RETIRE_LOCK: &str = "\
SELECT version FROM vault.keys
WHERE purpose = 'data' AND version = $1 AND retired_at IS NULL
FOR UPDATE";

/// Whether a live value (readable, not forgotten) still needs data key generation `$1`. Run
/// after [`RETIRE_LOCK`], in its own statement, so it sees what the waited-for batches wrote.
const GENERATION_IN_USE: &str = "\
SELECT EXISTS (
    SELECT 1 FROM vault.pii_tokens
    WHERE data_key_version = $1 AND ciphertext IS NOT NULL AND unreadable_at IS NULL
) AS flag";

/// Remove a generation's wrapped key; the row stays, retired.
const RETIRE: &str = "\
UPDATE vault.keys SET wrapped = NULL, retired_at = now()
WHERE purpose = 'data' AND version = $1 AND retired_at IS NULL";

/// Record when KMS deletes a retired generation's master key.
const RECORD_KMS_DELETION: &str = "\
UPDATE vault.keys SET kms_deletion_at = to_timestamp($2 / 1000.0)
WHERE purpose = 'data' AND version = $1 AND retired_at IS NOT NULL";

/// Which step of a change made together with its audit row failed
/// ([`VaultStore::forget_and_audit`], [`VaultStore::insert_key_and_audit`]); either way
/// nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum AuditedWriteFailure {
    /// The change itself (or the commit) failed.
    #[error("{0}")]
    Write(PgError),
    /// Writing the audit row failed.
    #[error("{0}")]
    Audit(PgError),
}

impl From<PgError> for AuditedWriteFailure {
    fn from(err: PgError) -> Self {
        AuditedWriteFailure::Write(err)
    }
}

impl From<diesel::result::Error> for AuditedWriteFailure {
    fn from(err: diesel::result::Error) -> Self {
        AuditedWriteFailure::Write(PgError::Query(err))
    }
}

/// Why a chunk of [`VaultStore::rewrap_chunk`] was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum RewrapFailure<E> {
    /// A statement (or the commit) failed.
    #[error("{0}")]
    Database(PgError),
    /// Re-encrypting a row failed.
    #[error("{0}")]
    Reseal(E),
}

impl<E> From<PgError> for RewrapFailure<E> {
    fn from(err: PgError) -> Self {
        RewrapFailure::Database(err)
    }
}

impl<E> From<diesel::result::Error> for RewrapFailure<E> {
    fn from(err: diesel::result::Error) -> Self {
        RewrapFailure::Database(PgError::Query(err))
    }
}

/// The vault's persistence.
#[derive(Clone)]
pub struct VaultStore {
    pool: PgPool,
    /// A streaming replica (`DATABASE_READ_URL`), for Detokenize's lookups and the audit list.
    replica: Option<PgPool>,
    /// Whether the replica's last measured lag is within [`REPLICA_MAX_LAG`]; lookups skip it
    /// otherwise. Set by [`VaultStore::publish_replica_lag_every`].
    replica_fresh: Arc<AtomicBool>,
}

/// The most replay lag at which the replica serves lookups: past it, a value forgotten on the
/// primary could still be read there.
pub const REPLICA_MAX_LAG: Duration = Duration::from_secs(5);

impl std::fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultStore").finish_non_exhaustive()
    }
}

impl VaultStore {
    /// A store on `pool`.
    pub fn new(pool: PgPool) -> Self {
        VaultStore { pool, replica: None, replica_fresh: Arc::new(AtomicBool::new(false)) }
    }

    /// Reads Detokenize's lookups and the audit list from `replica`, falling back to the
    /// primary for what it does not have yet, or when it does not answer.
    pub fn with_replica(self, replica: PgPool) -> Self {
        VaultStore { replica: Some(replica), ..self }
    }

    /// The replica's pool, when there is one.
    pub fn replica(&self) -> Option<&PgPool> {
        self.replica.as_ref()
    }

    /// The pool, for readiness checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the pending migrations, serialised across replicas by an advisory lock.
    pub async fn migrate(&self) -> Result<Vec<String>, PgError> {
        postgres::migrate(&self.pool, MIGRATIONS, SCHEMA, MIGRATION_LOCK_KEY).await
    }

    /// Runs `op` on a pooled connection and records how long it took:
    /// `fetchreward_vault_db_seconds{operation, outcome}`. Every method below goes through
    /// here.
    async fn with_conn<T, E: From<PgError>>(
        &self,
        operation: &'static str,
        op: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        Self::with_conn_on(&self.pool, operation, op).await
    }

    /// [`Self::with_conn`] on a given pool (the replica's operations are named `*_replica`).
    async fn with_conn_on<T, E: From<PgError>>(
        pool: &PgPool,
        operation: &'static str,
        op: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = match postgres::conn(pool).await {
            Ok(mut conn) => op(&mut conn).await,
            Err(err) => Err(E::from(err)),
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        ::metrics::histogram!(
            crate::metrics::DB_SECONDS,
            "operation" => operation,
            "outcome" => outcome
        )
        .record(started.elapsed().as_secs_f64());
        result
    }

    /// Every stored key, in purpose and version order, with its activation time relative to
    /// the moment of the read.
    pub async fn key_rows(&self) -> Result<Vec<KeyRow>, PgError> {
        self.with_conn("key_rows", async |conn| Ok(diesel::sql_query(KEY_ROWS).load(conn).await?))
            .await
    }

    /// Stores a wrapped key that takes over `delay` from now, unless that purpose and version
    /// exist; returns its activation time (Unix milliseconds) if it was stored.
    pub async fn insert_key(&self, key: &NewKey<'_>) -> Result<Option<i64>, PgError> {
        self.with_conn("insert_key", async |conn| insert_key(conn, key).await).await
    }

    /// The version a rotation of `purpose` would create now: one above the highest stored.
    pub async fn next_key_version(&self, purpose: KeyPurpose) -> Result<KeyVersion, PgError> {
        let next: Number = self
            .with_conn::<_, PgError>("next_key_version", async |conn| {
                Ok(diesel::sql_query(NEXT_KEY_VERSION)
                    .bind::<Text, _>(purpose.as_str())
                    .get_result(conn)
                    .await?)
            })
            .await?;
        Ok(i32::try_from(next.n)
            .ok()
            .and_then(KeyVersion::from_db)
            .expect("key versions stay far below 2^31"))
    }

    /// Stores a rotated key and the audit row that `audit` builds from its activation time
    /// (Unix milliseconds), in one transaction: a key version never exists unaudited. Returns
    /// `None`, and writes nothing, when that purpose and version exist already (a concurrent
    /// rotation took the version).
    pub async fn insert_key_and_audit(
        &self,
        key: &NewKey<'_>,
        audit: impl FnOnce(i64) -> AuditEntry + Send,
        chain: &AuditChain,
    ) -> Result<Option<(i64, i64)>, AuditedWriteFailure> {
        self.with_conn("insert_key_and_audit", async |conn| {
            conn.transaction::<_, AuditedWriteFailure, _>(async |conn| {
                let inserted = insert_key(conn, key).await.map_err(AuditedWriteFailure::Write)?;
                let Some(activates_at_unix_ms) = inserted else {
                    return Ok(None);
                };
                let id = insert_audit(conn, &audit(activates_at_unix_ms), chain)
                    .await
                    .map_err(AuditedWriteFailure::Audit)?;
                Ok(Some((activates_at_unix_ms, id)))
            })
            .await
        })
        .await
    }

    /// Stores new tokens sealed under data key `data_key_version`; returns how many rows were
    /// written (new tokens plus forgotten ones refilled), or [`StoreError::Retired`] when that
    /// data key was retired meanwhile (nothing was written).
    ///
    /// `rows` must hold each token once (Postgres refuses to touch a row twice in one
    /// statement). They are written in token order, so concurrent batches lock rows in the
    /// same order and cannot deadlock on each other.
    pub async fn store_tokens(
        &self,
        data_key_version: KeyVersion,
        rows: &mut [NewToken],
    ) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        rows.sort_unstable_by(|a, b| a.token.cmp(&b.token));
        let tokens: Vec<&str> = rows.iter().map(|row| row.token.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|row| row.kind).collect();
        let nonces: Vec<&[u8]> = rows.iter().map(|row| row.sealed.nonce.as_slice()).collect();
        let ciphertexts: Vec<&[u8]> =
            rows.iter().map(|row| row.sealed.ciphertext.as_slice()).collect();
        let counts: StoreCounts = self
            .with_conn::<_, PgError>("store_tokens", async |conn| {
                Ok(diesel::sql_query(STORE_TOKENS)
                    .bind::<Array<Text>, _>(tokens)
                    .bind::<Array<Text>, _>(kinds)
                    .bind::<Integer, _>(data_key_version.to_db())
                    .bind::<Array<Binary>, _>(nonces)
                    .bind::<Array<Binary>, _>(ciphertexts)
                    .get_result(conn)
                    .await?)
            })
            .await?;
        if counts.usable == 0 {
            return Err(StoreError::Retired(data_key_version));
        }
        Ok(usize::try_from(counts.written).unwrap_or(0))
    }

    /// What is stored for each of `tokens` that exists (in no particular order). With a
    /// replica, it is asked first; the tokens it does not have (written since its last replay)
    /// are asked of the primary, and so is everything when the replica does not answer.
    pub async fn lookup(&self, tokens: &[Token]) -> Result<Vec<StoredToken>, PgError> {
        let Some(replica) = &self.replica else {
            return lookup_on(&self.pool, "lookup", tokens).await;
        };
        if !AtomicBool::load(&self.replica_fresh, Ordering::Relaxed) {
            replica_read("stale");
            return lookup_on(&self.pool, "lookup", tokens).await;
        }
        let mut found = match lookup_on(replica, "lookup_replica", tokens).await {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, "the read replica did not answer; reading from the primary");
                replica_read("error");
                return lookup_on(&self.pool, "lookup", tokens).await;
            }
        };
        let have: HashSet<&str> = found.iter().map(|row| row.token.as_str()).collect();
        let missing: Vec<Token> = tokens
            .iter()
            .filter(|token| !have.contains(token.to_string().as_str()))
            .copied()
            .collect();
        if missing.is_empty() {
            replica_read("hit");
            return Ok(found);
        }
        replica_read("fallback");
        found.extend(lookup_on(&self.pool, "lookup", &missing).await?);
        Ok(found)
    }

    /// Destroys the stored originals of `tokens` (making tombstones of them when `tombstone`)
    /// and writes the audit row that `audit` builds from the tokens that exist, in one
    /// transaction: a value is never destroyed without its audit row, nor audited as destroyed
    /// when it was not. Returns the existing tokens and the audit id.
    pub async fn forget_and_audit(
        &self,
        tokens: &[Token],
        tombstone: bool,
        audit: impl FnOnce(&[ChangedToken]) -> AuditEntry + Send,
        chain: &AuditChain,
    ) -> Result<(Vec<ChangedToken>, i64), AuditedWriteFailure> {
        self.change_tokens_and_audit(
            "forget_and_audit",
            FORGET_TOKENS,
            tokens,
            tombstone,
            audit,
            chain,
        )
        .await
    }

    /// Lets the tombstones among `tokens` be stored again, with the audit row `audit` builds
    /// from those that were tombstones, in one transaction. Returns them and the audit id.
    pub async fn restore_and_audit(
        &self,
        tokens: &[Token],
        audit: impl FnOnce(&[ChangedToken]) -> AuditEntry + Send,
        chain: &AuditChain,
    ) -> Result<(Vec<ChangedToken>, i64), AuditedWriteFailure> {
        self.change_tokens_and_audit(
            "restore_and_audit",
            RESTORE_TOKENS,
            tokens,
            true,
            audit,
            chain,
        )
        .await
    }

    /// Runs `statement` (`$1` the tokens, `$2` the flag, returning [`ChangedToken`]s) and the
    /// audit row built from its answer, in one transaction.
    async fn change_tokens_and_audit(
        &self,
        operation: &'static str,
        statement: &'static str,
        tokens: &[Token],
        flag: bool,
        audit: impl FnOnce(&[ChangedToken]) -> AuditEntry + Send,
        chain: &AuditChain,
    ) -> Result<(Vec<ChangedToken>, i64), AuditedWriteFailure> {
        let texts: Vec<String> = tokens.iter().map(Token::to_string).collect();
        self.with_conn(operation, async |conn| {
            conn.transaction::<_, AuditedWriteFailure, _>(async |conn| {
                let changed: Vec<ChangedToken> = diesel::sql_query(statement)
                    .bind::<Array<Text>, _>(&texts)
                    .bind::<diesel::sql_types::Bool, _>(flag)
                    .load(conn)
                    .await?;
                let id = insert_audit(conn, &audit(&changed), chain)
                    .await
                    .map_err(AuditedWriteFailure::Audit)?;
                Ok((changed, id))
            })
            .await
        })
        .await
    }

    /// What `caller` revealed today (UTC) for `purpose` (every purpose when `None`), and what
    /// admins lifted its limit by today: `(used, lifted)`. The reveals are summed from the
    /// allowed Detokenize rows of the audit trail, on the primary.
    pub async fn reveals_today(
        &self,
        caller: &str,
        purpose: Option<&str>,
    ) -> Result<(u64, u64), PgError> {
        let today = match reveals_on(&self.pool, "reveals_today", caller, purpose).await {
            Ok(today) => today,
            Err(err) => {
                reveals_on(self.fallback(err)?, "reveals_today_replica", caller, purpose).await?
            }
        };
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok((count(today.used), count(today.lifted)))
    }

    /// Adds `extra` to `caller`'s limit for `purpose` (`""`: every purpose) for today, with the
    /// audit row `audit`, in one transaction. Returns the audit id.
    pub async fn lift_quota_and_audit(
        &self,
        caller: &str,
        purpose: &str,
        extra: i32,
        audit: &AuditEntry,
        chain: &AuditChain,
    ) -> Result<i64, AuditedWriteFailure> {
        let row = AuditedRow::QuotaLift { caller, purpose, extra };
        self.insert_and_audit("lift_quota_and_audit", row, audit, chain).await
    }

    /// Records `tokens` (of the kind whose prefix is `kind`) as decoys, with the audit row
    /// `audit`, in one transaction. Returns the audit id.
    pub async fn plant_decoys_and_audit(
        &self,
        tokens: &[String],
        kind: &str,
        audit: &AuditEntry,
        chain: &AuditChain,
    ) -> Result<i64, AuditedWriteFailure> {
        let row = AuditedRow::Decoys { tokens, kind };
        self.insert_and_audit("plant_decoys_and_audit", row, audit, chain).await
    }

    /// Writes `audit`, then `row` with its id, in one transaction.
    async fn insert_and_audit(
        &self,
        operation: &'static str,
        row: AuditedRow<'_>,
        audit: &AuditEntry,
        chain: &AuditChain,
    ) -> Result<i64, AuditedWriteFailure> {
        self.with_conn(operation, async |conn| {
            conn.transaction::<_, AuditedWriteFailure, _>(async |conn| {
                let id =
                    insert_audit(conn, audit, chain).await.map_err(AuditedWriteFailure::Audit)?;
                match row {
                    AuditedRow::QuotaLift { caller, purpose, extra } => {
                        diesel::sql_query(INSERT_QUOTA_LIFT)
                            .bind::<Text, _>(caller)
                            .bind::<Text, _>(purpose)
                            .bind::<Integer, _>(extra)
                            .bind::<BigInt, _>(id)
                            .execute(conn)
                            .await?
                    }
                    AuditedRow::Decoys { tokens, kind } => {
                        diesel::sql_query(INSERT_DECOYS)
                            .bind::<Array<Text>, _>(tokens)
                            .bind::<Text, _>(kind)
                            .bind::<BigInt, _>(id)
                            .execute(conn)
                            .await?
                    }
                };
                Ok(id)
            })
            .await
        })
        .await
    }

    /// The decoys among `tokens`.
    pub async fn decoys_among(&self, tokens: &[Token]) -> Result<Vec<String>, PgError> {
        let texts: Vec<String> = tokens.iter().map(Token::to_string).collect();
        let rows = match decoys_on(&self.pool, "decoys_among", &texts).await {
            Ok(rows) => rows,
            Err(err) => decoys_on(self.fallback(err)?, "decoys_among_replica", &texts).await?,
        };
        Ok(rows.into_iter().map(|row| row.token).collect())
    }

    /// The replica, to read from when the primary failed with `err` for being unreachable (so
    /// that reveals, which the replica serves then, are still checked); else `err`.
    fn fallback(&self, err: PgError) -> Result<&PgPool, PgError> {
        match &self.replica {
            Some(replica) if err.is_transient() => {
                tracing::warn!(error = %err, "the primary is unreachable; reading from the replica");
                Ok(replica)
            }
            _ => Err(err),
        }
    }

    /// The data key generations, oldest first.
    pub async fn generations(&self) -> Result<Vec<Generation>, PgError> {
        self.with_conn("generations", async |conn| {
            Ok(diesel::sql_query(GENERATIONS).load(conn).await?)
        })
        .await
    }

    /// Retires data key generation `version` if no live value needs it: removes its wrapped
    /// key and writes the audit row `audit` builds, in one transaction. Returns the audit id,
    /// or `None` (and changes nothing) when a value still needs it or it is retired already.
    pub async fn retire_and_audit(
        &self,
        version: KeyVersion,
        audit: AuditEntry,
        chain: &AuditChain,
    ) -> Result<Option<i64>, AuditedWriteFailure> {
        let version = version.to_db();
        self.with_conn("retire_and_audit", async |conn| {
            conn.transaction::<_, AuditedWriteFailure, _>(async |conn| {
                let locked: Vec<Version> =
                    diesel::sql_query(RETIRE_LOCK).bind::<Integer, _>(version).load(conn).await?;
                if locked.is_empty() {
                    return Ok(None);
                }
                let in_use: Flag = diesel::sql_query(GENERATION_IN_USE)
                    .bind::<Integer, _>(version)
                    .get_result(conn)
                    .await?;
                if in_use.flag {
                    return Ok(None);
                }
                diesel::sql_query(RETIRE).bind::<Integer, _>(version).execute(conn).await?;
                let id =
                    insert_audit(conn, &audit, chain).await.map_err(AuditedWriteFailure::Audit)?;
                Ok(Some(id))
            })
            .await
        })
        .await
    }

    /// Runs `work` if this replica takes advisory lock `key` (without waiting), holding it on a
    /// connection of its own until `work` ends; `None` when another session holds it. A replica
    /// that dies releases the lock with its connection.
    pub async fn while_holding_lock<T>(
        &self,
        key: i64,
        work: impl AsyncFnOnce() -> T,
    ) -> Result<Option<T>, PgError> {
        let mut conn = postgres::conn(&self.pool).await?;
        let taken: Flag = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS flag")
            .bind::<BigInt, _>(key)
            .get_result(&mut *conn)
            .await?;
        if !taken.flag {
            return Ok(None);
        }
        let done = work().await;
        diesel::sql_query("SELECT pg_advisory_unlock($1) AS flag")
            .bind::<BigInt, _>(key)
            .execute(&mut *conn)
            .await?;
        Ok(Some(done))
    }

    /// Records when KMS deletes the master key of retired generation `version`.
    pub async fn record_kms_deletion(
        &self,
        version: KeyVersion,
        deletion_unix_ms: i64,
    ) -> Result<(), PgError> {
        self.with_conn("record_kms_deletion", async |conn| {
            diesel::sql_query(RECORD_KMS_DELETION)
                .bind::<Integer, _>(version.to_db())
                .bind::<BigInt, _>(deletion_unix_ms)
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Re-encrypts up to `limit` stored originals sealed under data keys older than
    /// `active_version`, in one transaction: locks them (skipping rows other transactions
    /// hold), asks `reseal` for each new ciphertext, writes them all under `active_version`. A
    /// row whose ciphertext does not open ([`Reseal::Unreadable`]) is marked unreadable and
    /// left; any other failure rolls the whole chunk back. Returns the rows rewrapped and the
    /// tokens marked; fewer rows than `limit` in all means no unlocked row was left.
    pub async fn rewrap_chunk<E: Send>(
        &self,
        active_version: KeyVersion,
        limit: u32,
        reseal: impl Fn(&SealedRow) -> Result<Sealed, Reseal<E>> + Send + Sync,
    ) -> Result<RewrapChunk, RewrapFailure<E>> {
        let version = active_version.to_db();
        self.with_conn("rewrap_chunk", async |conn| {
            conn.transaction::<_, RewrapFailure<E>, _>(async |conn| {
                let rows: Vec<SealedRow> = diesel::sql_query(SELECT_TO_REWRAP)
                    .bind::<Integer, _>(version)
                    .bind::<BigInt, _>(i64::from(limit))
                    .load(conn)
                    .await?;
                let mut chunk = RewrapChunk { selected: rows.len(), ..RewrapChunk::default() };
                let mut tokens = Vec::with_capacity(rows.len());
                let mut nonces = Vec::with_capacity(rows.len());
                let mut ciphertexts = Vec::with_capacity(rows.len());
                for row in &rows {
                    match reseal(row) {
                        Ok(sealed) => {
                            tokens.push(row.token.as_str());
                            nonces.push(sealed.nonce.to_vec());
                            ciphertexts.push(sealed.ciphertext);
                        }
                        Err(Reseal::Unreadable(_)) => chunk.unreadable.push(row.token.clone()),
                        Err(Reseal::Stop(err)) => return Err(RewrapFailure::Reseal(err)),
                    }
                }
                if !tokens.is_empty() {
                    chunk.rewrapped = diesel::sql_query(UPDATE_REWRAPPED)
                        .bind::<Integer, _>(version)
                        .bind::<Array<Text>, _>(tokens)
                        .bind::<Array<Binary>, _>(nonces)
                        .bind::<Array<Binary>, _>(ciphertexts)
                        .execute(conn)
                        .await?;
                }
                if !chunk.unreadable.is_empty() {
                    diesel::sql_query(MARK_UNREADABLE)
                        .bind::<Array<Text>, _>(&chunk.unreadable)
                        .execute(conn)
                        .await?;
                }
                Ok(chunk)
            })
            .await
        })
        .await
    }

    /// How many stored originals are still sealed under data keys older than `active_version`
    /// (forgotten rows hold none and are not counted).
    pub async fn count_to_rewrap(&self, active_version: KeyVersion) -> Result<u64, PgError> {
        let count: Number = self
            .with_conn::<_, PgError>("count_to_rewrap", async |conn| {
                Ok(diesel::sql_query(COUNT_TO_REWRAP)
                    .bind::<Integer, _>(active_version.to_db())
                    .get_result(conn)
                    .await?)
            })
            .await?;
        Ok(u64::try_from(count.n).unwrap_or(0))
    }

    /// Waits until the replica has replayed everything the primary has committed so far (a
    /// Forget's erasure, say), for at most `timeout`; returns whether it did. True without a
    /// replica. A replica that does not catch up in time is not read until its lag is measured
    /// within [`REPLICA_MAX_LAG`] again.
    pub async fn wait_for_replica(&self, timeout: Duration) -> bool {
        let Some(replica) = &self.replica else { return true };
        let started = Instant::now();
        let target = match Self::with_conn::<_, PgError>(self, "primary_lsn", async |conn| {
            let lsn: Lsn = diesel::sql_query(PRIMARY_LSN).get_result(conn).await?;
            Ok(lsn.lsn)
        })
        .await
        {
            Ok(lsn) => lsn,
            Err(err) => {
                tracing::warn!(error = %err, "the primary's position is unknown; the replica is not read until measured again");
                self.replica_fresh.store(false, Ordering::Relaxed);
                return false;
            }
        };
        while started.elapsed() < timeout {
            let reached =
                Self::with_conn_on::<_, PgError>(replica, "replica_reached", async |conn| {
                    let flag: Flag = diesel::sql_query(REPLICA_REACHED)
                        .bind::<Text, _>(&target)
                        .get_result(conn)
                        .await?;
                    Ok(flag.flag)
                })
                .await;
            if reached.unwrap_or(false) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.replica_fresh.store(false, Ordering::Relaxed);
        false
    }

    /// Publishes the read replica's lag ([`crate::metrics::REPLICA_LAG`]) every `interval`
    /// until `stop`; -1 while it does not answer. Nothing without a replica.
    pub async fn publish_replica_lag_every(
        &self,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let Some(replica) = &self.replica else { return };
        loop {
            let lag = Self::with_conn_on::<_, PgError>(replica, "replica_lag", async |conn| {
                let lag: Lag = diesel::sql_query(REPLICA_LAG).get_result(conn).await?;
                Ok(lag.seconds)
            })
            .await;
            ::metrics::gauge!(crate::metrics::REPLICA_LAG).set(*lag.as_ref().unwrap_or(&-1.0));
            let fresh = lag.is_ok_and(|seconds| seconds <= REPLICA_MAX_LAG.as_secs_f64());
            self.replica_fresh.store(fresh, Ordering::Relaxed);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Appends a row that was spooled while the primary was unavailable: a new id at the end
    /// of the chain, the time of the call it records. Returns the id once committed.
    pub async fn audit_spooled(
        &self,
        record: &AuditRecord,
        chain: &AuditChain,
    ) -> Result<i64, PgError> {
        self.with_conn("audit_spooled", async |conn| {
            conn.transaction::<_, PgError, _>(async |conn| {
                insert_record(conn, |next| AuditRecord { id: next.id, ..record.clone() }, chain)
                    .await
            })
            .await
        })
        .await
    }

    /// Appends an audit row to the chain and returns its id once committed.
    pub async fn audit(&self, entry: &AuditEntry, chain: &AuditChain) -> Result<i64, PgError> {
        self.with_conn("audit", async |conn| {
            conn.transaction::<_, PgError, _>(async |conn| insert_audit(conn, entry, chain).await)
                .await
        })
        .await
    }

    /// Up to `limit` rows after id `after_id` that `filter` admits, in id order, each with its
    /// link (`None` for rows written before the chain began). `from_replica` reads them from
    /// the read replica when there is one (listing; a verification reads the primary, where
    /// the chain's head is).
    pub async fn audit_rows(
        &self,
        after_id: i64,
        limit: i64,
        filter: &AuditFilter,
        from_replica: bool,
    ) -> Result<Vec<(AuditRecord, Option<Vec<u8>>)>, PgError> {
        let (pool, operation) = match (&self.replica, from_replica) {
            (Some(replica), true) => (replica, "audit_rows_replica"),
            _ => (&self.pool, "audit_rows"),
        };
        let rows: Vec<StoredAuditRow> =
            Self::with_conn_on::<_, PgError>(pool, operation, async |conn| {
                Ok(diesel::sql_query(AUDIT_ROWS)
                    .bind::<BigInt, _>(after_id)
                    .bind::<BigInt, _>(limit)
                    .bind::<Nullable<Text>, _>(filter.caller.as_deref())
                    .bind::<Nullable<Text>, _>(filter.method.as_deref())
                    .bind::<Nullable<Text>, _>(filter.outcome.as_deref())
                    .bind::<Nullable<BigInt>, _>(filter.since_us)
                    .bind::<Nullable<BigInt>, _>(filter.until_us)
                    .load(conn)
                    .await?)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let record = AuditRecord {
                    id: row.id,
                    at_us: row.at_us,
                    caller: row.caller,
                    method: row.method,
                    purpose: row.purpose,
                    token_count: row.token_count,
                    outcome: row.outcome,
                    found: row.found,
                    not_found: row.not_found,
                    forgotten: row.forgotten,
                    detail: row.detail,
                };
                (record, row.link)
            })
            .collect())
    }

    /// The chain's head: the newest chained row and its link.
    pub async fn audit_head(&self) -> Result<ChainHead, PgError> {
        self.with_conn("audit_head", async |conn| {
            Ok(diesel::sql_query(AUDIT_HEAD).get_result(conn).await?)
        })
        .await
    }

    /// Whether the role the vault runs as could rewrite the audit trail: it is a superuser,
    /// or has UPDATE, DELETE or TRUNCATE on it (it owns it, say).
    pub async fn may_rewrite_audit(&self) -> Result<bool, PgError> {
        let answer: Flag = self
            .with_conn::<_, PgError>("may_rewrite_audit", async |conn| {
                Ok(diesel::sql_query(MAY_REWRITE_AUDIT).get_result(conn).await?)
            })
            .await?;
        Ok(answer.flag)
    }
}

/// A wrapped key version to store.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    /// What it is for.
    pub purpose: KeyPurpose,
    /// Its version.
    pub version: KeyVersion,
    /// The key as KMS wrapped it.
    pub wrapped: &'a [u8],
    /// The KMS key that wrapped it.
    pub kms_key_id: &'a str,
    /// Whether `kms_key_id` was made for this generation alone.
    pub own_master: bool,
    /// The deployment it belongs to.
    pub deployment: &'a str,
    /// Its binding (`crate::keys::bind`).
    pub binding: Vec<u8>,
    /// How long from now until it takes over.
    pub delay: Duration,
}

/// The one statement that stores a key version; see [`INSERT_KEY`].
async fn insert_key(
    conn: &mut AsyncPgConnection,
    key: &NewKey<'_>,
) -> Result<Option<i64>, PgError> {
    let delay_ms = i64::try_from(key.delay.as_millis()).unwrap_or(i64::MAX);
    let inserted: Vec<InsertedKey> = diesel::sql_query(INSERT_KEY)
        .bind::<Text, _>(key.purpose.as_str())
        .bind::<Integer, _>(key.version.to_db())
        .bind::<Binary, _>(key.wrapped)
        .bind::<Text, _>(key.kms_key_id)
        .bind::<BigInt, _>(delay_ms)
        .bind::<Text, _>(key.deployment)
        .bind::<Binary, _>(&key.binding)
        .bind::<diesel::sql_types::Bool, _>(key.own_master)
        .load(conn)
        .await?;
    Ok(inserted.into_iter().next().map(|row| row.activates_at_unix_ms))
}

/// `vault.pii_tokens` rows of `tokens` on `pool`.
async fn lookup_on(
    pool: &PgPool,
    operation: &'static str,
    tokens: &[Token],
) -> Result<Vec<StoredToken>, PgError> {
    let texts: Vec<String> = tokens.iter().map(Token::to_string).collect();
    let rows: Vec<TokenRow> =
        VaultStore::with_conn_on::<_, PgError>(pool, operation, async |conn| {
            Ok(pii_tokens::table
                .filter(pii_tokens::token.eq_any(&texts))
                .select((
                    pii_tokens::token,
                    pii_tokens::data_key_version,
                    pii_tokens::nonce,
                    pii_tokens::ciphertext,
                ))
                .load(conn)
                .await?)
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| StoredToken {
            token: row.token,
            data_key_version: row.data_key_version,
            sealed: row.nonce.zip(row.ciphertext),
        })
        .collect())
}

/// Counts a lookup served with a replica: `hit` (all from it), `fallback` (some from the
/// primary), `error` (the replica failed; all from the primary).
fn replica_read(result: &'static str) {
    ::metrics::counter!(crate::metrics::REPLICA_READS, "result" => result).increment(1);
}

/// Appends an audit row to the chain, inside the caller's transaction: locks the chain's head
/// (so appends of all replicas queue up), takes the next id and the database's time, links the
/// row to the head's link with `chain`, and moves the head to it.
async fn insert_audit(
    conn: &mut AsyncPgConnection,
    entry: &AuditEntry,
    chain: &AuditChain,
) -> Result<i64, PgError> {
    insert_record(conn, |next| AuditRecord::of(entry, next.id, next.at_us), chain).await
}

/// [`insert_audit`] of the record `build` makes from the next id and the database's time.
async fn insert_record(
    conn: &mut AsyncPgConnection,
    build: impl FnOnce(&NextAuditRow) -> AuditRecord + Send,
    chain: &AuditChain,
) -> Result<i64, PgError> {
    let head: ChainHead = diesel::sql_query(LOCK_AUDIT_HEAD).get_result(conn).await?;
    let next: NextAuditRow = diesel::sql_query(NEXT_AUDIT_ROW).get_result(conn).await?;
    let record = build(&next);
    let link = chain.link(&head.link, &record.chain_bytes());
    diesel::sql_query(INSERT_AUDIT_ROW)
        .bind::<BigInt, _>(record.id)
        .bind::<BigInt, _>(record.at_us)
        .bind::<Text, _>(&record.caller)
        .bind::<Text, _>(&record.method)
        .bind::<Text, _>(&record.purpose)
        .bind::<Integer, _>(record.token_count)
        .bind::<Text, _>(&record.outcome)
        .bind::<Integer, _>(record.found)
        .bind::<Integer, _>(record.not_found)
        .bind::<Integer, _>(record.forgotten)
        .bind::<Nullable<Text>, _>(record.detail.as_deref())
        .bind::<Binary, _>(&link)
        .execute(conn)
        .await?;
    diesel::sql_query(MOVE_AUDIT_HEAD)
        .bind::<BigInt, _>(record.id)
        .bind::<Binary, _>(&link)
        .execute(conn)
        .await?;
    Ok(record.id)
}

/// The chain's head, locked until the end of the transaction.
const LOCK_AUDIT_HEAD: &str = "SELECT last_id, link FROM vault.audit_head FOR UPDATE";

/// The chain's head, read.
const AUDIT_HEAD: &str = "SELECT last_id, link FROM vault.audit_head";

/// The next row's id, and the database's time in microseconds (exactly, as stored).
const NEXT_AUDIT_ROW: &str = "\
SELECT nextval('vault.audit_log_id_seq') AS id,
       (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS at_us";

const INSERT_AUDIT_ROW: &str = "\
INSERT INTO vault.audit_log
    (id, at, caller, method, purpose, token_count, outcome, found, not_found, forgotten, detail, link)
VALUES ($1, timestamptz 'epoch' + $2 * interval '1 microsecond', $3, $4, $5, $6, $7, $8, $9, $10,
        $11, $12)";

const MOVE_AUDIT_HEAD: &str = "UPDATE vault.audit_head SET last_id = $1, link = $2";

/// Rows of the trail after id `$1`, in id order, at most `$2`; with the filters of
/// [`AuditFilter`] (NULL: any).
const AUDIT_ROWS: &str = "\
SELECT id, (extract(epoch FROM at) * 1000000)::bigint AS at_us, caller, method, purpose,
       token_count, outcome, found, not_found, forgotten, detail, link
FROM vault.audit_log
WHERE id > $1
  AND ($3::text IS NULL OR caller = $3)
  AND ($4::text IS NULL OR method = $4)
  AND ($5::text IS NULL OR outcome = $5)
  AND ($6::bigint IS NULL OR at >= timestamptz 'epoch' + $6 * interval '1 microsecond')
  AND ($7::bigint IS NULL OR at < timestamptz 'epoch' + $7 * interval '1 microsecond')
ORDER BY id
LIMIT $2";

/// [`VaultStore::reveals_today`] on `pool`.
async fn reveals_on(
    pool: &PgPool,
    operation: &'static str,
    caller: &str,
    purpose: Option<&str>,
) -> Result<RevealsToday, PgError> {
    VaultStore::with_conn_on(pool, operation, async |conn| {
        Ok(diesel::sql_query(REVEALS_TODAY)
            .bind::<Text, _>(caller)
            .bind::<Nullable<Text>, _>(purpose)
            .get_result(conn)
            .await?)
    })
    .await
}

/// The decoys among `tokens`, on `pool`.
async fn decoys_on(
    pool: &PgPool,
    operation: &'static str,
    tokens: &[String],
) -> Result<Vec<TokenText>, PgError> {
    VaultStore::with_conn_on(pool, operation, async |conn| {
        Ok(diesel::sql_query(DECOYS_AMONG).bind::<Array<Text>, _>(tokens).load(conn).await?)
    })
    .await
}

/// A row written with the audit row that records it ([`VaultStore::insert_and_audit`]).
enum AuditedRow<'a> {
    /// A lift of a daily reveal limit.
    QuotaLift { caller: &'a str, purpose: &'a str, extra: i32 },
    /// Decoy tokens.
    Decoys { tokens: &'a [String], kind: &'a str },
}

/// Today's reveals of one caller and purpose, and the lifts of its limit.
#[derive(QueryableByName)]
struct RevealsToday {
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    lifted: i64,
}

/// A token's text.
#[derive(QueryableByName)]
struct TokenText {
    #[diesel(sql_type = Text)]
    token: String,
}

/// `$1` the caller, `$2` the purpose or NULL for all: the values it detokenized since the
/// start of the UTC day, and the lifts of its limit for the day.
const REVEALS_TODAY: &str = "\
WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS day)
SELECT
    (SELECT coalesce(sum(found), 0)::bigint FROM vault.audit_log, today
      WHERE caller = $1 AND method = 'Detokenize' AND outcome = 'allowed'
        AND ($2::text IS NULL OR purpose = $2)
        AND at >= today.day::timestamp AT TIME ZONE 'UTC') AS used,
    (SELECT coalesce(sum(extra), 0)::bigint FROM vault.quota_lifts, today
      WHERE quota_lifts.day = today.day AND caller = $1 AND purpose = coalesce($2, '')) AS lifted";

const INSERT_QUOTA_LIFT: &str = "\
INSERT INTO vault.quota_lifts (day, caller, purpose, extra, audit_id)
VALUES ((now() AT TIME ZONE 'UTC')::date, $1, $2, $3, $4)";

const INSERT_DECOYS: &str = "\
INSERT INTO vault.decoys (token, kind, audit_id) SELECT unnest($1::text[]), $2, $3";

const DECOYS_AMONG: &str = "SELECT token FROM vault.decoys WHERE token = ANY($1)";

/// One row of `vault.audit_head`.
#[derive(QueryableByName)]
pub struct ChainHead {
    /// The id of the newest chained row (0: none yet).
    #[diesel(sql_type = BigInt)]
    pub last_id: i64,
    /// Its link.
    #[diesel(sql_type = Binary)]
    pub link: Vec<u8>,
}

#[derive(QueryableByName)]
struct NextAuditRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    at_us: i64,
}

/// One row of the trail as read back, with its link (`None` for rows older than the chain).
#[derive(QueryableByName)]
struct StoredAuditRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    at_us: i64,
    #[diesel(sql_type = Text)]
    caller: String,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    purpose: String,
    #[diesel(sql_type = Integer)]
    token_count: i32,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Integer)]
    found: i32,
    #[diesel(sql_type = Integer)]
    not_found: i32,
    #[diesel(sql_type = Integer)]
    forgotten: i32,
    #[diesel(sql_type = Nullable<Text>)]
    detail: Option<String>,
    #[diesel(sql_type = Nullable<Binary>)]
    link: Option<Vec<u8>>,
}

/// Which audit rows to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this caller's.
    pub caller: Option<String>,
    /// Only this method's.
    pub method: Option<String>,
    /// Only with this outcome.
    pub outcome: Option<String>,
    /// Only rows written at or after this time (microseconds since the Unix epoch).
    pub since_us: Option<i64>,
    /// Only rows written before this time.
    pub until_us: Option<i64>,
}
