#!/usr/bin/env bash
# Where PostgreSQL issuance time goes (docs/benchmarks.md, "Replicas on PostgreSQL").
#
#   bench/pg_issuance.sh warden     # one Warden (1 worker, CPU 0), wrk 5 s on CPU 1: tokens/s,
#                                   # WAL records/fsyncs and transactions per token (pg_stat_wal,
#                                   # pg_stat_database), per-statement time (pg_stat_statements)
#   CONNS=64 POOL=64 bench/pg_issuance.sh warden     # more connections and pool
#   SYNC_OFF=1 bench/pg_issuance.sh warden           # synchronous_commit=off (reference only)
#   bench/pg_issuance.sh pgbench    # PostgreSQL alone (pgbench, 16 clients, 5 s each): one token
#                                   # INSERT per transaction, 16 per transaction, the client SELECT
#
# WARDEN=<binary> runs another build (before/after comparisons).
# Runs itself under .ci/with-postgres (a throw-away cluster, restarted once with
# pg_stat_statements loaded). Needs a release build, wrk, psql, pgbench.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
MODE="${1:?mode: warden | pgbench}"
if [ -z "${TEST_WARDEN_PG_URL:-}" ]; then
  [ -z "${PG_ISSUANCE_UNDER_PG:-}" ] || { echo "no PostgreSQL" >&2; exit 2; }
  PG_ISSUANCE_UNDER_PG=1 exec "$ROOT/.ci/with-postgres" "$0" "$@"
fi
URL="$TEST_WARDEN_PG_URL"
PGBIN="$(dirname "$(readlink -f "$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")")"
WORK="$(mktemp -d /tmp/warden-pgiss.XXXXXX)"
PID=""
trap '[ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }; rm -rf "$WORK"' EXIT
DATA="$(psql "$URL" -qAt -c 'SHOW data_directory')"
psql "$URL" -qAt -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" \
  -c "ALTER SYSTEM SET track_wal_io_timing = on" >/dev/null
if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -w restart >/dev/null
else "$PGBIN/pg_ctl" -D "$DATA" -w restart >/dev/null; fi
psql "$URL" -qAt -c "CREATE EXTENSION pg_stat_statements" >/dev/null
if [ -n "${SYNC_OFF:-}" ]; then
  psql "$URL" -qAt -c "ALTER SYSTEM SET synchronous_commit = off" -c "SELECT pg_reload_conf()" >/dev/null
fi
echo "load: $(uptime)"

# A Warden on the database (it creates the schema and the client "bench", secret "secret").
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/seal"; chmod 600 "$WORK/seal"
cat >"$WORK/pg.toml" <<TOML
[server]
listen = "127.0.0.1:18195"
[upstream]
url = "http://127.0.0.1:18180"
[log]
access = false
level = "warn"
[store]
url = "$URL"
seal_key_file = "$WORK/seal"
[store.postgres]
pool_size = ${POOL:-16}
[[clients]]
id = "bench"
secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
trusted_ips = ["127.0.0.0/8"]
scopes = ["read"]
TOML
TOKIO_WORKER_THREADS=1 taskset -c 0 "${WARDEN:-$ROOT/target/release/warden}" --config "$WORK/pg.toml" >"$WORK/warden.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null http://127.0.0.1:18195/healthz 2>/dev/null && break; sleep 0.05; done

case "$MODE" in
  warden)
    taskset -c 1 wrk -t1 -c16 -d2s -s "$HERE/issue_token.lua" http://127.0.0.1:18195/v1/oauth/token >/dev/null
    snap() { psql "$URL" -qAt -F' ' -c "SELECT wal_records, wal_bytes, wal_sync, \
      wal_sync_time, (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) \
      FROM pg_stat_wal"; }
    psql "$URL" -qAt -c "SELECT pg_stat_statements_reset()" >/dev/null
    S0="$(snap)"
    taskset -c 1 wrk -t1 -c"${CONNS:-16}" -d5s -s "$HERE/issue_token.lua" \
      http://127.0.0.1:18195/v1/oauth/token >"$WORK/wrk.txt"
    S1="$(snap)"
    grep -E "Requests/sec|Non-2xx" "$WORK/wrk.txt" || true
    python3 - "$S0" "$S1" "$(awk '/requests in/{print $1}' "$WORK/wrk.txt")" <<'PY'
import sys
a, b, n = [float(x) for x in sys.argv[1].split()], [float(x) for x in sys.argv[2].split()], int(sys.argv[3])
for name, x, y in zip(["WAL records", "WAL bytes", "WAL fsyncs", "WAL fsync ms", "transactions"], a, b):
    print(f"{name:>13} per token: {(y - x) / n:8.3f}   (all: {y - x:.0f})")
print(f"   ms a fsync: {(b[3] - a[3]) / max(b[2] - a[2], 1):8.3f}")
PY
    psql "$URL" -c "SELECT calls, round(mean_exec_time::numeric * 1000, 1) AS mean_us, \
      round(total_exec_time::numeric, 1) AS total_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 60) AS query \
      FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 4";;
  pgbench)
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    COLS="id, hash, kind, client_id, account, scopes, trusted_ips, created_at, updated_at, expires_at, enabled"
    cat >"$WORK/single.sql" <<SQL
\set x random(1, 9000000000000000)
INSERT INTO tokens ($COLS) VALUES ('t' || :client_id || '-' || :x, sha256(('t' || :client_id || '-' || :x)::bytea), 'access', 'bench', 'acct', ARRAY['read'], '{}', 1, 1, 3601, true);
SQL
    cat >"$WORK/batch16.sql" <<SQL
\set x random(1, 9000000000000000)
INSERT INTO tokens ($COLS) SELECT 't' || :client_id || '-' || :x || '-' || g, sha256(('t' || :client_id || '-' || :x || '-' || g)::bytea), 'access', 'bench', 'acct', ARRAY['read'], '{}', 1, 1, 3601, true FROM generate_series(1, 16) g;
SQL
    cat >"$WORK/select.sql" <<SQL
SELECT c.id, s.hashes FROM clients c LEFT JOIN LATERAL (SELECT array_agg(hash ORDER BY n) AS hashes FROM client_secrets WHERE client_id = c.id) s ON true LEFT JOIN LATERAL (SELECT array_agg(key_id ORDER BY n) AS ids FROM client_keys WHERE client_id = c.id) k ON true WHERE c.id = 'bench';
SQL
    for script in single batch16 select; do
      rows=1; [ "$script" = batch16 ] && rows=16
      tps="$(taskset -c 1 "$PGBIN/pgbench" -n -M prepared -c 16 -j 1 -T 5 -f "$WORK/$script.sql" "$URL" 2>&1 \
        | awk '/^tps/{print $3}')"
      python3 -c "print(f'$script: {$tps:.0f} transactions/s = {$tps * $rows:.0f} rows/s')"
    done;;
  *) echo "mode: warden | pgbench" >&2; exit 2;;
esac
