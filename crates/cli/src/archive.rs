//! What `fetchreward archive` and `fetchreward counts` print, and their S3 client.

use comfy_table::Table;
use fetchreward_archive::{ArchiveTarget, Listed, MonthArchived, MonthCount};

/// An S3 client with the standard AWS settings; `S3_FORCE_PATH_STYLE=true` addresses buckets
/// by path, as S3 emulators (the local stack's moto) need.
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var("S3_FORCE_PATH_STYLE").is_ok_and(|value| value == "true");
    let config = aws_sdk_s3::config::Builder::from(aws).force_path_style(path_style).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The summary of a run.
pub fn print_run(done: &[MonthArchived], cutoff: chrono::NaiveDate, to: &ArchiveTarget) {
    if done.is_empty() {
        println!("no month ends before {cutoff}: nothing to archive");
        return;
    }
    let mut table = Table::new();
    table.set_header(["month", "rows", "export", "partition"]);
    for month in done {
        table.add_row([
            month.month.to_string(),
            month.rows.to_string(),
            if month.exported { "exported" } else { "resumed (verified)" }.to_owned(),
            if month.dropped { "dropped" } else { "detached, kept" }.to_owned(),
        ]);
    }
    println!("{table}");
    let rows: u64 = done.iter().map(|month| month.rows).sum();
    println!("archived {} month(s), {rows} row(s), to {to}", done.len());
}

/// `archive list`.
pub fn print_list(listed: &[Listed], json: bool) -> anyhow::Result<()> {
    if json {
        for entry in listed {
            let mut value = serde_json::to_value(&entry.manifest)?;
            value["in_database"] = entry.in_database.to_string().into();
            println!("{value}");
        }
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header(["month", "rows", "dates", "bytes", "sha256", "archived at", "in database"]);
    for Listed { manifest, in_database } in listed {
        let dates = match (manifest.min_create_date, manifest.max_create_date) {
            (Some(min), Some(max)) => format!("{min} .. {max}"),
            _ => "-".to_owned(),
        };
        table.add_row([
            manifest.month.to_string(),
            manifest.rows.to_string(),
            dates,
            manifest.bytes.to_string(),
            manifest.sha256[..12].to_owned(),
            manifest.archived_at.clone(),
            in_database.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// `counts`.
pub fn print_counts(counts: &[MonthCount], json: bool) {
    if json {
        for count in counts {
            println!(
                "{}",
                serde_json::json!({ "month": count.month, "table": count.table, "rows": count.rows })
            );
        }
        return;
    }
    let mut table = Table::new();
    table.set_header(["month", "table", "rows"]);
    for count in counts {
        table.add_row([
            count.month.clone().unwrap_or_else(|| "(no date)".to_owned()),
            count.table.clone(),
            count.rows.to_string(),
        ]);
    }
    println!("{table}");
    let rows: i64 = counts.iter().map(|count| count.rows).sum();
    println!("{rows} row(s)");
}
