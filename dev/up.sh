#!/usr/bin/env bash
# Starts the local stack without Docker: a throwaway PostgreSQL cluster (with FR_PG_STANDBY=1
# also a hot standby of it), fauxqs (SQS) and moto (KMS and S3), all on FR_HOST (127.0.0.1),
# creates the queues, the KMS keys and the archive bucket, and prints/writes the environment
# that services and tests need (target/dev/env). Safe to run again: what already runs is
# reused. Stop everything with dev/down.sh. Settings: dev/env.sh; docs/local-stack.md.
set -euo pipefail

FR_SCRIPT=up
# shellcheck source=dev/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$FR_ROOT"
take_lock

# ---------------------------------------------------------------------------------------------
# 1. The machine has what we need (fail early, saying what to do).
# ---------------------------------------------------------------------------------------------
problems=()
command -v node >/dev/null 2>&1 || problems+=("node is missing: install Node.js 20 or newer (Debian 12's own nodejs package is 18, too old for fauxqs)")
command -v npm >/dev/null 2>&1 || problems+=("npm is missing: install it with Node.js 20 or newer")
if command -v node >/dev/null 2>&1; then
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  ((node_major >= 20)) || problems+=("node $(node --version) is too old: fauxqs needs Node.js 20 or newer")
fi
if ! command -v python3 >/dev/null 2>&1; then
  problems+=("python3 is missing: install Python 3.9+ with venv (Debian: apt-get install python3 python3-venv)")
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  problems+=("python3 cannot create virtual environments: apt-get install python3-venv")
fi
command -v openssl >/dev/null 2>&1 || problems+=("openssl is missing (Postgres TLS certificates): apt-get install openssl")
PG_BINDIR="$(fr_find_pg_bindir)"
if [[ -z "$PG_BINDIR" || ! -x "$PG_BINDIR/initdb" || ! -x "$PG_BINDIR/pg_ctl" ]]; then
  problems+=("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: apt-get install postgresql (or set FR_PG_BINDIR)")
fi
if is_root; then
  command -v runuser >/dev/null 2>&1 || problems+=("runuser is missing (util-linux): needed to run PostgreSQL as $FR_PG_OS_USER")
  id -u "$FR_PG_OS_USER" >/dev/null 2>&1 ||
    problems+=("running as root, but OS user '$FR_PG_OS_USER' (which must run the PostgreSQL server) does not exist: apt-get install postgresql creates it, or set FR_PG_OS_USER to another unprivileged user")
fi
if ((${#problems[@]})); then
  for p in "${problems[@]}"; do printf '[up] error: %s\n' "$p" >&2; done
  exit 1
fi
# Client tools of the same version as the server (pg_isready, psql live next to initdb on Debian).
PG_ISREADY="$PG_BINDIR/pg_isready"
[[ -x "$PG_ISREADY" ]] || PG_ISREADY="$(command -v pg_isready || true)"
PSQL="$PG_BINDIR/psql"
[[ -x "$PSQL" ]] || PSQL="$(command -v psql || true)"
[[ -n "$PG_ISREADY" && -n "$PSQL" ]] || die "pg_isready/psql not found: apt-get install postgresql-client"

mkdir -p "$FR_LOG_DIR" "$FR_RUN_DIR"

# ---------------------------------------------------------------------------------------------
# 2. Project-local packages, installed only when missing or when their pins changed.
#    Stamps record a hash of the lock/requirements file plus the runtime version.
# ---------------------------------------------------------------------------------------------
npm_stamp="$FR_DEV_DIR/npm.stamp"
npm_want="$(sha256sum package.json package-lock.json | sha256sum | cut -c1-16) node-$(node --version)"
if [[ ! -f node_modules/fauxqs/package.json || "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_want" ]]; then
  say "installing fauxqs with npm ci (package-lock.json) ..."
  # --ignore-scripts: nothing in this tree needs install scripts, so none may run.
  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >"$FR_LOG_DIR/npm-ci.log" 2>&1 ||
    { tail -30 "$FR_LOG_DIR/npm-ci.log" >&2; die "npm ci failed (full log: $FR_LOG_DIR/npm-ci.log)"; }
  printf '%s\n' "$npm_want" >"$npm_stamp"
fi

venv_stamp="$FR_DEV_DIR/venv.stamp"
# A venv is tied to its Python and to its own path (scripts in .venv/bin name them both), so a
# change of either (a new Python, a copied checkout) means starting over; a change of
# requirements.txt only means installing again.
venv_base="$(python3 --version 2>&1 | tr ' ' '-') $FR_ROOT/.venv"
venv_want="$(sha256sum dev/requirements.txt | cut -c1-16) $venv_base"
if [[ ! -x .venv/bin/moto_server || "$(cat "$venv_stamp" 2>/dev/null)" != "$venv_want" ]]; then
  if [[ -d .venv && "$(cut -d' ' -f2- "$venv_stamp" 2>/dev/null)" != "$venv_base" ]]; then
    rm -rf .venv
  fi
  say "installing moto into .venv (dev/requirements.txt) ..."
  {
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/python -m pip install --disable-pip-version-check -q -r dev/requirements.txt
  } >"$FR_LOG_DIR/pip-install.log" 2>&1 ||
    { tail -30 "$FR_LOG_DIR/pip-install.log" >&2; die "installing dev/requirements.txt failed (full log: $FR_LOG_DIR/pip-install.log)"; }
  printf '%s\n' "$venv_want" >"$venv_stamp"
fi

# ---------------------------------------------------------------------------------------------
# 3. What already runs (reused), and ports held by something else (refused, before we start
#    anything, so a bad environment leaves nothing half-started behind).
# ---------------------------------------------------------------------------------------------
sqs_pid="$(live_pid "$FR_SQS_PIDFILE" "$FR_SQS_MARKER" || true)"
kms_pid="$(live_pid "$FR_KMS_PIDFILE" "$FR_KMS_MARKER" || true)"
PGDATA="$(pg_data_dir || true)"
pg_pid=""
[[ -n "$PGDATA" ]] && pg_pid="$(pg_postmaster_pid "$PGDATA" || true)"
case "$FR_PG_STANDBY" in
  0 | 1) ;;
  *) die "FR_PG_STANDBY must be 0 (no standby) or 1 (a hot standby on FR_PG_STANDBY_PORT), not '$FR_PG_STANDBY'" ;;
esac
if ((FR_PG_STANDBY)) && [[ "$FR_PG_STANDBY_PORT" == "$FR_PG_PORT" ]]; then
  die "FR_PG_STANDBY_PORT must differ from FR_PG_PORT ($FR_PG_PORT)"
fi
STANDBY_PGDATA="$(pg_data_dir "$FR_PG_STANDBY_LINK" || true)"
standby_pid=""
[[ -n "$STANDBY_PGDATA" ]] && standby_pid="$(pg_postmaster_pid "$STANDBY_PGDATA" || true)"

busy=()
check_port() { # name variable our_pid
  local port="${!2}"
  if [[ -z "$3" ]] && port_open "$FR_HOST" "$port"; then
    busy+=("$1 port $FR_HOST:$port is already in use by another program: $(port_owner "$port")")
    busy+=("  -> stop that program, or choose another port, e.g. $2=$((port + 1000)) make up")
  fi
}
check_port PostgreSQL FR_PG_PORT "$pg_pid"
((FR_PG_STANDBY)) && check_port "PostgreSQL standby" FR_PG_STANDBY_PORT "$standby_pid"
check_port "SQS (fauxqs)" FR_SQS_PORT "$sqs_pid"
check_port "KMS (moto)" FR_KMS_PORT "$kms_pid"
if ((${#busy[@]})); then
  for b in "${busy[@]}"; do
    if [[ "$b" == "  ->"* ]]; then printf '[up] %s\n' "$b" >&2; else printf '[up] error: %s\n' "$b" >&2; fi
  done
  exit 1
fi

# Starts a program detached from this shell: its own session (setsid), so it outlives the
# terminal or `make` that started it and gets no SIGHUP/SIGINT meant for them; stdin from
# /dev/null and output to a log, so it holds no pipe of ours open. The pid file is written by
# the process itself (the bash that then execs the program), so it is always the right pid.
start_detached() { # pidfile logfile command...
  local pidfile="$1" logfile="$2"
  shift 2
  printf '\n=== %s started by dev/up.sh\n' "$(date -u +%FT%TZ)" >>"$logfile"
  # shellcheck disable=SC2016 # $$ and $1 belong to the inner bash
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
}

# Waits until `check` succeeds, the process dies, or FR_READY_TIMEOUT passes.
wait_ready() { # name pidfile marker logfile check...
  local name="$1" pidfile="$2" marker="$3" logfile="$4" i
  shift 4
  for ((i = 0; i < FR_READY_TIMEOUT * 5; i++)); do
    if "$@"; then return 0; fi
    if ((i > 5)) && ! live_pid "$pidfile" "$marker" >/dev/null; then
      tail -20 "$logfile" >&2
      die "$name exited during start-up (log above: $logfile)"
    fi
    sleep 0.2
  done
  tail -20 "$logfile" >&2
  die "$name did not answer within ${FR_READY_TIMEOUT}s (log above: $logfile)"
}

# Environment for the emulators and setup scripts.
export FR_HOST FR_SQS_PORT FR_KMS_PORT FR_AWS_REGION FR_AWS_ACCESS_KEY_ID FR_AWS_SECRET_ACCESS_KEY \
  FR_SQS_QUEUE FR_SQS_DLQ FR_KMS_ALIAS FR_DLQ_KMS_ALIAS FR_S3_ARCHIVE_BUCKET

# ---------------------------------------------------------------------------------------------
# 4. KMS and S3 (moto). First, because whether it had to be started decides the fate of the
#    cluster.
# ---------------------------------------------------------------------------------------------
kms_fresh=0
if [[ -n "$kms_pid" ]]; then
  say "KMS and S3 (moto) already running, pid $kms_pid"
else
  kms_fresh=1
  say "starting KMS and S3 (moto) on $FR_HOST:$FR_KMS_PORT"
  start_detached "$FR_KMS_PIDFILE" "$FR_LOG_DIR/moto.log" \
    "$FR_ROOT/.venv/bin/moto_server" -H "$FR_HOST" -p "$FR_KMS_PORT"
fi

# ---------------------------------------------------------------------------------------------
# 5. SQS (fauxqs).
# ---------------------------------------------------------------------------------------------
if [[ -n "$sqs_pid" ]]; then
  say "SQS (fauxqs) already running, pid $sqs_pid"
else
  say "starting SQS (fauxqs) on $FR_HOST:$FR_SQS_PORT"
  start_detached "$FR_SQS_PIDFILE" "$FR_LOG_DIR/fauxqs.log" node "$FR_SQS_MARKER"
fi

# Both emulators start in parallel; wait for them here.
wait_ready "KMS (moto)" "$FR_KMS_PIDFILE" "$FR_KMS_MARKER" "$FR_LOG_DIR/moto.log" \
  http_ok "$FR_HOST" "$FR_KMS_PORT" /moto-api/
wait_ready "SQS (fauxqs)" "$FR_SQS_PIDFILE" "$FR_SQS_MARKER" "$FR_LOG_DIR/fauxqs.log" \
  http_ok "$FR_HOST" "$FR_SQS_PORT" /health

# ---------------------------------------------------------------------------------------------
# 6. PostgreSQL: a throwaway cluster of this checkout.
# ---------------------------------------------------------------------------------------------
pg_major="$("$PG_BINDIR/pg_ctl" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')"

# The standby goes whenever its primary does (a copy of a cluster that is gone), when it was
# made from another cluster, and with FR_PG_STANDBY=0.
remove_standby() { # why
  [[ -n "$STANDBY_PGDATA" || -L "$FR_PG_STANDBY_LINK" || -e "$FR_PG_STANDBY_LINK" ]] || return 0
  say "removing the Postgres standby at ${STANDBY_PGDATA:-$FR_PG_STANDBY_LINK}: $1"
  if [[ -n "$standby_pid" ]]; then
    as_pg_user "$PG_BINDIR/pg_ctl" -D "$STANDBY_PGDATA" -m fast -w -t 30 -s stop || true
    stop_pid "$standby_pid" "postgres standby" 10
  fi
  # Its log (target/dev/logs/postgres-standby.log, a symlink into the data) stays, as a copy.
  rm -f "$FR_LOG_DIR/postgres-standby.log"
  if [[ -n "$STANDBY_PGDATA" ]]; then
    if [[ -f "$STANDBY_PGDATA/server.log" ]]; then cp "$STANDBY_PGDATA/server.log" "$FR_LOG_DIR/postgres-standby.log"; fi
    rm -rf "$STANDBY_PGDATA"
  fi
  rm -rf "$FR_PG_STANDBY_LINK"
  STANDBY_PGDATA=""
  standby_pid=""
}

remove_cluster() { # why
  remove_standby "its primary is removed"
  say "removing the Postgres cluster at $PGDATA: $1"
  if [[ -n "$pg_pid" ]]; then
    as_pg_user "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m fast -w -t 30 -s stop || true
    stop_pid "$pg_pid" "postgres" 10
  fi
  rm -rf "$PGDATA"
  rm -rf "$FR_PG_LINK"
  PGDATA=""
  pg_pid=""
}

if [[ -n "$PGDATA" && ! -f "$PGDATA/PG_VERSION" ]]; then
  # A dangling symlink (e.g. /tmp was cleaned) or a half-made directory.
  remove_cluster "it is incomplete"
elif [[ -n "$PGDATA" && "$(cat "$PGDATA/PG_VERSION")" != "$pg_major" ]]; then
  remove_cluster "it was made by PostgreSQL $(cat "$PGDATA/PG_VERSION"), the server here is $pg_major"
elif [[ -n "$PGDATA" && "$kms_fresh" -eq 1 ]]; then
  # The vault stores data keys wrapped by the KMS key; moto kept that key in memory only, so a
  # new moto means those rows can never be decrypted again. Start from an empty database.
  remove_cluster "KMS (moto) was not running, so the keys wrapped by its old key are unusable"
fi

# Self-signed CA + server certificate for TLS tests (made once; remade if the names changed).
ensure_tls() {
  local san="DNS:localhost,IP:127.0.0.1,IP:::1"
  [[ "$FR_HOST" == "127.0.0.1" || "$FR_HOST" == "localhost" ]] || {
    if [[ "$FR_HOST" =~ ^[0-9.]+$ || "$FR_HOST" == *:* ]]; then san+=",IP:$FR_HOST"; else san+=",DNS:$FR_HOST"; fi
  }
  if [[ -f "$FR_PG_TLS_DIR/ca.pem" && -f "$FR_PG_TLS_DIR/server.pem" && -f "$FR_PG_TLS_DIR/server.key" &&
    "$(cat "$FR_PG_TLS_DIR/san.txt" 2>/dev/null)" == "$san" ]]; then
    return 0
  fi
  say "generating a local CA and a server certificate in $FR_PG_TLS_DIR"
  rm -rf "$FR_PG_TLS_DIR"
  mkdir -p "$FR_PG_TLS_DIR"
  chmod 0755 "$FR_PG_TLS_DIR"
  local cnf="$FR_PG_TLS_DIR/openssl.cnf"
  # Our own minimal config, so the result does not depend on the machine's openssl.cnf.
  # The extensions are what strict verifiers (rustls/webpki) require: a CA with
  # basicConstraints CA:TRUE, a leaf with CA:FALSE, serverAuth and the names in subjectAltName.
  cat >"$cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Fetchreward local development
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  (
    cd "$FR_PG_TLS_DIR"
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    openssl req -x509 -new -key ca.key -config openssl.cnf -extensions v3_ca \
      -subj "/CN=Fetchreward local dev CA" -days 3650 -out ca.pem
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
    openssl req -new -key server.key -config openssl.cnf -subj "/CN=localhost" -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -extfile openssl.cnf -extensions v3_server -days 825 -out server.pem
    rm -f server.csr
    chmod 0644 ca.pem server.pem
  ) >"$FR_LOG_DIR/openssl.log" 2>&1 || { cat "$FR_LOG_DIR/openssl.log" >&2; die "generating the TLS certificates failed"; }
  printf '%s\n' "$san" >"$FR_PG_TLS_DIR/san.txt"
}
ensure_tls

# Makes the empty data directory of a cluster (the primary's, target/dev/pg, or the standby's,
# target/dev/pg-standby: `link`) and sets the variable `var` to its path. As root the server runs
# as $FR_PG_OS_USER, which must be able to reach its data directory; a checkout under /root or in
# a 0700 `mktemp -d` directory is out of its reach, and then the data goes to a per-checkout
# directory in /tmp (`fallback`), with `link` a symlink to it.
new_data_dir() { # var link fallback what
  local dir="$2"
  if is_root && ! as_pg_user test -x "$FR_DEV_DIR"; then
    dir="$3"
    if [[ -e "$dir" || -L "$dir" ]]; then
      # Left over from an earlier run of this checkout; never reuse something we cannot vouch for.
      [[ -d "$dir" && ! -L "$dir" && "$(stat -c %U "$dir")" == "$FR_PG_OS_USER" ]] ||
        die "$dir exists but is not a directory owned by $FR_PG_OS_USER; remove it and run again"
      rm -rf "$dir"
    fi
    say "user $FR_PG_OS_USER cannot reach $FR_DEV_DIR: the $4's data goes to $dir (target/dev/$(basename "$2") links there)"
    mkdir -m 0700 "$dir"
    ln -sfn "$dir" "$2"
  else
    mkdir -m 0700 "$dir"
  fi
  if is_root; then chown "$FR_PG_OS_USER:" "$dir"; fi
  printf -v "$1" '%s' "$dir"
}

if [[ -z "$PGDATA" ]]; then
  new_data_dir PGDATA "$FR_PG_LINK" "$FR_PG_FALLBACK_DIR" cluster

  say "creating a PostgreSQL $pg_major cluster in $PGDATA"
  # Superuser `postgres`, trust authentication (local throwaway cluster, loopback only),
  # C collation so that sort order does not depend on the machine's locales.
  as_pg_user "$PG_BINDIR/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C \
    --no-sync >"$FR_LOG_DIR/initdb.log" 2>&1 ||
    { tail -30 "$FR_LOG_DIR/initdb.log" >&2; die "initdb failed (log above: $FR_LOG_DIR/initdb.log)"; }
  # Only TCP from this machine; no Unix socket (its directory would need to be writable by the
  # server user, and every client here uses -h $FR_HOST anyway).
  as_pg_user tee "$PGDATA/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE     USER  ADDRESS        METHOD
host    all          all   127.0.0.1/32   trust
host    all          all   ::1/128        trust
host    all          all   samehost       trust
EOF
  printf "\n# Settings of the local stack (rewritten by dev/up.sh at every start).\ninclude 'fetchreward.conf'\n" |
    as_pg_user tee -a "$PGDATA/postgresql.conf" >/dev/null
fi

# Replication connections from this machine (`all` does not cover them): pg_basebackup and the
# standby's WAL stream (FR_PG_STANDBY=1). Appended to clusters made before the standby existed
# too; a running server reads them at the reload below.
if ! grep -qE '^host[[:space:]]+replication[[:space:]]' "$PGDATA/pg_hba.conf"; then
  as_pg_user tee -a "$PGDATA/pg_hba.conf" >/dev/null <<'EOF'
host    replication  all   127.0.0.1/32   trust
host    replication  all   ::1/128        trust
host    replication  all   samehost       trust
EOF
fi

# Durability (FR_PG_DURABLE) in a file of its own, rewritten at every run: fsync,
# synchronous_commit and full_page_writes all change with a reload, so a running cluster
# switches mode without a restart (see the reload below). The file is written before the
# include line is added, so the server never reads an include of a missing file; clusters made
# before this file existed include only fetchreward.conf, and get the line appended.
case "$FR_PG_DURABLE" in
  1) pg_durability=on ;;
  0) pg_durability=off ;;
  *) die "FR_PG_DURABLE must be 0 (fast) or 1 (durable), not '$FR_PG_DURABLE'" ;;
esac
pg_durability_was="$(sed -n 's/^fsync = //p' "$PGDATA/fetchreward-durability.conf" 2>/dev/null || true)"
write_pg_durability() { # pgdata
  as_pg_user tee "$1/fetchreward-durability.conf" >/dev/null <<EOF
# Written by dev/up.sh from FR_PG_DURABLE=$FR_PG_DURABLE at every run; a reload applies it.
# off: throwaway data, durability traded for speed (a crash loses recent commits).
# on: a commit is on disk before it is acknowledged (make chaos).
fsync = $pg_durability
synchronous_commit = $pg_durability
full_page_writes = $pg_durability
# Crash recovery first flushes the data directory: one syncfs() of its file system instead of
# an fsync() of every file (thousands, with the tests' databases), which takes many seconds.
recovery_init_sync_method = syncfs
EOF
  if ! grep -qxF "include 'fetchreward-durability.conf'" "$1/postgresql.conf"; then
    printf "# Durability (FR_PG_DURABLE), rewritten by dev/up.sh at every run.\ninclude 'fetchreward-durability.conf'\n" |
      as_pg_user tee -a "$1/postgresql.conf" >/dev/null
  fi
}
write_pg_durability "$PGDATA"

# Rewritten at every start, so changed FR_* settings apply to an existing cluster. The standby
# gets the same on its own port, plus the settings of a standby (`more lines`).
write_pg_settings() { # pgdata port max_connections [more lines...]
  {
    cat <<EOF
listen_addresses = '$FR_HOST'
port = $2
unix_socket_directories = ''
max_connections = $3
# fsync, synchronous_commit and full_page_writes: see fetchreward-durability.conf.
# TLS is offered, not required: sslmode=disable and sslmode=require/verify-full both work.
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
timezone = 'UTC'
log_timezone = 'UTC'
# The default, and what a standby needs to stream from this cluster (FR_PG_STANDBY=1).
wal_level = replica
EOF
    if (($# > 3)); then printf '%s\n' "${@:4}"; fi
  } | as_pg_user tee "$1/fetchreward.conf" >/dev/null
}

# The server reads its certificate from the data directory, which it can always reach
# (target/dev/pg-tls may be out of its reach, see above); the key must be its own and 0600.
install_pg_tls() { # pgdata
  install -m 0644 "$FR_PG_TLS_DIR/server.pem" "$1/server.crt"
  install -m 0600 "$FR_PG_TLS_DIR/server.key" "$1/server.key"
  if is_root; then chown "$FR_PG_OS_USER:" "$1/server.crt" "$1/server.key"; fi
}

if [[ -z "$pg_pid" ]]; then
  write_pg_settings "$PGDATA" "$FR_PG_PORT" "$FR_PG_MAX_CONNECTIONS"
  install_pg_tls "$PGDATA"

  say "starting PostgreSQL on $FR_HOST:$FR_PG_PORT"
  # The log lives in the data directory, the one place the server user can always write;
  # target/dev/logs/postgres.log points to it (down.sh leaves a copy there).
  rm -f "$FR_LOG_DIR/postgres.log"
  ln -s "$PGDATA/server.log" "$FR_LOG_DIR/postgres.log"
  # pg_ctl puts the server in its own session, so it outlives this shell.
  if ! as_pg_user "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t "$FR_READY_TIMEOUT" -s start; then
    tail -30 "$PGDATA/server.log" >&2 || true
    die "PostgreSQL did not start (log above: $PGDATA/server.log)"
  fi
else
  say "PostgreSQL already running, pid $pg_pid, data $PGDATA"
  # The durability settings may have changed (above). pg_ctl reload only signals the server,
  # which applies them to new sessions a moment later (checked below).
  as_pg_user "$PG_BINDIR/pg_ctl" -D "$PGDATA" -s reload ||
    die "pg_ctl reload failed (log: $PGDATA/server.log)"
fi

# True once the server on `port` accepts connections, false after FR_READY_TIMEOUT.
pg_answers() { # port
  local i
  for ((i = 0; i < FR_READY_TIMEOUT * 5; i++)); do
    "$PG_ISREADY" -q -h "$FR_HOST" -p "$1" -U postgres -d postgres -t 2 && return 0
    sleep 0.2
  done
  return 1
}
if ! pg_answers "$FR_PG_PORT"; then
  tail -30 "$PGDATA/server.log" >&2 || true
  if [[ -n "$pg_pid" ]]; then
    die "this checkout's cluster (pid $pg_pid) does not answer on $FR_HOST:$FR_PG_PORT; was it started with other FR_* settings? Run dev/down.sh, then dev/up.sh"
  fi
  die "PostgreSQL does not answer on $FR_HOST:$FR_PG_PORT (log above: $PGDATA/server.log)"
fi

psql_at() { # port psql-arguments...
  local port="$1"
  shift
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$FR_HOST" -p "$port" -U postgres "$@"
}
psql_admin() { psql_at "$FR_PG_PORT" "$@"; }

# The server on `port` runs in the mode asked for (after a reload, new sessions see it within
# moments).
check_pg_mode() { # name port pgdata
  local want="$pg_durability,$pg_durability,$pg_durability" mode="" i
  for ((i = 0; i < FR_READY_TIMEOUT * 5; i++)); do
    mode="$(psql_at "$2" -d postgres -tA -c 'SHOW fsync' -c 'SHOW synchronous_commit' -c 'SHOW full_page_writes' | paste -sd, - || true)"
    [[ "$mode" == "$want" ]] && return 0
    sleep 0.2
  done
  die "$1 reports fsync,synchronous_commit,full_page_writes = $mode, expected $want (log: $3/server.log)"
}
check_pg_mode PostgreSQL "$FR_PG_PORT" "$PGDATA"
if [[ "$pg_durability" == on && "$pg_durability_was" != on ]]; then
  # Pages written while fsync was off may still be in the kernel's cache only. A server crash
  # does not lose them, a machine crash would: flush them, so durability holds for both.
  sync -f "$PGDATA/PG_VERSION" 2>/dev/null || sync
fi
if [[ "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$FR_PG_DB'")" != "1" ]]; then
  say "creating database $FR_PG_DB"
  psql_admin -d postgres -c "CREATE DATABASE \"$FR_PG_DB\""
fi

# ---------------------------------------------------------------------------------------------
# 7. The hot standby (FR_PG_STANDBY=1): a copy of the cluster made by pg_basebackup -R, which
#    replays the primary's WAL as it streams in and answers read-only queries. It streams
#    through a physical replication slot, so the primary keeps all WAL the standby has not yet
#    received (a standby stopped for a while catches up instead of needing a new copy), and
#    with hot_standby_feedback, so the primary's VACUUM keeps rows a standby query still reads.
# ---------------------------------------------------------------------------------------------
standby_slot=fetchreward_standby

# "Database system identifier" of a data directory, running or not: made by initdb and copied
# by pg_basebackup, so a standby has its primary's, and a re-created primary has a new one.
pg_system_id() { # pgdata
  as_pg_user env LC_ALL=C "$PG_BINDIR/pg_controldata" -D "$1" 2>/dev/null |
    sed -n 's/^Database system identifier: *//p' || true
}

if ((FR_PG_STANDBY)); then
  primary_id="$(pg_system_id "$PGDATA")"
  [[ -n "$primary_id" ]] || die "pg_controldata cannot read $PGDATA"
  if [[ -n "$STANDBY_PGDATA" && ! (-f "$STANDBY_PGDATA/PG_VERSION" && -f "$STANDBY_PGDATA/standby.signal") ]]; then
    # pg_basebackup writes standby.signal last; without it the copy did not complete.
    remove_standby "it is incomplete"
  elif [[ -n "$STANDBY_PGDATA" ]]; then
    standby_id="$(pg_system_id "$STANDBY_PGDATA")"
    if [[ "$standby_id" != "$primary_id" ]]; then
      remove_standby "it is a copy of another cluster (database system identifier ${standby_id:-unreadable}, the primary's is $primary_id)"
    fi
  fi

  if [[ -z "$STANDBY_PGDATA" ]]; then
    new_data_dir STANDBY_PGDATA "$FR_PG_STANDBY_LINK" "$FR_PG_STANDBY_FALLBACK_DIR" standby
    # A slot of an earlier standby would still hold the WAL since that one was made.
    psql_admin -d postgres -tAc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$standby_slot'" >/dev/null ||
      die "cannot drop the replication slot $standby_slot: does a standby of an earlier run still stream from it? (dev/down.sh stops everything)"
    say "making a hot standby of $FR_HOST:$FR_PG_PORT in $STANDBY_PGDATA (pg_basebackup -R)"
    # -C -S: the backup creates the slot, so the WAL written during the copy stays until the
    # standby has streamed it. --checkpoint=fast: start now, not after a spread checkpoint
    # (minutes). No manifest: it serves pg_verifybackup, and this copy is never restored.
    basebackup_args=(-h "$FR_HOST" -p "$FR_PG_PORT" -U postgres -D "$STANDBY_PGDATA" -R -X stream
      -C -S "$standby_slot" --checkpoint=fast --no-manifest)
    [[ "$pg_durability" == off ]] && basebackup_args+=(--no-sync)
    basebackup_started=$SECONDS
    if ! as_pg_user "$PG_BINDIR/pg_basebackup" "${basebackup_args[@]}" >"$FR_LOG_DIR/pg_basebackup.log" 2>&1; then
      tail -30 "$FR_LOG_DIR/pg_basebackup.log" >&2
      die "pg_basebackup failed (log above: $FR_LOG_DIR/pg_basebackup.log)"
    fi
    say "copied the cluster in $((SECONDS - basebackup_started))s ($(du -sh "$STANDBY_PGDATA" | cut -f1))"
    # The copy has the primary's log too; the standby writes its own.
    rm -f "$STANDBY_PGDATA/server.log"
  fi

  # The primary's durability mode, and its settings on the standby's port (the copied ones
  # name the primary's), plus those of a standby; primary_conninfo and primary_slot_name are in
  # postgresql.auto.conf, written by pg_basebackup -R.
  write_pg_durability "$STANDBY_PGDATA"
  if [[ -z "$standby_pid" ]]; then
    # A hot standby refuses to start with fewer connections than its primary runs with.
    write_pg_settings "$STANDBY_PGDATA" "$FR_PG_STANDBY_PORT" "$(psql_admin -d postgres -tAc 'SHOW max_connections')" \
      "# A hot standby of $FR_HOST:$FR_PG_PORT (FR_PG_STANDBY=1)." "hot_standby = on" "hot_standby_feedback = on"
    install_pg_tls "$STANDBY_PGDATA"
    say "starting the PostgreSQL standby on $FR_HOST:$FR_PG_STANDBY_PORT"
    rm -f "$FR_LOG_DIR/postgres-standby.log"
    ln -s "$STANDBY_PGDATA/server.log" "$FR_LOG_DIR/postgres-standby.log"
    if ! as_pg_user "$PG_BINDIR/pg_ctl" -D "$STANDBY_PGDATA" -l "$STANDBY_PGDATA/server.log" -w -t "$FR_READY_TIMEOUT" -s start; then
      tail -30 "$STANDBY_PGDATA/server.log" >&2 || true
      die "the PostgreSQL standby did not start (log above: $STANDBY_PGDATA/server.log)"
    fi
  else
    say "PostgreSQL standby already running, pid $standby_pid, data $STANDBY_PGDATA"
    as_pg_user "$PG_BINDIR/pg_ctl" -D "$STANDBY_PGDATA" -s reload ||
      die "pg_ctl reload of the standby failed (log: $STANDBY_PGDATA/server.log)"
  fi

  if ! pg_answers "$FR_PG_STANDBY_PORT"; then
    tail -30 "$STANDBY_PGDATA/server.log" >&2 || true
    if [[ -n "$standby_pid" ]]; then
      die "this checkout's standby (pid $standby_pid) does not answer on $FR_HOST:$FR_PG_STANDBY_PORT; was it started with other FR_* settings? Run dev/down.sh, then dev/up.sh"
    fi
    die "the PostgreSQL standby does not answer on $FR_HOST:$FR_PG_STANDBY_PORT (log above: $STANDBY_PGDATA/server.log)"
  fi
  [[ "$(psql_at "$FR_PG_STANDBY_PORT" -d postgres -tAc 'SELECT pg_is_in_recovery()')" == t ]] ||
    die "the server on $FR_HOST:$FR_PG_STANDBY_PORT is not in recovery, so it is no standby (log: $STANDBY_PGDATA/server.log)"
  check_pg_mode "The PostgreSQL standby" "$FR_PG_STANDBY_PORT" "$STANDBY_PGDATA"
  # It streams: its WAL receiver holds the slot (after a restart of the primary, it connects
  # again within wal_retrieve_retry_interval, 5 s).
  slot_active=""
  for ((i = 0; i < FR_READY_TIMEOUT * 5; i++)); do
    slot_active="$(psql_admin -d postgres -tAc "SELECT active FROM pg_replication_slots WHERE slot_name = '$standby_slot'" || true)"
    [[ "$slot_active" == t ]] && break
    sleep 0.2
  done
  [[ "$slot_active" == t ]] ||
    die "the standby does not stream from $FR_HOST:$FR_PG_PORT through the slot $standby_slot (log: $STANDBY_PGDATA/server.log)"
  standby_pid="$(pg_postmaster_pid "$STANDBY_PGDATA" || true)"
else
  remove_standby "FR_PG_STANDBY=0"
  # Nothing streams from it any more; left in place, it would keep the WAL forever.
  psql_admin -d postgres -tAc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$standby_slot' AND NOT active" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# 8. Queues, the KMS keys and the archive bucket (all idempotent).
# ---------------------------------------------------------------------------------------------
sqs_out="$(node dev/sqs-setup.mjs 2>"$FR_LOG_DIR/sqs-setup.log")" ||
  { cat "$FR_LOG_DIR/sqs-setup.log" >&2; die "creating the queues failed"; }
QUEUE_URL="$(sed -n 's/^QUEUE_URL=//p' <<<"$sqs_out")"
DLQ_URL="$(sed -n 's/^DLQ_URL=//p' <<<"$sqs_out")"
[[ -n "$QUEUE_URL" && -n "$DLQ_URL" ]] || die "dev/sqs-setup.mjs printed no queue URLs: $sqs_out"

kms_out="$(.venv/bin/python dev/kms-setup.py 2>"$FR_LOG_DIR/kms-setup.log")" ||
  { cat "$FR_LOG_DIR/kms-setup.log" >&2; die "creating the KMS key failed"; }
KMS_KEY_ARN="$(sed -n 's/^KMS_KEY_ARN=//p' <<<"$kms_out")"
DLQ_KMS_KEY_ARN="$(sed -n 's/^DLQ_KMS_KEY_ARN=//p' <<<"$kms_out")"

# moto serves S3 on the same port as KMS, in memory too: a new moto has no bucket, and gets it
# here.
.venv/bin/python dev/s3-setup.py >"$FR_LOG_DIR/s3-setup.log" 2>&1 ||
  { cat "$FR_LOG_DIR/s3-setup.log" >&2; die "creating the S3 bucket $FR_S3_ARCHIVE_BUCKET failed"; }
ARCHIVE_URL="s3://$FR_S3_ARCHIVE_BUCKET/archive"

# ---------------------------------------------------------------------------------------------
# 9. Tell the world.
# ---------------------------------------------------------------------------------------------
# What down.sh needs to stop this stack even if it is called with other FR_* settings, and
# what a later `make up` keeps (see dev/env.sh): the ports, and whether there is a standby.
{
  cat <<EOF
PGDATA=$PGDATA
PG_BINDIR=$PG_BINDIR
FR_PG_OS_USER=$FR_PG_OS_USER
FR_HOST=$FR_HOST
FR_PG_PORT=$FR_PG_PORT
FR_SQS_PORT=$FR_SQS_PORT
FR_KMS_PORT=$FR_KMS_PORT
FR_PG_STANDBY=$FR_PG_STANDBY
EOF
  if ((FR_PG_STANDBY)); then
    printf 'FR_PG_STANDBY_PORT=%s\nSTANDBY_PGDATA=%s\n' "$FR_PG_STANDBY_PORT" "$STANDBY_PGDATA"
  fi
} >"$FR_STATE_FILE"

# One `export NAME=value` per line: for `eval`, `. target/dev/env` (sh or bash) and dotenv readers.
# Values are quoted only when they need it (a checkout path with spaces, say).
env_line() {
  if [[ "$2" =~ ^[A-Za-z0-9_./:@%+=,-]+$ ]]; then
    printf 'export %s=%s\n' "$1" "$2"
  else
    printf "export %s='%s'\n" "$1" "${2//\'/\'\\\'\'}"
  fi
}
{
  env_line DATABASE_URL "postgres://postgres@$FR_HOST:$FR_PG_PORT/$FR_PG_DB"
  if ((FR_PG_STANDBY)); then
    env_line DATABASE_READ_URL "postgres://postgres@$FR_HOST:$FR_PG_STANDBY_PORT/$FR_PG_DB"
  fi
  env_line FR_PG_CA_FILE "$FR_PG_TLS_DIR/ca.pem"
  env_line AWS_ENDPOINT_URL_SQS "http://$FR_HOST:$FR_SQS_PORT"
  env_line AWS_ENDPOINT_URL_KMS "http://$FR_HOST:$FR_KMS_PORT"
  env_line AWS_ENDPOINT_URL_S3 "http://$FR_HOST:$FR_KMS_PORT"
  env_line S3_FORCE_PATH_STYLE true # moto's buckets are paths, not host names
  env_line AWS_REGION "$FR_AWS_REGION"
  env_line AWS_DEFAULT_REGION "$FR_AWS_REGION" # what boto3 and the aws CLI read
  env_line AWS_ACCESS_KEY_ID "$FR_AWS_ACCESS_KEY_ID"
  env_line AWS_SECRET_ACCESS_KEY "$FR_AWS_SECRET_ACCESS_KEY"
  env_line QUEUE_URL "$QUEUE_URL"
  env_line DLQ_URL "$DLQ_URL"
  env_line KMS_KEY_ID "$FR_KMS_ALIAS"
  env_line DLQ_KMS_KEY_ID "$FR_DLQ_KMS_ALIAS"
  env_line ARCHIVE_URL "$ARCHIVE_URL"
} >"$FR_ENV_FILE.tmp"
mv "$FR_ENV_FILE.tmp" "$FR_ENV_FILE"

if [[ "$pg_durability" == on ]]; then
  pg_mode_text="durable: fsync, synchronous_commit, full_page_writes on (FR_PG_DURABLE=1)"
else
  pg_mode_text="not durable: fsync, synchronous_commit, full_page_writes off (FR_PG_DURABLE=1 make up: durable)"
fi
if ((FR_PG_STANDBY)); then
  standby_text="hot standby $FR_HOST:$FR_PG_STANDBY_PORT (DATABASE_READ_URL), pid $standby_pid, streaming through slot $standby_slot
              data $STANDBY_PGDATA, log $FR_LOG_DIR/postgres-standby.log"
else
  standby_text="no standby (FR_PG_STANDBY=1 make up: a hot standby on $FR_HOST:$FR_PG_STANDBY_PORT)"
fi
cat <<EOF
[up] local stack is up:
  PostgreSQL  $FR_HOST:$FR_PG_PORT  database $FR_PG_DB, user postgres, trust auth, TLS optional (CA $FR_PG_TLS_DIR/ca.pem)
              data $PGDATA, log $FR_LOG_DIR/postgres.log
              $pg_mode_text
              $standby_text
  SQS         http://$FR_HOST:$FR_SQS_PORT  (fauxqs, log $FR_LOG_DIR/fauxqs.log)
              $QUEUE_URL
              $DLQ_URL
  KMS         http://$FR_HOST:$FR_KMS_PORT  (moto, log $FR_LOG_DIR/moto.log)
              $FR_KMS_ALIAS -> $KMS_KEY_ARN
              $FR_DLQ_KMS_ALIAS -> $DLQ_KMS_KEY_ARN (seals the DLQ's bodies)
  S3          http://$FR_HOST:$FR_KMS_PORT  (moto, as KMS; path-style: S3_FORCE_PATH_STYLE=true)
              bucket $FR_S3_ARCHIVE_BUCKET (in memory), ARCHIVE_URL $ARCHIVE_URL
[up] for your shell: eval "\$(make -s env)"   (or: . target/dev/env; stop everything: make down)
EOF
cat "$FR_ENV_FILE"
