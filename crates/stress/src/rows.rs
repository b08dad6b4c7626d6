//! What a run reads from Postgres: the row count while it runs; rows, duplicates and message
//! ids at the end; the server's durability settings; and dropping a run's database.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use fetchreward_testkit::Stack;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Totals {
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = BigInt)]
    duplicates: i64,
    #[diesel(sql_type = BigInt)]
    ip_tokens: i64,
    #[diesel(sql_type = BigInt)]
    device_tokens: i64,
}

#[derive(diesel::QueryableByName)]
struct MessageId {
    #[diesel(sql_type = Nullable<Text>)]
    message_id: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    setting: String,
}

/// A new connection each time: the callers keep asking while Postgres restarts.
async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(url).await.context("cannot connect to the local Postgres")
}

/// Rows in `user_logins`.
pub async fn count(url: &str) -> anyhow::Result<u64> {
    let mut conn = connect(url).await?;
    let counted: Vec<Count> = diesel::sql_query("SELECT count(*) AS n FROM user_logins")
        .load(&mut conn)
        .await
        .context("cannot count the rows of user_logins")?;
    Ok(counted.into_iter().next().map_or(0, |c| c.n as u64))
}

/// Waits until `user_logins` holds at least `at_least` rows and returns the count then. Errors
/// (Postgres restarting) are retried until `timeout`.
pub async fn wait_for_rows(url: &str, at_least: u64, timeout: Duration) -> anyhow::Result<u64> {
    let started = Instant::now();
    loop {
        if let Ok(rows) = count(url).await
            && rows >= at_least
        {
            return Ok(rows);
        }
        if started.elapsed() > timeout {
            bail!("user_logins did not reach {at_least} rows within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `user_logins` holds at the end of a run.
#[derive(Debug)]
pub struct Rows {
    /// `count(*)`.
    pub rows: u64,
    /// `count(*) - count(DISTINCT message_id)`: rows written twice for one message.
    pub duplicates: u64,
    /// Distinct `masked_ip` tokens.
    pub ip_tokens: u64,
    /// Distinct `masked_device_id` tokens.
    pub device_tokens: u64,
    /// The distinct message ids.
    pub message_ids: HashSet<String>,
}

/// Reads rows, duplicates and message ids.
pub async fn read(url: &str) -> anyhow::Result<Rows> {
    let mut conn = connect(url).await?;
    let totals: Vec<Totals> = diesel::sql_query(
        "SELECT count(*) AS rows, count(*) - count(DISTINCT message_id) AS duplicates, \
         count(DISTINCT masked_ip) AS ip_tokens, count(DISTINCT masked_device_id) AS device_tokens \
         FROM user_logins",
    )
    .load(&mut conn)
    .await
    .context("cannot count the rows of user_logins")?;
    let ids: Vec<MessageId> = diesel::sql_query("SELECT message_id FROM user_logins")
        .load(&mut conn)
        .await
        .context("cannot read the message ids of user_logins")?;
    let totals = totals.into_iter().next().context("count(*) answered no row")?;
    Ok(Rows {
        rows: totals.rows as u64,
        duplicates: totals.duplicates as u64,
        ip_tokens: totals.ip_tokens as u64,
        device_tokens: totals.device_tokens as u64,
        message_ids: ids.into_iter().filter_map(|row| row.message_id).collect(),
    })
}

/// The settings that make commits survive a crash, by name: `fsync`, `synchronous_commit`,
/// `full_page_writes` (what `SHOW` answers, `on` or `off`).
pub async fn durability(stack: &Stack) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut conn = connect(&stack.database_url_of("postgres")).await?;
    let mut settings = Vec::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes"] {
        let shown: Vec<Setting> = diesel::sql_query("SELECT current_setting($1) AS setting")
            .bind::<Text, _>(name)
            .load(&mut conn)
            .await
            .with_context(|| format!("SHOW {name} failed"))?;
        let value = shown.into_iter().next().map(|s| s.setting).unwrap_or_default();
        settings.push((name, value));
    }
    Ok(settings)
}

/// Drops a run's database (closing any session still on it).
pub async fn drop_database(stack: &Stack, name: &str) -> anyhow::Result<()> {
    let mut conn = connect(&stack.database_url_of("postgres")).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot drop database {name}"))?;
    Ok(())
}
