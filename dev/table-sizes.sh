#!/usr/bin/env bash
# Size of user_logins and of vault.pii_tokens per million rows, on the local stack's Postgres:
# a scratch database gets both schemas from the services' migrations, 1,000,000 rows shaped
# like the pipeline's (tokens of the real length, UUID message and user ids), then a VACUUM
# ANALYZE and the sizes of table, indexes and TOAST. Usage: bash dev/table-sizes.sh [ROWS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=/dev/null
. target/dev/env
rows="${1:-1000000}"
db="table_sizes_$$"
psql_db() { psql "${DATABASE_URL%/*}/$1" -X -q -v ON_ERROR_STOP=1 "${@:2}"; }
psql_db postgres -c "CREATE DATABASE $db"
trap 'psql_db postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
# The vault's migrations run in its schema, with its migration table, both made before them.
psql_db "$db" -c "CREATE SCHEMA vault" \
  -c "CREATE TABLE vault.__diesel_schema_migrations (version varchar(50) PRIMARY KEY, run_on timestamp NOT NULL DEFAULT now())"
for migration in crates/writer/migrations/*/up.sql crates/vault/migrations/*/up.sql; do
  psql_db "$db" -f "$migration" >/dev/null 2>&1
done
psql_db "$db" <<SQL
SELECT public.fetchreward_ensure_login_partition(date '2026-11-01');
-- A token is its kind, its version and 43 base64url characters of a 32-byte MAC.
CREATE FUNCTION pg_temp.token(kind text, n bigint) RETURNS text LANGUAGE sql AS
  \$\$ SELECT kind || '_v1_' || left(translate(encode(sha256(n::text::bytea), 'base64'), '+/=', '-_'), 43) \$\$;
\timing on
INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, locale,
                         app_version, app_version_raw, create_date)
SELECT gen_random_uuid()::text, gen_random_uuid()::text, 'android', pg_temp.token('ip', i % 50000),
       pg_temp.token('dev', i % 50000), 'RU', 230, '2.3.0', date '2026-11-01' + (i % 30)::int
FROM generate_series(1, $rows) AS i;
-- A sealed value: a 12-byte nonce and the AES-GCM ciphertext of a 15-character ip (+16 tag).
INSERT INTO vault.pii_tokens (token, kind, data_key_version, nonce, ciphertext)
SELECT pg_temp.token('ip', i), 'ip', 1, substr(sha256(i::text::bytea), 1, 12), substr(sha512(i::text::bytea), 1, 31)
FROM generate_series(1, $rows) AS i;
\timing off
VACUUM ANALYZE;
SELECT 'user_logins_2026_11' AS "table", pg_size_pretty(pg_table_size('user_logins_2026_11')) AS heap_and_toast,
       pg_size_pretty(pg_indexes_size('user_logins_2026_11')) AS indexes,
       pg_size_pretty(pg_total_relation_size('user_logins_2026_11')) AS total
UNION ALL
SELECT 'vault.pii_tokens', pg_size_pretty(pg_table_size('vault.pii_tokens')),
       pg_size_pretty(pg_indexes_size('vault.pii_tokens')),
       pg_size_pretty(pg_total_relation_size('vault.pii_tokens'));
SQL
