#!/usr/bin/env bash
# make demo: the whole pipeline on the local stack, end to end (about 30 s once built).
#
# Starts the local stack, builds and starts the vault, the writer and the ingestor on a fresh
# demo database, loads the project's sample (100 login messages with repeated ip/device_id
# values and 5 malformed ones) into login-queue, waits until the queue is drained, then shows
# the masked rows, the dead-lettered messages with their reasons, the tokens that occur more
# than once, and one token recovered through the vault. Every gRPC hop runs over mutual TLS with
# development certificates (target/dev/certs); the services are stopped at the end, unless
# FR_DEMO_KEEP=1 (make observe), which leaves them running with their pids in
# target/dev/run/demo.pids.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

: "${FR_DEMO_DB:=fetchreward_demo}"
: "${FR_DEMO_VAULT_PORT:=50051}"
: "${FR_DEMO_WRITER_PORT:=50052}"
: "${FR_DEMO_HTTP_BASE:=9101}"   # vault, writer, ingestor: this port and the next two

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "local stack"
bash dev/up.sh >/dev/null
set -a
# shellcheck disable=SC1091 # written by dev/up.sh
. target/dev/env
set +a

say "building (cargo build --bins)"
cargo build --quiet --bins
bin="$root/target/debug"

certs="$root/target/dev/certs"
if [[ ! -f "$certs/ca.key" ]]; then
  "$bin/fetchreward" dev-certs --out "$certs"
fi
# A person's own short-lived identity, beside the services' (docs/privacy.md).
"$bin/fetchreward" dev-certs --out "$certs" --person carol --role support >/dev/null
tls_env() { # identity
  printf 'TLS_CA_FILE=%s TLS_CERT_FILE=%s TLS_KEY_FILE=%s' "$certs/ca.pem" "$certs/$1.pem" "$certs/$1.key"
}
spiffe=spiffe://fetchreward

logs="$root/target/dev/logs"
pids=()
stop_services() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_services EXIT

pg_port=$(sed -n 's|.*@127.0.0.1:\([0-9]*\)/.*|\1|p' <<<"$DATABASE_URL")
psql_demo() { psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d "$FR_DEMO_DB" "$@"; }

say "fresh demo database '$FR_DEMO_DB' and empty queues"
psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
  -c "DROP DATABASE IF EXISTS $FR_DEMO_DB WITH (FORCE)" -c "CREATE DATABASE $FR_DEMO_DB"
demo_db_url="${DATABASE_URL%/*}/$FR_DEMO_DB"
"$bin/fetchreward" queue purge --queue-url "$QUEUE_URL" >/dev/null
"$bin/fetchreward" queue purge --queue-url "$DLQ_URL" >/dev/null

say "starting vault, writer, ingestor over mutual TLS (logs in target/dev/logs/demo-*.log)"
vault_http=$FR_DEMO_HTTP_BASE writer_http=$((FR_DEMO_HTTP_BASE + 1)) ingestor_http=$((FR_DEMO_HTTP_BASE + 2))
# shellcheck disable=SC2046 # tls_env prints VAR=value words on purpose
env LOG_FORMAT=text DATABASE_URL="$demo_db_url" GRPC_ADDR="127.0.0.1:$FR_DEMO_VAULT_PORT" \
  HTTP_ADDR="127.0.0.1:$vault_http" $(tls_env vault) \
  AUTHZ_TOKENIZE=$spiffe/ingestor AUTHZ_DETOKENIZE=$spiffe/reader AUTHZ_ADMIN=$spiffe/admin \
  VAULT_GRANTS="$spiffe/person/carol=support" \
  "$bin/fetchreward-vault" >"$logs/demo-vault.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2046
env LOG_FORMAT=text DATABASE_URL="$demo_db_url" GRPC_ADDR="127.0.0.1:$FR_DEMO_WRITER_PORT" \
  HTTP_ADDR="127.0.0.1:$writer_http" $(tls_env writer) AUTHZ_WRITE=$spiffe/ingestor \
  "$bin/fetchreward-writer" >"$logs/demo-writer.log" 2>&1 &
pids+=($!)

wait_ready() { # name port
  for _ in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$1 did not become ready; last lines of its log:" >&2
  tail -n 20 "$logs/demo-$1.log" >&2
  exit 1
}
wait_ready vault "$vault_http"
wait_ready writer "$writer_http"

# shellcheck disable=SC2046
env LOG_FORMAT=text VAULT_ENDPOINT="https://localhost:$FR_DEMO_VAULT_PORT" \
  WRITER_ENDPOINT="https://localhost:$FR_DEMO_WRITER_PORT" HTTP_ADDR="127.0.0.1:$ingestor_http" \
  RECEIVE_WAIT_SECS=2 $(tls_env ingestor) \
  "$bin/fetchreward-ingestor" >"$logs/demo-ingestor.log" 2>&1 &
pids+=($!)
wait_ready ingestor "$ingestor_http"

say "seeding the sample into login-queue"
"$bin/fetchreward" seed --sample

say "waiting for the queue to drain"
"$bin/fetchreward" queue wait-empty --timeout 60

say "user_logins: the masked rows (first 15 of $(psql_demo -At -c 'SELECT count(*) FROM user_logins'))"
psql_demo -c "SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date
              FROM user_logins ORDER BY user_id LIMIT 15"

say "login-queue-dlq: malformed messages and why"
"$bin/fetchreward" dlq list --dlq-url "$DLQ_URL" --max 10

say "duplicates stay visible: tokens that occur more than once"
psql_demo -c "SELECT 'masked_ip' AS field, masked_ip AS token, count(*) AS occurrences
              FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY masked_ip HAVING count(*) > 1
              UNION ALL
              SELECT 'masked_device_id', masked_device_id, count(*)
              FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY masked_device_id HAVING count(*) > 1
              ORDER BY occurrences DESC, field, token LIMIT 12"

token=$(psql_demo -At -c "SELECT masked_ip FROM user_logins WHERE masked_ip IS NOT NULL
                          GROUP BY masked_ip ORDER BY count(*) DESC, masked_ip LIMIT 1")
as_identity() { # identity: CLI flags that present its certificate
  printf -- '--vault-endpoint https://localhost:%s --tls-ca %s --tls-cert %s --tls-key %s' \
    "$FR_DEMO_VAULT_PORT" "$certs/ca.pem" "$certs/$1.pem" "$certs/$1.key"
}
say "recovering one value through the vault, as the reader identity (audited)"
# shellcheck disable=SC2046
"$bin/fetchreward" detokenize "$token" --purpose "make demo: show recovery" $(as_identity reader)

say "the ingestor's identity may tokenize but not recover (refused and audited)"
# shellcheck disable=SC2046
if "$bin/fetchreward" detokenize "$token" --purpose "make demo: refused" $(as_identity ingestor); then
  echo "unexpected: the ingestor recovered a value" >&2
  exit 1
fi

device=$(psql_demo -At -c "SELECT masked_device_id FROM user_logins WHERE masked_device_id IS NOT NULL
                           ORDER BY masked_device_id LIMIT 1")
say "carol (support) sees only the masked forms, under her own identity (audited)"
# shellcheck disable=SC2046
"$bin/fetchreward" detokenize "$token" "$device" --masked --purpose "make demo: ticket 881" \
  $(as_identity person-carol)
# shellcheck disable=SC2046
if "$bin/fetchreward" detokenize "$token" --purpose "make demo: refused" $(as_identity person-carol); then
  echo "unexpected: support recovered a full value" >&2
  exit 1
fi

say "the audit trail (vault.audit_log)"
psql_demo -c "SELECT id, at, caller, method, purpose, token_count, outcome, found
              FROM vault.audit_log WHERE method <> 'Tokenize' ORDER BY id"

if [[ "${FR_DEMO_KEEP:-0}" == 1 ]]; then
  mkdir -p "$root/target/dev/run"
  printf '%s\n' "${pids[@]}" >"$root/target/dev/run/demo.pids"
  trap - EXIT
  say "the services keep running (pids in target/dev/run/demo.pids)"
  exit 0
fi

say "stopping the services"
stop_services
echo "done. The local stack is still up (make down stops it)."
