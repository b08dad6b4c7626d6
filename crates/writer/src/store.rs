//! Batch writes into `user_logins`.
//!
//! A batch is one transaction. Each chunk of rows is one `INSERT … SELECT FROM UNNEST(…)`
//! statement: nine array parameters whatever the chunk's size, far below Postgres' limit of
//! 65,535 bind parameters, and one round trip per chunk instead of one per row.
//!
//! Rows are written in `message_id` order. Two writers inserting overlapping batches then take
//! the unique index's locks in the same order, so one waits for the other instead of both
//! deadlocking; `ON CONFLICT DO NOTHING` turns the loser's rows into "already present" rather
//! than errors. The only unique index is the idempotency key `(message_id, create_date)`: it
//! holds `create_date` because `user_logins` is partitioned by month on it (a partitioned
//! table's unique index must hold the partition key), and a redelivered message keeps its
//! SentTimestamp, so its create_date, and still lands once. The statement names no conflict
//! target so that it also runs on a sharding coordinator, whose partitions are foreign tables
//! and which has no index of its own: each shard's key decides there ([`crate::shards`]).
//!
//! The monthly partitions are made ahead of time by [`LoginStore::ensure_partitions`] (at
//! start-up and daily); a row of a month without one lands in `user_logins_default`, and moves
//! into its month's partition when that is made.
//!
//! A row the database refuses because of its own content (a data exception, SQLSTATE class 22,
//! or a constraint violation, class 23: the idempotency key cannot violate, `ON CONFLICT`
//! takes it) fails its whole statement. The batch is then written again in a new transaction
//! in which every part is tried under a savepoint and a refused part is split in two, until the
//! refused rows stand alone: `k` bad rows among `n` cost about `2k·log2(n)` extra statements,
//! and only batches that hold one pay anything. Any other failure ends the call, and nothing of
//! the batch is committed.

use std::ops::Range;
use std::time::Instant;

use chrono::NaiveDate;
use fetchreward_model::MaskedLogin;
use fetchreward_runtime::postgres::{self, PgClientPool, PgError};
use foldhash::{HashMap, HashMapExt as _, HashSet};
use tokio_postgres::types::{ToSql, Type};

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
ON CONFLICT DO NOTHING \
RETURNING message_id";

/// Months after the current one whose partitions always exist.
pub const PARTITION_MONTHS_AHEAD: i32 = 3;

/// How often the writer makes the partitions ahead: daily, so a month's partition exists about
/// three months before its first row.
pub const PARTITION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The parameter types of [`INSERT_CHUNK`], sent with it so it runs without a prepare step.
const INSERT_TYPES: [Type; 9] = [
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::INT4_ARRAY,
    Type::VARCHAR_ARRAY,
    Type::DATE_ARRAY,
];

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows inserted by this batch.
    pub inserted: usize,
    /// message_ids of the batch that were already in the table.
    pub already_present: Vec<String>,
    /// Rows the database refused, by their position in the batch, in order.
    pub refused: Vec<(usize, DatabaseRefusal)>,
}

/// Why the database refused one row: its SQLSTATE and what it named, never the message (which
/// can quote the row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRefusal {
    /// The SQLSTATE, e.g. `22021` or `23514`.
    pub sqlstate: String,
    /// The violated constraint, or the column, when the server named one.
    pub object: Option<String>,
}

impl DatabaseRefusal {
    fn of(err: &PgError) -> Self {
        DatabaseRefusal {
            sqlstate: err.sqlstate().unwrap_or_default().to_owned(),
            object: err.constraint().or(err.column()).map(str::to_owned),
        }
    }

    /// `db_data_exception` (SQLSTATE class 22) or `db_constraint_violation` (class 23).
    pub fn code(&self) -> &'static str {
        if self.sqlstate.starts_with("22") {
            "db_data_exception"
        } else {
            "db_constraint_violation"
        }
    }

    /// One line for the caller.
    pub fn reason(&self) -> String {
        match &self.object {
            Some(object) => {
                format!("the database refused the row: SQLSTATE {} on {object}", self.sqlstate)
            }
            None => format!("the database refused the row: SQLSTATE {}", self.sqlstate),
        }
    }
}

/// The `user_logins` table.
#[derive(Clone)]
pub struct LoginStore {
    pool: PgClientPool,
    /// Whether `user_logins` is spread over shards by postgres_fdw ([`crate::shards`]).
    sharded: bool,
}

/// Whether `user_logins` has foreign partitions: a sharding coordinator's table.
const IS_SHARDED: &str = "\
SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
               WHERE i.inhparent = 'public.user_logins'::regclass AND c.relkind = 'f')";

/// The rows of a chunk already present, for a sharding coordinator: the shards are asked for
/// the chunk's message_ids (the condition travels to them), the dates are compared here.
const PRESENT_IN_CHUNK: &str = "\
SELECT message_id, create_date FROM user_logins WHERE message_id = ANY($1::varchar[])";

/// [`INSERT_CHUNK`] without `RETURNING`, which postgres_fdw can send to a shard as multi-row
/// inserts (the foreign servers' `batch_size`), where with `RETURNING` it sends one row at a
/// time.
const INSERT_CHUNK_COUNTED: &str = "\
INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale, \
                         app_version, app_version_raw, create_date) \
SELECT * FROM UNNEST($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], \
                     $6::varchar[], $7::integer[], $8::varchar[], $9::date[]) \
ON CONFLICT DO NOTHING";

/// The rows of a batch in write order, with where each came from.
struct Ordered {
    /// Distinct by message_id, sorted by it.
    rows: Vec<MaskedLogin>,
    /// The batch positions of every row, grouped by row in the order of `rows` (a group holds
    /// more than one when a message_id repeats).
    positions: Vec<usize>,
    /// Where each row's group starts in `positions`.
    group_starts: Vec<usize>,
}

impl Ordered {
    fn new(rows: Vec<MaskedLogin>) -> Self {
        // Positions are sorted, not rows: a row is moved once, into its place, and the sorted
        // positions are kept as they stand, each row's group a run of them. Ties keep batch
        // order, so the first of a repeated message_id is the one written.
        let mut positions: Vec<usize> = (0..rows.len()).collect();
        positions
            .sort_unstable_by(|&a, &b| rows[a].message_id.cmp(&rows[b].message_id).then(a.cmp(&b)));
        let mut slots: Vec<Option<MaskedLogin>> = rows.into_iter().map(Some).collect();
        let mut sorted = Vec::with_capacity(slots.len());
        let mut group_starts = Vec::with_capacity(slots.len());
        for (at, &position) in positions.iter().enumerate() {
            let row = slots[position].take().expect("each position is ordered once");
            if sorted.last().is_none_or(|last: &MaskedLogin| last.message_id != row.message_id) {
                group_starts.push(at);
                sorted.push(row);
            }
        }
        Ordered { rows: sorted, positions, group_starts }
    }

    /// The batch positions of row `row` of [`Ordered::rows`].
    fn positions_of(&self, row: usize) -> &[usize] {
        let end = self.group_starts.get(row + 1).copied().unwrap_or(self.positions.len());
        &self.positions[self.group_starts[row]..end]
    }
}

/// The result of writing the rows of a batch inside its transaction.
#[derive(Default)]
struct Written {
    inserted: HashSet<String>,
    /// Positions in [`Ordered::rows`] of refused rows.
    refused: Vec<(usize, DatabaseRefusal)>,
}

impl LoginStore {
    /// A store on `pool`.
    pub fn new(pool: PgClientPool) -> Self {
        LoginStore { pool, sharded: false }
    }

    /// A store on `pool` that writes the way its table needs: on a sharding coordinator, each
    /// chunk's present rows are looked up first and the insert sent without `RETURNING`, so
    /// that postgres_fdw batches it.
    pub async fn open(pool: PgClientPool) -> Result<Self, PgError> {
        let sharded = postgres::client(&pool).await?.query_one(IS_SHARDED, &[]).await?.get(0);
        if sharded {
            tracing::info!("user_logins is spread over shards: chunks are written counted");
        }
        Ok(LoginStore { pool, sharded })
    }

    /// Makes the monthly partitions of `user_logins` for this month (the database's date) and
    /// the [`PARTITION_MONTHS_AHEAD`] after it, where missing; returns how many it made.
    /// Concurrent calls from several writers are serialised by the database.
    pub async fn ensure_partitions(&self) -> Result<i32, PgError> {
        let client = postgres::client(&self.pool).await?;
        let row = client
            .query_one(
                "SELECT public.fetchreward_ensure_login_partitions(current_date, $1)",
                &[&PARTITION_MONTHS_AHEAD],
            )
            .await?;
        let created: i32 = row.get(0);
        if created > 0 {
            tracing::info!(created, "made monthly partitions of user_logins");
        }
        Ok(created)
    }

    /// Writes `rows` in one transaction, skipping message_ids already present and refusing
    /// the rows the database refuses for their content. A message_id repeated within the batch
    /// is written once.
    pub async fn write(&self, rows: Vec<MaskedLogin>) -> Result<WriteOutcome, WriteError> {
        if rows.len() > MAX_BATCH_ROWS {
            return Err(WriteError::TooManyRows { max: MAX_BATCH_ROWS, len: rows.len() });
        }
        if rows.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let ordered = Ordered::new(rows);
        let started = Instant::now();
        let mut client = postgres::client(&self.pool).await.inspect_err(count_db_error)?;
        let written = match write_all(&mut client, &ordered.rows, self.sharded).await {
            Err(err) if err.is_caused_by_data() => {
                count_db_error(&err);
                metrics::counter!("fetchreward_writer_isolations_total").increment(1);
                write_isolating(&mut client, &ordered.rows, self.sharded)
                    .await
                    .inspect_err(count_db_error)?
            }
            written => written.inspect_err(count_db_error)?,
        };
        metrics::histogram!("fetchreward_writer_commit_seconds").record(started.elapsed());
        Ok(outcome(ordered, written))
    }
}

/// Counts a failed statement or connection by its class:
/// `fetchreward_writer_db_errors_total{class}`.
fn count_db_error(err: &PgError) {
    metrics::counter!("fetchreward_writer_db_errors_total", "class" => err.class()).increment(1);
}

/// The fast path: every chunk in one transaction, no savepoints.
async fn write_all(
    client: &mut tokio_postgres::Client,
    rows: &[MaskedLogin],
    sharded: bool,
) -> Result<Written, PgError> {
    let mut transaction = client.transaction().await?;
    let mut written = Written::default();
    for chunk in rows.chunks(CHUNK_ROWS) {
        written.inserted.extend(insert_chunk(&mut transaction, chunk, sharded).await?);
    }
    transaction.commit().await?;
    Ok(written)
}

/// The slow path: every part under a savepoint, refused parts split until single rows.
async fn write_isolating(
    client: &mut tokio_postgres::Client,
    rows: &[MaskedLogin],
    sharded: bool,
) -> Result<Written, PgError> {
    let mut transaction = client.transaction().await?;
    let mut written = Written::default();
    // A stack of parts still to write, the next on top: rows stay in message_id order.
    let mut pending: Vec<Range<usize>> = (0..rows.len())
        .step_by(CHUNK_ROWS)
        .map(|start| start..(start + CHUNK_ROWS).min(rows.len()))
        .rev()
        .collect();
    while let Some(part) = pending.pop() {
        let mut savepoint = transaction.savepoint("isolate").await?;
        match insert_chunk(&mut savepoint, &rows[part.clone()], sharded).await {
            Ok(inserted) => {
                savepoint.commit().await?;
                written.inserted.extend(inserted);
            }
            Err(err) if err.is_caused_by_data() => {
                savepoint.rollback().await?;
                if part.len() == 1 {
                    written.refused.push((part.start, DatabaseRefusal::of(&err)));
                } else {
                    let middle = part.start + part.len() / 2;
                    pending.push(middle..part.end);
                    pending.push(part.start..middle);
                }
            }
            Err(err) => return Err(err),
        }
    }
    transaction.commit().await?;
    Ok(written)
}

/// Writes a chunk of rows; returns the message_ids it inserted. On a sharding coordinator
/// (`sharded`) the rows already present are looked up first and the insert only counted; when
/// the count disagrees (a concurrent writer inserted some of the same rows in between), the
/// chunk is written again under a savepoint with `RETURNING`, which is exact.
async fn insert_chunk(
    transaction: &mut tokio_postgres::Transaction<'_>,
    rows: &[MaskedLogin],
    sharded: bool,
) -> Result<Vec<String>, PgError> {
    let columns = ChunkColumns::of(rows);
    if !sharded {
        let inserted = transaction.query_typed(INSERT_CHUNK, &columns.params()).await?;
        return Ok(inserted.iter().map(|row| row.get::<_, String>(0)).collect());
    }
    let mut present: HashMap<String, Vec<NaiveDate>> = HashMap::new();
    for row in transaction
        .query_typed(PRESENT_IN_CHUNK, &[(&columns.message_ids, Type::VARCHAR_ARRAY)])
        .await?
    {
        if let Some(day) = row.get::<_, Option<NaiveDate>>(1) {
            present.entry(row.get(0)).or_default().push(day);
        }
    }
    let fresh: Vec<String> = rows
        .iter()
        .filter(|row| {
            !present.get(&row.message_id).is_some_and(|days| days.contains(&row.create_date()))
        })
        .map(|row| row.message_id.clone())
        .collect();
    let savepoint = transaction.savepoint("counted").await?;
    let count = savepoint.execute_typed(INSERT_CHUNK_COUNTED, &columns.params()).await?;
    if usize::try_from(count).ok() == Some(fresh.len()) {
        savepoint.commit().await?;
        return Ok(fresh);
    }
    savepoint.rollback().await?;
    let inserted = transaction.query_typed(INSERT_CHUNK, &columns.params()).await?;
    Ok(inserted.iter().map(|row| row.get::<_, String>(0)).collect())
}

/// A chunk's rows as the insert's nine array parameters.
struct ChunkColumns<'a> {
    message_ids: Vec<&'a str>,
    user_ids: Vec<&'a str>,
    device_types: Vec<Option<&'a str>>,
    masked_ips: Vec<Option<String>>,
    masked_device_ids: Vec<Option<String>>,
    locales: Vec<Option<&'a str>>,
    app_versions: Vec<Option<i32>>,
    app_versions_raw: Vec<Option<&'a str>>,
    create_dates: Vec<NaiveDate>,
}

impl<'a> ChunkColumns<'a> {
    fn of(rows: &'a [MaskedLogin]) -> Self {
        let text = |f: fn(&'a MaskedLogin) -> Option<&'a str>| rows.iter().map(f).collect();
        let token = |f: fn(&MaskedLogin) -> Option<String>| rows.iter().map(f).collect();
        ChunkColumns {
            message_ids: rows.iter().map(|r| r.message_id.as_str()).collect(),
            user_ids: rows.iter().map(|r| r.user_id.as_str()).collect(),
            device_types: text(|r| r.device_type.as_deref()),
            masked_ips: token(|r| r.masked_ip.map(|t| t.to_string())),
            masked_device_ids: token(|r| r.masked_device_id.map(|t| t.to_string())),
            locales: text(|r| r.locale.as_deref()),
            app_versions: rows.iter().map(MaskedLogin::app_version_number).collect(),
            app_versions_raw: text(|r| r.app_version.as_deref()),
            create_dates: rows.iter().map(MaskedLogin::create_date).collect(),
        }
    }

    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        let values: [&(dyn ToSql + Sync); 9] = [
            &self.message_ids,
            &self.user_ids,
            &self.device_types,
            &self.masked_ips,
            &self.masked_device_ids,
            &self.locales,
            &self.app_versions,
            &self.app_versions_raw,
            &self.create_dates,
        ];
        values.into_iter().zip(INSERT_TYPES.iter().cloned()).collect()
    }
}

/// The outcome of a committed batch, in the batch's own positions.
fn outcome(ordered: Ordered, written: Written) -> WriteOutcome {
    let rows = &ordered.rows;
    let Written { inserted, refused: refused_rows } = written;
    let refused_ids: HashSet<&str> =
        refused_rows.iter().map(|(row, _)| rows[*row].message_id.as_str()).collect();
    let already_present: Vec<String> = rows
        .iter()
        .map(|row| &row.message_id)
        .filter(|id| !inserted.contains(*id) && !refused_ids.contains(id.as_str()))
        .cloned()
        .collect();
    let mut refused: Vec<(usize, DatabaseRefusal)> = refused_rows
        .into_iter()
        .flat_map(|(row, refusal)| {
            ordered.positions_of(row).iter().map(move |&position| (position, refusal.clone()))
        })
        .collect();
    refused.sort_by_key(|(position, _)| *position);
    for (outcome, count) in
        [("inserted", inserted.len()), ("already_present", already_present.len())]
    {
        metrics::counter!("fetchreward_writer_rows_total", "outcome" => outcome)
            .increment(count as u64);
    }
    WriteOutcome { inserted: inserted.len(), already_present, refused }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(message_id: &str, user_id: &str) -> MaskedLogin {
        MaskedLogin {
            message_id: message_id.to_owned(),
            user_id: user_id.to_owned(),
            device_type: None,
            masked_ip: None,
            masked_device_id: None,
            locale: None,
            app_version: None,
            sent_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time"),
        }
    }

    #[test]
    fn rows_are_ordered_by_message_id_once_each_with_all_their_positions() {
        let batch = ["m3", "m1", "m2", "m1", "m3", "m1"]
            .iter()
            .enumerate()
            .map(|(position, id)| row(id, &format!("user {position}")))
            .collect();
        let ordered = Ordered::new(batch);
        let ids: Vec<&str> = ordered.rows.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2", "m3"]);
        // The first of a repeated message_id is the one written.
        let users: Vec<&str> = ordered.rows.iter().map(|r| r.user_id.as_str()).collect();
        assert_eq!(users, ["user 1", "user 2", "user 0"]);
        assert_eq!(ordered.positions_of(0), [1, 3, 5]);
        assert_eq!(ordered.positions_of(1), [2]);
        assert_eq!(ordered.positions_of(2), [0, 4]);
    }

    #[test]
    fn a_refused_row_is_reported_at_every_position_of_its_message_id() {
        let ordered = Ordered::new(vec![row("b", "u"), row("a", "u"), row("b", "u")]);
        let refusal = DatabaseRefusal { sqlstate: "22021".to_owned(), object: None };
        let written = Written {
            inserted: ["a".to_owned()].into_iter().collect(),
            refused: vec![(1, refusal.clone())],
        };
        let outcome = outcome(ordered, written);
        assert_eq!(outcome.inserted, 1);
        assert!(outcome.already_present.is_empty());
        assert_eq!(outcome.refused, [(0, refusal.clone()), (2, refusal)]);
    }
}
