//! The services as operating-system processes: a release binary started with its environment
//! and a log file, measured from `/proc` (CPU seconds, peak and current resident memory),
//! killed with SIGKILL and started again with the same environment (so on the same ports),
//! or stopped with SIGTERM as an orchestrator would.
//!
//! Linux only: the measures read `/proc/<pid>/stat` and `/proc/<pid>/status`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a service may take to answer `/readyz` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Service::stop`] waits after SIGTERM before it sends SIGKILL. Longer than the
/// services' default shutdown grace, so a clean shutdown is never cut short.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);

/// With this variable set to a directory, every service runs under
/// `valgrind --tool=callgrind`, which writes the instructions it executed to
/// `<dir>/<service>.<pid>.out` when it exits (`dev/bench-instructions.sh` reads them).
pub const CALLGRIND_DIR: &str = "FR_CALLGRIND_DIR";

/// Why a service could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The release binary has not been built.
    #[error("{} is missing: run `cargo build --release --bins` first", .0.display())]
    MissingBinary(PathBuf),
    /// The log file could not be created or opened.
    #[error("cannot open the log file {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The process could not be spawned or signalled.
    #[error("cannot {action} {name}: {source}")]
    Os {
        /// What was attempted: `start`, `kill`.
        action: &'static str,
        /// The service.
        name: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The process runs but `/readyz` did not answer 200 in time.
    #[error("{name} did not become ready on port {port} within {timeout:?} (log: {log})")]
    NotReady {
        /// The service.
        name: String,
        /// Its operations port.
        port: u16,
        /// How long it was given.
        timeout: Duration,
        /// Its log file.
        log: String,
    },
    /// The process ended while it was expected to start.
    #[error("{name} exited during start-up ({status}; log: {log})")]
    Exited {
        /// The service.
        name: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: String,
    },
}

/// The workspace root of this checkout (where `dev/` and `target/` are).
pub fn workspace_root() -> PathBuf {
    // This crate is crates/stress of the workspace.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().and_then(Path::parent).unwrap_or(manifest_dir).to_owned()
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` of this checkout.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The path of a release binary of the workspace, which must have been built.
pub fn binary(name: &str) -> Result<PathBuf, ProcessError> {
    let path = target_dir().join("release").join(name);
    if path.exists() { Ok(path) } else { Err(ProcessError::MissingBinary(path)) }
}

/// A free port on the loopback address. The port is released before it is returned, so a race
/// with another program is possible in principle; on a development machine it does not happen.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binds a free loopback port")
        .port()
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (`getconf CLK_TCK`, usually 100).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces), so that
/// field `i` here is field `i + 3` of proc(5); empty once the process is gone.
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    rest.split_whitespace().map(str::to_owned).collect()
}

/// CPU seconds (user + system) process `pid` has used; with `reaped`, those of its children
/// that it has waited for too (0 once it is gone).
pub fn pid_cpu_seconds(pid: u32, reaped: bool) -> f64 {
    let fields = stat_fields(pid);
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let own = ticks(11) + ticks(12);
    let children = if reaped { ticks(13) + ticks(14) } else { 0.0 };
    (own + children) / clock_ticks()
}

/// Minor page faults process `pid` has taken (0 once it is gone).
pub fn pid_minor_faults(pid: u32) -> u64 {
    stat_fields(pid).get(7).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// CPU seconds of a server that forks a process per connection (Postgres): the parent, the
/// children it has reaped, and its live children. A child that exits between two readings
/// counts with its whole life in the second, so a difference of two readings is approximate
/// when connections come and go; the pipeline's pooled connections outlive its rounds.
pub fn process_tree_cpu_seconds(parent: u32) -> f64 {
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid).get(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(parent)
        })
        .map(|pid| pid_cpu_seconds(pid, false))
        .sum();
    pid_cpu_seconds(parent, true) + children
}

/// Idle seconds of the whole machine, summed over its cores (`/proc/stat`'s idle column).
pub fn machine_idle_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let idle = stat
        .lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(4))
        .and_then(|ticks| ticks.parse::<f64>().ok())
        .unwrap_or(0.0);
    idle / clock_ticks()
}

/// Whether `GET /readyz` on `127.0.0.1:port` answers 200.
pub async fn is_ready(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = b"GET /readyz HTTP/1.1\r\nHost: stress\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.1 200")
}

/// Waits until `GET /readyz` on `127.0.0.1:port` answers 200, at most [`READY_TIMEOUT`].
pub async fn wait_ready(port: u16, name: &str) -> Result<(), ProcessError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if is_ready(port).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ProcessError::NotReady {
        name: name.to_owned(),
        port,
        timeout: READY_TIMEOUT,
        log: String::new(),
    })
}

/// One service process, and what it cost.
///
/// Dropping a `Service` that still runs kills it (SIGKILL), so a failed run leaves no process
/// behind; [`Service::stop`] is the graceful way.
pub struct Service {
    name: String,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Child,
    /// Whether `child` has been waited for.
    reaped: bool,
    restarts: usize,
    /// CPU seconds at the start of a measurement; [`Service::cpu_seconds`] minus this is the
    /// cost of the measured part.
    pub cpu_at_start: f64,
    /// Minor page faults at the start of a measurement, as `cpu_at_start` for
    /// [`Service::minor_faults`].
    pub faults_at_start: u64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment holds file paths of keys: only the name, pid and log are shown.
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts release binary `binary_name` as service `name`, with `LOG_FORMAT=json`,
    /// `RUST_LOG=warn` and `env` (which may override them), its output going to `log` (created
    /// or truncated).
    pub fn start(
        name: impl Into<String>,
        binary_name: &str,
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Service, ProcessError> {
        Service::start_program(name, binary(binary_name)?, &[], env, log)
    }

    /// Starts `binary` with `args` as service `name`, as [`Service::start`] starts a release
    /// binary of the workspace (another program measured beside the services, say).
    pub fn start_program(
        name: impl Into<String>,
        binary: PathBuf,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Service, ProcessError> {
        let name = name.into();
        let mut all = vec![("LOG_FORMAT".to_owned(), "json".to_owned())];
        all.push(("RUST_LOG".to_owned(), "warn".to_owned()));
        all.extend(env.iter().map(|(key, value)| ((*key).to_owned(), value.clone())));
        let child = spawn(&name, &binary, args, &all, log, false)?;
        Ok(Service {
            name,
            binary,
            args: args.to_vec(),
            env: all,
            log: log.to_owned(),
            child,
            reaped: false,
            restarts: 0,
            cpu_at_start: 0.0,
            faults_at_start: 0,
        })
    }

    /// The service's name, e.g. `vault` or `ingestor-2`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id of the current process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// How many times [`Service::restart`] started it again.
    pub fn restarts(&self) -> usize {
        self.restarts
    }

    /// Whether the process still runs (an exited one is reaped here).
    pub fn is_running(&mut self) -> bool {
        if self.reaped {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                self.reaped = true;
                false
            }
        }
    }

    /// User plus system CPU seconds the current process has used (0 once it is gone).
    pub fn cpu_seconds(&self) -> f64 {
        pid_cpu_seconds(self.child.id(), false)
    }

    /// Minor page faults of the current process so far (0 once it is gone): each is a page the
    /// kernel mapped in on first touch, memory the allocator had given back or never used.
    pub fn minor_faults(&self) -> u64 {
        pid_minor_faults(self.child.id())
    }

    /// Peak resident memory of the current process (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// Resident memory of the current process now (`VmRSS`), in MiB (0 once it is gone).
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Waits until `GET /readyz` on `port` answers 200; fails at once if the process exits.
    pub async fn wait_ready(&mut self, port: u16) -> Result<(), ProcessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if is_ready(port).await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = true;
                return Err(ProcessError::Exited {
                    name: self.name.clone(),
                    status: status.to_string(),
                    log: self.log.display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ProcessError::NotReady {
            name: self.name.clone(),
            port,
            timeout: READY_TIMEOUT,
            log: self.log.display().to_string(),
        })
    }

    /// `kill -9`: SIGKILL, then waits until the process is gone. Nothing of its shutdown path
    /// runs: in-flight work is simply lost, as in a crash or an OOM kill.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        if self.reaped {
            return Ok(());
        }
        let os = |source| ProcessError::Os { action: "kill", name: self.name.clone(), source };
        // std's Child::kill sends SIGKILL on Unix.
        if let Err(err) = self.child.kill()
            && err.kind() != std::io::ErrorKind::InvalidInput
        {
            return Err(os(err));
        }
        self.child.wait().map_err(os)?;
        self.reaped = true;
        Ok(())
    }

    /// Starts the binary again with the same environment (so the same ports and identity),
    /// its output appended to the same log. The current process must be gone ([`Service::kill`]).
    pub fn restart(&mut self) -> Result<(), ProcessError> {
        assert!(!self.is_running(), "{} still runs: kill it before restarting it", self.name);
        self.child = spawn(&self.name, &self.binary, &self.args, &self.env, &self.log, true)?;
        self.reaped = false;
        self.restarts += 1;
        Ok(())
    }

    /// Stops the service as an orchestrator does: SIGTERM, a graceful shutdown, SIGKILL if it
    /// has not exited after 45 seconds.
    pub fn stop(mut self) {
        if !self.is_running() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.kill();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.kill();
        }
    }
}

fn spawn(
    name: &str,
    binary: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
    append: bool,
) -> Result<Child, ProcessError> {
    let log_error = |source| ProcessError::Log { path: log.to_owned(), source };
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .map_err(log_error)?;
    let mut command = match std::env::var_os(CALLGRIND_DIR) {
        Some(dir) => {
            let mut command = Command::new("valgrind");
            command
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}/{name}.%p.out", Path::new(&dir).display()))
                .arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command.args(args);
    command.stdout(file.try_clone().map_err(log_error)?).stderr(file).stdin(Stdio::null());
    command.envs(env.iter().map(|(key, value)| (key, value)));
    command.spawn().map_err(|source| ProcessError::Os {
        action: "start",
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns CPU in this thread for about `seconds`.
    fn burn(seconds: f64) {
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    #[test]
    fn a_process_cpu_time_grows_with_the_work_it_does() {
        let before = pid_cpu_seconds(std::process::id(), false);
        burn(0.3);
        let after = pid_cpu_seconds(std::process::id(), false);
        assert!(after - before >= 0.2, "{before} then {after}");
        assert_eq!(pid_cpu_seconds(u32::MAX, true), 0.0, "no such process: nothing");
    }

    #[test]
    fn a_process_page_faults_grow_as_it_touches_new_memory() {
        const SIZE: usize = 32 << 20;
        let before = pid_minor_faults(std::process::id());
        let mut memory = vec![0u8; SIZE];
        for page in memory.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&memory);
        let after = pid_minor_faults(std::process::id());
        // One fault per page, or per 2 MiB where the kernel maps huge pages.
        assert!(after - before >= (SIZE >> 21) as u64, "{before} then {after}");
        assert_eq!(pid_minor_faults(u32::MAX), 0, "no such process: nothing");
    }

    #[test]
    fn a_process_tree_counts_live_children_and_those_reaped() {
        use std::io::BufRead as _;
        use std::os::unix::process::CommandExt as _;
        // A parent shell with one child that burns CPU and exits (reaped by the shell, so in
        // its children's times), then another that burns until the group is killed, whose pid
        // the shell prints.
        let mut parent = Command::new("sh")
            .arg("-c")
            .arg("timeout 0.3 sh -c 'while :; do :; done'; sh -c 'while :; do :; done' & echo $!; wait")
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts sh");
        let pid = parent.id();
        let mut line = String::new();
        std::io::BufReader::new(parent.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reads the second child's pid");
        let live: u32 = line.trim().parse().expect("a pid");
        std::thread::sleep(Duration::from_millis(200));
        let tree = process_tree_cpu_seconds(pid);
        let parent_with_reaped = pid_cpu_seconds(pid, true);
        let reaped = parent_with_reaped - pid_cpu_seconds(pid, false);
        let live_cpu = pid_cpu_seconds(live, false);
        // The whole group: the shell and the child still running.
        let group = format!("-{pid}");
        let killed = Command::new("kill").args(["-KILL", "--", &group]).status();
        assert!(killed.is_ok_and(|status| status.success()), "kills the group");
        parent.wait().expect("reaps sh");
        assert!(reaped > 0.0, "the first child's time is in the parent's reaped times");
        assert!(live_cpu > 0.0, "the second child has run");
        // Read a moment apart, the live child may have gone on by a tick or two.
        let parts = parent_with_reaped + live_cpu;
        assert!((tree - parts).abs() < 0.05, "tree {tree} s, parts {parts} s");
    }

    #[test]
    fn the_machine_idle_time_is_read_and_only_grows() {
        let first = machine_idle_seconds();
        std::thread::sleep(Duration::from_millis(50));
        let second = machine_idle_seconds();
        assert!(first > 0.0);
        assert!(second >= first);
    }
}
