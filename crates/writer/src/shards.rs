//! `user_logins` hash-distributed across shard servers with PostgreSQL's own machinery.
//!
//! The coordinator's `user_logins` becomes a table partitioned `BY HASH (message_id)` whose
//! partitions are postgres_fdw foreign tables, `user_logins_shard_N`, each the `user_logins` of
//! one shard. Every shard is an ordinary writer database: the writer's migrations run there,
//! so each shard's table is partitioned by month and has the idempotency key
//! `(message_id, create_date)`. A message's rows always hash to the same shard, so a redelivery
//! meets its first copy there and `ON CONFLICT DO NOTHING`, which postgres_fdw sends along,
//! drops it. The writer keeps writing to one endpoint, the coordinator; analysts query it and
//! postgres_fdw pushes filters and aggregates down to the shards where it can.
//!
//! The writer finds a coordinator's table at start-up and writes it counted: it asks the shards
//! which of a chunk's rows are present, then inserts without `RETURNING`, which postgres_fdw
//! sends as multi-row inserts of up to `batch_size` (1,000) rows instead of one row a round
//! trip ([`crate::LoginStore::open`]).
//!
//! The coordinator keeps no unique index of its own (a partitioned table whose partitions are
//! foreign tables cannot have one): uniqueness is the shards' job, which is why the writer's
//! insert names no conflict target. The monthly partitions are made on every shard by the
//! coordinator's `fetchreward_ensure_login_partitions`, which forwards the writer's daily call
//! to each shard through dblink and the same foreign servers.
//!
//! Set-up (`fetchreward shards init`) is done once, on a coordinator whose `user_logins` is
//! not yet sharded; rows it already holds move to their shards in the same transaction.

use fetchreward_runtime::postgres::{PgConfig, PgError};
use tokio_postgres::Client;

/// The foreign servers' name prefix: `fetchreward_shard_0`, `fetchreward_shard_1`, …
pub const SERVER_PREFIX: &str = "fetchreward_shard_";

/// Where one shard is, as its foreign server and user mapping name it.
#[derive(Clone)]
pub struct Shard {
    /// Its `user_logins` database.
    pub database: PgConfig,
    /// Host, port, database name, user and password, read from its URL.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Its database name.
    pub dbname: String,
    /// The role the coordinator logs in as.
    pub user: String,
    /// Its password, if any (kept in the user mapping; never printed).
    pub password: Option<String>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// A shard at `url` (`postgres://user:password@host:port/db`).
    pub fn from_url(url: &str) -> Result<Shard, String> {
        let parsed: tokio_postgres::Config =
            url.parse().map_err(|err| format!("a shard URL is not a postgres:// URL: {err}"))?;
        let host = match parsed.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            _ => return Err("a shard URL must name exactly one TCP host".to_owned()),
        };
        let port = parsed.get_ports().first().copied().unwrap_or(5432);
        let dbname = parsed.get_dbname().ok_or("a shard URL must name its database")?.to_owned();
        let user = parsed.get_user().ok_or("a shard URL must name its user")?.to_owned();
        let password =
            parsed.get_password().map(|password| String::from_utf8_lossy(password).into_owned());
        Ok(Shard { database: PgConfig::plain(url), host, port, dbname, user, password })
    }
}

/// Why set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A shard's migrations failed.
    #[error("migrating shard {index}: {source}")]
    Migrate {
        /// Which shard.
        index: usize,
        /// What failed.
        source: PgError,
    },
    /// A statement on the coordinator failed.
    #[error("setting up the coordinator: {0}")]
    Coordinator(#[from] tokio_postgres::Error),
    /// The coordinator is sharded already, or the request makes no sense.
    #[error("{0}")]
    Refused(String),
}

/// Quotes a literal for DDL that takes no parameters (`CREATE SERVER … OPTIONS`).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Distributes the coordinator's `user_logins` across `shards`: runs the writer's migrations
/// on each shard, creates the foreign servers, user mappings and hash partitions on the
/// coordinator (which the writer's migrations must have run on), and moves the rows it holds.
/// Returns the rows moved.
pub async fn init(coordinator: &mut Client, shards: &[Shard]) -> Result<u64, ShardError> {
    if shards.is_empty() {
        return Err(ShardError::Refused("name at least one shard".to_owned()));
    }
    let sharded: bool = coordinator
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname LIKE 'fetchreward\\_shard\\_%')",
            &[],
        )
        .await?
        .get(0);
    if sharded {
        return Err(ShardError::Refused(
            "user_logins is sharded already on this coordinator (foreign servers fetchreward_shard_*)"
                .to_owned(),
        ));
    }
    for (index, shard) in shards.iter().enumerate() {
        crate::migrate(&shard.database)
            .await
            .map_err(|source| ShardError::Migrate { index, source })?;
    }
    let modulus = shards.len();
    let tx = coordinator.transaction().await?;
    tx.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS postgres_fdw; \
         CREATE EXTENSION IF NOT EXISTS dblink SCHEMA public; \
         LOCK TABLE public.user_logins IN ACCESS EXCLUSIVE MODE; \
         ALTER TABLE public.user_logins RENAME TO user_logins_before_shards; \
         CREATE TABLE public.user_logins \
             (LIKE public.user_logins_before_shards INCLUDING DEFAULTS INCLUDING CONSTRAINTS) \
             PARTITION BY HASH (message_id);",
    )
    .await?;
    for (index, shard) in shards.iter().enumerate() {
        let server = format!("{SERVER_PREFIX}{index}");
        let mut mapping = format!("user {}", literal(&shard.user));
        if let Some(password) = &shard.password {
            mapping.push_str(&format!(", password {}", literal(password)));
        }
        tx.batch_execute(&format!(
            "CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw \
                 OPTIONS (host {host}, port {port}, dbname {dbname}, \
                          fetch_size '10000', batch_size '1000', async_capable 'true'); \
             CREATE USER MAPPING FOR PUBLIC SERVER {server} OPTIONS ({mapping}); \
             CREATE FOREIGN TABLE public.user_logins_shard_{index} \
                 PARTITION OF public.user_logins FOR VALUES WITH (MODULUS {modulus}, REMAINDER {index}) \
                 SERVER {server} OPTIONS (schema_name 'public', table_name 'user_logins');",
            host = literal(&shard.host),
            port = literal(&shard.port.to_string()),
            dbname = literal(&shard.dbname),
        ))
        .await?;
    }
    let moved = tx
        .execute(
            "INSERT INTO public.user_logins SELECT * FROM public.user_logins_before_shards \
             ON CONFLICT DO NOTHING",
            &[],
        )
        .await?;
    tx.batch_execute(FORWARD_PARTITIONS).await?;
    tx.batch_execute("DROP TABLE public.user_logins_before_shards CASCADE").await?;
    tx.commit().await?;
    Ok(moved)
}

/// The coordinator's version of the writer's partition function: the same name and answer,
/// run on every shard through dblink.
const FORWARD_PARTITIONS: &str = "
CREATE OR REPLACE FUNCTION public.fetchreward_ensure_login_partitions(from_day date, months_ahead integer)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    server name;
    made integer := 0;
    on_shard integer;
BEGIN
    FOR server IN
        SELECT srvname FROM pg_foreign_server WHERE srvname LIKE 'fetchreward\\_shard\\_%' ORDER BY srvname
    LOOP
        SELECT created INTO on_shard
        FROM public.dblink(server::text,
                           format('SELECT public.fetchreward_ensure_login_partitions(%L, %s)',
                                  from_day, months_ahead)) AS answer(created integer);
        made := made + on_shard;
    END LOOP;
    RETURN made;
END
$$;
DROP FUNCTION IF EXISTS public.fetchreward_ensure_login_partition(date);
";

/// The shards of a coordinator and the rows each holds.
pub async fn row_counts(coordinator: &Client) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let rows = coordinator
        .query(
            "SELECT tableoid::regclass::text, count(*) FROM public.user_logins GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
}
