//! Batch writes into `user_logins`.
//!
//! A batch is one transaction. Each chunk of rows is one `INSERT … SELECT FROM UNNEST(…)`
//! statement: nine array parameters whatever the chunk's size, far below Postgres' limit of
//! 65,535 bind parameters, and one round trip per chunk instead of one per row.
//!
//! Rows are written in `message_id` order. Two writers inserting overlapping batches then take
//! the unique index's locks in the same order, so one waits for the other instead of both
//! deadlocking; `ON CONFLICT (message_id) DO NOTHING` turns the loser's rows into "already
//! present" rather than errors.

use std::collections::HashSet;
use std::time::Instant;

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{Array, Date, Integer, Nullable, Text};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use fetchreward_model::MaskedLogin;
use fetchreward_runtime::postgres::{self, PgError, PgPool};

use crate::WriteError;

/// The most rows one call may write.
pub const MAX_BATCH_ROWS: usize = 10_000;

/// Rows per statement: bounds the statement's size; the parameter count does not grow with it.
const CHUNK_ROWS: usize = 2_000;

const INSERT_CHUNK: &str = "\
INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, \
                         app_version, app_version_raw, create_date) \
SELECT * FROM UNNEST($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], \
                     $6::varchar[], $7::integer[], $8::varchar[], $9::date[]) \
ON CONFLICT (message_id) DO NOTHING \
RETURNING message_id";

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows inserted by this batch.
    pub inserted: usize,
    /// message_ids of the batch that were already in the table.
    pub already_present: Vec<String>,
}

/// The `user_logins` table.
#[derive(Clone)]
pub struct LoginStore {
    pool: PgPool,
}

#[derive(QueryableByName)]
struct InsertedId {
    #[diesel(sql_type = Text)]
    message_id: String,
}

impl LoginStore {
    /// A store on `pool`.
    pub fn new(pool: PgPool) -> Self {
        LoginStore { pool }
    }

    /// Writes `rows` in one transaction, skipping message_ids already present. A message_id
    /// repeated within the batch is written once.
    pub async fn write(&self, mut rows: Vec<MaskedLogin>) -> Result<WriteOutcome, WriteError> {
        if rows.len() > MAX_BATCH_ROWS {
            return Err(WriteError::TooManyRows { max: MAX_BATCH_ROWS, len: rows.len() });
        }
        if rows.is_empty() {
            return Ok(WriteOutcome::default());
        }
        rows.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        rows.dedup_by(|later, earlier| later.message_id == earlier.message_id);

        let started = Instant::now();
        let mut conn = postgres::conn(&self.pool).await?;
        let chunks = &rows;
        let inserted: HashSet<String> = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let mut inserted = HashSet::with_capacity(chunks.len());
                for chunk in chunks.chunks(CHUNK_ROWS) {
                    inserted.extend(insert_chunk(conn, chunk).await?);
                }
                Ok(inserted)
            })
            .await
            .map_err(PgError::from)?;
        metrics::histogram!("fetchreward_writer_commit_seconds").record(started.elapsed());

        let already_present: Vec<String> = rows
            .into_iter()
            .map(|row| row.message_id)
            .filter(|id| !inserted.contains(id))
            .collect();
        metrics::counter!("fetchreward_writer_rows_total", "outcome" => "inserted")
            .increment(inserted.len() as u64);
        metrics::counter!("fetchreward_writer_rows_total", "outcome" => "already_present")
            .increment(already_present.len() as u64);
        Ok(WriteOutcome { inserted: inserted.len(), already_present })
    }
}

/// One statement for a chunk of rows; returns the message_ids it inserted.
async fn insert_chunk(
    conn: &mut AsyncPgConnection,
    rows: &[MaskedLogin],
) -> Result<Vec<String>, diesel::result::Error> {
    let column = |f: fn(&MaskedLogin) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let message_ids: Vec<String> = rows.iter().map(|r| r.message_id.clone()).collect();
    let user_ids: Vec<String> = rows.iter().map(|r| r.user_id.clone()).collect();
    let device_types = column(|r| r.device_type.clone());
    let masked_ips = column(|r| r.masked_ip.map(|t| t.to_string()));
    let masked_device_ids = column(|r| r.masked_device_id.map(|t| t.to_string()));
    let locales = column(|r| r.locale.clone());
    let app_versions: Vec<Option<i32>> = rows.iter().map(MaskedLogin::app_version_number).collect();
    let app_versions_raw = column(|r| r.app_version.clone());
    let create_dates: Vec<NaiveDate> = rows.iter().map(MaskedLogin::create_date).collect();

    let inserted: Vec<InsertedId> = diesel::sql_query(INSERT_CHUNK)
        .bind::<Array<Text>, _>(message_ids)
        .bind::<Array<Text>, _>(user_ids)
        .bind::<Array<Nullable<Text>>, _>(device_types)
        .bind::<Array<Nullable<Text>>, _>(masked_ips)
        .bind::<Array<Nullable<Text>>, _>(masked_device_ids)
        .bind::<Array<Nullable<Text>>, _>(locales)
        .bind::<Array<Nullable<Integer>>, _>(app_versions)
        .bind::<Array<Nullable<Text>>, _>(app_versions_raw)
        .bind::<Array<Date>, _>(create_dates)
        .load(conn)
        .await?;
    Ok(inserted.into_iter().map(|row| row.message_id).collect())
}
