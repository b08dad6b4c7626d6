#!/usr/bin/env bash
# Crashes the local stack's PostgreSQL on purpose, for `make chaos`: `pg_ctl stop -m immediate`
# ends every server process at once, without a checkpoint, as a crash would; the next start
# replays the WAL (crash recovery). Everything else of the stack keeps running.
#
# Start the cluster again with `FR_PG_DURABLE=1 bash dev/up.sh` (it reuses the emulators and
# the data). Only the durable mode (FR_PG_DURABLE=1) keeps every acknowledged commit through
# this; the default fast mode loses the last ones. See docs/local-stack.md and docs/chaos.md.
set -euo pipefail

FR_SCRIPT=pg-crash
# shellcheck source=dev/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

take_lock

[[ -f "$FR_STATE_FILE" ]] || die "the local stack is not up ($FR_STATE_FILE is missing): run make up"
# Where up.sh put the cluster and who runs it, whatever FR_* settings this shell has now.
PGDATA="$(sed -n 's/^PGDATA=//p' "$FR_STATE_FILE")"
PG_BINDIR="$(sed -n 's/^PG_BINDIR=//p' "$FR_STATE_FILE")"
state_user="$(sed -n 's/^FR_PG_OS_USER=//p' "$FR_STATE_FILE")"
[[ -n "$state_user" ]] && FR_PG_OS_USER="$state_user"
[[ -n "$PGDATA" && -d "$PGDATA" ]] || die "the cluster's data directory '$PGDATA' (from $FR_STATE_FILE) does not exist"
[[ -x "$PG_BINDIR/pg_ctl" ]] || die "pg_ctl not found in '$PG_BINDIR' (from $FR_STATE_FILE)"

pg_pid="$(pg_postmaster_pid "$PGDATA")" || die "this checkout's PostgreSQL is not running (data $PGDATA)"
say "stopping PostgreSQL (pid $pg_pid) with pg_ctl stop -m immediate: no checkpoint, crash recovery at the next start"
as_pg_user "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 -s stop ||
  die "pg_ctl stop -m immediate failed (log: $PGDATA/server.log)"
say "stopped; start it again with: FR_PG_DURABLE=1 bash dev/up.sh"
