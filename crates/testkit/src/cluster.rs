//! Throwaway PostgreSQL clusters of a test's own, beside the local stack's: a primary that can
//! be stopped, a hot standby streaming from it (`pg_basebackup -R`), shard servers.
//!
//! The server binaries are those of the stack (`FR_PG_BINDIR`, else the newest
//! `/usr/lib/postgresql/*/bin`). As root, they run as the `postgres` OS user (`FR_PG_OS_USER`),
//! as `make up` does. Each cluster lives in a temporary directory and listens on 127.0.0.1
//! only, on a free port, with trust authentication and `fsync` off; it is stopped and removed
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    bindir: PathBuf,
    running: bool,
}

fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FR_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (or set FR_PG_BINDIR)")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("initdb under /usr/lib/postgresql/*/bin").1
}

/// Whether this process runs as root (asked once).
fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0")
    })
}

fn os_user() -> String {
    std::env::var("FR_PG_OS_USER").unwrap_or_else(|_| "postgres".to_owned())
}

/// A server binary's command, run as the postgres OS user when we are root.
fn command(bindir: &Path, program: &str) -> Command {
    let binary = bindir.join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", &os_user(), "--"]).arg(&binary);
        command
    } else {
        Command::new(&binary)
    }
}

/// Runs a server binary, panicking with its output when it fails.
fn run(bindir: &Path, program: &str, args: &[&str]) {
    let out = command(bindir, program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program}: {err}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it moments later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port()
}

/// A new empty directory the postgres OS user owns, mode 0700.
fn cluster_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique_name(&format!("fr_{name}")));
    std::fs::create_dir(&dir).expect("a cluster directory");
    if is_root() {
        let out = Command::new("chown").arg(format!("{}:", os_user())).arg(&dir).output();
        assert!(out.is_ok_and(|out| out.status.success()), "chown of {}", dir.display());
    }
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
hot_standby = on
hot_standby_feedback = on
shared_buffers = 32MB
max_connections = 50
";

const HBA: &str = "
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
";

impl PgCluster {
    /// Creates and starts a primary.
    pub fn start(name: &str) -> PgCluster {
        let bindir = bindir();
        let dir = cluster_dir(name);
        let data = dir.join("data");
        let data_arg = data.to_str().expect("a UTF-8 path");
        run(
            &bindir,
            "initdb",
            &[
                "-D",
                data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let port = free_port();
        let cluster = PgCluster { dir, port, bindir, running: false };
        cluster.append_file("postgresql.conf", &format!("{SETTINGS}port = {port}\n"));
        cluster.append_file("pg_hba.conf", HBA);
        cluster.started()
    }

    /// Makes a hot standby of `primary` with `pg_basebackup -R`, streaming through a
    /// replication slot of its own, and starts it.
    pub fn standby_of(primary: &PgCluster, name: &str) -> PgCluster {
        let dir = cluster_dir(name);
        let data = dir.join("data");
        let slot = crate::unique_name("slot");
        let port = primary.port.to_string();
        run(
            &primary.bindir,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-C",
                "-S",
                &slot,
            ],
        );
        let port = free_port();
        let standby = PgCluster { dir, port, bindir: primary.bindir.clone(), running: false };
        // The copied configuration names the primary's port; the last setting wins.
        standby.append_file("postgresql.conf", &format!("port = {port}\n"));
        standby.started()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn append_file(&self, file: &str, text: &str) {
        use std::io::Write as _;
        let path = self.data().join(file);
        let mut out = std::fs::OpenOptions::new().append(true).open(&path).expect("a config file");
        out.write_all(text.as_bytes()).expect("writes the config file");
    }

    fn started(mut self) -> PgCluster {
        self.start_again();
        self
    }

    /// Starts it again after [`PgCluster::stop`].
    pub fn start_again(&mut self) {
        if !self.running {
            let data = self.data();
            let log = self.dir.join("server.log");
            let (data, log) = (data.to_str().unwrap(), log.to_str().unwrap());
            run(&self.bindir, "pg_ctl", &["-D", data, "-l", log, "-w", "-t", "60", "-s", "start"]);
            self.running = true;
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on it, as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops it (fast shutdown: sessions are disconnected).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data();
            run(
                &self.bindir,
                "pg_ctl",
                &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "-s", "stop"],
            );
            self.running = false;
        }
    }

    /// Runs SQL statements on database `name` with the superuser, returning the first column of
    /// the last statement's rows.
    pub async fn sql(&self, name: &str, statements: &str) -> Vec<String> {
        let (client, connection) = tokio_postgres::connect(&self.url(name), tokio_postgres::NoTls)
            .await
            .expect("connects");
        let connection = tokio::spawn(connection);
        let mut last = Vec::new();
        for message in client.simple_query(statements).await.expect("the statements run") {
            match message {
                // A new result set: only the last statement's rows are kept.
                tokio_postgres::SimpleQueryMessage::RowDescription(_) => last.clear(),
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    last.push(row.get(0).unwrap_or_default().to_owned());
                }
                _ => {}
            }
        }
        drop(client);
        let _ = connection.await;
        last
    }

    /// Creates database `name`; returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE {name}")).await;
        self.url(name)
    }

    /// Waits until `query` on database `name` returns `expected` (a standby catching up).
    pub async fn wait_for(&self, name: &str, query: &str, expected: &str, within: Duration) {
        let started = Instant::now();
        loop {
            let got = self.sql(name, query).await;
            if got.first().map(String::as_str) == Some(expected) {
                return;
            }
            assert!(
                started.elapsed() < within,
                "{query} gave {got:?}, not {expected}, within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = command(&self.bindir, "pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-s", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
