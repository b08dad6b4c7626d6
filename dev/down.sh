#!/usr/bin/env bash
# Stops the local stack started by dev/up.sh and deletes the throwaway PostgreSQL cluster (and
# its hot standby, FR_PG_STANDBY=1).
#
# Why the data goes too: the vault keeps its data keys in Postgres wrapped by a KMS key that
# only ever existed in moto's memory. Once moto stops, those rows can never be decrypted, so a
# cluster that outlived moto would only produce confusing failures later.
#
# Safe to run when nothing runs. Touches only this checkout's processes (pid files, and the
# command lines that name this checkout's paths), never other PostgreSQL servers.
set -euo pipefail

FR_SCRIPT=down
# shellcheck source=dev/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

take_lock

# Where up.sh put things, whatever FR_* settings this shell has now.
state_pgdata="" state_bindir="" state_standby_pgdata=""
if [[ -f "$FR_STATE_FILE" ]]; then
  state_pgdata="$(sed -n 's/^PGDATA=//p' "$FR_STATE_FILE")"
  state_standby_pgdata="$(sed -n 's/^STANDBY_PGDATA=//p' "$FR_STATE_FILE")"
  state_bindir="$(sed -n 's/^PG_BINDIR=//p' "$FR_STATE_FILE")"
  state_user="$(sed -n 's/^FR_PG_OS_USER=//p' "$FR_STATE_FILE")"
  [[ -n "$state_user" ]] && FR_PG_OS_USER="$state_user"
fi
PGDATA="$(pg_data_dir || true)"
PGDATA="${PGDATA:-$state_pgdata}"
STANDBY_PGDATA="$(pg_data_dir "$FR_PG_STANDBY_LINK" || true)"
STANDBY_PGDATA="${STANDBY_PGDATA:-$state_standby_pgdata}"
PG_BINDIR="${state_bindir:-$(fr_find_pg_bindir)}"

# ---------------------------------------------------------------------------------------------
# PostgreSQL, the standby first (so it does not retry its stream from a primary that is gone):
# pg_ctl stop as the server's owner, then make sure no process of it is left.
# ---------------------------------------------------------------------------------------------
stop_cluster() { # pgdata name
  local pid
  [[ -n "$1" && -d "$1" ]] || return 0
  pid="$(pg_postmaster_pid "$1")" || return 0
  say "stopping $2 (pid $pid)"
  if [[ -x "$PG_BINDIR/pg_ctl" ]]; then
    as_pg_user "$PG_BINDIR/pg_ctl" -D "$1" -m fast -w -t 30 -s stop ||
      as_pg_user "$PG_BINDIR/pg_ctl" -D "$1" -m immediate -w -t 30 -s stop ||
      warn "pg_ctl could not stop $2; signalling the postmaster"
  fi
  stop_pid "$pid" "$2" 20
}
stop_cluster "$STANDBY_PGDATA" "the PostgreSQL standby"
stop_cluster "$PGDATA" PostgreSQL

# ---------------------------------------------------------------------------------------------
# The emulators: their pid files, checked against their command lines.
# ---------------------------------------------------------------------------------------------
if pid="$(live_pid "$FR_SQS_PIDFILE" "$FR_SQS_MARKER")"; then
  say "stopping SQS (fauxqs, pid $pid)"
  stop_pid "$pid" fauxqs 10
fi
if pid="$(live_pid "$FR_KMS_PIDFILE" "$FR_KMS_MARKER")"; then
  say "stopping KMS (moto, pid $pid)"
  stop_pid "$pid" moto 10
fi
rm -f "$FR_SQS_PIDFILE" "$FR_KMS_PIDFILE"

# ---------------------------------------------------------------------------------------------
# Verify: nothing of this checkout may be left running. A pid file can be lost (a crash during
# up.sh, a deleted target/), so look by command line too and stop what is found.
# ---------------------------------------------------------------------------------------------
leftovers() {
  local pattern
  for pattern in "$FR_SQS_MARKER" "$FR_KMS_MARKER" ${PGDATA:+"-D $PGDATA"} ${STANDBY_PGDATA:+"-D $STANDBY_PGDATA"}; do
    pgrep -f -- "$pattern" || true
  done | sort -u | while read -r p; do
    # Skip ourselves and zombies; pgrep may also see the pipeline's own subshells briefly.
    [[ "$p" != "$$" ]] && proc_running "$p" && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null |
      grep -qF -e "$FR_SQS_MARKER" -e "$FR_KMS_MARKER" ${PGDATA:+-e "-D $PGDATA"} \
        ${STANDBY_PGDATA:+-e "-D $STANDBY_PGDATA"} && echo "$p"
  done
  return 0
}
if command -v pgrep >/dev/null 2>&1; then
  for p in $(leftovers); do
    warn "stopping a leftover process: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)(pid $p)"
    stop_pid "$p" "leftover process" 5
  done
  left="$(leftovers)"
  [[ -z "$left" ]] || die "processes of this checkout still run: $left"
else
  warn "pgrep is missing (apt-get install procps): could not double-check for leftover processes"
fi

# ---------------------------------------------------------------------------------------------
# Delete the clusters (and the /tmp fallback locations when they were used). Keep their logs.
# ---------------------------------------------------------------------------------------------
delete_cluster() { # pgdata link fallback log what
  if [[ -n "$1" && -d "$1" ]]; then
    if [[ -f "$1/server.log" ]]; then
      mkdir -p "$FR_LOG_DIR"
      rm -f "$FR_LOG_DIR/$4"
      cp "$1/server.log" "$FR_LOG_DIR/$4"
    fi
    say "deleting the throwaway $5 $1"
    rm -rf "$1"
  fi
  if [[ -L "$2" || -e "$2" ]]; then rm -rf "$2"; fi
  # A dangling /tmp fallback of this checkout (e.g. up.sh stopped half-way).
  if [[ -d "$3" && ! -L "$3" ]]; then rm -rf "$3"; fi
  if [[ -L "$FR_LOG_DIR/$4" ]]; then rm -f "$FR_LOG_DIR/$4"; fi
}
delete_cluster "$STANDBY_PGDATA" "$FR_PG_STANDBY_LINK" "$FR_PG_STANDBY_FALLBACK_DIR" postgres-standby.log standby
delete_cluster "$PGDATA" "$FR_PG_LINK" "$FR_PG_FALLBACK_DIR" postgres.log cluster
rm -f "$FR_STATE_FILE" "$FR_ENV_FILE"

say "local stack is down"
