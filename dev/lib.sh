# shellcheck shell=bash disable=SC2034,SC2016  # sourced; in `bash -c '...'` the $1 are the inner shell's
# Helpers shared by dev/up.sh and dev/down.sh (sourced, not executable on its own).

# shellcheck source=dev/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

FR_SCRIPT="${FR_SCRIPT:-$(basename "$0" .sh)}"

say() { printf '[%s] %s\n' "$FR_SCRIPT" "$*"; }
warn() { printf '[%s] warning: %s\n' "$FR_SCRIPT" "$*" >&2; }
die() {
  printf '[%s] error: %s\n' "$FR_SCRIPT" "$*" >&2
  exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# One up.sh or down.sh at a time per checkout (say, several test processes running up.sh at
# once). The lock is fd 9 of this shell; whatever we start that outlives us must not inherit
# it, or it would hold the lock forever: see `9>&-` in as_pg_user and up.sh's start_detached.
take_lock() {
  command -v flock >/dev/null 2>&1 || return 0 # util-linux; without it, no serialization
  mkdir -p "$FR_DEV_DIR"
  exec 9>"$FR_DEV_DIR/lock"
  flock -w 300 9 || die "another dev/up.sh or dev/down.sh of this checkout has held $FR_DEV_DIR/lock for 5 minutes"
}

# Runs a command as the OS user that owns the PostgreSQL server: `postgres` when we are root
# (initdb/pg_ctl refuse to run as root), ourselves otherwise. From / so that the server user
# never inherits a working directory it cannot enter (e.g. /root).
as_pg_user() {
  if is_root; then
    (cd / && runuser -u "$FR_PG_OS_USER" -- "$@" 9>&-)
  else
    "$@" 9>&-
  fi
}

# True while the process exists and is not a zombie (kill -0 also succeeds on zombies, which
# linger until their parent, often init, reaps them).
proc_running() {
  local pid="$1" state
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != "Z" ]]
}

# Prints the pid recorded in a pid file if that process is alive and its command line contains
# `marker` (so a recycled pid of some unrelated process is never taken for ours).
live_pid() {
  local pidfile="$1" marker="$2" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  proc_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  printf '%s\n' "$pid"
}

# Sends SIGTERM, waits up to `timeout` seconds, then SIGKILL. Returns when the process is gone.
stop_pid() {
  local pid="$1" name="$2" timeout="${3:-10}" i
  if proc_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      proc_running "$pid" || break
      sleep 0.1
    done
  fi
  if proc_running "$pid"; then
    warn "$name (pid $pid) ignored SIGTERM for ${timeout}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      proc_running "$pid" || break
      sleep 0.1
    done
    proc_running "$pid" && die "$name (pid $pid) is still running after SIGKILL"
  fi
  # Our daemons are orphans (setsid, pg_ctl), so init reaps them, a moment later; wait a little
  # for that so that `pgrep` right after down.sh does not list a `<defunct>` entry.
  for ((i = 0; i < 30; i++)); do
    [[ -e "/proc/$pid" ]] || break
    sleep 0.1
  done
  return 0
}

# True when something accepts TCP connections on host:port.
port_open() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# Describes the listener on a port, for error messages (needs ss from iproute2; best effort).
port_owner() {
  local port="$1" out=""
  if command -v ss >/dev/null 2>&1; then
    out="$(ss -ltnpH "sport = :$port" 2>/dev/null | awk '{ $1=$1; print }' | head -3 || true)"
  fi
  printf '%s\n' "${out:-(ss could not tell which program; try: ss -ltnp 'sport = :$port')}"
}

# True when GET http://host:port/path answers 200. Plain bash, so it needs neither curl nor wget.
http_ok() {
  local host="$1" port="$2" path="$3"
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" "$3" "$1" "$2" >&3
    IFS= read -r status <&3 || exit 1
    [[ "$status" =~ ^HTTP/1\.[01]\ 200 ]]
  ' _ "$host" "$port" "$path" 2>/dev/null
}

# The cluster's data directory, whether target/dev/pg is the directory itself or a symlink to
# the /tmp fallback. Prints nothing when there is no cluster. `pg_data_dir "$FR_PG_STANDBY_LINK"`:
# the same for the standby.
pg_data_dir() {
  local link="${1:-$FR_PG_LINK}"
  if [[ -L "$link" ]]; then
    readlink "$link"
  elif [[ -d "$link" ]]; then
    (cd "$link" && pwd -P)
  fi
}

# pid of the running postmaster of a data directory, from its postmaster.pid (readable by root
# and by the owner; the first line is the pid).
pg_postmaster_pid() {
  local pgdata="$1" pid
  [[ -f "$pgdata/postmaster.pid" ]] || return 1
  pid="$(head -1 "$pgdata/postmaster.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && proc_running "$pid" || return 1
  printf '%s\n' "$pid"
}

FR_SQS_PIDFILE="$FR_RUN_DIR/fauxqs.pid"
FR_KMS_PIDFILE="$FR_RUN_DIR/moto.pid"
# Substrings of the emulators' command lines (see live_pid); absolute paths of this checkout.
FR_SQS_MARKER="$FR_ROOT/dev/fauxqs.mjs"
FR_KMS_MARKER="$FR_ROOT/.venv/bin/moto_server"
