#!/usr/bin/env bash
# Runs ../shared/bench/run.sh (Warden vs nginx vs the upstream directly, one interleaved run)
# for one of Warden's scenarios, from a fresh store. Results land in bench-results/<scenario>/.
#
#   bench/compare.sh public      # public route: GET and 1 KiB POST, loaded and one connection
#   bench/compare.sh bearer      # bearer-checked GET (an API key), loaded and one connection
#   bench/compare.sh signed      # RFC 9421-signed 1 KiB POST with digest, bearer and IP check
#   bench/compare.sh signed1m    # the same with a 1 MiB body
#   bench/compare.sh issuance    # token issuance rate (wrk only, Warden alone)
#   bench/compare.sh idempotent  # 1 KiB POST without a key, with a fresh key, and replayed
#                                # (wrk only, Warden alone, same run)
#
# Needs: nginx, wrk (apt-get install -y nginx-light wrk), python3 with `cryptography` for the
# signed scenarios, and a release build (cargo build --release).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SHARED="${SHARED:-$ROOT/../shared/bench}"
SCENARIO="${1:?scenario: public | bearer | signed | signed1m | issuance}"
REPS="${REPS:-3}"; DURATION="${DURATION:-5}"
WARDEN="$ROOT/target/release/warden"
[ -x "$WARDEN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
WORK="$(mktemp -d /tmp/warden-bench.XXXXXX)"
OUT="$ROOT/bench-results/$SCENARIO"
mkdir -p "$OUT"
trap 'rm -rf "$WORK"' EXIT

config() { # extra TOML appended to the common part
  cat >"$WORK/warden.toml" <<TOML
[server]
listen = "127.0.0.1:18090"
[upstream]
url = "http://127.0.0.1:18080"
[log]
access = false
level = "warn"
[endpoints]
readyz_checks_upstream = false
[store]
url = "sqlite://$WORK/warden.db"
$1
TOML
}
SUT_CMD="env WARDEN_UPSTREAM__URL=http://{UPSTREAM} $WARDEN --config $WORK/warden.toml"
CLIENT='[[clients]]
id = "bench"
secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
trusted_ips = ["127.0.0.0/8"]
scopes = ["read"]'
api_key() { "$WARDEN" --config "$WORK/warden.toml" api-key create --client bench | sed -n 's/.*store it now): //p'; }

case "$SCENARIO" in
  public)
    config '[[routes]]
path = "/**"
auth = "none"'
    "$SHARED/run.sh" --sut 127.0.0.1:18090 --sut-cmd "$SUT_CMD" --reps "$REPS" --duration "$DURATION" --out "$OUT";;
  bearer)
    config "[[routes]]
path = \"/**\"
auth = \"bearer\"
$CLIENT"
    KEY="$(api_key)"
    "$SHARED/run.sh" --sut 127.0.0.1:18090 --sut-cmd "$SUT_CMD" --reps "$REPS" --duration "$DURATION" \
      --scenarios get,get_c1 --header "Authorization: Bearer $KEY" --out "$OUT";;
  signed|signed1m)
    SIZE=1024; N=400000
    if [ "$SCENARIO" = signed1m ]; then SIZE=1048576; N=150; fi  # wrk's LuaJIT holds them all
    config "[signatures]
max_age = \"2h\"
[[routes]]
path = \"/v1/**\"
auth = \"bearer\"
idempotency = \"off\"
$CLIENT
[[clients.keys]]
id = \"bench-key-ed25519\"
public_key = \"REyYh3sy16HX1T6Sa_O89Tp_MqM7M2UJVyVV5sh8-zA\""
    KEY="$(api_key)"
    # the key pair gen_signed.py derives from its default seed (public key above)
    python3 "$SHARED/gen_signed.py" -n "$N" --host 127.0.0.1:18090 --path /v1/orders --body-size "$SIZE" \
      --token "$KEY" --components '@method @authority @path content-digest content-type idempotency-key authorization' \
      --out "$WORK/signed.reqs" >&2
    REQS_FILE="$WORK/signed.reqs" "$SHARED/run.sh" --sut 127.0.0.1:18090 --sut-cmd "$SUT_CMD" \
      --reps "$REPS" --duration "$DURATION" --lua-post "$SHARED/lua/replay.lua" \
      --scenarios post1k,post1k_c1 --out "$OUT";;
  issuance)
    config "$CLIENT"
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$WARDEN" --config "$WORK/warden.toml" >"$OUT/sut.log" 2>&1 &
    PID=$!
    sleep 1
    T0=$(awk '{print $14+$15}' "/proc/$PID/stat")
    taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" -s "$HERE/issue_token.lua" http://127.0.0.1:18090/v1/oauth/token | tee "$OUT/wrk.txt"
    T1=$(awk '{print $14+$15}' "/proc/$PID/stat")
    kill "$PID"; wait "$PID" 2>/dev/null || true
    REQ=$(awk '/requests in/{print $1}' "$OUT/wrk.txt")
    echo "warden cpu per issuance: $(python3 -c "print(round(($T1-$T0)*1e6/$(getconf CLK_TCK)/$REQ,1))") us" | tee -a "$OUT/wrk.txt";;
  idempotent)
    config "[[routes]]
path = \"/v1/**\"
auth = \"bearer\"
idempotency = \"optional\"
$CLIENT"
    KEY="$(api_key)"
    UP_BIN="$SHARED/upstream/target/release/bench-upstream"
    [ -x "$UP_BIN" ] || (cd "$SHARED/upstream" && cargo build --release >&2)
    taskset -c 0 "$UP_BIN" 127.0.0.1:18080 >/dev/null 2>&1 &
    UPID=$!
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$WARDEN" --config "$WORK/warden.toml" >"$OUT/sut.log" 2>&1 &
    PID=$!
    sleep 1
    : >"$OUT/wrk.txt"
    for rep in $(seq 1 "$REPS"); do
      for mode in none fresh replay; do
        T0=$(awk '{print $14+$15}' "/proc/$PID/stat")
        RES=$(IDEM_MODE=$mode BEARER="$KEY" taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" \
          -s "$HERE/idempotent.lua" http://127.0.0.1:18090/v1/orders)
        T1=$(awk '{print $14+$15}' "/proc/$PID/stat")
        REQ=$(awk '/requests in/{print $1}' <<<"$RES")
        RPS=$(awk '/Requests\/sec/{print $2}' <<<"$RES")
        BAD=$(awk '/Non-2xx/{print $NF}' <<<"$RES")
        CPU=$(python3 -c "print(round(($T1-$T0)*1e6/$(getconf CLK_TCK)/$REQ,1))")
        echo "rep $rep mode=$mode rps=$RPS warden_cpu_us_per_req=$CPU non2xx=${BAD:-0}" | tee -a "$OUT/wrk.txt"
      done
    done
    kill "$PID" "$UPID"; wait 2>/dev/null || true;;
  *) echo "unknown scenario $SCENARIO" >&2; exit 2;;
esac
