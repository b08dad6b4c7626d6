//! The Parquet layout of an archived month: `user_logins`'s columns, in its order, each
//! optional (Fetch's table allows NULL everywhere), strings as UTF-8 byte arrays and
//! `create_date` as a DATE; zstd pages; row groups of [`ROW_GROUP_ROWS`].

use std::fs::File;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader as _, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use serde::{Deserialize, Serialize};

/// Rows per row group: a month of a busy table is a few row groups, each a few megabytes.
pub const ROW_GROUP_ROWS: usize = 100_000;

/// The compression written, as the manifest names it.
pub const COMPRESSION: &str = "zstd(3)";

const ZSTD_LEVEL: i32 = 3;

/// One column of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name, the same as in `user_logins`.
    pub name: String,
    /// Its type in Postgres.
    pub postgres_type: String,
    /// Its type in the Parquet file.
    pub parquet_type: String,
}

/// (name, Postgres type, Parquet physical type, Parquet logical type)
const LAYOUT: [(&str, &str, &str, &str); 9] = [
    ("user_id", "character varying(128)", "BYTE_ARRAY", "STRING"),
    ("device_type", "character varying(32)", "BYTE_ARRAY", "STRING"),
    ("masked_ip", "character varying(256)", "BYTE_ARRAY", "STRING"),
    ("masked_device_id", "character varying(256)", "BYTE_ARRAY", "STRING"),
    ("locale", "character varying(32)", "BYTE_ARRAY", "STRING"),
    ("app_version", "integer", "INT32", ""),
    ("create_date", "date", "INT32", "DATE"),
    ("message_id", "character varying(128)", "BYTE_ARRAY", "STRING"),
    ("app_version_raw", "character varying(32)", "BYTE_ARRAY", "STRING"),
];

/// `physical (logical)`, as the schema grammar writes an annotation.
fn annotated(physical: &str, logical: &str) -> String {
    if logical.is_empty() { physical.to_owned() } else { format!("{physical} ({logical})") }
}

/// The columns of the archive, in order.
pub fn columns() -> Vec<Column> {
    LAYOUT
        .iter()
        .map(|(name, postgres_type, physical, logical)| Column {
            name: (*name).to_owned(),
            postgres_type: (*postgres_type).to_owned(),
            parquet_type: annotated(physical, logical),
        })
        .collect()
}

/// The Parquet schema of [`LAYOUT`].
fn schema() -> parquet::schema::types::TypePtr {
    let fields: String = LAYOUT
        .iter()
        .map(|(name, _, physical, logical)| {
            let logical = if logical.is_empty() { String::new() } else { format!(" ({logical})") };
            format!("  OPTIONAL {physical} {name}{logical};\n")
        })
        .collect();
    let message = format!("message user_logins {{\n{fields}}}");
    Arc::new(parquet::schema::parser::parse_message_type(&message).expect("a valid schema"))
}

/// One row of `user_logins` as archived.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchivedRow {
    /// `user_id`.
    pub user_id: Option<String>,
    /// `device_type`.
    pub device_type: Option<String>,
    /// `masked_ip`: a token.
    pub masked_ip: Option<String>,
    /// `masked_device_id`: a token.
    pub masked_device_id: Option<String>,
    /// `locale`.
    pub locale: Option<String>,
    /// `app_version`.
    pub app_version: Option<i32>,
    /// `create_date`.
    pub create_date: Option<NaiveDate>,
    /// `message_id`.
    pub message_id: Option<String>,
    /// `app_version_raw`.
    pub app_version_raw: Option<String>,
}

impl ArchivedRow {
    fn strings(&self) -> [&Option<String>; 7] {
        [
            &self.user_id,
            &self.device_type,
            &self.masked_ip,
            &self.masked_device_id,
            &self.locale,
            &self.message_id,
            &self.app_version_raw,
        ]
    }
}

const UNIX_EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");

fn days_since_epoch(day: NaiveDate) -> i32 {
    i32::try_from((day - UNIX_EPOCH).num_days()).expect("a date within Parquet's range")
}

/// Writes rows to a Parquet file, a row group at a time.
pub struct ParquetSink {
    writer: SerializedFileWriter<File>,
    pending: Vec<ArchivedRow>,
}

impl ParquetSink {
    /// A file at `path`, truncated.
    pub fn create(path: &Path) -> anyhow::Result<ParquetSink> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_created_by(format!("fetchreward {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(file, schema(), Arc::new(properties))?;
        Ok(ParquetSink { writer, pending: Vec::with_capacity(ROW_GROUP_ROWS) })
    }

    /// Adds a row; a full row group is written out.
    pub fn push(&mut self, row: ArchivedRow) -> anyhow::Result<()> {
        self.pending.push(row);
        if self.pending.len() >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let mut group = self.writer.next_row_group()?;
        for (index, (name, ..)) in LAYOUT.iter().enumerate() {
            let mut column = group.next_column()?.context("the schema has fewer columns")?;
            match *name {
                "app_version" => {
                    write_ints(column.typed::<Int32Type>(), &rows, |row| row.app_version)?
                }
                "create_date" => write_ints(column.typed::<Int32Type>(), &rows, |row| {
                    row.create_date.map(days_since_epoch)
                })?,
                _ => {
                    let position = string_position(index);
                    let mut levels = Vec::with_capacity(rows.len());
                    let mut values = Vec::with_capacity(rows.len());
                    for row in &rows {
                        match row.strings()[position] {
                            Some(text) => {
                                levels.push(1);
                                values.push(ByteArray::from(text.as_bytes().to_vec()));
                            }
                            None => levels.push(0),
                        }
                    }
                    column.typed::<ByteArrayType>().write_batch(&values, Some(&levels), None)?;
                }
            }
            column.close()?;
        }
        group.close()?;
        self.pending = rows;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and the footer.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}

/// The place of LAYOUT's string column `index` in [`ArchivedRow::strings`].
fn string_position(index: usize) -> usize {
    match index {
        0..=4 => index,
        7 => 5,
        8 => 6,
        _ => unreachable!("column {index} is not a string"),
    }
}

fn write_ints(
    column: &mut parquet::column::writer::ColumnWriterImpl<'_, Int32Type>,
    rows: &[ArchivedRow],
    value: impl Fn(&ArchivedRow) -> Option<i32>,
) -> anyhow::Result<()> {
    let mut levels = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        match value(row) {
            Some(v) => {
                levels.push(1);
                values.push(v);
            }
            None => levels.push(0),
        }
    }
    column.write_batch(&values, Some(&levels), None)?;
    Ok(())
}

/// The rows of an archive file, in file order.
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<ArchivedRow>> {
    let mut rows = Vec::new();
    for chunk in RowChunks::open(path, ROW_GROUP_ROWS)? {
        rows.extend(chunk?);
    }
    Ok(rows)
}

/// The rows of an archive file in chunks of at most `size`, read as they are asked for: a
/// month of any size is restored in bounded memory.
pub struct RowChunks {
    rows: parquet::record::reader::RowIter<'static>,
    size: usize,
}

impl RowChunks {
    /// Opens `path`.
    pub fn open(path: &Path, size: usize) -> anyhow::Result<RowChunks> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader = SerializedFileReader::new(file)?;
        Ok(RowChunks { rows: reader.into_iter(), size: size.max(1) })
    }
}

impl Iterator for RowChunks {
    type Item = anyhow::Result<Vec<ArchivedRow>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut chunk = Vec::with_capacity(self.size);
        for row in self.rows.by_ref() {
            match row.map_err(anyhow::Error::from).and_then(|row| archived_row(&row)) {
                Ok(row) => chunk.push(row),
                Err(err) => return Some(Err(err)),
            }
            if chunk.len() == self.size {
                break;
            }
        }
        (!chunk.is_empty()).then_some(Ok(chunk))
    }
}

fn archived_row(row: &parquet::record::Row) -> anyhow::Result<ArchivedRow> {
    let mut out = ArchivedRow::default();
    for (name, field) in row.get_column_iter() {
        match (name.as_str(), field) {
            (_, Field::Null) => {}
            ("app_version", Field::Int(v)) => out.app_version = Some(*v),
            ("create_date", Field::Date(days)) => {
                out.create_date = Some(UNIX_EPOCH + chrono::Duration::days(i64::from(*days)));
            }
            (name, Field::Str(text)) => {
                let slot = match name {
                    "user_id" => &mut out.user_id,
                    "device_type" => &mut out.device_type,
                    "masked_ip" => &mut out.masked_ip,
                    "masked_device_id" => &mut out.masked_device_id,
                    "locale" => &mut out.locale,
                    "message_id" => &mut out.message_id,
                    "app_version_raw" => &mut out.app_version_raw,
                    other => bail!("the archive has an unknown column {other}"),
                };
                *slot = Some(text.clone());
            }
            (name, _) => bail!("the archive's column {name} has an unexpected type"),
        }
    }
    Ok(out)
}

/// The row count in a file's footer.
pub fn row_count(path: &Path) -> anyhow::Result<u64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file).context("the object is not a Parquet file")?;
    Ok(u64::try_from(reader.metadata().file_metadata().num_rows())?)
}

/// A file's SHA-256, hex.
pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
    }
    Ok(hex::encode(context.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u32) -> ArchivedRow {
        ArchivedRow {
            user_id: Some(format!("user-{n}")),
            device_type: (!n.is_multiple_of(3)).then(|| "android".to_owned()),
            masked_ip: Some(format!("ip_v1_{n:08}")),
            masked_device_id: None,
            locale: (n.is_multiple_of(2)).then(|| "RU".to_owned()),
            app_version: (!n.is_multiple_of(5)).then_some(i32::try_from(n).unwrap()),
            create_date: NaiveDate::from_ymd_opt(2025, 11, 1 + n % 30),
            message_id: Some(format!("m-{n}")),
            app_version_raw: Some(format!("{n}.0.0")),
        }
    }

    #[test]
    fn rows_with_nulls_survive_a_round_trip_over_several_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("month.parquet");
        let rows: Vec<ArchivedRow> =
            (0..u32::try_from(ROW_GROUP_ROWS).unwrap() + 7).map(row).collect();
        let mut sink = ParquetSink::create(&path).unwrap();
        for row in rows.clone() {
            sink.push(row).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(row_count(&path).unwrap(), rows.len() as u64);
        assert_eq!(read_rows(&path).unwrap(), rows);
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let chunk = reader.metadata().row_group(0).column(0);
        // The file records the codec, not its level.
        assert!(matches!(chunk.compression(), Compression::ZSTD(_)), "{:?}", chunk.compression());
    }

    #[test]
    fn the_schema_names_every_column_in_the_tables_order() {
        let schema = schema();
        let names: Vec<&str> = schema.get_fields().iter().map(|field| field.name()).collect();
        let expected: Vec<&str> = LAYOUT.iter().map(|(name, ..)| *name).collect();
        assert_eq!(names, expected);
    }
}
