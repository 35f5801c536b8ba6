#!/usr/bin/env bash
# Fresh-key vs no-key cost of Warden, alternated in short windows (one Warden process per
# binary, fresh store), for a machine too noisy for single 5 s windows:
#
#   K=30 DUR=1 bench/idem_alternate.sh [warden-binary ...]   # default: target/release/warden
#
# For each binary: K times a `wrk -t1 -c64 -d${DUR}s` run without a key, then one with a fresh
# key per request (bench/idempotent.lua), Warden's CPU read from /proc around each; prints the
# medians and the median of the K per-pair ratios, with its 95% bootstrap interval. Warden
# and the bench upstream on CPU 0, wrk on CPU 1, as in bench/compare.sh. KEEP=dir keeps each
# run's raw windows there (mode and us a request, a line a window). Needs wrk and python3.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SHARED="${SHARED:-$ROOT/../shared/bench}"
K="${K:-30}"; DUR="${DUR:-1}"
[ "$#" -gt 0 ] || set -- "$ROOT/target/release/warden"
UP_BIN="$SHARED/upstream/target/release/bench-upstream"
[ -x "$UP_BIN" ] || (cd "$SHARED/upstream" && cargo build --release >&2)
taskset -c 0 "$UP_BIN" 127.0.0.1:18080 >/dev/null 2>&1 &
UPID=$!
WORK="$(mktemp -d /tmp/warden-alt.XXXXXX)"
trap 'kill $UPID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for W in "$@"; do
  D="$(mktemp -d "$WORK/run.XXXX")"
  cat >"$D/w.toml" <<TOML
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
url = "sqlite://$D/warden.db"
[[routes]]
path = "/v1/**"
auth = "bearer"
idempotency = "optional"
[[clients]]
id = "bench"
secret_sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
trusted_ips = ["127.0.0.0/8"]
scopes = ["read"]
TOML
  KEY="$("$W" --config "$D/w.toml" api-key create --client bench | sed -n 's/.*store it now): //p')"
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$W" --config "$D/w.toml" >"$D/log" 2>&1 &
  PID=$!
  sleep 1
  for _ in $(seq 1 "$K"); do
    for mode in none fresh; do
      T0=$(awk '{print $14+$15}' "/proc/$PID/stat")
      RES=$(IDEM_MODE=$mode BEARER="$KEY" taskset -c 1 wrk -t1 -c64 -d"${DUR}s" \
        -s "$HERE/idempotent.lua" http://127.0.0.1:18090/v1/orders)
      T1=$(awk '{print $14+$15}' "/proc/$PID/stat")
      REQ=$(awk '/requests in/{print $1}' <<<"$RES")
      echo "$mode $(python3 -c "print(($T1-$T0)*1e6/$(getconf CLK_TCK)/$REQ)")" >>"$D/res"
    done
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true
  [ -z "${KEEP:-}" ] || cp "$D/res" "$KEEP/$(basename "$W").$(date +%s).res"
  python3 - "$W" "$D/res" <<'PY'
import random, statistics as st, sys
name, path = sys.argv[1], sys.argv[2]
rows = [line.split() for line in open(path)]
none = [float(v) for m, v in rows if m == "none"]
fresh = [float(v) for m, v in rows if m == "fresh"]
ratios = sorted(f / n for n, f in zip(none, fresh))
# 95% bootstrap interval of the median ratio (fixed seed: the same data prints the same).
rng = random.Random(1)
boot = sorted(st.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
print(f"{name}: no key median {st.median(none):.1f} us, fresh key median {st.median(fresh):.1f} us, "
      f"median ratio {st.median(ratios):.3f} (95% CI {boot[50]:.3f}-{boot[1949]:.3f}, "
      f"range {ratios[0]:.2f}-{ratios[-1]:.2f}, {len(ratios)} pairs)")
PY
done
