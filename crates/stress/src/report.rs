//! The report of a run: a table on the terminal, the same table in Markdown, the figures as
//! JSON, both files in the output directory.

use std::path::Path;

use anyhow::Context;
use comfy_table::{ContentArrangement, Table};

/// A table with a header and rows of cells, printable and writable as Markdown.
pub struct Report {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Report {
    /// An empty table with these column names.
    pub fn new(header: &[&str]) -> Report {
        Report { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// For the terminal.
    pub fn terminal(&self) -> String {
        let mut table = Table::new();
        table.set_content_arrangement(ContentArrangement::Dynamic);
        table.set_header(&self.header);
        for row in &self.rows {
            table.add_row(row);
        }
        table.to_string()
    }

    /// As a Markdown table.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | ").replace('\n', " "));
        let mut text = line(&self.header);
        text.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            text.push_str(&line(row));
        }
        text
    }
}

/// Writes `<dir>/<name>.md` and `<dir>/<name>.json`.
pub fn write(
    dir: &Path,
    name: &str,
    markdown: &str,
    json: &serde_json::Value,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let md = dir.join(format!("{name}.md"));
    std::fs::write(&md, markdown).with_context(|| format!("cannot write {}", md.display()))?;
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(json).expect("a JSON value serializes");
    std::fs::write(&path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("report written: {} and {}", md.display(), path.display());
    Ok(())
}

/// Seconds with one decimal.
pub fn secs(value: f64) -> String {
    format!("{value:.1}")
}
