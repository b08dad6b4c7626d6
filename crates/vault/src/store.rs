//! The vault's tables in Postgres: wrapped keys, sealed originals, the audit trail.
//!
//! Each method is one round trip (or one transaction) on a pooled connection. Batches go in
//! as arrays (`UNNEST`, `= ANY`), so a Tokenize of 10,000 values is still one statement.

use diesel::prelude::*;
use diesel::sql_types::{Array, Binary, Integer, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use fetchreward_runtime::postgres::{self, PgError, PgPool};

use crate::audit::AuditEntry;
use crate::crypto::Sealed;
use crate::keys::KeyPurpose;
use crate::schema::{audit_log, keys, pii_tokens};

/// The vault's migrations, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The schema the vault owns.
pub const SCHEMA: &str = "vault";

/// Advisory lock key that serialises the vault's migrations across replicas ("vault" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x0076_6175_6c74;

/// A stored wrapped key.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct KeyRow {
    /// `tokenization` or `data`.
    pub purpose: String,
    /// From 1.
    pub version: i32,
    /// The key as wrapped by KMS.
    pub wrapped: Vec<u8>,
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

/// One row of `UPDATE ... RETURNING token`.
#[derive(QueryableByName)]
struct TokenText {
    #[diesel(sql_type = Text)]
    token: String,
}

/// Insert new tokens in one statement. A token already stored keeps its ciphertext; one whose
/// value was forgotten takes the new ciphertext, so a value that comes back is recoverable
/// again under the same token.
const STORE_TOKENS: &str = "\
INSERT INTO vault.pii_tokens (token, kind, data_key_version, nonce, ciphertext)
SELECT t.token, t.kind, $3, t.nonce, t.ciphertext
FROM UNNEST($1::text[], $2::text[], $4::bytea[], $5::bytea[]) AS t(token, kind, nonce, ciphertext)
ON CONFLICT (token) DO UPDATE
SET nonce = EXCLUDED.nonce,
    ciphertext = EXCLUDED.ciphertext,
    data_key_version = EXCLUDED.data_key_version,
    forgotten_at = NULL
WHERE vault.pii_tokens.ciphertext IS NULL";

/// Destroy the originals of tokens; the first forget time is kept.
const FORGET_TOKENS: &str = "\
UPDATE vault.pii_tokens
SET nonce = NULL, ciphertext = NULL, forgotten_at = COALESCE(forgotten_at, now())
WHERE token = ANY($1)
RETURNING token";

/// Which step of [`VaultStore::forget_and_audit`] failed; either way nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ForgetFailure {
    /// Destroying the values (or committing) failed.
    #[error("{0}")]
    Destroy(PgError),
    /// Writing the audit row failed.
    #[error("{0}")]
    Audit(PgError),
}

impl From<diesel::result::Error> for ForgetFailure {
    fn from(err: diesel::result::Error) -> Self {
        ForgetFailure::Destroy(PgError::Query(err))
    }
}

/// The vault's persistence.
#[derive(Clone)]
pub struct VaultStore {
    pool: PgPool,
}

impl std::fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultStore").finish_non_exhaustive()
    }
}

impl VaultStore {
    /// A store on `pool`.
    pub fn new(pool: PgPool) -> Self {
        VaultStore { pool }
    }

    /// The pool, for readiness checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the pending migrations, serialised across replicas by an advisory lock.
    pub async fn migrate(&self) -> Result<Vec<String>, PgError> {
        postgres::migrate(&self.pool, MIGRATIONS, SCHEMA, MIGRATION_LOCK_KEY).await
    }

    /// Every stored key, in purpose and version order.
    pub async fn key_rows(&self) -> Result<Vec<KeyRow>, PgError> {
        let mut conn = postgres::conn(&self.pool).await?;
        Ok(keys::table
            .select((keys::purpose, keys::version, keys::wrapped))
            .order((keys::purpose, keys::version))
            .load(&mut conn)
            .await?)
    }

    /// Stores a wrapped key unless that purpose and version exist; returns whether it did.
    pub async fn insert_key_if_absent(
        &self,
        purpose: KeyPurpose,
        version: u32,
        wrapped: &[u8],
        kms_key_id: &str,
    ) -> Result<bool, PgError> {
        let version = i32::try_from(version).expect("key versions stay far below 2^31");
        let mut conn = postgres::conn(&self.pool).await?;
        let inserted = diesel::insert_into(keys::table)
            .values((
                keys::purpose.eq(purpose.as_str()),
                keys::version.eq(version),
                keys::wrapped.eq(wrapped),
                keys::kms_key_id.eq(kms_key_id),
            ))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await?;
        Ok(inserted == 1)
    }

    /// Stores new tokens sealed under data key `data_key_version`; returns how many rows were
    /// written (new tokens plus forgotten ones refilled).
    ///
    /// `rows` must hold each token once (Postgres refuses to touch a row twice in one
    /// statement). They are written in token order, so concurrent batches lock rows in the
    /// same order and cannot deadlock on each other.
    pub async fn store_tokens(
        &self,
        data_key_version: u32,
        rows: &mut [NewToken],
    ) -> Result<usize, PgError> {
        if rows.is_empty() {
            return Ok(0);
        }
        rows.sort_unstable_by(|a, b| a.token.cmp(&b.token));
        let version = i32::try_from(data_key_version).expect("key versions stay far below 2^31");
        let tokens: Vec<&str> = rows.iter().map(|row| row.token.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|row| row.kind).collect();
        let nonces: Vec<&[u8]> = rows.iter().map(|row| row.sealed.nonce.as_slice()).collect();
        let ciphertexts: Vec<&[u8]> =
            rows.iter().map(|row| row.sealed.ciphertext.as_slice()).collect();
        let mut conn = postgres::conn(&self.pool).await?;
        Ok(diesel::sql_query(STORE_TOKENS)
            .bind::<Array<Text>, _>(tokens)
            .bind::<Array<Text>, _>(kinds)
            .bind::<Integer, _>(version)
            .bind::<Array<Binary>, _>(nonces)
            .bind::<Array<Binary>, _>(ciphertexts)
            .execute(&mut conn)
            .await?)
    }

    /// What is stored for each of `tokens` that exists (in no particular order).
    pub async fn lookup(&self, tokens: &[String]) -> Result<Vec<StoredToken>, PgError> {
        let mut conn = postgres::conn(&self.pool).await?;
        let rows: Vec<TokenRow> = pii_tokens::table
            .filter(pii_tokens::token.eq_any(tokens))
            .select((
                pii_tokens::token,
                pii_tokens::data_key_version,
                pii_tokens::nonce,
                pii_tokens::ciphertext,
            ))
            .load(&mut conn)
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

    /// Destroys the stored originals of `tokens` and writes the audit row that `audit` builds
    /// from the tokens that exist, in one transaction: a value is never destroyed without its
    /// audit row, nor audited as destroyed when it was not. Returns the existing tokens and the
    /// audit id.
    pub async fn forget_and_audit(
        &self,
        tokens: &[String],
        audit: impl FnOnce(&[String]) -> AuditEntry + Send,
    ) -> Result<(Vec<String>, i64), ForgetFailure> {
        let mut conn = postgres::conn(&self.pool).await.map_err(ForgetFailure::Destroy)?;
        conn.transaction::<_, ForgetFailure, _>(async |conn| {
            let forgotten: Vec<TokenText> =
                diesel::sql_query(FORGET_TOKENS).bind::<Array<Text>, _>(tokens).load(conn).await?;
            let forgotten: Vec<String> = forgotten.into_iter().map(|row| row.token).collect();
            let id = insert_audit(conn, &audit(&forgotten)).await.map_err(ForgetFailure::Audit)?;
            Ok((forgotten, id))
        })
        .await
    }

    /// Writes an audit row and returns its id once committed.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<i64, PgError> {
        let mut conn = postgres::conn(&self.pool).await?;
        insert_audit(&mut conn, entry).await
    }
}

async fn insert_audit(
    conn: &mut diesel_async::AsyncPgConnection,
    entry: &AuditEntry,
) -> Result<i64, PgError> {
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(diesel::insert_into(audit_log::table)
        .values((
            audit_log::caller.eq(entry.caller.identity()),
            audit_log::method.eq(entry.method.as_str()),
            audit_log::purpose.eq(&entry.purpose),
            audit_log::token_count.eq(count(entry.token_count)),
            audit_log::outcome.eq(entry.outcome.as_str()),
            audit_log::found.eq(count(entry.counts.found)),
            audit_log::not_found.eq(count(entry.counts.not_found)),
            audit_log::forgotten.eq(count(entry.counts.forgotten)),
        ))
        .returning(audit_log::id)
        .get_result(conn)
        .await?)
}
