//! What the archive asks of Postgres: which monthly partitions exist, a month's rows in one
//! snapshot, retiring a partition once its rows are safe, and putting rows back.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use chrono::NaiveDate;
use futures::{TryStreamExt as _, pin_mut};
use indicatif::ProgressBar;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::parquet_file::{self, ArchivedRow, ParquetSink};
use crate::{Manifest, Month, TABLE};

/// Rows per restore statement.
pub const RESTORE_CHUNK_ROWS: usize = 5_000;

/// How long retiring a partition waits for its locks before giving up (writers hold the
/// table's lock for a batch at a time; an analyst's long query could hold it for longer).
const LOCK_TIMEOUT: &str = "30s";

/// A monthly table of `user_logins`, attached or detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `user_logins_YYYY_MM`.
    pub name: String,
    /// Its month.
    pub month: Month,
    /// Whether it is a partition of `user_logins` now (false: detached and kept).
    pub attached: bool,
}

impl Partition {
    /// What it means for `archive list`.
    pub fn state(&self) -> PartitionState {
        if self.attached { PartitionState::Attached } else { PartitionState::Detached }
    }
}

/// Whether the database still has an archived month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    /// Its partition is attached: the rows are in the table (restored, or not yet retired).
    Attached,
    /// Its table was detached and kept (`--keep-detached`).
    Detached,
    /// No table of it: the archive is the only copy.
    Absent,
}

impl fmt::Display for PartitionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartitionState::Attached => "attached",
            PartitionState::Detached => "detached",
            PartitionState::Absent => "dropped",
        })
    }
}

/// The monthly tables of `user_logins` (the default partition is never archived), in month
/// order. A table named like a month whose bounds are not that month's is left out.
pub async fn partitions(db: &Client) -> anyhow::Result<Vec<Partition>> {
    let rows = db
        .query(
            "SELECT c.relname::text, c.relispartition, \
                    coalesce(pg_get_expr(c.relpartbound, c.oid), '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'f') \
               AND c.relname LIKE 'user\\_logins\\_%' \
             ORDER BY c.relname",
            &[],
        )
        .await
        .context("listing the partitions of user_logins")?;
    let mut found = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let attached: bool = row.get(1);
        let bound: String = row.get(2);
        let Some(month) = Month::from_partition_name(&name) else { continue };
        let expected =
            format!("FOR VALUES FROM ('{}') TO ('{}')", month.first_day(), month.next_first_day());
        if attached && bound != expected {
            tracing::warn!(partition = %name, %bound, "a partition named like a month holds another range; left alone");
            continue;
        }
        found.push(Partition { name, month, attached });
    }
    found.sort_by_key(|partition| partition.month);
    Ok(found)
}

/// The attached monthly partitions whose month ends on or before `cutoff`: what an archive
/// run takes, oldest first.
pub async fn due(db: &Client, cutoff: NaiveDate) -> anyhow::Result<Vec<Partition>> {
    let mut found = partitions(db).await?;
    found.retain(|partition| partition.attached && partition.month.next_first_day() <= cutoff);
    Ok(found)
}

/// Rows of one month in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthCount {
    /// `YYYY-MM`, or none for rows without a `create_date`.
    pub month: Option<String>,
    /// The table holding them: a monthly partition, the default one, or a shard.
    pub table: String,
    /// How many.
    pub rows: i64,
}

/// Rows of `user_logins` by month and by the table holding them.
pub async fn monthly_counts(db: &Client) -> anyhow::Result<Vec<MonthCount>> {
    let rows = db
        .query(
            "SELECT to_char(create_date, 'YYYY-MM') AS month, tableoid::regclass::text, count(*) \
             FROM public.user_logins GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2",
            &[],
        )
        .await
        .context("counting the rows of user_logins")?;
    Ok(rows
        .into_iter()
        .map(|row| MonthCount { month: row.get(0), table: row.get(1), rows: row.get(2) })
        .collect())
}

/// Runs `body` in a transaction opened by `begin`, rolled back if it fails.
async fn in_transaction<T>(
    db: &Client,
    begin: &str,
    body: impl AsyncFnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    db.batch_execute(begin).await.context("starting a transaction")?;
    match body().await {
        Ok(value) => {
            db.batch_execute("COMMIT").await.context("committing")?;
            Ok(value)
        }
        Err(err) => {
            // The connection may be gone; the server rolls back by itself then.
            let _ = db.batch_execute("ROLLBACK").await;
            Err(err)
        }
    }
}

impl ArchivedRow {
    /// A row selected with [`select_list`]'s columns.
    pub fn from_row(row: &tokio_postgres::Row) -> ArchivedRow {
        ArchivedRow {
            user_id: row.get(0),
            device_type: row.get(1),
            masked_ip: row.get(2),
            masked_device_id: row.get(3),
            locale: row.get(4),
            app_version: row.get(5),
            create_date: row.get(6),
            message_id: row.get(7),
            app_version_raw: row.get(8),
        }
    }
}

/// The columns, in the archive's order, as a select list.
pub fn select_list() -> String {
    parquet_file::columns().iter().map(|column| column.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The table's columns now, as `name type`, to compare with the archive's.
async fn table_columns(db: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let rows = db
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'public.user_logins'::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[],
        )
        .await
        .context("reading the columns of user_logins")?;
    Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Rows written.
    pub rows: u64,
    /// Their earliest `create_date`.
    pub min_create_date: Option<NaiveDate>,
    /// Their latest.
    pub max_create_date: Option<NaiveDate>,
}

/// Writes every row of `month`'s partition to a Parquet file at `path`, from one snapshot.
/// `bar` makes the progress bar once the row count is known.
pub async fn export(
    db: &Client,
    month: Month,
    path: &Path,
    bar: impl FnOnce(u64) -> ProgressBar,
) -> anyhow::Result<Exported> {
    let actual = table_columns(db).await?;
    let expected: Vec<(String, String)> = parquet_file::columns()
        .into_iter()
        .map(|column| (column.name, column.postgres_type))
        .collect();
    ensure!(
        actual == expected,
        "user_logins has the columns {actual:?}; this fetchreward archives exactly {expected:?}"
    );
    let partition = month.partition_name();
    in_transaction(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", async || {
        let total: i64 = db
            .query_one(&format!("SELECT count(*) FROM public.\"{partition}\""), &[])
            .await
            .with_context(|| format!("counting the rows of {partition}"))?
            .get(0);
        let bar = bar(u64::try_from(total)?);
        let sql = format!(
            "SELECT {} FROM public.\"{partition}\" ORDER BY create_date, message_id",
            select_list()
        );
        let stream = db
            .query_raw(&sql, std::iter::empty::<&(dyn ToSql + Sync)>())
            .await
            .with_context(|| format!("reading {partition}"))?;
        pin_mut!(stream);
        let mut sink = ParquetSink::create(path)?;
        let mut exported = Exported { rows: 0, min_create_date: None, max_create_date: None };
        while let Some(row) =
            stream.try_next().await.with_context(|| format!("reading {partition}"))?
        {
            let row = ArchivedRow::from_row(&row);
            if let Some(day) = row.create_date {
                exported.min_create_date =
                    Some(exported.min_create_date.map_or(day, |d| d.min(day)));
                exported.max_create_date =
                    Some(exported.max_create_date.map_or(day, |d| d.max(day)));
            }
            sink.push(row)?;
            exported.rows += 1;
            bar.inc(1);
        }
        sink.finish()?;
        bar.finish_and_clear();
        ensure!(
            exported.rows == u64::try_from(total)?,
            "{partition} gave {} rows, its count in the same snapshot was {total}",
            exported.rows
        );
        Ok(exported)
    })
    .await
}

/// How retiring a partition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// Detached (and dropped unless kept); or it was gone already.
    Done,
    /// It holds another number of rows than the manifest: nothing was changed.
    Changed {
        /// Rows it holds now.
        now: i64,
    },
}

/// Detaches `manifest`'s partition (and drops it unless `keep_detached`) if it holds exactly
/// the manifest's rows, checked under a lock that stops writers until the commit.
pub async fn retire(
    db: &Client,
    manifest: &Manifest,
    keep_detached: bool,
) -> anyhow::Result<Retired> {
    let partition = &manifest.partition;
    in_transaction(db, "BEGIN", async || {
        db.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")).await?;
        let attached = attachment(db, partition).await?;
        if attached != Some(true) {
            return Ok(Retired::Done);
        }
        // The parent first (writers lock it before the partition), in SHARE mode: readers go
        // on, writers wait until the commit.
        db.batch_execute("LOCK TABLE public.user_logins IN SHARE MODE")
            .await
            .context("locking user_logins against writes")?;
        let now: i64 = db
            .query_one(&format!("SELECT count(*) FROM public.\"{partition}\""), &[])
            .await?
            .get(0);
        if u64::try_from(now).ok() != Some(manifest.rows) {
            return Ok(Retired::Changed { now });
        }
        db.batch_execute(&format!(
            "ALTER TABLE public.{TABLE} DETACH PARTITION public.\"{partition}\""
        ))
        .await
        .with_context(|| format!("detaching {partition}"))?;
        if !keep_detached {
            db.batch_execute(&format!("DROP TABLE public.\"{partition}\""))
                .await
                .with_context(|| format!("dropping {partition}"))?;
        }
        Ok(Retired::Done)
    })
    .await
}

/// Whether the table `partition` is attached to `user_logins` (`Some(false)`: it exists,
/// detached; `None`: there is no such table).
async fn attachment(db: &Client, partition: &str) -> anyhow::Result<Option<bool>> {
    Ok(db
        .query_opt(
            "SELECT relispartition FROM pg_class WHERE oid = to_regclass($1)",
            &[&format!("public.\"{partition}\"")],
        )
        .await?
        .map(|row| row.get(0)))
}

/// Makes sure `month`'s partition is attached, creating it with the writer's own function when
/// it is missing; a detached table of that month is not taken over.
pub async fn prepare_restore(db: &Client, month: Month) -> anyhow::Result<()> {
    let partition = month.partition_name();
    let attached = attachment(db, &partition).await?;
    match attached {
        Some(true) => Ok(()),
        Some(false) => bail!(
            "{partition} exists, detached (archive run --keep-detached): attach it with \
             ALTER TABLE user_logins ATTACH PARTITION {partition} FOR VALUES FROM ('{}') TO ('{}'), \
             or drop it, then restore",
            month.first_day(),
            month.next_first_day()
        ),
        None => {
            db.execute(
                "SELECT public.fetchreward_ensure_login_partition($1)",
                &[&month.first_day()],
            )
            .await
            .with_context(|| format!("creating {partition}"))?;
            Ok(())
        }
    }
}

const INSERT_ROWS: &str = "\
INSERT INTO public.user_logins (user_id, device_type, masked_ip, masked_device_id, locale, \
                                app_version, create_date, message_id, app_version_raw) \
SELECT * FROM UNNEST($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], \
                     $6::integer[], $7::date[], $8::varchar[], $9::varchar[]) \
ON CONFLICT DO NOTHING";

/// Inserts archived rows, skipping those already present; returns how many went in.
pub async fn insert_rows(db: &Client, rows: &[ArchivedRow]) -> anyhow::Result<u64> {
    fn column<T: Clone>(
        rows: &[ArchivedRow],
        value: impl Fn(&ArchivedRow) -> &Option<T>,
    ) -> Vec<Option<T>> {
        rows.iter().map(|row| value(row).clone()).collect()
    }
    let inserted = db
        .execute(
            INSERT_ROWS,
            &[
                &column(rows, |row| &row.user_id),
                &column(rows, |row| &row.device_type),
                &column(rows, |row| &row.masked_ip),
                &column(rows, |row| &row.masked_device_id),
                &column(rows, |row| &row.locale),
                &column(rows, |row| &row.app_version),
                &column(rows, |row| &row.create_date),
                &column(rows, |row| &row.message_id),
                &column(rows, |row| &row.app_version_raw),
            ],
        )
        .await
        .context("inserting restored rows")?;
    Ok(inserted)
}

/// Rows of `month` in `user_logins`.
pub async fn count_rows(db: &Client, month: Month) -> anyhow::Result<u64> {
    let rows: i64 = db
        .query_one(
            "SELECT count(*) FROM public.user_logins WHERE create_date >= $1 AND create_date < $2",
            &[&month.first_day(), &month.next_first_day()],
        )
        .await?
        .get(0);
    Ok(u64::try_from(rows)?)
}
