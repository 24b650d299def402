#!/usr/bin/env bash
# Load benchmark: the same keep-alive HTTP workload, on one machine, through
#   1. the upstream directly (the ceiling for every other row),
#   2. nginx as a plain reverse proxy (keep-alive to the upstream, no auth),
#   3. HAProxy verifying the same RS256 JWT (jwt_verify + alg, exp, iss, aud; injects the subject),
#   4. authgate, JWT RS256, one token repeated (its verified-token cache hits),
#   5. authgate, JWT RS256, 10,000 distinct tokens in rotation (cache smaller than the rotation,
#      so nearly every request verifies a signature),
#   6. authgate, API key, and API key + a rate limit that never refuses (the limiter's cost),
#      and a rate-limited public route with 10,000 distinct consumers (forwarded addresses),
#   7. authgate and nginx over TLS 1.3 (same self-signed certificate),
#   7b. forward-auth: nginx with auth_request asking authgate's /authz, JWT (CPU of both),
#   plus authgate on a public route (no credential: the proxying cost alone),
#   8. p99 latency at a fixed moderate rate (~3,000 req/s) for nginx plain and authgate JWT,
#   9. RSS of authgate and nginx holding 1,000 keep-alive connections under load,
#  10. HTTP/2 clients (h2load, h2c): nginx plain and authgate on a public route,
#  11. a gRPC unary call (h2load posting one gRPC frame): the gRPC server directly, through
#      nginx grpc_pass, and through authgate with a JWT (h2c to the upstream),
# and prints a markdown table led by the server's CPU time per request (which other load on the
# machine disturbs far less than req/s) and its ratio to nginx doing the same kind of work, then
# req/s, p50, p99, the memory lines and the project's targets, each met or missed.
#
# Before it starts it checks that the machine is quiet: the 1-minute load average (at most
# QUIET_LOAD, default 0.5) and the upstream-direct row's CPU per request against its usual
# figure (USUAL_UPSTREAM_CPU_US, within 25 %). A run that fails either says so at the top of its
# report: its figures are not for publishing.
#
#   benches/load/run.sh [--quick]
#
# --quick: 2 s per row, one worker only, 2,000 rotating tokens (a smoke run, under a minute
# once built). Without it: 10 s per row, one worker and then two, 10,000 tokens (~6 minutes).
#
# Fairness on 2 cores:
# - One load generator for every row: wrk, keep-alive, -t1 -c64, fixed duration, after a short
#   warm-up run (connections open, upstream pools filled).
# - The upstream is a separate nginx (`worker_processes 1`, `return 200 "ok"`), the same for all.
# - Every proxy gets the same number of workers: authgate `[server] workers`, nginx
#   `worker_processes`, HAProxy `nbthread`.
# - Pinning (taskset): wrk and the upstream always share CPU 1. A 1-worker proxy runs alone on
#   CPU 0, so it has a whole core and never competes with its own load. A 2-worker proxy may
#   use CPUs 0 and 1 (it then shares CPU 1 with wrk and the upstream; that is the same for every
#   proxy, and 2-worker rows are partly bounded by the load generator). The direct-upstream row
#   uses the same CPU 1 for wrk and upstream, so it is the ceiling of this very setup.
# - Access logs off everywhere: nginx `access_log off`, HAProxy no `log`, authgate
#   `RUST_LOG=warn,rustls=error` (its access log is at info).
#
# Every server is started here with its own config in a temporary directory, on 127.0.0.1 high
# ports, and killed on exit; the system's nginx/HAProxy services are never started. Before a row
# is measured, curl checks that a valid credential gets 200 and a missing or bad one 401, so a
# misconfigured proxy cannot produce a fast but meaningless row. Needs root only to install
# missing tools (nginx, haproxy, wrk, openssl, curl) from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"

quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
# rotation: distinct tokens for row 5 (RSA signing costs ~1 ms each, so quick mode mints fewer).
# cold_cache: authgate's token_cache_size for that row, below the rotation so it rarely hits.
if $quick; then seconds=2 warm=1 worker_counts=(1) mem_seconds=3 rotation=2000 cold_cache=200
else seconds=10 warm=2 worker_counts=(1 2) mem_seconds=10 rotation=10000 cold_cache=1000
fi
connections=64
pace_ms=20          # 64 connections × one request per (20 ms + latency) ≈ 3,000 req/s
mem_connections=1000
client_cpu=1        # wrk and the upstream
proxy_cpus() { if (( $1 == 1 )); then echo 0; else echo 0,1; fi; }

# Below Linux's ephemeral range (32768-60999): with 1,000 client sockets and the proxies' own
# upstream connections, a port in that range may already be some connection's local port.
up_port=28200 nginx_port=28201 nginx_tls_port=28202 haproxy_port=28203
ag_port=28204 ag_tls_port=28205 ag_admin=28206
nginx_h2_port=28207 grpc_nginx_port=28208 grpc_port=28209
# HTTP/2 rows: 16 connections × 4 streams in flight, as many requests at a time as wrk's 64.
h2_clients=16 h2_streams=4
quiet_load=${QUIET_LOAD:-0.5}
# CPU µs per request of the upstream-direct row on this machine when it is quiet.
usual_upstream_cpu_us=${USUAL_UPSTREAM_CPU_US:-10.0}

die() { echo "run.sh: $*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------------
missing=()
declare -A package_of=([h2load]=nghttp2-client)
for tool in nginx haproxy wrk openssl curl h2load; do
  command -v "$tool" >/dev/null || missing+=("${package_of[$tool]:-$tool}")
done
if (( ${#missing[@]} )); then
  # Debian starts a newly installed service; a policy-rc.d answering 101 forbids that, since
  # this script runs its own instances with its own configs.
  policy_added=false
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_added=true
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  if $policy_added; then rm -f /usr/sbin/policy-rc.d; fi
fi
# 1,000 client sockets plus as many upstream ones per proxy.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= 4096 )) || die "need at least 4096 open files (ulimit -n)"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# The build itself loads the machine: the quiet check reads the load average after it.
cargo build --release --quiet --bin authgate --example mint_tokens --example grpc_echo
authgate=target/release/authgate
grpc_echo=target/release/examples/grpc_echo
declare -a not_quiet=()
above_quiet() { awk -v l="$1" -v q="$quiet_load" 'BEGIN { exit !(l > q) }'; }
load_now=$(cut -d' ' -f1 /proc/loadavg)
if above_quiet "$load_now"; then
  # A build just finished (or something else runs): give the load average a minute to settle.
  echo "load average $load_now > $quiet_load: waiting up to 60 s for it to settle" >&2
  for _ in $(seq 1 12); do
    sleep 5
    load_now=$(cut -d' ' -f1 /proc/loadavg)
    above_quiet "$load_now" || break
  done
fi
if above_quiet "$load_now"; then
  not_quiet+=("load average $load_now > $quiet_load at the start")
  echo "NOT QUIET: load average $load_now > $quiet_load; these figures are not for publishing" >&2
else
  echo "quiet: load average $load_now <= $quiet_load" >&2
fi

work=$(mktemp -d)
declare -A running=()     # name → pid of the servers this script started
stop() {
  local pid=${running[$1]:-}
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  # Until it exits (a zombie counts as gone: `wait` below reaps it).
  for _ in $(seq 1 50); do
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone) =~ ^(Z|gone)$ ]] && break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "running[$1]"
}
cleanup() {
  for name in "${!running[@]}"; do stop "$name"; done
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for URL LOG: waits (bounded) until something answers HTTP at the URL, whatever the
# status; on failure shows the end of the server's log (the temp dir is gone after exit).
wait_for() {
  for _ in $(seq 1 100); do
    curl -sk -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  tail -n 20 "$2" >&2 || true
  die "nothing answers at $1"
}
# expect STATUS URL [curl args…]: the sanity check before a row.
expect() {
  local want=$1 url=$2 got
  shift 2
  got=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true)
  [[ $got == "$want" ]] || die "$url answered $got, expected $want"
}
# expect_subject URL SUBJECT [curl args…]: the upstream saw X-Auth-Subject: SUBJECT.
expect_subject() {
  local url=$1 want=$2 got
  shift 2
  got=$(curl -sk --max-time 5 "$@" "$url" || true)
  [[ $got == "$want" ]] || die "$url: the upstream saw subject '$got', expected '$want'"
}

# --- keys, certificate, configs ----------------------------------------------------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt.pem" 2>/dev/null
openssl pkey -in "$work/jwt.pem" -pubout -out "$work/jwt.pub.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/tls-key.pem" -out "$work/tls.pem" 2>/dev/null
mkdir -p "$work/tmp"

# Temp paths and error log inside $work, so nginx touches nothing of the system's.
nginx_common() {
  printf 'pid %s;\nerror_log %s warn;\nevents { worker_connections 8192; }\n' "$work/$1.pid" "$work/$1-error.log"
  printf 'http {\n  access_log off;\n  default_type text/plain;\n'
  # Keep-alive connections live for the whole run (nginx closes one after 1,000 requests by
  # default, which would make every proxy reconnect).
  printf '  keepalive_requests 10000000;\n  keepalive_timeout 120s;\n'
  for t in client_body proxy fastcgi uwsgi scgi; do printf '  %s_temp_path %s;\n' "$t" "$work/tmp/$1-$t"; done
}

{
  echo "worker_processes 1;"
  nginx_common upstream
  cat <<EOF
  server {
    listen 127.0.0.1:$up_port backlog=4096;
    location / { return 200 "ok"; }
    # Shows which subject a proxy injected (the sanity checks read it).
    location = /jwt/whoami { return 200 "\$http_x_auth_subject"; }
    location = /key/whoami { return 200 "\$http_x_auth_subject"; }
  }
}
EOF
} > "$work/upstream.conf"

nginx_conf() {
  echo "worker_processes $1;"
  nginx_common "nginx$1"
  cat <<EOF
  upstream backend {
    server 127.0.0.1:$up_port;
    keepalive 64;
    keepalive_requests 10000000;
  }
  ssl_protocols TLSv1.3;
  ssl_certificate $work/tls.pem;
  ssl_certificate_key $work/tls-key.pem;
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    listen 127.0.0.1:$nginx_tls_port ssl backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  # HTTP/2 clients by prior knowledge (h2c), the same HTTP/1.1 upstream.
  server {
    listen 127.0.0.1:$nginx_h2_port http2 backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  # gRPC to the gRPC server (h2c both sides).
  upstream grpc_backend {
    server 127.0.0.1:$grpc_port;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$grpc_nginx_port http2 backlog=4096;
    location / { grpc_pass grpc://grpc_backend; }
  }
}
EOF
}

# nginx in front of the same upstream, asking authgate's /authz about each request
# (auth_request over a keep-alive pool) and copying the subject it answers.
nginx_forward_auth_conf() {
  echo "worker_processes $1;"
  nginx_common "nginx-fa$1"
  cat <<EOF
  upstream backend {
    server 127.0.0.1:$up_port;
    keepalive 64;
    keepalive_requests 10000000;
  }
  upstream authgate {
    server 127.0.0.1:$ag_port;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    location = /_authgate {
      internal;
      proxy_pass http://authgate/authz;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_authgate;
      auth_request_set \$authgate_subject \$upstream_http_x_auth_subject;
      proxy_set_header X-Auth-Subject \$authgate_subject;
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

# The standard HAProxy 2.5+ JWT recipe: the same checks authgate makes (algorithm from config,
# signature, exp, iss, aud), the subject injected, and a client's own X-Auth-Subject dropped.
haproxy_cfg() {
  cat <<EOF
global
  nbthread $1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend jwt
  bind 127.0.0.1:$haproxy_port
  http-request del-header X-Auth-Subject
  http-request deny deny_status 401 unless { req.hdr(authorization) -m found }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.jwt_iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.jwt_aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.jwt_exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.jwt_sub) var(txn.bearer),jwt_payload_query('\$.sub')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.jwt_iss) -m str https://bench.test/ }
  http-request deny deny_status 401 unless { var(txn.jwt_aud) -m str bench-api }
  http-request deny deny_status 401 unless { var(txn.jwt_exp),sub(txn.now) -m int gt 0 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.jwt_alg,"$work/jwt.pub.pem") -m int 1 }
  http-request set-header X-Auth-Subject %[var(txn.jwt_sub)]
  default_backend upstream

backend upstream
  http-reuse always
  server up 127.0.0.1:$up_port
EOF
}

# authgate: the issuer verifies with the static public key and can mint with the private one.
gateway_toml() {
  local workers=$1 cache=$2 upstream="http://127.0.0.1:$up_port"
  cat <<EOF
[server]
http = "127.0.0.1:$ag_port"
https = "127.0.0.1:$ag_tls_port"
workers = $workers
token_cache_size = $cache
max_connections = 10000
shutdown_grace = "1s"
trusted_proxies = ["127.0.0.1/32"]

[admin]
listen = "127.0.0.1:$ag_admin"

[[tls.certificates]]
cert = "tls.pem"
key = "tls-key.pem"

[[issuers]]
id = "bench"
issuer = "https://bench.test/"
audiences = ["bench-api"]
algorithms = ["RS256"]
keys = ["jwt.pub.pem"]
private_key = "jwt.pem"
key_id = "bench-1"

[api_keys]
file = "keys.toml"

[upstreams.grpc]
targets = ["http://127.0.0.1:$grpc_port"]
protocol = "h2c"

[forward_auth]
path = "/authz"

[[routes]]
id = "jwt"
path = "/jwt"
upstream = "$upstream"
auth = ["jwt"]

[[routes]]
id = "key"
path = "/key"
upstream = "$upstream"
auth = ["api_key"]

[[routes]]
id = "public"
path = "/public"
upstream = "$upstream"
public = true

# The limiter's cost: limits far above any load, so nothing is refused and every request still
# takes the full check and carries the RateLimit fields.
[[routes]]
id = "key-limited"
path = "/key-limited"
upstream = "$upstream"
auth = ["api_key"]
rate = "1000000000/s"

[[routes]]
id = "consumers"
path = "/consumers"
upstream = "$upstream"
public = true
rate = "1000000000/s"

[[routes]]
id = "grpc"
path = "/authgate.test.Echo"
upstream = "grpc"
auth = ["jwt"]
EOF
}

# --- credentials -------------------------------------------------------------------------------
"$authgate" keys new --subject bench-bot --key-out "$work/bench.key" 2>/dev/null > "$work/keys.toml"
api_key=$(cat "$work/bench.key")
gateway_toml 1 100000 > "$work/gateway.toml"
"$authgate" check --config "$work/gateway.toml" >/dev/null
# Every token outlives the run by far.
token=$("$authgate" token --config "$work/gateway.toml" --issuer bench --sub bench-user --ttl 2h)
wrong_aud=$("$authgate" token --config "$work/gateway.toml" --issuer bench --sub bench-user --aud other-api --ttl 2h)
bad_signature="${token%????}AAAA"
mint_started=$SECONDS
target/release/examples/mint_tokens "$work/gateway.toml" bench "$rotation" 2h > "$work/tokens.txt"
(( $(wc -l < "$work/tokens.txt") == rotation )) || die "mint_tokens printed too few tokens"
export TOKENS_FILE="$work/tokens.txt" PACE_MS=$pace_ms
echo "minted $rotation tokens in $(( SECONDS - mint_started )) s" >&2

# --- starting and stopping servers -------------------------------------------------------------
start_upstream() {
  taskset -c "$client_cpu" nginx -p "$work" -e "$work/upstream-error.log" -c "$work/upstream.conf" -g 'daemon off;' &
  running[upstream]=$! current=upstream
  wait_for "http://127.0.0.1:$up_port/" "$work/upstream-error.log"
}
start_nginx() {
  nginx_conf "$1" > "$work/nginx$1.conf"
  taskset -c "$(proxy_cpus "$1")" nginx -p "$work" -e "$work/nginx$1-error.log" -c "$work/nginx$1.conf" -g 'daemon off;' &
  running[nginx]=$! current=nginx
  wait_for "http://127.0.0.1:$nginx_port/" "$work/nginx$1-error.log"
}
start_nginx_forward_auth() {
  nginx_forward_auth_conf "$1" > "$work/nginx-fa$1.conf"
  taskset -c "$(proxy_cpus "$1")" nginx -p "$work" -e "$work/nginx-fa$1-error.log" -c "$work/nginx-fa$1.conf" -g 'daemon off;' &
  running[nginx]=$! current=nginx
  wait_for "http://127.0.0.1:$nginx_port/" "$work/nginx-fa$1-error.log"
}
start_grpc_upstream() {
  taskset -c "$client_cpu" "$grpc_echo" serve "127.0.0.1:$grpc_port" 2>>"$work/grpc.log" &
  running[grpc]=$! current=grpc
  for _ in $(seq 1 100); do
    "$grpc_echo" call "http://127.0.0.1:$grpc_port" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "the gRPC server does not answer on $grpc_port"
}
start_haproxy() {
  haproxy_cfg "$1" > "$work/haproxy$1.cfg"
  taskset -c "$(proxy_cpus "$1")" haproxy -f "$work/haproxy$1.cfg" -db >>"$work/haproxy.log" 2>&1 &
  running[haproxy]=$! current=haproxy
  wait_for "http://127.0.0.1:$haproxy_port/" "$work/haproxy.log"
}
# start_authgate WORKERS TOKEN_CACHE_SIZE
start_authgate() {
  local config="$work/gateway-w$1-c$2.toml"
  gateway_toml "$1" "$2" > "$config"
  # Its access log is at info; rustls warns about every client (wrk) that sends an IP as SNI.
  RUST_LOG=warn,rustls=error taskset -c "$(proxy_cpus "$1")" "$authgate" run --config "$config" 2>>"$work/authgate.log" &
  running[authgate]=$! current=authgate
  wait_for "http://127.0.0.1:$ag_port/public" "$work/authgate.log"
}

# The sanity checks, per kind of endpoint.
check_open() { expect 200 "$1"; }
check_jwt() {
  expect 200 "$1" -H "Authorization: Bearer $token"
  expect 401 "$1"
  expect 401 "$1" -H "Authorization: Bearer $bad_signature"
  expect 401 "$1" -H "Authorization: Bearer $wrong_aud"
  expect 200 "$1" -H "Authorization: Bearer $(head -n1 "$TOKENS_FILE")"
  expect 200 "$1" -H "Authorization: Bearer $(tail -n1 "$TOKENS_FILE")"
  expect_subject "${1%/jwt}/jwt/whoami" bench-user -H "Authorization: Bearer $token" -H "X-Auth-Subject: mallory"
}
check_key() {
  expect 200 "$1" -H "X-API-Key: $api_key"
  expect 401 "$1"
  expect 401 "$1" -H "X-API-Key: ${api_key%?}x"
  expect_subject "${1%/key}/key/whoami" bench-bot -H "X-API-Key: $api_key"
}

# check_grpc URL [TOKEN SUBJECT]: a gRPC call answers OK (and the upstream saw SUBJECT); with a
# token expected, a call without one is refused.
check_grpc() {
  local got
  got=$("$grpc_echo" call "$1" ${2:+"$2"} 2>&1 || true)
  [[ $got == "ok subject=${3:-}" ]] || die "gRPC call to $1 answered '$got', expected 'ok subject=${3:-}'"
  if [[ -n ${2:-} ]]; then
    got=$("$grpc_echo" call "$1" 2>&1 || true)
    [[ $got == Unauthenticated:* ]] || die "gRPC call to $1 without a token answered '$got'"
  fi
}

# --- measuring ---------------------------------------------------------------------------------
# A server and its children (nginx's master and workers).
tree() { echo "$1"; cat /proc/"$1"/task/*/children 2>/dev/null || true; }
kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
tree_kib() {
  local total=0
  for p in $(tree "$1"); do total=$(( total + $(kib "$p" "$2") )); done
  echo "$total"
}
# CPU time (user + system, in clock ticks) used so far by a server and its children.
tree_ticks() {
  local total=0
  for p in $(tree "$1"); do total=$(( total + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done
  echo "$total"
}
all_ticks() {
  local total=0
  for p in "$@"; do total=$(( total + $(tree_ticks "$p") )); done
  echo "$total"
}
ticks_per_second=$(getconf CLK_TCK)

declare -a order=()
declare -A label=() workers_of=() rps=() p50=() p99=() flag=() cpu_us=() cpu_also=()

# wrk's "1.23ms" / "456.00us" / "1.02s" / "2.00m" in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
    else if (v ~ /m$/) n *= 60000
    printf "%.2f", n }'
}
run_wrk() { timeout $(( $1 + 30 )) taskset -c "$client_cpu" wrk -t1 -d"$1s" "${@:2}"; }

# The CPU time per request of the server started last ($current), and of $also when a row is
# served by two servers (nginx asking authgate): other work on the machine lowers req/s, but
# hardly what each request costs. cpu_begin before the measured run, cpu_end ID REQUESTS after.
cpu_begin() {
  cpu_pids=${running[$current]}
  if [[ -n ${also:-} ]]; then cpu_pids+=" ${running[$also]}"; also_ticks=$(tree_ticks "${running[$also]}"); fi
  cpu_ticks=$(all_ticks $cpu_pids)
}
per_request() { awk -v t="$1" -v hz="$ticks_per_second" -v n="$2" 'BEGIN { printf "%.1f", (n > 0) ? t * 1e6 / hz / n : 0 }'; }
cpu_end() {
  cpu_us[$1]=$(per_request $(( $(all_ticks $cpu_pids) - cpu_ticks )) "$2")
  if [[ -n ${also:-} ]]; then
    cpu_also[$1]=$(per_request $(( $(tree_ticks "${running[$also]}") - also_ticks )) "$2")
  fi
}
# record ID ERRORS: the row is kept; one with failed requests is marked (its speed may be that of
# failing fast).
record() {
  flag[$1]=""
  if (( $2 > 0 )); then flag[$1]=" ($2 errors)"; fi
  order+=("$1")
  printf '%-50s %s worker(s) %6s CPU µs/req %7s req/s  p50 %6s ms  p99 %6s ms%s\n' "${label[$1]}" \
    "${workers_of[$1]}" "${cpu_us[$1]}" "${rps[$1]}" "${p50[$1]}" "${p99[$1]}" "${flag[$1]}" >&2
}

# measure ID LABEL WORKERS URL [wrk args…]: a warm-up run, then the measured one, with wrk.
measure() {
  local id=$1 url=$4 out="$work/wrk-$1.txt" errors requests
  label[$id]=$2 workers_of[$id]=$3
  shift 4
  run_wrk "$warm" -c"$connections" "$@" "$url" > /dev/null
  cpu_begin
  run_wrk "$seconds" -c"$connections" --latency "$@" "$url" > "$out"
  requests=$(awk '/requests in/ {print $1}' "$out")
  cpu_end "$id" "$requests"
  rps[$id]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
  p50[$id]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  p99[$id]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$out")
  record "$id" "$errors"
}

# measure_h2 ID LABEL WORKERS URL [h2load args…]: the same with h2load over h2c
# ($h2_clients connections × $h2_streams streams). h2load reports no percentiles: p50 shows its
# mean time per request, p99 its largest.
run_h2load() { timeout $(( $1 + 30 )) taskset -c "$client_cpu" h2load -t1 -c"$h2_clients" -m"$h2_streams" -D"$1" "${@:2}"; }
measure_h2() {
  local id=$1 url=$4 out="$work/h2load-$1.txt" errors requests
  label[$id]=$2 workers_of[$id]=$3
  shift 4
  run_h2load "$warm" "$@" "$url" > /dev/null
  cpu_begin
  run_h2load "$seconds" "$@" "$url" > "$out"
  requests=$(awk '/^requests:/ {print $8}' "$out")
  cpu_end "$id" "$requests"
  rps[$id]=$(awk '/^finished in/ {gsub(/,/, "", $4); printf "%.0f", $4}' "$out")
  p50[$id]=$(to_ms "$(awk '/^time for request:/ {print $6}' "$out")")
  p99[$id]=$(to_ms "$(awk '/^time for request:/ {print $5}' "$out")")
  errors=$(awk '/^requests:/ {n += $10 + $12 + $14} /^status codes:/ {n += $5 + $7 + $9} END {print n + 0}' "$out")
  record "$id" "$errors"
}

start_upstream
check_open "http://127.0.0.1:$up_port/"
measure upstream "upstream directly (the ceiling)" - "http://127.0.0.1:$up_port/jwt"
# The second half of the quiet check: this row's cost is the machine's own, whatever proxy runs.
if awk -v c="${cpu_us[upstream]}" -v u="$usual_upstream_cpu_us" 'BEGIN { exit !(c > u * 1.25) }'; then
  not_quiet+=("the upstream-direct row took ${cpu_us[upstream]} CPU µs/req, usually $usual_upstream_cpu_us")
  echo "NOT QUIET: ${not_quiet[-1]}" >&2
fi

for w in "${worker_counts[@]}"; do
  start_nginx "$w"
  check_open "http://127.0.0.1:$nginx_port/jwt"
  check_open "https://127.0.0.1:$nginx_tls_port/jwt"
  measure "nginx-$w" "nginx, plain proxy, no auth" "$w" "http://127.0.0.1:$nginx_port/jwt"
  measure "nginx-tls-$w" "nginx, TLS 1.3, no auth" "$w" "https://127.0.0.1:$nginx_tls_port/jwt"
  stop nginx

  start_haproxy "$w"
  check_jwt "http://127.0.0.1:$haproxy_port/jwt"
  measure "haproxy-$w" "HAProxy, JWT RS256 (jwt_verify)" "$w" "http://127.0.0.1:$haproxy_port/jwt" \
    -H "Authorization: Bearer $token"
  stop haproxy

  start_authgate "$w" 100000
  check_open "http://127.0.0.1:$ag_port/public"
  check_jwt "http://127.0.0.1:$ag_port/jwt"
  check_jwt "https://127.0.0.1:$ag_tls_port/jwt"
  check_key "http://127.0.0.1:$ag_port/key"
  measure "ag-public-$w" "authgate, public route (no auth)" "$w" "http://127.0.0.1:$ag_port/public"
  measure "ag-jwt-$w" "authgate, JWT RS256, one token (cached)" "$w" "http://127.0.0.1:$ag_port/jwt" \
    -H "Authorization: Bearer $token"
  measure "ag-key-$w" "authgate, API key" "$w" "http://127.0.0.1:$ag_port/key" -H "X-API-Key: $api_key"
  expect 200 "http://127.0.0.1:$ag_port/key-limited" -H "X-API-Key: $api_key"
  [[ $(curl -s -o /dev/null -w '%header{ratelimit}' -H "X-API-Key: $api_key" "http://127.0.0.1:$ag_port/key-limited") == '"route:key-limited";r='* ]] \
    || die "/key-limited carries no RateLimit field"
  measure "ag-key-rl-$w" "authgate, API key + rate limit (never refused)" "$w" \
    "http://127.0.0.1:$ag_port/key-limited" -H "X-API-Key: $api_key"
  expect 200 "http://127.0.0.1:$ag_port/consumers"
  measure "ag-consumers-$w" "authgate, rate limit, 10,000 distinct consumers" "$w" \
    "http://127.0.0.1:$ag_port/consumers" -s benches/load/consumers.lua
  measure "ag-tls-$w" "authgate, TLS 1.3, JWT (cached)" "$w" "https://127.0.0.1:$ag_tls_port/jwt" \
    -H "Authorization: Bearer $token"
  # Forward-auth: nginx asks this authgate about each request, then proxies it itself.
  start_nginx_forward_auth "$w"
  check_jwt "http://127.0.0.1:$nginx_port/jwt"
  also=authgate measure "nginx-fa-$w" "nginx + auth_request → authgate /authz, JWT (cached)" "$w" \
    "http://127.0.0.1:$nginx_port/jwt" -H "Authorization: Bearer $token"
  stop nginx
  stop authgate

  start_authgate "$w" "$cold_cache"
  check_jwt "http://127.0.0.1:$ag_port/jwt"
  measure "ag-10k-$w" "authgate, JWT RS256, $rotation tokens rotating" "$w" "http://127.0.0.1:$ag_port/jwt" \
    -s benches/load/tokens.lua
  cache_counts=$(curl -s "http://127.0.0.1:$ag_admin/metrics" | awk '/^authgate_token_cache_total/ {sub(/.*result="/, ""); sub(/"}/, ""); printf "%s %s ", $1, $2}')
  echo "token cache during the rotation row: $cache_counts" >&2
  stop authgate
done

# HTTP/2 clients and gRPC, one worker each.
start_nginx 1
expect 200 "http://127.0.0.1:$nginx_h2_port/jwt" --http2-prior-knowledge
measure_h2 h2-nginx "nginx, h2c clients, plain proxy" 1 "http://127.0.0.1:$nginx_h2_port/jwt"
stop nginx
start_authgate 1 100000
expect 200 "http://127.0.0.1:$ag_port/public" --http2-prior-knowledge
measure_h2 h2-ag "authgate, h2c clients, public route" 1 "http://127.0.0.1:$ag_port/public"
stop authgate

grpc_call="/authgate.test.Echo/Unary"
# One gRPC message: EchoRequest { message: "hello" } behind its 5-byte length prefix.
printf '\x00\x00\x00\x00\x07\x0a\x05hello' > "$work/grpc-request.bin"
grpc_args=(-d "$work/grpc-request.bin" -H "content-type: application/grpc" -H "te: trailers")
start_grpc_upstream
check_grpc "http://127.0.0.1:$grpc_port"
measure_h2 grpc-direct "gRPC unary, the gRPC server directly (the ceiling)" - \
  "http://127.0.0.1:$grpc_port$grpc_call" "${grpc_args[@]}"
start_nginx 1
check_grpc "http://127.0.0.1:$grpc_nginx_port"
measure_h2 grpc-nginx "gRPC unary through nginx grpc_pass, no auth" 1 \
  "http://127.0.0.1:$grpc_nginx_port$grpc_call" "${grpc_args[@]}"
stop nginx
start_authgate 1 100000
check_grpc "http://127.0.0.1:$ag_port" "$token" bench-user
measure_h2 grpc-ag "gRPC unary through authgate, JWT (cached)" 1 \
  "http://127.0.0.1:$ag_port$grpc_call" "${grpc_args[@]}" -H "authorization: Bearer $token"
stop authgate
stop grpc

# p99 at a fixed moderate rate, one worker each.
start_nginx 1
measure paced-nginx "nginx, plain, paced (~$(( connections * 1000 / pace_ms )) req/s)" 1 \
  "http://127.0.0.1:$nginx_port/jwt" -s benches/load/paced.lua
stop nginx
start_authgate 1 100000
measure paced-ag "authgate, JWT cached, paced (~$(( connections * 1000 / pace_ms )) req/s)" 1 \
  "http://127.0.0.1:$ag_port/jwt" -s benches/load/paced.lua -H "Authorization: Bearer $token"
stop authgate

# Memory with 1,000 keep-alive connections under full load (the worst case: every connection
# has a request in flight). RSS is sampled halfway through; VmHWM is the peak.
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
declare -A mem=() rss_kib=()
memory() {
  local name=$1 pid=${running[$1]} port=$2 load idle sockets
  shift 2
  idle=$(tree_kib "$pid" VmRSS)
  run_wrk "$mem_seconds" -c"$mem_connections" "$@" > "$work/wrk-mem-$name.txt" &
  load=$!
  sleep $(( mem_seconds / 2 ))
  sockets=$(ss -Htn state established "sport = :$port" | wc -l)
  # The proxy's own connections to the upstream (its pool) hold buffers too.
  upstream_sockets=$(ss -Htn state established "dport = :$up_port" | wc -l)
  rss_kib[$name]=$(tree_kib "$pid" VmRSS)
  mem[$name]="$name: idle $(mb "$idle") MB; with $sockets client and $upstream_sockets upstream connections open: RSS $(mb "${rss_kib[$name]}") MB"
  wait "$load"
  mem[$name]+=", peak (VmHWM) $(mb "$(tree_kib "$pid" VmHWM)") MB"
  echo "${mem[$name]}" >&2
}
start_nginx 1
memory nginx "$nginx_port" "http://127.0.0.1:$nginx_port/jwt"
stop nginx
start_authgate 1 100000
memory authgate "$ag_port" "http://127.0.0.1:$ag_port/jwt" -H "Authorization: Bearer $token"
stop authgate

# --- report ------------------------------------------------------------------------------------
ratio() { # ratio A B: A/B with two decimals, or "–" when B is missing
  [[ -n ${2:-} && ${2:-0} != 0 && -n ${1:-} ]] || { echo "–"; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'
}
version_of() { "$@" 2>&1 | awk 'NR == 1' || true; }
# target TEXT VALUE OP LIMIT [NOTE]: one line of the targets list ("met" or "MISSED").
target() {
  local verdict
  if [[ -z $2 || $2 == – ]]; then verdict="not measured"
  else verdict=$(awk -v v="${2%×}" -v op="$3" -v l="$4" 'BEGIN {
      ok = (op == ">=") ? v >= l : v <= l; print ok ? "met" : "MISSED" }')
  fi
  echo "- $1: $2 (target $3 $4): $verdict${5:+; $5}"
}
# cheaper TEXT ID REFERENCE LIMIT: a cost target, CPU per request of ID over REFERENCE's (what a
# request costs whatever else the machine does), with the req/s ratio beside it.
cheaper() {
  target "$1" "$(ratio "${cpu_us[$2]:-}" "${cpu_us[$3]:-}")" "<=" "$4" \
    "by CPU per request; req/s $(ratio "${rps[$2]:-}" "${rps[$3]:-}") of the reference"
}
# The nginx row doing the same kind of work as ID: TLS against TLS, HTTP/2 clients against
# HTTP/2 clients, gRPC against grpc_pass; none for the ceilings and the paced rows.
reference_of() {
  local w=${workers_of[$1]}
  case $1 in
    upstream|grpc-direct|paced-*) echo none ;;
    *tls*) echo "nginx-tls-$w" ;;
    h2-*) echo "h2-nginx" ;;
    grpc-*) echo "grpc-nginx" ;;
    *) echo "nginx-$w" ;;
  esac
}
echo
echo "## Load benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $($quick && echo quick || echo full) mode)"
echo
if (( ${#not_quiet[@]} )); then
  echo "**NOT QUIET — not for publishing:** $(IFS=';'; echo "${not_quiet[*]}")."
else
  echo "Quiet machine: load average $load_now ≤ $quiet_load at the start, upstream-direct row ${cpu_us[upstream]} CPU µs/req (usual $usual_upstream_cpu_us)."
fi
echo
echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), load average before the build: $load_before, after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $(version_of nginx -v | sed 's/.*: //'), $(version_of haproxy -v | awk '{print "haproxy " $3}'), $(version_of wrk -v | awk '{print $1, $2}'), $(version_of h2load --version | awk '{print $1, $2}'), $(openssl version | awk '{print $1, $2}'), $(version_of rustc --version | awk '{print $1, $2}'), $("$authgate" --version)"
echo "- wrk -t1 -c$connections (h2load -c$h2_clients -m$h2_streams for HTTP/2 and gRPC), ${seconds} s per row after ${warm} s of warm-up; 1-worker proxies on CPU 0, 2-worker on CPUs 0-1; load generator and upstream on CPU 1"
echo "- CPU vs nginx: this row's server CPU per request over nginx's doing the same kind of work (plain, TLS, h2c clients, gRPC); h2load rows show the mean in p50 and the maximum in p99"
echo
echo "| row | workers | server CPU µs/req | CPU vs nginx | req/s | p50 ms | p99 ms | req/s vs nginx | req/s vs HAProxy JWT |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for id in "${order[@]}"; do
  w=${workers_of[$id]}
  ref=$(reference_of "$id")
  haproxy_ref=haproxy-$w; [[ $w == - || $id == paced-* || $id == h2-* || $id == grpc-* ]] && haproxy_ref=none
  echo "| ${label[$id]}${flag[$id]} | $w | ${cpu_us[$id]} | $(ratio "${cpu_us[$id]}" "${cpu_us[$ref]:-}") | ${rps[$id]} | ${p50[$id]} | ${p99[$id]} | $(ratio "${rps[$id]}" "${rps[$ref]:-}") | $(ratio "${rps[$id]}" "${rps[$haproxy_ref]:-}") |"
done
echo
echo "Token cache during the last rotation row: $cache_counts"
echo
echo "Memory, 1 worker, wrk -c$mem_connections for ${mem_seconds} s:"
echo "- ${mem[nginx]} (master + worker)"
echo "- ${mem[authgate]}"
echo
echo "Targets (CPU per request first: the figure other load on the machine disturbs least):"
for w in "${worker_counts[@]}"; do
  cheaper "authgate public route vs nginx plain proxy, $w worker(s)" "ag-public-$w" "nginx-$w" 1.15
  cheaper "authgate JWT RS256 cached vs nginx plain, $w worker(s)" "ag-jwt-$w" "nginx-$w" 1.25
  cheaper "authgate API key vs nginx plain, $w worker(s)" "ag-key-$w" "nginx-$w" 1.25
  cheaper "authgate TLS 1.3 + JWT vs nginx TLS, $w worker(s)" "ag-tls-$w" "nginx-tls-$w" 1.25
  cheaper "authgate $rotation rotating tokens vs HAProxy jwt_verify, $w worker(s)" "ag-10k-$w" "haproxy-$w" 0.80
  limiter=$(awk -v a="${cpu_us[ag-key-rl-$w]:-}" -v b="${cpu_us[ag-key-$w]:-}" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.2f", a - b }')
  target "rate limit's CPU µs/req over API key alone, $w worker(s)" "$limiter" "<=" 0.5
  added=$(awk -v a="${cpu_us[nginx-fa-$w]:-}" -v b="${cpu_us[nginx-$w]:-}" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.1f", a - b }')
  echo "- forward-auth: CPU µs/req that auth_request → authgate adds to nginx plain, $w worker(s): ${added:-not measured} (authgate's decisions: ${cpu_also[nginx-fa-$w]:-not measured}; a JWT request authgate proxies itself: ${cpu_us[ag-jwt-$w]:-not measured})"
done
echo "- HTTP/2 clients, authgate public vs nginx: $(ratio "${cpu_us[h2-ag]:-}" "${cpu_us[h2-nginx]:-}") by CPU per request"
echo "- gRPC unary, authgate with a JWT vs nginx grpc_pass without auth: $(ratio "${cpu_us[grpc-ag]:-}" "${cpu_us[grpc-nginx]:-}") by CPU per request; req/s $(ratio "${rps[grpc-ag]:-}" "${rps[grpc-direct]:-}") of the gRPC server's own"
target "p99 at a fixed rate, authgate JWT vs nginx plain" "$(ratio "${p99[paced-ag]:-}" "${p99[paced-nginx]:-}")" "<=" 1.2
target "authgate RSS MB with $mem_connections connections" "$(mb "${rss_kib[authgate]:-0}")" "<=" 30
