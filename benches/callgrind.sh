#!/usr/bin/env bash
# Instructions per request through authgate, counted by callgrind: a figure that other load on
# the machine does not move (the same binary and inputs give the same count), for comparing
# a change before and after on a busy machine.
#
#   benches/callgrind.sh [N] [ROUTE…]     N requests per route (default 2000); ROUTE: public |
#                                          jwt | key | h2-public | nginx (default all)
#
# The gateway (release build, `workers = 1`, access log off) runs under valgrind with a plain
# nginx `return 200` as its upstream. Per route: a warm-up (connections open, caches filled),
# the counters zeroed, N keep-alive requests from one h2load client, the counters dumped. It
# prints instructions per request and keeps each route's profile for callgrind_annotate.
# `nginx` is the reference: nginx as a plain keep-alive proxy (one process, no master) in front
# of the same upstream, under the same valgrind, measured the same way.
# The servers are started here on 127.0.0.1:28300-28302 and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

n=${1:-2000}
shift || true
routes=("$@")
(( ${#routes[@]} )) || routes=(public jwt key h2-public nginx)
up_port=28300 ag_port=28301 nginx_port=28302

missing=()
declare -A package_of=([h2load]=nghttp2-client [callgrind_control]=valgrind)
for tool in nginx h2load openssl valgrind callgrind_control; do
  command -v "$tool" >/dev/null || missing+=("${package_of[$tool]:-$tool}")
done
if (( ${#missing[@]} )); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo build --release --quiet --bin authgate
authgate=$PWD/target/release/authgate
out=${CALLGRIND_OUT:-target/callgrind}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # URL SECONDS
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  echo "callgrind.sh: nothing answers at $1" >&2
  exit 1
}

mkdir -p "$work/tmp"
# What both nginx configs share: their pid, log and temp paths inside $work, no access log,
# keep-alive connections that last the whole run.
nginx_common() {
  printf 'worker_processes 1;\npid %s;\nerror_log %s warn;\n' "$work/$1.pid" "$work/$1-error.log"
  printf 'events { worker_connections 1024; }\nhttp {\n  access_log off;\n'
  printf '  keepalive_requests 10000000;\n'
  for t in client_body proxy fastcgi uwsgi scgi; do printf '  %s_temp_path %s;\n' "$t" "$work/tmp/$1-$t"; done
}
cat > "$work/upstream.conf" <<EOF
$(nginx_common upstream)
  server {
    listen 127.0.0.1:$up_port;
    location / { return 200 "ok"; }
  }
}
EOF
cat > "$work/proxy.conf" <<EOF
master_process off;
$(nginx_common proxy)
  upstream backend {
    server 127.0.0.1:$up_port;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -p "$work" -e "$work/upstream-error.log" -c "$work/upstream.conf" -g 'daemon off;' &
pids+=($!)
wait_for "http://127.0.0.1:$up_port/" 10

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt.pem" 2>/dev/null
openssl pkey -in "$work/jwt.pem" -pubout -out "$work/jwt.pub.pem"
cat > "$work/gateway.toml" <<EOF
[server]
http = "127.0.0.1:$ag_port"
workers = 1

[[issuers]]
id = "bench"
issuer = "https://bench.test/"
audiences = ["bench-api"]
algorithms = ["RS256"]
keys = ["jwt.pub.pem"]
private_key = "jwt.pem"

[api_keys]
file = "keys.toml"

[[routes]]
id = "jwt"
path = "/jwt"
upstream = "http://127.0.0.1:$up_port"
auth = ["jwt"]

[[routes]]
id = "key"
path = "/key"
upstream = "http://127.0.0.1:$up_port"
auth = ["api_key"]

[[routes]]
id = "public"
path = "/public"
upstream = "http://127.0.0.1:$up_port"
public = true
EOF
"$authgate" keys new --subject bench-bot --key-out "$work/bench.key" 2>/dev/null > "$work/keys.toml"
token=$("$authgate" token --config "$work/gateway.toml" --issuer bench --sub bench-user --ttl 2h)
api_key=$(cat "$work/bench.key")

valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$work/nginx.callgrind.out" \
  nginx -p "$work" -e "$work/proxy-error.log" -c "$work/proxy.conf" -g 'daemon off;' \
  2>"$work/nginx-valgrind.log" &
reference=$!
pids+=("$reference")
RUST_LOG=warn valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
  --callgrind-out-file="$work/callgrind.out" \
  "$authgate" run --config "$work/gateway.toml" 2>"$work/valgrind.log" &
gateway=$!
pids+=("$gateway")
started=$SECONDS
wait_for "http://127.0.0.1:$ag_port/public" 300
echo "gateway under valgrind answered after $(( SECONDS - started )) s" >&2

wait_for "http://127.0.0.1:$nginx_port/public" 300

requests() { # ROUTE COUNT
  local url="http://127.0.0.1:$ag_port/${1#h2-}" args=(--h1)
  [[ $1 == h2-* ]] && args=()
  [[ $1 == nginx ]] && url="http://127.0.0.1:$nginx_port/public"
  case $1 in
    jwt) args+=(-H "authorization: Bearer $token") ;;
    key) args+=(-H "x-api-key: $api_key") ;;
  esac
  h2load -c1 -n"$2" "${args[@]}" "$url" > "$work/h2load.txt"
  grep -q "$2 succeeded" "$work/h2load.txt" || { cat "$work/h2load.txt" >&2; exit 1; }
}

echo "instructions per request (callgrind, release build, 1 worker, $n keep-alive requests):"
for route in "${routes[@]}"; do
  server=$gateway out_file=callgrind.out
  [[ $route == nginx ]] && server=$reference out_file=nginx.callgrind.out
  requests "$route" 200
  callgrind_control -z "$server" >/dev/null 2>&1
  requests "$route" "$n"
  callgrind_control -d "$route" "$server" >/dev/null 2>&1
  dump=$(ls -t "$work/$out_file".* | head -n1)
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  cp "$dump" "$out/$route.callgrind"
  printf '  %-10s %8d\n' "$route" $(( total / n ))
done
echo "profiles: $out/<route>.callgrind (callgrind_annotate --inclusive=yes FILE)"
