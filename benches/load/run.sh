#!/usr/bin/env bash
# Load benchmark: the same workload, in one run, through
#   1. the upstream directly (the limit)          5. authgate, JWT RS256, 10,000 distinct tokens
#   2. nginx, plain keep-alive reverse proxy      6. authgate, API key
#   3. HAProxy 2.6, jwt_verify RS256 + exp/iss/aud 7. authgate and nginx over TLS 1.3
#   4. authgate, JWT RS256, one token (cache hit)
# plus p99 latency at a fixed moderate rate (nginx plain vs authgate JWT) and the RSS of each
# proxy while it holds 1,000 keep-alive connections. Prints a markdown table.
#
#   benches/load/run.sh            # full: 10 s per row, 1 then 2 proxy workers (~5 min)
#   benches/load/run.sh --quick    # smoke: 2 s per row, 1 worker (< 1 min once built)
#
# Method. The upstream is nginx answering `return 200` (one worker). The load generator is wrk,
# one thread, 64 keep-alive connections, fixed duration. Every proxy gets the same number of
# workers (authgate `workers`, nginx `worker_processes`, HAProxy `nbthread`) and the same CPU
# pinning: on a 2-core machine the proxy runs on CPU 0 and wrk + upstream on CPU 1; with two
# workers the proxy may use both CPUs (and so competes with wrk, the same way for every proxy).
# Access logs are off everywhere (authgate: RUST_LOG=warn). All traffic stays on 127.0.0.1,
# every loop is bounded, and every server is stopped on exit. Before each proxy is measured,
# curl checks that it answers 200 to a valid credential and 401 to a missing one, so a
# misconfigured proxy cannot produce a fast but meaningless row.
#
# Needs nginx, haproxy, wrk, openssl and curl (installed from Debian's packages when missing;
# the system services are never started: each server runs with its own config in a temp dir).
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=false
[[ "${1:-}" == "--quick" ]] && quick=true
if $quick; then seconds=2; worker_counts=(1); else seconds=10; worker_counts=(1 2); fi
connections=64

missing=()
for tool in nginx haproxy wrk openssl curl taskset; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  packages=$(printf '%s\n' "${missing[@]}" | sed 's/taskset/util-linux/' | sort -u | tr '\n' ' ')
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
fi
cargo build --release --quiet --bin authgate --example mint_tokens

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cpus=$(nproc)
proxy_cpus() { if (($1 == 1 || cpus < 2)); then echo 0; else echo "0-$((cpus - 1))"; fi; }
load_cpu=$((cpus > 1 ? 1 : 0))

upstream_port=39200 nginx_port=39201 nginx_tls_port=39202 haproxy_port=39203
authgate_port=39204 authgate_tls_port=39205 admin_port=39206
issuer="https://bench.example/" audience="bench-api"

# --- keys, certificate, tokens ------------------------------------------------------------------
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null
openssl rsa -in "$work/rsa.pem" -pubout -out "$work/rsa.pub.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/tls-key.pem" -out "$work/tls.pem" 2>/dev/null
target/release/examples/mint_tokens "$work/rsa.pem" 10000 "$issuer" "$audience" 3600 >"$work/tokens.txt"
token=$(head -1 "$work/tokens.txt")
api_key_output=$(target/release/authgate keys new --subject bench 2>/dev/null)
api_key=$(head -1 <<<"$api_key_output")
tail -n +2 <<<"$api_key_output" >"$work/keys.toml"

# --- configurations -----------------------------------------------------------------------------
cat >"$work/upstream.conf" <<EOF
worker_processes 1;
pid $work/upstream.pid;
error_log $work/upstream-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$upstream_port; location / { return 200 "ok\n"; } }
}
EOF

write_nginx() { # workers
  cat >"$work/nginx.conf" <<EOF
worker_processes $1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$upstream_port; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$nginx_port;
    listen 127.0.0.1:$nginx_tls_port ssl;
    ssl_certificate $work/tls.pem;
    ssl_certificate_key $work/tls-key.pem;
    ssl_protocols TLSv1.3;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
}

write_haproxy() { # workers
  cat >"$work/haproxy.cfg" <<EOF
global
  nbthread $1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend jwt
  bind 127.0.0.1:$haproxy_port
  http-request deny deny_status 401 unless { req.hdr(authorization) -m beg "Bearer " }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/rsa.pub.pem") -m int 1 }
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless { var(txn.iss) -m str $issuer }
  http-request deny deny_status 401 unless { var(txn.aud) -m str $audience }
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request del-header x-auth-subject
  http-request set-header x-auth-subject %[var(txn.bearer),jwt_payload_query('\$.sub')]
  default_backend app
backend app
  http-reuse always
  server upstream 127.0.0.1:$upstream_port maxconn 1000
EOF
}

write_authgate() { # workers
  cat >"$work/gateway.toml" <<EOF
[server]
http = "127.0.0.1:$authgate_port"
https = "127.0.0.1:$authgate_tls_port"
workers = $1
max_connections = 20000

[admin]
listen = "127.0.0.1:$admin_port"

[[tls.certificates]]
cert = "tls.pem"
key = "tls-key.pem"

[[issuers]]
id = "bench"
issuer = "$issuer"
audiences = ["$audience"]
algorithms = ["RS256"]
keys = ["rsa.pub.pem"]

[api_keys]
file = "keys.toml"

[upstreams.app]
targets = ["http://127.0.0.1:$upstream_port"]

[[routes]]
id = "jwt"
upstream = "app"
auth = ["jwt"]

[[routes]]
id = "key"
path = "/key"
upstream = "app"
auth = ["api_key"]
EOF
}

# --- running servers ----------------------------------------------------------------------------
wait_for() { # url: bounded wait until it answers at all
  for _ in $(seq 1 100); do curl -sk -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "nothing answers at $1" >&2
  exit 1
}
expect() { # status url [curl args]: the proxy decides correctly, or the run stops
  local want=$1 url=$2
  shift 2
  local got
  got=$(curl -sk -o /dev/null -w '%{http_code}' "$@" "$url")
  [[ "$got" == "$want" ]] || { echo "expected $want from $url, got $got" >&2; exit 1; }
}

taskset -c "$load_cpu" nginx -c "$work/upstream.conf" -g 'daemon off;' & pids+=($!)
wait_for "http://127.0.0.1:$upstream_port/"

start_proxies() { # workers
  local cpu_list
  cpu_list=$(proxy_cpus "$1")
  write_nginx "$1"; write_haproxy "$1"; write_authgate "$1"
  taskset -c "$cpu_list" nginx -c "$work/nginx.conf" -g 'daemon off;' & nginx_pid=$!
  taskset -c "$cpu_list" haproxy -f "$work/haproxy.cfg" -db -q & haproxy_pid=$!
  (cd "$work" && RUST_LOG=warn exec taskset -c "$cpu_list" "$OLDPWD/target/release/authgate" run --config gateway.toml) & authgate_pid=$!
  pids+=("$nginx_pid" "$haproxy_pid" "$authgate_pid")
  wait_for "http://127.0.0.1:$nginx_port/"
  wait_for "http://127.0.0.1:$haproxy_port/"
  wait_for "http://127.0.0.1:$authgate_port/"
  expect 200 "http://127.0.0.1:$nginx_port/"
  expect 200 "https://localhost:$nginx_tls_port/"
  expect 200 "http://127.0.0.1:$haproxy_port/" -H "Authorization: Bearer $token"
  expect 401 "http://127.0.0.1:$haproxy_port/"
  expect 401 "http://127.0.0.1:$haproxy_port/" -H "Authorization: Bearer ${token}x"
  expect 200 "http://127.0.0.1:$authgate_port/" -H "Authorization: Bearer $token"
  expect 200 "https://localhost:$authgate_tls_port/" -H "Authorization: Bearer $token"
  expect 401 "http://127.0.0.1:$authgate_port/"
  expect 401 "http://127.0.0.1:$authgate_port/" -H "Authorization: Bearer ${token}x"
  expect 200 "http://127.0.0.1:$authgate_port/key" -H "X-API-Key: $api_key"
  expect 401 "http://127.0.0.1:$authgate_port/key"
}

stop_proxies() {
  kill "$nginx_pid" "$haproxy_pid" "$authgate_pid" 2>/dev/null || true
  wait "$nginx_pid" "$haproxy_pid" "$authgate_pid" 2>/dev/null || true
}

# --- measuring ----------------------------------------------------------------------------------
results="$work/results.txt"
: >"$results"

to_ms() { # wrk latency (123.45us, 1.23ms, 1.20s) → milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
    printf "%.2f", n }'
}

measure() { # label workers url [wrk args…]
  local label=$1 workers=$2 url=$3
  shift 3
  local out
  out=$(taskset -c "$load_cpu" wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@" "$url")
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx or 3xx responses:/ {print $NF} /Socket errors:/ {print "socket"}' <<<"$out" | tr '\n' ' ')
  [[ -z "$errors" ]] || { echo "$label: errors during the run: $errors" >&2; echo "$out" >&2; exit 1; }
  echo "$label|$workers|$rps|$p50|$p99" >>"$results"
  printf '  %-40s %s workers %8s req/s  p50 %6s ms  p99 %6s ms\n' "$label" "$workers" "$rps" "$p50" "$p99" >&2
}

rss_kib() { # pids… → summed VmRSS of them and their children
  local total=0 pid child
  for pid in "$@"; do
    for child in $pid $(pgrep -P "$pid" || true); do
      total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$child/status" 2>/dev/null || echo 0)))
    done
  done
  echo "$total"
}

memory_at_1000() { # label url pid [wrk args…]: RSS while 1,000 keep-alive connections are served
  local label=$1 url=$2 pid=$3
  shift 3
  taskset -c "$load_cpu" wrk -t1 -c1000 -d"$((seconds + 1))s" "$@" "$url" >/dev/null &
  local load=$!
  sleep "$seconds"
  local kib
  kib=$(rss_kib "$pid")
  wait "$load"
  printf '%s|%.1f\n' "$label" "$(awk -v k="$kib" 'BEGIN {print k / 1024}')" >>"$work/memory.txt"
}

echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)" >&2
echo "tools: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(target/release/authgate --version)" >&2
echo "wrk: 1 thread, $connections connections, ${seconds}s per row; proxy on CPU $(proxy_cpus 1) (1 worker), load + upstream on CPU $load_cpu" >&2

measure "upstream directly" - "http://127.0.0.1:$upstream_port/"
: >"$work/memory.txt"
for workers in "${worker_counts[@]}"; do
  start_proxies "$workers"
  measure "nginx plain proxy" "$workers" "http://127.0.0.1:$nginx_port/"
  measure "HAProxy JWT RS256" "$workers" "http://127.0.0.1:$haproxy_port/" -H "Authorization: Bearer $token"
  measure "authgate JWT RS256 (one token, cached)" "$workers" "http://127.0.0.1:$authgate_port/" -H "Authorization: Bearer $token"
  TOKENS_FILE="$work/tokens.txt" TOKENS_PATH=/ \
    measure "authgate JWT RS256 (10,000 tokens)" "$workers" "http://127.0.0.1:$authgate_port/" -s benches/load/tokens.lua
  TOKENS_FILE="$work/tokens.txt" TOKENS_PATH=/ \
    measure "HAProxy JWT RS256 (10,000 tokens)" "$workers" "http://127.0.0.1:$haproxy_port/" -s benches/load/tokens.lua
  measure "authgate API key" "$workers" "http://127.0.0.1:$authgate_port/key" -H "X-API-Key: $api_key"
  measure "nginx TLS 1.3" "$workers" "https://localhost:$nginx_tls_port/"
  measure "authgate TLS 1.3, JWT cached" "$workers" "https://localhost:$authgate_tls_port/" -H "Authorization: Bearer $token"
  if ((workers == 1)); then
    # Fixed rate: 64 connections, one request each per 20 ms ≈ 3,200 req/s.
    PACE_MS=20 measure "nginx plain, paced ~3.2k req/s" "$workers" "http://127.0.0.1:$nginx_port/" -s benches/load/paced.lua
    PACE_MS=20 measure "authgate JWT, paced ~3.2k req/s" "$workers" "http://127.0.0.1:$authgate_port/" -s benches/load/paced.lua -H "Authorization: Bearer $token"
    memory_at_1000 "nginx plain proxy (master + worker)" "http://127.0.0.1:$nginx_port/" "$nginx_pid"
    memory_at_1000 "HAProxy JWT" "http://127.0.0.1:$haproxy_port/" "$haproxy_pid" -H "Authorization: Bearer $token"
    memory_at_1000 "authgate JWT" "http://127.0.0.1:$authgate_port/" "$authgate_pid" -H "Authorization: Bearer $token"
  fi
  stop_proxies
done

# --- the table ----------------------------------------------------------------------------------
awk -F'|' '
  { label[NR] = $1; workers[NR] = $2; rps[NR] = $3; p50[NR] = $4; p99[NR] = $5
    if ($1 == "nginx plain proxy") nginx[$2] = $3
    if ($1 == "HAProxy JWT RS256") haproxy[$2] = $3 }
  END {
    print "| setup | workers | req/s | p50 ms | p99 ms | × nginx plain | × HAProxy JWT |"
    print "|---|---|---:|---:|---:|---:|---:|"
    for (i = 1; i <= NR; i++) {
      w = workers[i]; vs_nginx = "–"; vs_haproxy = "–"
      if (label[i] !~ /paced/ && w in nginx) vs_nginx = sprintf("%.2f", rps[i] / nginx[w])
      if (label[i] !~ /paced/ && w in haproxy) vs_haproxy = sprintf("%.2f", rps[i] / haproxy[w])
      if (w == "-") { vs_nginx = sprintf("%.2f", rps[i] / nginx[1]); vs_haproxy = sprintf("%.2f", rps[i] / haproxy[1]) }
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", label[i], w, rps[i], p50[i], p99[i], vs_nginx, vs_haproxy
    }
  }' "$results"
echo
echo "| RSS while serving 1,000 keep-alive connections (1 worker) | MiB |"
echo "|---|---:|"
awk -F'|' '{ printf "| %s | %s |\n", $1, $2 }' "$work/memory.txt"
