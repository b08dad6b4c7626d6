//! A data subject's rows: found from a value they give (`subject find`), answered with the
//! values revealed (`subject export`, one audited Detokenize), erased (`subject forget`), and
//! decoy rows planted among them (`decoys plant`).
//!
//! The vault's Lookup turns the value into its tokens (under every key version it holds,
//! storing nothing); `user_logins` is then searched for rows carrying them, on
//! `DATABASE_READ_URL` when set. The table has no index on the token columns, so each search
//! reads the table once (docs/privacy.md).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, LookupRequest, PiiKind, PiiValue, PlantDecoysRequest, TokenStatus,
};
use tonic::transport::Channel;

use crate::vault::explain;

/// The value a subject gave, by the field it appears in.
#[derive(Clone, PartialEq, Eq)]
pub enum SubjectValue {
    /// An address, as in `user_logins.masked_ip`.
    Ip(String),
    /// A device id, as in `user_logins.masked_device_id`.
    DeviceId(String),
}

impl std::fmt::Debug for SubjectValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubjectValue::Ip(_) => "Ip(<redacted>)",
            SubjectValue::DeviceId(_) => "DeviceId(<redacted>)",
        })
    }
}

impl SubjectValue {
    /// The column of `user_logins` that holds its token.
    fn column(&self) -> &'static str {
        match self {
            SubjectValue::Ip(_) => "masked_ip",
            SubjectValue::DeviceId(_) => "masked_device_id",
        }
    }

    fn proto(&self) -> PiiValue {
        let (kind, value) = match self {
            SubjectValue::Ip(value) => (PiiKind::Ip, value),
            SubjectValue::DeviceId(value) => (PiiKind::DeviceId, value),
        };
        PiiValue { kind: kind.into(), value: value.clone() }
    }
}

/// Why a subject is looked up: a purpose (a code, when the vault has them) and a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    /// The purpose.
    pub purpose: String,
    /// Free text beside it (may be empty).
    pub note: String,
}

/// A subject's tokens, as Lookup found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The tokens of the value, newest key version first.
    pub tokens: Vec<String>,
    /// Whether the vault stores an original under one of them.
    pub stored: bool,
    /// The Lookup's audit row.
    pub audit_id: i64,
}

/// The tokens of `value` (Lookup: audited, stores nothing).
pub async fn lookup(
    client: &mut VaultServiceClient<Channel>,
    value: &SubjectValue,
    why: &Why,
) -> anyhow::Result<Found> {
    let reply = client
        .lookup(LookupRequest {
            values: vec![value.proto()],
            purpose: why.purpose.clone(),
            note: why.note.clone(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let result = reply.results.into_iter().next().context("the vault answered no result")?;
    if !result.refused.is_empty() {
        anyhow::bail!("the vault refused the value: {}", result.refused);
    }
    Ok(Found { tokens: result.tokens, stored: result.stored, audit_id: reply.audit_id })
}

/// Rows of `user_logins` carrying one of `tokens` in `value`'s column, by month (`YYYY-MM`).
pub async fn rows_by_month(
    db: &fetchreward_runtime::postgres::PgClient<'_>,
    value: &SubjectValue,
    tokens: &[String],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let sql = format!(
        "SELECT coalesce(to_char(create_date, 'YYYY-MM'), 'no date'), count(*) \
         FROM public.user_logins WHERE {} = ANY($1) GROUP BY 1",
        value.column()
    );
    let rows = db.query(&sql, &[&tokens]).await.context("counting the subject's rows")?;
    Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// One row of `user_logins`, its tokens revealed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportedRow {
    /// `user_id`.
    pub user_id: Option<String>,
    /// `device_type`.
    pub device_type: Option<String>,
    /// The address (or `masked_ip` when the vault holds no value for it).
    pub ip: Option<String>,
    /// The device id (or `masked_device_id` when the vault holds none).
    pub device_id: Option<String>,
    /// `locale`.
    pub locale: Option<String>,
    /// `app_version_raw`.
    pub app_version: Option<String>,
    /// `create_date`, ISO 8601.
    pub create_date: Option<String>,
    /// `message_id`.
    pub message_id: Option<String>,
}

/// Every row carrying one of `tokens` in `value`'s column.
async fn subject_rows(
    db: &fetchreward_runtime::postgres::PgClient<'_>,
    value: &SubjectValue,
    tokens: &[String],
) -> anyhow::Result<Vec<ExportedRow>> {
    let sql = format!(
        "SELECT user_id::text, device_type::text, masked_ip::text, masked_device_id::text, \
                locale::text, app_version_raw::text, to_char(create_date, 'YYYY-MM-DD'), \
                message_id::text \
         FROM public.user_logins WHERE {} = ANY($1) ORDER BY create_date, message_id",
        value.column()
    );
    let rows = db.query(&sql, &[&tokens]).await.context("reading the subject's rows")?;
    Ok(rows
        .into_iter()
        .map(|row| ExportedRow {
            user_id: row.get(0),
            device_type: row.get(1),
            ip: row.get(2),
            device_id: row.get(3),
            locale: row.get(4),
            app_version: row.get(5),
            create_date: row.get(6),
            message_id: row.get(7),
        })
        .collect())
}

/// The subject's rows with both tokens of each revealed, in one Detokenize call (audited as one
/// call, counted against the caller's daily limit), and that call's audit id.
pub async fn export(
    client: &mut VaultServiceClient<Channel>,
    db: &fetchreward_runtime::postgres::PgClient<'_>,
    value: &SubjectValue,
    tokens: &[String],
    why: &Why,
) -> anyhow::Result<(Vec<ExportedRow>, i64)> {
    let mut rows = subject_rows(db, value, tokens).await?;
    let mut asked: Vec<String> =
        rows.iter().flat_map(|row| [row.ip.clone(), row.device_id.clone()]).flatten().collect();
    asked.sort();
    asked.dedup();
    if asked.is_empty() {
        return Ok((rows, 0));
    }
    let reply = client
        .detokenize(DetokenizeRequest {
            tokens: asked,
            purpose: why.purpose.clone(),
            note: why.note.clone(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let values: BTreeMap<String, String> = reply
        .results
        .into_iter()
        .filter(|result| result.status() == TokenStatus::Found)
        .map(|result| (result.token, result.value))
        .collect();
    for row in &mut rows {
        for field in [&mut row.ip, &mut row.device_id] {
            if let Some(value) = field.as_ref().and_then(|token| values.get(token)) {
                *field = Some(value.clone());
            }
        }
    }
    Ok((rows, reply.audit_id))
}

/// How `subject export` writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per row, one per line.
    Json,
    /// A header line, then one line per row.
    Csv,
}

/// Writes `rows` to `out` in `format`.
pub fn write_rows(
    rows: &[ExportedRow],
    format: ExportFormat,
    out: impl Write,
) -> anyhow::Result<()> {
    match format {
        ExportFormat::Json => {
            let mut out = out;
            for row in rows {
                serde_json::to_writer(&mut out, row)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            for row in rows {
                writer.serialize(row)?;
            }
            if rows.is_empty() {
                writer.write_record([
                    "user_id",
                    "device_type",
                    "ip",
                    "device_id",
                    "locale",
                    "app_version",
                    "create_date",
                    "message_id",
                ])?;
            }
            writer.flush()?;
        }
    }
    Ok(())
}

/// Plants `count` decoy rows in `user_logins`: each with a decoy address token and a decoy
/// device token from the vault (PlantDecoys, audited), and fields like a real row's. Returns
/// the decoy tokens and the two audit ids.
pub async fn plant_decoys(
    client: &mut VaultServiceClient<Channel>,
    db: &fetchreward_runtime::postgres::PgClient<'_>,
    count: u32,
    purpose: &str,
) -> anyhow::Result<(Vec<String>, [i64; 2])> {
    let mut planted = Vec::new();
    let mut audit_ids = [0; 2];
    for (slot, kind) in [PiiKind::Ip, PiiKind::DeviceId].into_iter().enumerate() {
        let reply = client
            .plant_decoys(PlantDecoysRequest {
                kind: kind.into(),
                count,
                purpose: purpose.to_owned(),
            })
            .await
            .map_err(explain)?
            .into_inner();
        audit_ids[slot] = reply.audit_id;
        planted.push(reply.tokens);
    }
    let [ips, devices] = <[Vec<String>; 2]>::try_from(planted).expect("two kinds");
    let mut rng = rand::rng();
    for (ip, device) in ips.iter().zip(&devices) {
        let row = crate::sample::plausible_row(&mut rng);
        db.execute(
            "INSERT INTO public.user_logins \
               (user_id, device_type, masked_ip, masked_device_id, locale, app_version, \
                app_version_raw, create_date, message_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, current_date - $8::int, $9)",
            &[
                &row.user_id,
                &row.device_type,
                ip,
                device,
                &row.locale,
                &row.app_version,
                &row.app_version_raw,
                &row.days_ago,
                &row.message_id,
            ],
        )
        .await
        .context("inserting a decoy row")?;
    }
    let mut tokens = ips;
    tokens.extend(devices);
    Ok((tokens, audit_ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: &str) -> ExportedRow {
        ExportedRow {
            user_id: Some("u-1".into()),
            device_type: Some("android".into()),
            ip: Some(ip.into()),
            device_id: None,
            locale: Some("RU, \"Moscow\"".into()),
            app_version: Some("2.3.0".into()),
            create_date: Some("2026-12-01".into()),
            message_id: Some("m-1".into()),
        }
    }

    #[test]
    fn rows_are_written_as_json_lines_or_quoted_csv() {
        let rows = [row("66.194.53.215")];
        let mut json = Vec::new();
        write_rows(&rows, ExportFormat::Json, &mut json).expect("writes");
        let line: serde_json::Value = serde_json::from_slice(&json).expect("one JSON line");
        assert_eq!(line["ip"], "66.194.53.215");
        assert_eq!(line["device_id"], serde_json::Value::Null);

        let mut csv = Vec::new();
        write_rows(&rows, ExportFormat::Csv, &mut csv).expect("writes");
        let text = String::from_utf8(csv).expect("utf-8");
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("user_id,device_type,ip,device_id,locale,app_version,create_date,message_id")
        );
        assert_eq!(
            lines.next(),
            Some("u-1,android,66.194.53.215,,\"RU, \"\"Moscow\"\"\",2.3.0,2026-12-01,m-1")
        );
    }

    #[test]
    fn an_empty_export_still_has_its_header() {
        let mut csv = Vec::new();
        write_rows(&[], ExportFormat::Csv, &mut csv).expect("writes");
        assert!(String::from_utf8(csv).expect("utf-8").starts_with("user_id,device_type,ip"));
    }

    #[test]
    fn a_value_is_never_shown_by_debug() {
        let value = SubjectValue::Ip("66.194.53.215".into());
        assert!(!format!("{value:?}").contains("66.194"));
        assert_eq!(value.column(), "masked_ip");
    }
}
