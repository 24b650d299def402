#!/usr/bin/env bash
# Reload soak: keep-alive load through a release build of authgate while its configuration is
# rewritten N times (two valid versions and one invalid, in turn), then report how many requests
# failed (there should be none) and the gateway's memory before and after.
#
#   benches/load/reload_soak.sh [reloads=20] [seconds-per-reload=1 (whole seconds)]
#
# Needs wrk (installed from Debian's packages when missing). Everything runs on 127.0.0.1, and
# every loop is bounded by the reload count.
set -euo pipefail
cd "$(dirname "$0")/../.."
reloads=${1:-20}
pause=${2:-1}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin authgate --example echo_upstream

work=$(mktemp -d)
cleanup() { kill "${gateway:-}" "${upstream_a:-}" "${upstream_b:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

target/release/examples/echo_upstream 127.0.0.1:39001 >/dev/null & upstream_a=$!
target/release/examples/echo_upstream 127.0.0.1:39002 >/dev/null & upstream_b=$!
version() {
  printf '[server]\nhttp = "127.0.0.1:39080"\n\n[admin]\nlisten = "127.0.0.1:39901"\n\n[[routes]]\nid = "soak"\nupstream = "http://127.0.0.1:%s"\npublic = true\n' "$1"
}
version 39001 > "$work/gateway.toml"
RUST_LOG=warn target/release/authgate run --config "$work/gateway.toml" 2>"$work/gateway.log" & gateway=$!
for _ in $(seq 1 50); do curl -sf -o /dev/null http://127.0.0.1:39080/ && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$gateway/status"; }
before=$(rss)

duration=$(( reloads * pause + 2 ))
wrk -t1 -c32 -d"${duration}s" http://127.0.0.1:39080/ > "$work/wrk.txt" &
load=$!
for i in $(seq 1 "$reloads"); do
  case $(( i % 3 )) in
    0) printf '[server]\nhttp = "BROKEN"\n' > "$work/gateway.toml" ;;
    1) version 39002 > "$work/gateway.toml.new" && mv "$work/gateway.toml.new" "$work/gateway.toml" ;;
    2) version 39001 > "$work/gateway.toml.new" && mv "$work/gateway.toml.new" "$work/gateway.toml" ;;
  esac
  kill -HUP "$gateway"
  sleep "$pause"
done
wait "$load"
after=$(rss)

echo "reloads: $reloads (every third one invalid)"
grep -E "requests in|Requests/sec|Socket errors|Non-2xx" "$work/wrk.txt" || true
# Each change is seen twice (SIGHUP and the file watcher), so counts exceed the reloads.
curl -s http://127.0.0.1:39901/metrics | grep '^authgate_config_reloads_total' || true
echo "gateway RSS: ${before} KiB before, ${after} KiB after"
if grep -qE "Socket errors|Non-2xx" "$work/wrk.txt"; then echo "FAILED requests seen"; exit 1; fi
echo "no failed requests"
