#!/usr/bin/env bash
# ponder's benchmark: builds an optimized ponder and measures it against the same fake upstream
# reached directly, through nginx and through the Portkey gateway. See bench/README.md.
#
#   bash bench/run.sh [--quick]        (or ./dev.sh bench [--quick])
#   bash bench/run.sh --eval-only      only the `ponder eval` row (g), printed
#
# Writes bench/results/bench-YYYYmmdd-HHMMSS.md, bench/results/latest.md and latest.png.
# Every process started here is stopped on exit, on error and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench

QUICK=0
EVAL_ONLY=0
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    --eval-only) EVAL_ONLY=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument: $a (try --help)" >&2; exit 1 ;;
  esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ---- tools ------------------------------------------------------------------------------------
missing=()
for p in nginx-light wrk gnuplot-nox; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
fi
command -v node >/dev/null || die "node is required (./dev.sh installs it)"
command -v npm >/dev/null || die "npm is required (./dev.sh installs it)"
command -v openssl >/dev/null || die "openssl is required (the HTTPS rows make a test CA)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx not found"

# 10,000 streams need ~2 descriptors each in a proxy (client + upstream socket).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
log "open-files limit: $NOFILE"

# ---- build ponder (release) -------------------------------------------------------------------
if [ ! -f build-bench/build.ninja ]; then
  log "meson setup build-bench (release)"
  meson setup build-bench -Dbuildtype=release -Db_ndebug=true >&2
fi
log "ninja -C build-bench"
ninja -C build-bench >&2
PONDER=$ROOT/build-bench/ponder

# ---- Portkey gateway (bench/peers, git-ignored) -----------------------------------------------
# @hono/node-server is pinned to 1.13.8: with newer ones Portkey 1.15.2 answers every streamed
# chat completion with {"status":"failure"} ("TypeError: immutable", Portkey-AI/gateway#1389).
PEERS=$BENCH/peers
PORTKEY_JS=$PEERS/node_modules/@portkey-ai/gateway/build/start-server.js
PEERS_PKG='{
  "private": true,
  "description": "Peers for ponder'"'"'s benchmark, installed by bench/run.sh (git-ignored).",
  "dependencies": { "@portkey-ai/gateway": "1.15.2" },
  "overrides": { "@hono/node-server": "1.13.8" }
}'
if [ "$EVAL_ONLY" = 0 ]; then # the eval row needs no peer
mkdir -p "$PEERS"
if [ ! -f "$PORTKEY_JS" ] || [ "$(cat "$PEERS/package.json" 2>/dev/null)" != "$PEERS_PKG" ]; then
  log "npm install @portkey-ai/gateway@1.15.2 into bench/peers"
  printf '%s\n' "$PEERS_PKG" >"$PEERS/package.json"
  (cd "$PEERS" && npm install --no-audit --no-fund --silent >&2)
  printf '%s\n' "$PEERS_PKG" >"$PEERS/package.json"  # npm may reformat it
fi
[ -f "$PORTKEY_JS" ] || die "Portkey gateway not installed in $PEERS"
fi

# ---- processes --------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ponder-bench.XXXXXX")
PIDS=()
BENCH_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$BENCH_PID" ] && kill -TERM "$BENCH_PID" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}" $BENCH_PID; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}" $BENCH_PID; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc != 0 ] && [ -d "$TMP" ]; then
    for f in "$TMP"/*.err; do
      [ -s "$f" ] && { log "--- tail of $(basename "$f")"; tail -n 5 "$f" >&2; }
    done
  fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
wait_for() { # wait_for PID FILE REGEX SECONDS: waits until FILE matches REGEX; prints the match
  local pid=$1 file=$2 re=$3 secs=$4 i
  for ((i = 0; i < secs * 20; i++)); do
    if grep -qE "$re" "$file" 2>/dev/null; then grep -oE "$re" "$file" | head -1; return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
wait_http() { # wait_http PID URL SECONDS
  local pid=$1 url=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    curl -s -o /dev/null -m 1 "$url" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_fake() { # start_fake NAME SCRIPT [ARGS...]: sets FAKE_PORT, FAKE_PID
  local name=$1; shift
  node "$@" --port 0 >"$TMP/$name.out" 2>"$TMP/$name.err" &
  FAKE_PID=$!; PIDS+=("$FAKE_PID")
  FAKE_PORT=$(wait_for "$FAKE_PID" "$TMP/$name.out" '"port":[0-9]+' 15 | grep -oE '[0-9]+') \
    || die "fake upstream $name did not start"
}
# ---- (g) `ponder eval` against ponder at rounds 0 (the fast fake behind it) --------------------
# Samples per second of the whole run (dataset, requests, grading, samples.jsonl, summary,
# report) and of its request phase (eval's own progress line), and CPU per sample: eval's
# (user + system, from bash's `time`) beside the proxy's own (from /proc/PID/stat over the run).
eval_row() { # eval_row PONDER_PORT PONDER_PID: prints the markdown section
  local port=$1 pid=$2 n=20000 conc=64 tck t0 t1 times rate
  [ "$QUICK" = 1 ] && n=5000
  tck=$(getconf CLK_TCK)
  node -e 'const n=+process.argv[1];const o=[];for(let i=0;i<n;i++)o.push(JSON.stringify({id:i,question:`What is ${i} + 1?`,answer:i+1}));process.stdout.write(o.join("\n")+"\n")' "$n" >"$TMP/eval.jsonl"
  proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  t0=$(proc_cpu "$pid")
  { TIMEFORMAT='%R %U %S'; time "$PONDER" eval --url "http://127.0.0.1:$port/r0/v1" --dataset "$TMP/eval.jsonl" \
      --concurrency "$conc" --out "$TMP/eval-out" >"$TMP/eval.out" 2>"$TMP/eval.err"; } 2>"$TMP/eval.time" \
    || die "ponder eval failed: $(tail -n 3 "$TMP/eval.err")"
  t1=$(proc_cpu "$pid")
  read -r wall user sys <"$TMP/eval.time"
  rate=$(grep -oE '[0-9.]+/s' "$TMP/eval.err" | tail -1 | tr -d '/s')
  awk -v n="$n" -v wall="$wall" -v u="$user" -v s="$sys" -v p0="$t0" -v p1="$t1" -v tck="$tck" \
      -v rate="$rate" -v conc="$conc" 'BEGIN {
    printf "## (g) ponder eval: %d samples against ponder at rounds 0 (the fast fake behind it), --url, --concurrency %d\n\n", n, conc
    printf "| target | samples/s (whole run) | samples/s (requests) | eval CPU per sample | proxy CPU per request | target |\n|---|---|---|---|---|---|\n"
    printf "| ponder eval → ponder rounds 0 | %.0f | %.0f | %.1f µs | %.1f µs | ≥ 1,000/s |\n", n / wall, rate, (u + s) / n * 1e6, (p1 - p0) / tck / n * 1e6
  }'
}
start_fake fake-fast "$ROOT/tests/fake/upstream.mjs" --fast; FAST_PORT=$FAKE_PORT; FAST_PID=$FAKE_PID
# memory run: bench/slow-upstream.mjs (slow streams; see the comment at its top)
start_fake slow-upstream "$BENCH/slow-upstream.mjs";         SLOW_PORT=$FAKE_PORT; SLOW_PID=$FAKE_PID
SLOW_H2_PORT=$(grep -oE '"h2_port":[0-9]+' "$TMP/slow-upstream.out" | grep -oE '[0-9]+$') \
  || die "slow upstream printed no h2_port"
log "fake upstreams: fast 127.0.0.1:$FAST_PORT, slow 127.0.0.1:$SLOW_PORT (h2c :$SLOW_H2_PORT)"

ponder_config() { # ponder_config WORKERS UPSTREAM_PORT [HTTP2] > file
  cat <<EOF
{
  "workers": $1,
  "limits": { "max_connections": 12000 },
  "log": { "level": "warn", "access_log": "off" },
  "upstreams": [ { "name": "fake", "base_url": "http://127.0.0.1:$2/v1", "max_connections": 20000,
                   "http2": ${3:-false} } ],
  "routes": [
    { "name": "r0", "match": { "path_prefix": "/r0" }, "forcing": { "rounds": 0 } },
    { "name": "r1", "match": { "path_prefix": "/r1" }, "forcing": { "rounds": 1 } },
    { "name": "r6", "match": { "path_prefix": "/r6" }, "forcing": { "rounds": 6 } }
  ]
}
EOF
}
start_ponder() { # start_ponder NAME WORKERS UPSTREAM_PORT [HTTP2]: sets P_PORT, P_PID
  local name=$1
  ponder_config "$2" "$3" "${4:-false}" >"$TMP/$name.json"
  "$PONDER" --listen 127.0.0.1:0 --config "$TMP/$name.json" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  P_PID=$!; PIDS+=("$P_PID")
  P_PORT=$(wait_for "$P_PID" "$TMP/$name.err" 'listening on [^ ]*:[0-9]+' 15 | grep -oE '[0-9]+$') \
    || die "ponder $name did not start: $(tail -n 3 "$TMP/$name.err" 2>/dev/null)"
}
start_ponder ponder-w1  1 "$FAST_PORT"; PONDER1_PORT=$P_PORT; PONDER1_PID=$P_PID
if [ "$EVAL_ONLY" = 1 ]; then
  eval_row "$PONDER1_PORT" "$PONDER1_PID"
  exit 0
fi
start_ponder ponder-w2  2 "$FAST_PORT"; PONDER2_PORT=$P_PORT; PONDER2_PID=$P_PID
# memory run: HTTP/2 to the upstream, so 10,000 streams need 10,000 client sockets, not 20,000 fds
start_ponder ponder-mem 1 "$SLOW_H2_PORT" true; PONDERM_PORT=$P_PORT; PONDERM_PID=$P_PID
log "ponder: workers 1 on :$PONDER1_PORT, workers 2 on :$PONDER2_PORT, memory run on :$PONDERM_PORT"

NGINX_USER=
[ "$(id -u)" = 0 ] && NGINX_USER="user root;"
NGINX_USER_LINE=$NGINX_USER
# ---- the HTTPS rows (e): nginx as the TLS upstream (TLS 1.3, ALPN h2 + http/1.1, `return`); a
# test CA made here, given to ponder (tls.ca_file) and to nginx (proxy_ssl_trusted_certificate) --
TLS=$TMP/tls
mkdir -p "$TLS/nginx-up"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS/ca.key" \
  -out "$TLS/ca.pem" -days 2 -subj "/CN=ponder bench CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$TLS/openssl.err" \
  && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS/server.key" \
    -out "$TLS/server.csr" -subj "/CN=127.0.0.1" 2>>"$TLS/openssl.err" \
  && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$TLS/server.ext" \
  && openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
    -out "$TLS/server.pem" -days 2 -sha256 -extfile "$TLS/server.ext" 2>>"$TLS/openssl.err" \
  || die "openssl could not make the bench certificates: $(tail -n 3 "$TLS/openssl.err")"
TLSUP_PORT=$(free_port)
# The canned reply: a chat completion, since every forced round reads one.
TLS_REPLY='{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the TLS benchmark upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}'
cat >"$TLS/nginx-up/nginx.conf" <<NGINX_UP
$NGINX_USER_LINE
worker_processes 1;
daemon off;
pid $TLS/nginx-up/nginx.pid;
error_log $TMP/nginx-tls-up.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TLS/nginx-up/client_body;
  proxy_temp_path $TLS/nginx-up/proxy;
  fastcgi_temp_path $TLS/nginx-up/fastcgi;
  uwsgi_temp_path $TLS/nginx-up/uwsgi;
  scgi_temp_path $TLS/nginx-up/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$TLSUP_PORT ssl http2;
    ssl_certificate $TLS/server.pem;
    ssl_certificate_key $TLS/server.key;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:bench:1m;
    location / { default_type application/json; return 200 '$TLS_REPLY'; }
  }
}
NGINX_UP
"$NGINX" -p "$TLS/nginx-up" -e "$TMP/nginx-tls-up.err" -c "$TLS/nginx-up/nginx.conf" \
  >"$TMP/nginx-tls-up.out" 2>>"$TMP/nginx-tls-up.err" &
TLSUP_PID=$!; PIDS+=("$TLSUP_PID")
for i in $(seq 151); do
  [ "$i" = 151 ] && die "the nginx TLS upstream did not answer: $(tail -n 3 "$TMP/nginx-tls-up.err")"
  curl -s -o /dev/null -m 1 --cacert "$TLS/ca.pem" "https://127.0.0.1:$TLSUP_PORT/" && break
  kill -0 "$TLSUP_PID" 2>/dev/null || die "the nginx TLS upstream exited: $(tail -n 3 "$TMP/nginx-tls-up.err")"
  sleep 0.1
done
cat >"$TMP/ponder-tls.json" <<PONDER_TLS
{
  "workers": 1,
  "log": { "level": "warn", "access_log": "off" },
  "upstreams": [ { "name": "tls", "base_url": "https://127.0.0.1:$TLSUP_PORT/v1", "max_connections": 20000,
                   "tls": { "ca_file": "$TLS/ca.pem" } },
                 { "name": "tls-h1", "base_url": "https://127.0.0.1:$TLSUP_PORT/v1", "max_connections": 20000,
                   "http2": false, "tls": { "ca_file": "$TLS/ca.pem" } } ],
  "routes": [
    { "name": "r0", "match": { "path_prefix": "/r0" }, "forcing": { "rounds": 0 } },
    { "name": "r6", "match": { "path_prefix": "/r6" }, "forcing": { "rounds": 6 } },
    { "name": "h1r0", "match": { "path_prefix": "/h1r0" }, "upstream": "tls-h1", "forcing": { "rounds": 0 } }
  ]
}
PONDER_TLS
"$PONDER" --listen 127.0.0.1:0 --config "$TMP/ponder-tls.json" >"$TMP/ponder-tls.out" 2>"$TMP/ponder-tls.err" &
PONDERT_PID=$!; PIDS+=("$PONDERT_PID")
PONDERT_PORT=$(wait_for "$PONDERT_PID" "$TMP/ponder-tls.err" 'listening on [^ ]*:[0-9]+' 15 | grep -oE '[0-9]+$') \
  || die "ponder (HTTPS upstream) did not start: $(tail -n 3 "$TMP/ponder-tls.err" 2>/dev/null)"
log "HTTPS: nginx TLS upstream on :$TLSUP_PORT, ponder to it on :$PONDERT_PORT"

NGINX_PORT=$(free_port)
NGINX_TLS_PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
$NGINX_USER
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/client_body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream fake {
    server 127.0.0.1:$FAST_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  # (e) the HTTPS reverse proxy: a keep-alive pool of verified TLS 1.3 connections
  upstream tlsup {
    server 127.0.0.1:$TLSUP_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX_TLS_PORT;
    location / {
      proxy_pass https://tlsup;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_session_reuse on;
      proxy_ssl_trusted_certificate $TLS/ca.pem;
      proxy_ssl_verify on;
      # nginx checks DNS names, not IP addresses: the certificate's DNS:localhost
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
    }
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    # SSE relay: no response buffering, as one would configure nginx for streams
    location /s/ {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx.err" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.out" 2>>"$TMP/nginx.err" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")

start_portkey() { # start_portkey NAME: sets PK_PORT, PK_PID
  PK_PORT=$(free_port)
  node "$PORTKEY_JS" --port="$PK_PORT" --headless >"$TMP/$1.out" 2>"$TMP/$1.err" &
  PK_PID=$!; PIDS+=("$PK_PID")
}
start_portkey portkey;     PORTKEY_PORT=$PK_PORT;  PORTKEY_PID=$PK_PID
start_portkey portkey-mem; PORTKEYM_PORT=$PK_PORT; PORTKEYM_PID=$PK_PID

wait_http "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/v1/models" 15 || die "nginx did not start"
wait_http "$NGINX_PID" "http://127.0.0.1:$NGINX_TLS_PORT/v1/models" 15 || die "nginx (HTTPS proxy) did not start"
wait_http "$PORTKEY_PID" "http://127.0.0.1:$PORTKEY_PORT/" 30 || die "Portkey did not start"
wait_http "$PORTKEYM_PID" "http://127.0.0.1:$PORTKEYM_PORT/" 30 || die "Portkey (memory run) did not start"
log "nginx on :$NGINX_PORT, Portkey on :$PORTKEY_PORT and :$PORTKEYM_PORT"

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain -- proxy meson.build 2>/dev/null | head -1)
[ -n "$DIRTY" ] && COMMIT="$COMMIT+local changes"
cat >"$TMP/env.json" <<EOF
{
  "quick": $QUICK,
  "nofile": $NOFILE,
  "tmp": "$TMP",
  "results": "$BENCH/results",
  "commit": "$COMMIT",
  "ponder_version": "$("$PONDER" --version 2>&1 | head -1)",
  "nginx_version": "$("$NGINX" -v 2>&1 | sed 's/.*: //')",
  "node_version": "$(node --version)",
  "fast":       { "port": $FAST_PORT,     "pid": $FAST_PID,     "err": "$TMP/fake-fast.err" },
  "slow":       { "port": $SLOW_PORT,     "pid": $SLOW_PID,     "err": "$TMP/slow-upstream.err" },
  "ponder1":    { "port": $PONDER1_PORT,  "pid": $PONDER1_PID,  "err": "$TMP/ponder-w1.err" },
  "ponder2":    { "port": $PONDER2_PORT,  "pid": $PONDER2_PID,  "err": "$TMP/ponder-w2.err" },
  "ponderMem":  { "port": $PONDERM_PORT,  "pid": $PONDERM_PID,  "err": "$TMP/ponder-mem.err" },
  "nginx":      { "port": $NGINX_PORT,    "pid": $NGINX_PID,    "err": "$TMP/nginx.err" },
  "nginxTls":   { "port": $NGINX_TLS_PORT, "pid": $NGINX_PID,   "err": "$TMP/nginx.err" },
  "tlsUp":      { "port": $TLSUP_PORT,    "pid": $TLSUP_PID,    "err": "$TMP/nginx-tls-up.err", "ca": "$TLS/ca.pem" },
  "ponderTls":  { "port": $PONDERT_PORT,  "pid": $PONDERT_PID,  "err": "$TMP/ponder-tls.err" },
  "portkey":    { "port": $PORTKEY_PORT,  "pid": $PORTKEY_PID,  "err": "$TMP/portkey.err" },
  "portkeyMem": { "port": $PORTKEYM_PORT, "pid": $PORTKEYM_PID, "err": "$TMP/portkey-mem.err" }
}
EOF

# ---- measure ----------------------------------------------------------------------------------
node "$BENCH/bench.mjs" "$TMP/env.json" &
BENCH_PID=$!
set +e
wait "$BENCH_PID"
rc=$?
set -e
BENCH_PID=
[ $rc = 0 ] || die "bench.mjs failed (exit $rc)"

# (g) appended to the results bench.mjs wrote: its own processes, after the rest is measured.
EVAL_MD=$(eval_row "$PONDER1_PORT" "$PONDER1_PID")
LATEST_RUN=$(ls -t "$BENCH"/results/bench-*.md | head -1)
for f in "$LATEST_RUN" "$BENCH/results/latest.md"; do printf '\n%s\n' "$EVAL_MD" >>"$f"; done
log "(g) ponder eval: $(printf '%s\n' "$EVAL_MD" | tail -1)"
