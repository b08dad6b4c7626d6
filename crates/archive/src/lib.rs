//! Old months of `user_logins` moved to S3 as Parquet, listed, and brought back.
//!
//! `user_logins` is range-partitioned by month of `create_date` (the writer's migration). An
//! archive run takes every monthly partition whose whole range lies before the cutoff and, one
//! month at a time:
//!
//! 1. exports its rows, in one repeatable-read snapshot, to a Parquet file (zstd) in the
//!    temporary directory;
//! 2. uploads it to `PREFIX/user_logins/month=YYYY-MM/user_logins_YYYY_MM.parquet`;
//! 3. downloads it again and checks its SHA-256 and its row count;
//! 4. writes `manifest.json` beside it (rows, date range, schema, SHA-256): the manifest is the
//!    mark of a finished export, written only once the object is known good;
//! 5. under an exclusive lock, checks that the partition still holds the manifest's rows, then
//!    detaches it and drops it (or keeps it detached).
//!
//! A run stopped anywhere resumes without losing or duplicating a row: before step 4 the month
//! has no manifest and is exported again (the object is overwritten, never appended to); after
//! it, the object is read back and checked again and the partition retired; a partition that
//! took rows after its export is exported again. The partition is dropped only after its rows
//! are verified in S3, in the transaction that checks they are all there.
//!
//! A restore re-creates the month's partition (through the writer's own partition function),
//! verifies the object against its manifest and inserts its rows with `ON CONFLICT DO NOTHING`,
//! so a restore stopped half-way is simply run again.
//!
//! The table holds tokens (`masked_ip`, `masked_device_id`), never originals, and so does the
//! archive: recovering a value still takes the vault and its audit trail.

mod parquet_file;
mod partitions;
mod target;

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{Months, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_postgres::Client;

pub use parquet_file::{ArchivedRow, Column, RowChunks, columns, read_rows};
pub use partitions::{
    MonthCount, Partition, PartitionState, due, monthly_counts, partitions, select_list,
};
pub use target::{ArchiveTarget, OlderThan};

/// The version of the manifest and file layout this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The archived table.
pub const TABLE: &str = "user_logins";

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month holding `day`.
    pub fn of(day: NaiveDate) -> Month {
        use chrono::Datelike as _;
        Month { year: day.year(), month: day.month() }
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("a valid month")
    }

    /// The first day of the next month: the partition's upper bound.
    pub fn next_first_day(self) -> NaiveDate {
        self.first_day() + Months::new(1)
    }

    /// The partition's name, `user_logins_YYYY_MM`.
    pub fn partition_name(self) -> String {
        format!("{TABLE}_{:04}_{:02}", self.year, self.month)
    }

    fn from_partition_name(name: &str) -> Option<Month> {
        let rest = name.strip_prefix(TABLE)?.strip_prefix('_')?;
        let (year, month) = rest.split_once('_')?;
        (year.len() == 4 && month.len() == 2).then_some(())?;
        Month::new(year.parse().ok()?, month.parse().ok()?)
    }

    fn new(year: i32, month: u32) -> Option<Month> {
        NaiveDate::from_ymd_opt(year, month, 1).map(Month::of)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Month> {
        let parsed = text.split_once('-').and_then(|(year, month)| {
            (year.len() == 4 && month.len() == 2)
                .then(|| Month::new(year.parse().ok()?, month.parse().ok()?))
                .flatten()
        });
        parsed
            .with_context(|| format!("{text:?} is not a month: write it as YYYY-MM, e.g. 2025-11"))
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Month, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What `manifest.json` says about one archived month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `user_logins`.
    pub table: String,
    /// The month archived.
    pub month: Month,
    /// The partition the rows came from.
    pub partition: String,
    /// The partition's range: `create_date >= range_from AND create_date < range_to`.
    pub range_from: NaiveDate,
    /// See `range_from`.
    pub range_to: NaiveDate,
    /// Rows in the object.
    pub rows: u64,
    /// The earliest `create_date` among them (none for an empty month).
    pub min_create_date: Option<NaiveDate>,
    /// The latest.
    pub max_create_date: Option<NaiveDate>,
    /// The columns, in the object's order.
    pub columns: Vec<Column>,
    /// Compression of the Parquet pages.
    pub compression: String,
    /// The object's key in the bucket.
    pub object_key: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// When the export finished (RFC 3339, UTC).
    pub archived_at: String,
}

/// Where one month's files live under the target.
fn object_key(target: &ArchiveTarget, month: Month) -> String {
    target.key(&format!("{TABLE}/month={month}/{}.parquet", month.partition_name()))
}

fn manifest_key(target: &ArchiveTarget, month: Month) -> String {
    target.key(&format!("{TABLE}/month={month}/manifest.json"))
}

/// What an archive run did to one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthArchived {
    /// The month.
    pub month: Month,
    /// Rows now in S3 for it.
    pub rows: u64,
    /// Whether this run exported it (false: a manifest of an earlier, interrupted run was
    /// verified and used).
    pub exported: bool,
    /// Whether the partition was dropped (false: kept detached).
    pub dropped: bool,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The month.
    pub month: Month,
    /// Rows in the archive.
    pub rows: u64,
    /// Rows inserted now; the others were in the table already.
    pub inserted: u64,
}

/// One archived month as `archive list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its manifest.
    pub manifest: Manifest,
    /// What the database has of the month now.
    pub in_database: PartitionState,
}

/// Archives, lists and restores months of `user_logins` between one database and one S3
/// prefix.
pub struct Archiver<'a> {
    db: &'a Client,
    s3: &'a aws_sdk_s3::Client,
    target: &'a ArchiveTarget,
    progress: bool,
}

impl fmt::Debug for Archiver<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Archiver").field("target", &self.target.to_string()).finish()
    }
}

/// The Parquet files are staged here (`TMPDIR`, the container's emptyDir).
fn staging_file() -> anyhow::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("fetchreward-archive-")
        .suffix(".parquet")
        .tempfile()
        .context("cannot create a staging file in the temporary directory (TMPDIR)")
}

impl<'a> Archiver<'a> {
    /// An archiver; `progress` draws progress bars on standard error (when it is a terminal).
    pub fn new(
        db: &'a Client,
        s3: &'a aws_sdk_s3::Client,
        target: &'a ArchiveTarget,
        progress: bool,
    ) -> Self {
        Archiver { db, s3, target, progress }
    }

    fn bar(&self, length: u64, what: String) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(length);
        bar.set_style(
            ProgressStyle::with_template("{msg:32} [{bar:30}] {pos}/{len} rows ({per_sec}, {eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(what);
        bar
    }

    /// Archives every monthly partition whose range ends on or before `cutoff`, oldest first.
    pub async fn run(
        &self,
        cutoff: NaiveDate,
        keep_detached: bool,
    ) -> anyhow::Result<Vec<MonthArchived>> {
        let due = due(self.db, cutoff).await?;
        let mut done = Vec::with_capacity(due.len());
        for partition in due {
            done.push(self.archive_month(partition.month, keep_detached).await?);
        }
        Ok(done)
    }

    /// Exports one month (or verifies an earlier run's export) and retires its partition.
    pub async fn archive_month(
        &self,
        month: Month,
        keep_detached: bool,
    ) -> anyhow::Result<MonthArchived> {
        let (manifest, mut exported) = match self.verified_manifest(month).await? {
            Some(manifest) => (manifest, false),
            None => (self.export(month).await?, true),
        };
        let manifest = match partitions::retire(self.db, &manifest, keep_detached).await? {
            partitions::Retired::Done => manifest,
            partitions::Retired::Changed { now } => {
                // Rows came in after the export (a late redelivery, say): export again.
                tracing::warn!(%month, exported = manifest.rows, now, "the partition changed after its export; exporting it again");
                exported = true;
                let manifest = self.export(month).await?;
                match partitions::retire(self.db, &manifest, keep_detached).await? {
                    partitions::Retired::Done => manifest,
                    partitions::Retired::Changed { now } => bail!(
                        "partition {} keeps taking rows ({now} now, {} exported): stop what writes to it, then run again",
                        month.partition_name(),
                        manifest.rows
                    ),
                }
            }
        };
        Ok(MonthArchived { month, rows: manifest.rows, exported, dropped: !keep_detached })
    }

    /// Exports a month: file, upload, read-back check, manifest. Returns the manifest written.
    pub async fn export(&self, month: Month) -> anyhow::Result<Manifest> {
        let staged = staging_file()?;
        let exported = partitions::export(self.db, month, staged.path(), |rows| {
            self.bar(rows, format!("export {}", month.partition_name()))
        })
        .await?;
        let digest = parquet_file::sha256_of(staged.path())?;
        let bytes = std::fs::metadata(staged.path())?.len();
        let key = object_key(self.target, month);
        self.s3
            .put_object()
            .bucket(&self.target.bucket)
            .key(&key)
            .content_type("application/vnd.apache.parquet")
            .body(ByteStream::from_path(staged.path()).await.context("reading the staged file")?)
            .send()
            .await
            .with_context(|| format!("uploading s3://{}/{key}", self.target.bucket))?;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            table: TABLE.to_owned(),
            month,
            partition: month.partition_name(),
            range_from: month.first_day(),
            range_to: month.next_first_day(),
            rows: exported.rows,
            min_create_date: exported.min_create_date,
            max_create_date: exported.max_create_date,
            columns: columns(),
            compression: parquet_file::COMPRESSION.to_owned(),
            object_key: key,
            bytes,
            sha256: digest,
            archived_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        self.verify_object(&manifest).await.context("the uploaded object did not read back")?;
        self.s3
            .put_object()
            .bucket(&self.target.bucket)
            .key(manifest_key(self.target, month))
            .content_type("application/json")
            .body(ByteStream::from(serde_json::to_vec_pretty(&manifest)?))
            .send()
            .await
            .with_context(|| format!("writing the manifest of {month}"))?;
        Ok(manifest)
    }

    /// The manifest of `month`, if one exists and its object still matches it.
    async fn verified_manifest(&self, month: Month) -> anyhow::Result<Option<Manifest>> {
        let Some(manifest) = self.manifest(month).await? else {
            return Ok(None);
        };
        match self.verify_object(&manifest).await {
            Ok(_) => Ok(Some(manifest)),
            Err(err) => {
                tracing::warn!(%month, error = %format!("{err:#}"), "the archived object does not match its manifest; exporting again");
                Ok(None)
            }
        }
    }

    /// Reads `month`'s manifest, if there is one.
    pub async fn manifest(&self, month: Month) -> anyhow::Result<Option<Manifest>> {
        let key = manifest_key(self.target, month);
        let object = match self.s3.get_object().bucket(&self.target.bucket).key(&key).send().await {
            Ok(object) => object,
            Err(err) if err.as_service_error().is_some_and(|err| err.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("reading s3://{}/{key}", self.target.bucket));
            }
        };
        let body = object.body.collect().await.context("reading a manifest")?.into_bytes();
        let manifest: Manifest = serde_json::from_slice(&body)
            .with_context(|| format!("s3://{}/{key} is not a manifest", self.target.bucket))?;
        ensure!(
            manifest.format_version == FORMAT_VERSION && manifest.month == month,
            "s3://{}/{key} is a manifest of format {} for {}; this fetchreward reads format {FORMAT_VERSION}",
            self.target.bucket,
            manifest.format_version,
            manifest.month
        );
        Ok(Some(manifest))
    }

    /// Downloads the object of `manifest` to a staging file and checks its size, SHA-256, row
    /// count and columns against it. Returns the file.
    async fn verify_object(&self, manifest: &Manifest) -> anyhow::Result<tempfile::NamedTempFile> {
        let staged = staging_file()?;
        let object = self
            .s3
            .get_object()
            .bucket(&self.target.bucket)
            .key(&manifest.object_key)
            .send()
            .await
            .with_context(|| {
                format!("reading s3://{}/{}", self.target.bucket, manifest.object_key)
            })?;
        let mut body = object.body.into_async_read();
        let mut file = tokio::fs::File::create(staged.path()).await?;
        tokio::io::copy(&mut body, &mut file).await.context("downloading an archived object")?;
        file.flush().await?;
        drop(file);
        check_file(staged.path(), manifest)?;
        Ok(staged)
    }

    /// Every archived month under the target, oldest first, with what the database still has.
    pub async fn list(&self, db: &Client) -> anyhow::Result<Vec<Listed>> {
        let mut months = Vec::new();
        let prefix = self.target.key(&format!("{TABLE}/"));
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.target.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.with_context(|| format!("listing {}", self.target))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let month = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix("/manifest.json"))
                    .and_then(|dir| dir.strip_prefix("month="))
                    .and_then(|month| month.parse::<Month>().ok());
                if let Some(month) = month {
                    months.push(month);
                }
            }
        }
        months.sort();
        let present = partitions(db).await?;
        let mut listed = Vec::with_capacity(months.len());
        for month in months {
            let Some(manifest) = self.manifest(month).await? else { continue };
            let in_database = present
                .iter()
                .find(|partition| partition.month == month)
                .map_or(PartitionState::Absent, Partition::state);
            listed.push(Listed { manifest, in_database });
        }
        Ok(listed)
    }

    /// Brings `month` back into `user_logins` from its archive.
    pub async fn restore(&self, month: Month) -> anyhow::Result<Restored> {
        let Some(manifest) = self.manifest(month).await? else {
            bail!(
                "{} has no archive of {month} (fetchreward archive list shows what it has)",
                self.target
            );
        };
        let staged = self.verify_object(&manifest).await?;
        partitions::prepare_restore(self.db, month).await?;
        let bar = self.bar(manifest.rows, format!("restore {}", month.partition_name()));
        let mut inserted = 0;
        for chunk in RowChunks::open(staged.path(), partitions::RESTORE_CHUNK_ROWS)? {
            let chunk = chunk?;
            inserted += partitions::insert_rows(self.db, &chunk).await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let now = partitions::count_rows(self.db, month).await?;
        ensure!(
            now >= manifest.rows,
            "after the restore {} holds {now} rows, fewer than the archive's {}",
            month.partition_name(),
            manifest.rows
        );
        Ok(Restored { month, rows: manifest.rows, inserted })
    }
}

/// Checks a downloaded object against its manifest.
fn check_file(path: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let bytes = std::fs::metadata(path)?.len();
    ensure!(
        bytes == manifest.bytes,
        "the object has {bytes} bytes, its manifest says {}",
        manifest.bytes
    );
    let digest = parquet_file::sha256_of(path)?;
    ensure!(
        digest == manifest.sha256,
        "the object's SHA-256 is {digest}, its manifest says {}",
        manifest.sha256
    );
    ensure!(
        manifest.columns == columns(),
        "the archive's columns ({}) are not the ones this fetchreward knows ({})",
        column_names(&manifest.columns),
        column_names(&columns())
    );
    let rows = parquet_file::row_count(path)?;
    ensure!(
        rows == manifest.rows,
        "the object holds {rows} rows, its manifest says {}",
        manifest.rows
    );
    Ok(())
}

fn column_names(columns: &[Column]) -> String {
    columns.iter().map(|column| column.name.as_str()).collect::<Vec<_>>().join(", ")
}
