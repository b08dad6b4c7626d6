//! The audit spool: where Detokenize's audit rows go while the primary cannot take them.
//!
//! With a read replica, Detokenize can answer while the primary is down, but only if its audit
//! row is kept somewhere that outlives the process. With `VAULT_AUDIT_SPOOL_FILE` set, a
//! Detokenize audit row the primary refuses for being unreachable is appended to that file as
//! one JSON line and flushed to disk (`fsync`) before the answer leaves; without the setting,
//! or when the file cannot be written, the call fails closed as before. A background task
//! moves the spooled rows into the trail, oldest first, once the primary answers again: each
//! gets the next id at the end of the hash chain and keeps the time of the call it records.
//! After each row is committed the file is rewritten without it, so a crash in between can
//! record one row twice, never lose one.
//!
//! The file lives on the replica's own volume (a PersistentVolume in Kubernetes); it holds
//! what an audit row holds (caller, purpose, counts), never a value or a token.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditEntry, AuditRecord};
use crate::crypto::AuditChain;
use crate::metrics;
use crate::store::VaultStore;

/// How often spooled rows are offered to the primary.
pub const REPLAY_INTERVAL: Duration = Duration::from_secs(5);

/// The spool file, and a lock that keeps appends and replays apart.
#[derive(Debug)]
pub struct AuditSpool {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditSpool {
    /// A spool at `path` (created on the first append).
    pub fn new(path: PathBuf) -> Self {
        AuditSpool { path, lock: Mutex::new(()) }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry`, timed now, and flushes it to disk.
    pub async fn append(&self, entry: &AuditEntry) -> std::io::Result<()> {
        let at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_micros()).unwrap_or(i64::MAX));
        let mut line = serde_json::to_vec(&AuditRecord::of(entry, 0, at_us))?;
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        ::metrics::counter!(metrics::AUDIT_SPOOL, "step" => "spooled").increment(1);
        Ok(())
    }

    /// The rows waiting, oldest first.
    fn pending(&self) -> std::io::Result<Vec<AuditRecord>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).map_err(std::io::Error::other))
            .collect()
    }

    /// Rewrites the file with `rows` (atomically: a new file renamed over it).
    fn keep(&self, rows: &[AuditRecord]) -> std::io::Result<()> {
        let mut next = self.path.clone().into_os_string();
        next.push(".next");
        let next = PathBuf::from(next);
        let mut file = std::fs::File::create(&next)?;
        for row in rows {
            serde_json::to_writer(&mut file, row)?;
            file.write_all(b"\n")?;
        }
        file.sync_data()?;
        std::fs::rename(&next, &self.path)
    }

    /// Moves the spooled rows into the trail; returns how many went. Stops at the first row
    /// the primary does not take (it is tried again next time).
    pub async fn replay(&self, store: &VaultStore, chain: &AuditChain) -> std::io::Result<usize> {
        let _guard = self.lock.lock().await;
        let mut rows = self.pending()?;
        let mut moved = 0;
        while let Some(row) = rows.first() {
            if let Err(err) = store.audit_spooled(row, chain).await {
                tracing::debug!(error = %err, waiting = rows.len(), "spooled audit rows wait for the primary");
                break;
            }
            rows.remove(0);
            self.keep(&rows)?;
            moved += 1;
            ::metrics::counter!(metrics::AUDIT_SPOOL, "step" => "replayed").increment(1);
        }
        if moved > 0 {
            tracing::info!(moved, waiting = rows.len(), "spooled audit rows moved into the trail");
        }
        Ok(moved)
    }

    /// [`Self::replay`] every `interval` until `stop`.
    pub async fn replay_every(
        &self,
        store: &VaultStore,
        chain: &AuditChain,
        interval: Duration,
        stop: CancellationToken,
    ) {
        loop {
            if let Err(err) = self.replay(store, chain).await {
                tracing::error!(error = %err, spool = %self.path.display(), "the audit spool cannot be read or rewritten");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
