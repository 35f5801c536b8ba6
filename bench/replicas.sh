#!/usr/bin/env bash
# Replicas on one PostgreSQL database, and the PostgreSQL store against SQLite, in one run.
# Results land in bench-results/replicas/ (not committed).
#
#   bench/replicas.sh                       # ROUNDS=1000 REPS=3 DURATION=5 by default
#   ROUNDS=2000 REPS=5 bench/replicas.sh
#
# 1. Revocation latency A -> B: two release Wardens (A, B) on one database, default runtime
#    (not pinned); `examples/revocation_latency.rs` issues a token at A, uses it at B, revokes it
#    at A and polls B until B refuses, ROUNDS times (and listens on Warden's channel itself, to
#    split the delay into NOTIFY delivery and what B adds). Run twice: B with the default
#    tokens.change_check_interval (1ms), then B with "0s" (the marker read on every request).
# 2. Bearer GET (API key, 64 connections) and token issuance (POST /v1/oauth/token, 16
#    connections, bench/issue_token.lua) against a Warden on the PostgreSQL store and one on a
#    SQLite store, same config otherwise, interleaved, REPS x DURATION s each. As in
#    bench/compare.sh, each Warden runs with TOKIO_WORKER_THREADS=1 pinned to CPU 0 with the
#    upstream (nginx, one worker), wrk on CPU 1; PostgreSQL is not pinned, and its CPU time
#    (all its processes) is counted separately.
#
# PostgreSQL: the script runs itself under .ci/with-postgres (a throw-away cluster, fsync and
# synchronous_commit on, removed at exit) unless TEST_WARDEN_PG_URL is already set.
# Needs: nginx, wrk, curl, psql; `cargo build --release` (the example is built if missing).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
if [ -z "${TEST_WARDEN_PG_URL:-}" ]; then
  if [ -n "${REPLICAS_UNDER_PG:-}" ]; then
    echo "replicas.sh: no PostgreSQL (.ci/with-postgres found no server)" >&2
    exit 2
  fi
  REPLICAS_UNDER_PG=1 exec "$ROOT/.ci/with-postgres" "$0" "$@"
fi

ROUNDS="${ROUNDS:-1000}"; REPS="${REPS:-3}"; DURATION="${DURATION:-5}"
UP_PORT=18180; A_PORT=18191; B_PORT=18192; PG_PORT=18193; SQ_PORT=18194
WARDEN="$ROOT/target/release/warden"
LATENCY="$ROOT/target/release/examples/revocation_latency"
[ -x "$WARDEN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -x "$LATENCY" ] || (cd "$ROOT" && cargo build --release --example revocation_latency >&2)
for tool in nginx wrk curl psql taskset; do
  command -v "$tool" >/dev/null || { echo "replicas.sh needs $tool" >&2; exit 2; }
done
WORK="$(mktemp -d /tmp/warden-replicas.XXXXXX)"
OUT="$ROOT/bench-results/replicas"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PG_URL="$TEST_WARDEN_PG_URL"
# The postmaster's pid (its CPU time and its backends'): from the server's own data directory.
PG_DATA="$(psql "$PG_URL" -qAt -c 'SHOW data_directory')"
PG_PID="$(head -n 1 "$PG_DATA/postmaster.pid")"

{
  echo "date: $(date -u '+%F %T') UTC; commit $(git -C "$ROOT" rev-parse --short HEAD)"
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "load before: $(uptime)"
  echo "PostgreSQL: $(psql "$PG_URL" -qAt -c 'SHOW server_version'), fsync=$(psql "$PG_URL" -qAt -c 'SHOW fsync'), synchronous_commit=$(psql "$PG_URL" -qAt -c 'SHOW synchronous_commit')"
  echo "ROUNDS=$ROUNDS REPS=$REPS DURATION=$DURATION"
} | tee "$OUT/machine.txt"

# CPU ticks (utime+stime, all threads) of a process and its descendants.
cpu_ticks() {
  python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1]
kids, ticks = {}, {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        s = open(f"/proc/{d}/stat").read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    kids.setdefault(f[1], []).append(d)
    ticks[d] = int(f[11]) + int(f[12])
tot, todo = 0, [root]
while todo:
    p = todo.pop()
    tot += ticks.get(p, 0)
    todo += kids.get(p, [])
print(tot)
PY
}
CLK_TCK=$(getconf CLK_TCK)

wait_ready() { # port pid log
  local i
  for i in $(seq 1 200); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; echo "Warden on :$1 exited" >&2; exit 1; }
    sleep 0.05
  done
  cat "$3" >&2; echo "Warden on :$1 not ready" >&2; exit 1
}

# ------------------------------------------------------------------ upstream (nginx, 1 worker)
mkdir -p "$WORK/up"
NGINX_USER=""
[ "$(id -u)" = 0 ] && NGINX_USER="user root;"
cat >"$WORK/up.conf" <<EOF
$NGINX_USER
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/up/body;
  proxy_temp_path $WORK/up/proxy;
  fastcgi_temp_path $WORK/up/fcgi;
  uwsgi_temp_path $WORK/up/uwsgi;
  scgi_temp_path $WORK/up/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server { listen 127.0.0.1:$UP_PORT backlog=4096; location / { return 200 "hello\n"; } }
}
EOF
taskset -c 0 nginx -p "$WORK/up" -c "$WORK/up.conf" -g 'daemon off;' >"$WORK/up.log" 2>&1 &
PIDS+=($!)

# ------------------------------------------------------------------ configs
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/seal-key"
chmod 600 "$WORK/seal-key"
config() { # name port store-url
  cat >"$WORK/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
[upstream]
url = "http://127.0.0.1:$UP_PORT"
[log]
access = false
level = "warn"
[endpoints]
readyz_checks_upstream = false
[store]
url = "$3"
seal_key_file = "$WORK/seal-key"
[[routes]]
path = "/api/**"
auth = "bearer"
[[clients]]
id = "bench"
secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
trusted_ips = ["127.0.0.0/8"]
scopes = ["read"]
TOML
}
config a "$A_PORT" "$PG_URL"
config b "$B_PORT" "$PG_URL"
config pg "$PG_PORT" "$PG_URL"
config sqlite "$SQ_PORT" "sqlite://$WORK/warden.db"

PIN=()  # a command prefix, e.g. (taskset -c 0)
start() { # name [env...]: starts Warden with $WORK/<name>.toml; sets STARTED
  local name="$1"; shift
  env "$@" "${PIN[@]}" "$WARDEN" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}
stop() { # pid: stops it and forgets it (so the cleanup never signals a reused pid)
  local pid kept=()
  kill "$1"; wait "$1" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
  PIDS=("${kept[@]}")
}

# ------------------------------------------------------------------ 1. revocation latency
revocation() { # label [env for B...]
  local label="$1"; shift
  start b "$@"; local b=$STARTED          # B first: it migrates the schema
  wait_ready "$B_PORT" "$b" "$WORK/b.log"
  start a; local a=$STARTED
  wait_ready "$A_PORT" "$a" "$WORK/a.log"
  echo "== revocation latency A -> B, $label" | tee -a "$OUT/revocation.txt"
  "$LATENCY" "127.0.0.1:$A_PORT" "127.0.0.1:$B_PORT" "$ROUNDS" "$PG_URL" | tee -a "$OUT/revocation.txt"
  stop "$a"; stop "$b"
}
: >"$OUT/revocation.txt"
revocation "B with tokens.change_check_interval = 1ms (default)"
revocation "B with tokens.change_check_interval = 0s" WARDEN_TOKENS__CHANGE_CHECK_INTERVAL=0s

# ------------------------------------------------------------------ 2. bearer GET, issuance
api_key() { "$WARDEN" --config "$WORK/$1.toml" api-key create --client bench | sed -n 's/.*store it now): //p'; }
declare -A PORT SUT KEY
PORT[sqlite]=$SQ_PORT; PORT[pg]=$PG_PORT
PIN=(taskset -c 0)
for store in sqlite pg; do
  KEY[$store]="$(api_key "$store")"
  [ -n "${KEY[$store]}" ] || { echo "no API key from the $store store" >&2; exit 1; }
  start "$store" TOKIO_WORKER_THREADS=1; SUT[$store]=$STARTED
  wait_ready "${PORT[$store]}" "$STARTED" "$WORK/$store.log"
done

RESULTS="$OUT/throughput.tsv"
printf 'rep\tscenario\tstore\trps\twarden_us\tpg_us\tp50_ms\tnon2xx\n' >"$RESULTS"
measure() { # rep scenario store wrk-args...
  local rep="$1" scenario="$2" store="$3"; shift 3
  local pid="${SUT[$store]}" w0 w1 p0 p1 res
  w0=$(cpu_ticks "$pid"); p0=$(cpu_ticks "$PG_PID")
  res=$(taskset -c 1 wrk --latency -t1 "$@")
  w1=$(cpu_ticks "$pid"); p1=$(cpu_ticks "$PG_PID")
  echo "$res" >"$OUT/wrk-$scenario-$store-$rep.txt"
  python3 - "$rep" "$scenario" "$store" "$w0" "$w1" "$p0" "$p1" "$CLK_TCK" <<PY | tee -a "$RESULTS"
import re, sys
rep, scenario, store = sys.argv[1:4]
w0, w1, p0, p1, tck = map(int, sys.argv[4:9])
res = """$res"""
n = int(re.search(r"(\d+) requests in", res).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", res).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", res)
p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", res)
scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
p50ms = float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan")
us = lambda a, b: (b - a) * 1e6 / tck / n
print(f"{rep}\t{scenario}\t{store}\t{rps:.0f}\t{us(w0, w1):.1f}\t{us(p0, p1):.1f}\t{p50ms:.3f}\t{bad.group(1) if bad else 0}")
PY
}
bearer() { # rep store seconds
  measure "$1" bearer "$2" -c64 -d"${3}s" -H "Authorization: Bearer ${KEY[$2]}" \
    "http://127.0.0.1:${PORT[$2]}/api/bench"
}
issuance() { # rep store seconds
  measure "$1" issuance "$2" -c16 -d"${3}s" -s "$HERE/issue_token.lua" \
    "http://127.0.0.1:${PORT[$2]}/v1/oauth/token"
}
echo "== bearer GET and issuance, PostgreSQL vs SQLite (rep 0 = 1 s warm-up, not counted)"
for store in sqlite pg; do bearer 0 "$store" 1 >/dev/null; issuance 0 "$store" 1 >/dev/null; done
for rep in $(seq 1 "$REPS"); do
  for store in sqlite pg; do bearer "$rep" "$store" "$DURATION"; done
  for store in sqlite pg; do issuance "$rep" "$store" "$DURATION"; done
done
echo "load after: $(uptime)" | tee -a "$OUT/machine.txt"

python3 - "$RESULTS" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if r["rep"] != "0"]
med = lambda sc, st, k: statistics.median(float(r[k]) for r in rows if r["scenario"] == sc and r["store"] == st)
print("medians over reps        store    rate/s  Warden CPU us/req  PG CPU us/req  p50 ms  non-2xx")
for sc in ("bearer", "issuance"):
    for st in ("sqlite", "pg"):
        bad = sum(int(r["non2xx"]) for r in rows if r["scenario"] == sc and r["store"] == st)
        print(f"{sc:<24} {st:<7} {med(sc, st, 'rps'):>8.0f} {med(sc, st, 'warden_us'):>18.1f} "
              f"{med(sc, st, 'pg_us'):>14.1f} {med(sc, st, 'p50_ms'):>7.3f} {bad:>8}")
b = lambda st, k: med("bearer", st, k)
print(f"bearer GET, PostgreSQL / SQLite: Warden CPU per request {b('pg', 'warden_us') / b('sqlite', 'warden_us'):.3f}x, "
      f"throughput {b('pg', 'rps') / b('sqlite', 'rps'):.3f}x (goal: PostgreSQL costs <= 1.1x)")
print(f"issuance with PostgreSQL: {med('issuance', 'pg', 'rps'):.0f} tokens/s (goal >= 2,000/s)")
PY
