//! The database, for the commands that read or change `user_logins` directly (archive,
//! counts): `DATABASE_URL` (or `DATABASE_URL_FILE`), `DATABASE_CA_FILE` and `DATABASE_SSLMODE`
//! as the services read them, and `DATABASE_READ_URL`, a replica, for the read-only ones.

use anyhow::Context as _;
use fetchreward_runtime::config::{ConfigReader, ProcessEnv};
use fetchreward_runtime::postgres::{self, PgClientPool, PgConfig};

/// Which server a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The primary: the command changes something.
    Write,
    /// `DATABASE_READ_URL` when it is set (a replica), else the primary.
    Read,
}

/// A pool of one connection to the server `access` asks for, checked to answer.
pub async fn connect(access: Access) -> anyhow::Result<PgClientPool> {
    let env = ProcessEnv;
    let mut reader = ConfigReader::new(&env);
    let primary = PgConfig::from_env(&mut reader).map(|config| PgConfig { pool_size: 1, ..config });
    let replica = match (&primary, access) {
        (Some(primary), Access::Read) => {
            primary.sibling_from_env(&mut reader, "DATABASE_READ_URL", 1)
        }
        _ => None,
    };
    reader.finish()?;
    let config = replica.or(primary).context("DATABASE_URL is not set")?;
    let pool = postgres::client_pool(&config)?;
    postgres::client(&pool)
        .await
        .with_context(|| format!("the database of {} does not answer", config.variable))?;
    Ok(pool)
}
