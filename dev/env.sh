# shellcheck shell=bash disable=SC2034  # sourced: up.sh and down.sh use these variables
# Settings of the local stack, sourced by dev/up.sh and dev/down.sh (not executable on its own).
#
# Every FR_* value below is a default: set the variable in the environment to override it,
# e.g. `FR_PG_PORT=56432 make up`. The same values must be given to dev/down.sh (they are
# also recorded in target/dev/state when the stack is up, and down.sh reads them from there).

# Repository root, resolved through symlinks so that one checkout always maps to one cluster.
FR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

# A stack that is up keeps its address and ports (recorded by up.sh), so that a plain `make up`
# or `make test` reuses a stack started with other FR_*_PORT values instead of starting a second
# one beside it; so does its standby (FR_PG_STANDBY). Variables set in the environment still win.
if [[ -f "$FR_ROOT/target/dev/state" ]]; then
  while IFS='=' read -r key value; do
    case "$key" in
      FR_HOST | FR_PG_PORT | FR_SQS_PORT | FR_KMS_PORT | FR_PG_STANDBY | FR_PG_STANDBY_PORT)
        [[ -n "${!key:-}" ]] || printf -v "$key" '%s' "$value"
        ;;
    esac
  done <"$FR_ROOT/target/dev/state"
fi

: "${FR_HOST:=127.0.0.1}"          # every service listens on this address only
: "${FR_PG_PORT:=55432}"           # PostgreSQL
: "${FR_PG_STANDBY_PORT:=$((FR_PG_PORT + 1))}" # its hot standby (FR_PG_STANDBY=1)
: "${FR_SQS_PORT:=54566}"          # fauxqs (SQS)
: "${FR_KMS_PORT:=54599}"          # moto (KMS and S3)
: "${FR_PG_DB:=fetchreward}"       # database created in the cluster
: "${FR_PG_MAX_CONNECTIONS:=300}"  # many tests run in parallel, each with its own pool
: "${FR_READY_TIMEOUT:=60}"        # seconds to wait for each service to answer
# 1: PostgreSQL with fsync, synchronous_commit and full_page_writes on (crash-safe, slower;
# `make chaos` needs it). 0: all three off (fast; a Postgres crash loses recent commits). Not
# sticky: every `make up` applies the value it is given, to a running cluster too (a reload).
: "${FR_PG_DURABLE:=0}"
# 1: also a hot standby of the cluster, by streaming replication (pg_basebackup -R), on
# FR_PG_STANDBY_PORT; target/dev/env then has DATABASE_READ_URL. Sticky: a later `make up`
# keeps the standby (recorded in target/dev/state) until `make down` or FR_PG_STANDBY=0.
: "${FR_PG_STANDBY:=0}"

# Deliberately FR_-prefixed rather than read from AWS_*: a developer's real AWS credentials
# must never end up in target/dev/env, and the emulators accept any credentials anyway.
: "${FR_AWS_REGION:=us-east-1}"
: "${FR_AWS_ACCESS_KEY_ID:=test}"
: "${FR_AWS_SECRET_ACCESS_KEY:=test}"

: "${FR_SQS_QUEUE:=login-queue}"
: "${FR_SQS_DLQ:=login-queue-dlq}"
: "${FR_KMS_ALIAS:=alias/fetchreward}"
: "${FR_DLQ_KMS_ALIAS:=alias/fetchreward-dlq}"
: "${FR_S3_ARCHIVE_BUCKET:=fetchreward-archive}" # ARCHIVE_URL is s3://<this>/archive

# OS user that runs the PostgreSQL server when the scripts run as root
# (initdb and pg_ctl refuse to run as root).
: "${FR_PG_OS_USER:=postgres}"

# Where everything lives (all under target/, which is gitignored and wiped by `cargo clean`).
FR_DEV_DIR="$FR_ROOT/target/dev"
FR_LOG_DIR="$FR_DEV_DIR/logs"
FR_RUN_DIR="$FR_DEV_DIR/run"
FR_PG_LINK="$FR_DEV_DIR/pg"          # the cluster's data dir, or a symlink to it (see up.sh)
FR_PG_STANDBY_LINK="$FR_DEV_DIR/pg-standby" # the same for its standby
FR_PG_TLS_DIR="$FR_DEV_DIR/pg-tls"
FR_ENV_FILE="$FR_DEV_DIR/env"        # export lines for other scripts and shells
FR_STATE_FILE="$FR_DEV_DIR/state"    # ports etc. of the running stack, for down.sh

# Fallback location of the cluster when the server user cannot reach the checkout
# (checkout under /root or a 0700 mktemp dir): one directory per checkout path.
FR_PG_FALLBACK_DIR="/tmp/fetchreward-pg-$(printf '%s' "$FR_ROOT" | sha256sum | cut -c1-12)"
FR_PG_STANDBY_FALLBACK_DIR="$FR_PG_FALLBACK_DIR-standby"

# PostgreSQL server binaries: FR_PG_BINDIR, else the newest Debian-installed major version,
# else whatever pg_config reports.
fr_find_pg_bindir() {
  if [[ -n "${FR_PG_BINDIR:-}" ]]; then
    printf '%s\n' "$FR_PG_BINDIR"
    return
  fi
  local d best=""
  # sort -V so that 16 wins over 15 (and 15 over 9.6).
  while IFS= read -r d; do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && best="$d"
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V)
  if [[ -z "$best" ]] && command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir 2>/dev/null || true)"
    [[ -n "$d" && -x "$d/initdb" ]] && best="$d"
  fi
  printf '%s\n' "$best"
}
