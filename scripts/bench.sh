#!/usr/bin/env bash
# Side-by-side benchmark: authgate vs nginx on the same machine, same TLS,
# same upstream, same load generator; plus authgate with its Kubernetes
# caches on vs off against the fake API server (examples/fake_apiserver.rs).
#
#   scripts/bench.sh              full run: 5 rounds x 10 s per measurement (~10 min)
#   scripts/bench.sh --smoke      2 rounds x 3 s (~1.5 min after the build)
#
# Options:
#   --rounds N            rounds (alternating A/B order each round)
#   --duration S          seconds per measurement
#   --concurrency C       in-flight requests (default 50)
#   --only LIST           comma list of: token,mtls,handshake,h2,cache
#   --no-access-log       neither server writes access lines (nginx
#                         access_log off, authgate log.level warn); default:
#                         both write one line per request to a file
#   --out DIR             results directory (default bench/results)
#   --keep                keep the work directory (configs, logs, raw output)
#   --no-build            use target/release as it is (no cargo build)
#
# Environment: AUTHGATE_CACHE_DIR (default ~/.cache/authgate; oha is installed
# under it), BENCH_SERVER_CPU (default 1), BENCH_LOAD_CPU (default 0),
# BENCH_LOADGEN=wrk (force the fallback load generators: wrk for HTTP/1.1,
# h2load for HTTP/2; the mTLS configurations are then skipped).
#
# Layout: the server under test (nginx with one worker, or authgate with one
# tokio worker thread) is pinned to BENCH_SERVER_CPU; the load generator, the
# shared upstream (a second nginx, `return 200`) and the fake API server are
# pinned to BENCH_LOAD_CPU. Everything listens on 127.0.0.1.
#
# Writes bench/results/<date>.{json,md,svg} (all raw numbers per round, a
# Markdown table, a plot) and prints the table. Exits non-zero if a
# measurement failed (no successful responses, or more than 1% errors).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0
ROUNDS=""
DURATION=""
CONC=50
ONLY="token,mtls,handshake,h2,cache"
ACCESS_LOG=1
OUT_DIR="$ROOT/bench/results"
KEEP=0
BUILD=1
usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --no-access-log) ACCESS_LOG=0 ;;
    --out) OUT_DIR=$2; shift ;;
    --keep) KEEP=1 ;;
    --no-build) BUILD=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if ((SMOKE)); then
    ROUNDS=${ROUNDS:-2}; DURATION=${DURATION:-3}; WARMUP=1; CACHE_WARMUP=2
else
    ROUNDS=${ROUNDS:-5}; DURATION=${DURATION:-10}; WARMUP=2; CACHE_WARMUP=3
fi
H2_CONNS=10                    # HTTP/2: connections x streams per connection = CONC
H2_STREAMS=$(((CONC + H2_CONNS - 1) / H2_CONNS))
CACHE_TOKENS=1000
TOOL_TIMEOUT=$((DURATION + 60))
want() { [[ ",$ONLY," == *",$1,"* ]]; }
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

CACHE="${AUTHGATE_CACHE_DIR:-$HOME/.cache/authgate}"
SERVER_CPU=${BENCH_SERVER_CPU:-1}
LOAD_CPU=${BENCH_LOAD_CPU:-0}
if (($(nproc) < 2)); then
    log "WARNING: fewer than 2 CPUs: server and load generator share CPU 0"
    SERVER_CPU=0; LOAD_CPU=0
fi

# ---------------------------------------------------------------- tools
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "need $* (no apt-get here)"
    if ((!APT_UPDATED)); then apt-get update -qq; APT_UPDATED=1; fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then apt_install "${need[@]}"; fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

LOADGEN=${BENCH_LOADGEN:-oha}
OHA="$CACHE/oha/bin/oha"
if [[ $LOADGEN == oha ]]; then
    if [[ ! -x $OHA ]]; then
        log "installing oha into $CACHE/oha (cargo install, a few minutes once)"
        mkdir -p "$CACHE"
        cargo install oha --locked --root "$CACHE/oha" >&2 || log "WARNING: cargo install oha failed"
    fi
    missing=()
    if [[ -x $OHA ]]; then
        help=$("$OHA" --help 2>&1 || true)
        for f in --cert --key --cacert --http2 --disable-keepalive --no-tui --output-format -z -c -H -p; do
            grep -q -- "$f\b" <<<"$help" || missing+=("$f")
        done
    else
        missing+=(oha)
    fi
    if ((${#missing[@]})); then
        log "WARNING: oha lacks ${missing[*]}: falling back to wrk / h2load, mTLS configurations skipped"
        LOADGEN=wrk
    fi
fi
if [[ $LOADGEN == wrk ]] && want h2 && ! command -v h2load >/dev/null; then apt_install nghttp2-client; fi

if ((BUILD)); then
    log "building authgate and the fake API server (cargo build --release)"
    cargo build --release --locked --bin authgate --example fake_apiserver >&2
fi
AUTHGATE="$ROOT/target/release/authgate"
FAKE_API="$ROOT/target/release/examples/fake_apiserver"
[[ -x $AUTHGATE && -x $FAKE_API ]] || die "missing $AUTHGATE or $FAKE_API (build them, or drop --no-build)"

# ---------------------------------------------------------------- work dir, cleanup
W=$(mktemp -d /tmp/authgate-bench.XXXXXX)
mkdir -p "$W/logs" "$W/raw" "$W/nginx-tmp"
chmod 777 "$W/nginx-tmp"
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((KEEP)); then log "work directory kept: $W"; else rm -rf "$W"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: TERM, then KILL after 5 s; forget it.
stop() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# wait_http URL [curl args]: until the server answers anything (10 s).
wait_http() {
    local url=$1; shift
    for _ in $(seq 100); do
        if curl -s -o /dev/null --max-time 1 "$@" "$url"; then return 0; fi
        sleep 0.1
    done
    return 1
}

# free_ports N: N loopback ports that are free now, below the ephemeral range
# (so that no client connection of the benchmark can be holding one later).
free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports, socks = [], []
for port in random.sample(range(min(20000, low // 2), low), 2000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    socks.append(s)
    ports.append(port)
    if len(ports) == int(sys.argv[1]):
        break
print(" ".join(map(str, ports)))
EOF
}
read -r UP_PORT NGX_PORT AG_PORT AG_ON_PORT AG_OFF_PORT FAKE_COUNTS_PORT ADMIN_PORT ADMIN_ON_PORT ADMIN_OFF_PORT \
    <<<"$(free_ports 9)"
declare -A ADMIN_OF=([$AG_PORT]=$ADMIN_PORT [$AG_ON_PORT]=$ADMIN_ON_PORT [$AG_OFF_PORT]=$ADMIN_OFF_PORT)

# ---------------------------------------------------------------- PKI
PKI="$W/pki"
"$AUTHGATE" certs init "$PKI" >/dev/null
"$AUTHGATE" certs client "$PKI" --name bench-client --cn bench-user --org bench >/dev/null
TOKEN="bench-$(openssl rand -hex 16)"
CLIENT_CRT="$PKI/bench-client.crt"
CLIENT_KEY="$PKI/bench-client.key"

# ---------------------------------------------------------------- configs
ACCESS_AG="$W/logs/authgate-edge.log"
ACCESS_NGX="$W/logs/nginx-edge-access.log"
if ((ACCESS_LOG)); then
    NGX_ACCESS="access_log $ACCESS_NGX bench;"
    AG_LEVEL=info
else
    NGX_ACCESS="access_log off;"
    AG_LEVEL=warn
fi
nginx_common() {
    cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $W/$1.pid;
error_log $W/logs/$1-error.log warn;
events { worker_connections 8192; }
http {
    client_body_temp_path $W/nginx-tmp/body;
    proxy_temp_path $W/nginx-tmp/proxy;
    fastcgi_temp_path $W/nginx-tmp/fastcgi;
    uwsgi_temp_path $W/nginx-tmp/uwsgi;
    scgi_temp_path $W/nginx-tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
EOF
}
{
    nginx_common nginx-upstream
    cat <<EOF
    access_log off;
    server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
EOF
} >"$W/nginx-upstream.conf"
{
    nginx_common nginx-edge
    cat <<EOF
    log_format bench '\$remote_addr "\$request" \$status \$user r=\$ssl_session_reused \$ssl_protocol \$ssl_cipher \$request_time';
    $NGX_ACCESS
    ssl_protocols TLSv1.3;
    ssl_certificate $PKI/server.crt;
    ssl_certificate_key $PKI/server.key;
    ssl_client_certificate $PKI/ca.crt;
    ssl_verify_client optional;
    ssl_verify_depth 2;
    # Static token list (nginx does no SubjectAccessReview).
    map \$http_authorization \$token_user {
        "Bearer $TOKEN" "bench-user";
        default "";
    }
    map \$http_authorization \$token_group {
        "Bearer $TOKEN" "bench";
        default "";
    }
    # Client certificate: CN is the user, O the group (when it verified).
    map \$ssl_client_s_dn \$cert_cn {
        "~(^|,)CN=(?<cn>[^,]+)" \$cn;
        default "";
    }
    map \$ssl_client_s_dn \$cert_o {
        "~(^|,)O=(?<o>[^,]+)" \$o;
        default "";
    }
    map "\$ssl_client_verify:\$cert_cn" \$user {
        "~^SUCCESS:(?<u>.+)\$" \$u;
        default \$token_user;
    }
    map "\$ssl_client_verify:\$cert_cn" \$group {
        "~^SUCCESS:." \$cert_o;
        default \$token_group;
    }
    upstream shared_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGX_PORT ssl http2 backlog=4096;
        location / {
            if (\$user = "") {
                return 401 '{"error": "Unauthorized"}\n';
            }
            proxy_pass http://shared_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header X-Remote-User \$user;
            proxy_set_header X-Remote-Group \$group;
        }
    }
}
EOF
} >"$W/nginx-edge.conf"

authgate_common() { # port
    cat <<EOF
listen: "127.0.0.1:$1"
tls:
  cert_file: $PKI/server.crt
  key_file: $PKI/server.key
  client_ca_file: $PKI/ca.crt
  min_version: "1.3"
routes:
  - {path_prefix: /, upstream: "http://127.0.0.1:$UP_PORT"}
limits:
  shutdown_timeout: 1s
log:
  level: $AG_LEVEL
EOF
    # Newer authgates have an admin listener (default 127.0.0.1:9090): give
    # each instance its own loopback port, so that they can run side by side.
    if ((HAS_ADMIN)); then printf 'admin:\n  listen: "127.0.0.1:%s"\n' "${ADMIN_OF[$1]}"; fi
}
static_section() {
    cat <<EOF
static:
  tokens:
    - {token: "$TOKEN", user: bench-user, groups: [bench]}
  allow:
    - {group: bench, verbs: ["*"], paths: ["/", "/**"]}
EOF
}
HAS_ADMIN=1
{ authgate_common "$AG_PORT"; static_section; } >"$W/probe.yaml"
"$AUTHGATE" check-config --config "$W/probe.yaml" >/dev/null 2>&1 || HAS_ADMIN=0
{ authgate_common "$AG_PORT"; static_section; } >"$W/authgate-edge.yaml"
authgate_cache_config() { # port max_entries kubeconfig
    authgate_common "$1"
    cat <<EOF
kubernetes:
  kubeconfig: $3
  timeout: 5s
  max_in_flight: 256
  qps: 1000000
  burst: 1000000
token_review:
  cache: {max_entries: $2}
access_review:
  cache: {max_entries: $2}
EOF
}

# ---------------------------------------------------------------- processes
start_nginx() { # name cpu
    "$NGINX" -t -q -e "$W/logs/$1-error.log" -c "$W/$1.conf" -p "$W" || die "nginx -t $1 failed"
    taskset -c "$2" "$NGINX" -e "$W/logs/$1-error.log" -c "$W/$1.conf" -p "$W" \
        >>"$W/logs/$1.out" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
start_authgate() { # config logfile
    "$AUTHGATE" check-config --config "$1" >/dev/null || die "authgate check-config $1 failed"
    TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" "$AUTHGATE" serve --config "$1" \
        >>"$2" 2>>"$2" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

log "work directory $W; server CPU $SERVER_CPU, load CPU $LOAD_CPU; load: $(cut -d' ' -f1-3 /proc/loadavg)"
start_nginx nginx-upstream "$LOAD_CPU"; UP_PID=$STARTED_PID
wait_http "http://127.0.0.1:$UP_PORT/" || die "upstream nginx did not start"
start_nginx nginx-edge "$SERVER_CPU"; NGX_PID=$STARTED_PID
start_authgate "$W/authgate-edge.yaml" "$ACCESS_AG"; AG_PID=$STARTED_PID
wait_http "https://127.0.0.1:$NGX_PORT/" --cacert "$PKI/ca.crt" || die "nginx did not start (see $W/logs)"
wait_http "https://127.0.0.1:$AG_PORT/" --cacert "$PKI/ca.crt" || die "authgate did not start: $(tail -5 "$ACCESS_AG")"

# ---------------------------------------------------------------- sanity checks
declare -A PORT=([nginx]=$NGX_PORT [authgate]=$AG_PORT)
expect() { # want-status description curl-args...
    local want=$1 what=$2; shift 2
    local got
    got=$(curl -s -o /dev/null -w '%{http_code} %{http_version}' --max-time 5 --cacert "$PKI/ca.crt" "$@" || true)
    [[ ${got%% *} == "$want" ]] || die "sanity: $what: want $want, got '$got'"
    echo "${got#* }"
}
for s in nginx authgate; do
    u="https://127.0.0.1:${PORT[$s]}/bench"
    expect 200 "$s token" -H "Authorization: Bearer $TOKEN" "$u" >/dev/null
    expect 401 "$s wrong token" -H "Authorization: Bearer nope-$TOKEN" "$u" >/dev/null
    expect 401 "$s no credentials" "$u" >/dev/null
    expect 200 "$s client certificate" --cert "$CLIENT_CRT" --key "$CLIENT_KEY" "$u" >/dev/null
    v=$(expect 200 "$s HTTP/2" --http2 -H "Authorization: Bearer $TOKEN" "$u")
    [[ $v == 2 ]] || die "sanity: $s did not speak HTTP/2 (got $v)"
done
tls_info() { # port -> one line: protocol, cipher, key exchange; whether a session resumes
    local port=$1 brief second
    brief=$(openssl s_client -connect "127.0.0.1:$port" -CAfile "$PKI/ca.crt" -cert "$CLIENT_CRT" \
        -key "$CLIENT_KEY" -brief </dev/null 2>&1 | grep -E 'Protocol version|Ciphersuite|Server Temp Key|Signature type' | tr '\n' ';' || true)
    # Resumption: a first connection reads a response (and so the session
    # tickets), a second one offers the saved session.
    local req='GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
    # shellcheck disable=SC2059 # the format is the request
    printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$PKI/ca.crt" \
        -cert "$CLIENT_CRT" -key "$CLIENT_KEY" -sess_out "$W/sess-$port.pem" -ign_eof >/dev/null 2>&1 || true
    # shellcheck disable=SC2059
    second=$(printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$PKI/ca.crt" \
        -sess_in "$W/sess-$port.pem" -ign_eof 2>/dev/null | grep -E '^(New|Reused),' | cut -d, -f1 || true)
    echo "$brief second connection with the saved session: ${second:-failed}"
}
TLS_NGX=$(tls_info "$NGX_PORT")
TLS_AG=$(tls_info "$AG_PORT")
SERVER_KEY=$(openssl x509 -in "$PKI/server.crt" -noout -text | grep -E 'Public Key Algorithm|ASN1 OID|NIST CURVE' | tr -s ' ' | tr '\n' ';')
log "TLS nginx:    $TLS_NGX"
log "TLS authgate: $TLS_AG"

# ---------------------------------------------------------------- measurement helpers
CLK_TCK=$(getconf CLK_TCK)
# proc_ticks PID...: utime+stime of the processes and their children.
proc_ticks() {
    local total=0 p line rest
    local pids=("$@")
    for p in "$@"; do
        for c in $(pgrep -P "$p" 2>/dev/null || true); do pids+=("$c"); done
    done
    for p in "${pids[@]}"; do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${line##*) }
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
# core_ticks CPU: "busy total" jiffies of one CPU.
core_ticks() {
    awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}
RUNS="$W/runs.jsonl"
: >"$RUNS"
SEQ=0
declare -A SRV_PIDS=([nginx]=$NGX_PID [authgate]=$AG_PID)
declare -A ACCESS_FILE=([nginx]=$ACCESS_NGX [authgate]=$ACCESS_AG)

# run_load TOOL OUT ARGS...: the load generator, pinned, bounded in time.
run_load() {
    local tool=$1 out=$2; shift 2
    case $tool in
    oha) timeout -k 5 "$TOOL_TIMEOUT" taskset -c "$LOAD_CPU" "$OHA" --no-tui --output-format json "$@" >"$out" 2>"$out.err" ;;
    wrk) timeout -k 5 "$TOOL_TIMEOUT" taskset -c "$LOAD_CPU" wrk -t1 --timeout 10s -s "$ROOT/scripts/bench/wrk.lua" "$@" >"$out.txt" 2>"$out.err" &&
        grep '^WRKJSON ' "$out.txt" | sed 's/^WRKJSON //' >"$out" ;;
    h2load) timeout -k 5 "$TOOL_TIMEOUT" taskset -c "$LOAD_CPU" h2load "$@" >"$out.txt" 2>"$out.err" &&
        python3 - "$out.txt" >"$out" <<'EOF' ;;
import json, re, sys
t = open(sys.argv[1]).read()
m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", t)
r = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", t)
c = re.search(r"status codes: (\d+) 2xx", t)
lat = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", t)
scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
print(json.dumps({
    "duration_s": float(m.group(1)), "ok": int(c.group(1)) if c else 0,
    "failed": int(r.group(4)) + int(r.group(5)),
    "mean_ms": float(lat.group(5)) * scale[lat.group(6)] if lat else None,
}))
EOF
    esac
}

# measure ROUND CONFIG SERVER PHASE TOOL ARGS...: one measurement, appended to runs.jsonl.
measure() {
    local round=$1 cfg=$2 server=$3 phase=$4 tool=$5; shift 5
    local pid=${SRV_PIDS[$server]} afile=${ACCESS_FILE[$server]:-}
    SEQ=$((SEQ + 1))
    local out
    out="$W/raw/$(printf '%03d' "$SEQ")-r$round-$cfg-$server-$phase.json"
    [[ -n $afile && -f $afile ]] && : >"$afile"
    local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
    local p0 s0 l0 t0 p1 s1 l1 t1 rc=0
    p0=$(proc_ticks "$pid"); read -r s0 st0 <<<"$(core_ticks "$SERVER_CPU")"; read -r l0 lt0 <<<"$(core_ticks "$LOAD_CPU")"
    t0=$(date +%s.%N)
    run_load "$tool" "$out" "$@" || rc=$?
    t1=$(date +%s.%N)
    p1=$(proc_ticks "$pid"); read -r s1 st1 <<<"$(core_ticks "$SERVER_CPU")"; read -r l1 lt1 <<<"$(core_ticks "$LOAD_CPU")"
    local lines=null reused=null
    if [[ -n $afile && -f $afile ]] && ((ACCESS_LOG)); then
        if [[ $server == nginx ]]; then
            lines=$(wc -l <"$afile")
            reused=$(grep -c ' r=r ' "$afile" || true)
        else
            lines=$(grep -c 'authgate::access' "$afile" || true)
        fi
    fi
    ((rc == 0)) || log "WARNING: $tool exited $rc for $cfg/$server round $round: $(tail -c 300 "$out.err" 2>/dev/null)"
    local extra=${MEASURE_EXTRA:-}
    printf '{"seq":%d,"round":%d,"config":"%s","server":"%s","phase":"%s","tool":"%s","rc":%d,"raw":"%s","start":%s,"end":%s,"loadavg":"%s","server_cpu_s":%s,"server_core_busy_s":%s,"server_core_total_s":%s,"load_core_busy_s":%s,"load_core_total_s":%s,"access_lines":%s,"tls_resumed":%s%s}\n' \
        "$SEQ" "$round" "$cfg" "$server" "$phase" "$tool" "$rc" "$(basename "$out")" "$t0" "$t1" "$load" \
        "$(awk -v a="$p0" -v b="$p1" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$(awk -v a="$s0" -v b="$s1" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$(awk -v a="$st0" -v b="$st1" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$(awk -v a="$l0" -v b="$l1" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$(awk -v a="$lt0" -v b="$lt1" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$lines" "$reused" "$extra" >>"$RUNS"
    [[ -n $afile && -f $afile ]] && : >"$afile"
    return 0
}

# set_load CONFIG SERVER DURATION: sets LOAD=(tool args...), or LOAD=(skip).
set_load() {
    local cfg=$1 server=$2 d=$3 url="https://127.0.0.1:${PORT[$2]}/bench"
    local auth="Authorization: Bearer $TOKEN"
    if [[ $LOADGEN == oha ]]; then
        local common=(oha -z "${d}s" --cacert "$PKI/ca.crt")
        case $cfg in
        token) LOAD=("${common[@]}" -c "$CONC" -H "$auth" "$url") ;;
        mtls) LOAD=("${common[@]}" -c "$CONC" --cert "$CLIENT_CRT" --key "$CLIENT_KEY" "$url") ;;
        handshake) LOAD=("${common[@]}" -c "$CONC" --disable-keepalive --cert "$CLIENT_CRT" --key "$CLIENT_KEY" "$url") ;;
        h2) LOAD=("${common[@]}" --http2 -c "$H2_CONNS" -p "$H2_STREAMS" -H "$auth" "$url") ;;
        esac
    else
        case $cfg in
        token) LOAD=(wrk -c "$CONC" -d "${d}s" -H "$auth" "$url") ;;
        h2) LOAD=(h2load -c "$H2_CONNS" -m "$H2_STREAMS" -D "$d" -H "$auth" "$url") ;;
        *) LOAD=(skip) ;;
        esac
    fi
}

CONFIGS=()
for c in token mtls handshake h2; do
    want "$c" || continue
    set_load "$c" nginx 1
    if [[ ${LOAD[0]} == skip ]]; then
        log "skipping $c: needs oha"
        continue
    fi
    CONFIGS+=("$c")
done

# ---------------------------------------------------------------- authgate vs nginx
BENCH_START=$(date +%s)
for cfg in "${CONFIGS[@]}"; do
    for s in nginx authgate; do
        log "warm-up $cfg $s (${WARMUP}s)"
        set_load "$cfg" "$s" "$WARMUP"
        measure 0 "$cfg" "$s" warmup "${LOAD[@]}"
    done
done
for ((r = 1; r <= ROUNDS && ${#CONFIGS[@]}; r++)); do
    # Alternate which server goes first, round by round.
    if ((r % 2)); then order=(nginx authgate); else order=(authgate nginx); fi
    for cfg in "${CONFIGS[@]}"; do
        for s in "${order[@]}"; do
            log "round $r/$ROUNDS $cfg $s (${DURATION}s, load $(cut -d' ' -f1 /proc/loadavg))"
            set_load "$cfg" "$s" "$DURATION"
            measure "$r" "$cfg" "$s" run "${LOAD[@]}"
        done
    done
done

# ---------------------------------------------------------------- caches on vs off
FAKE_INFO=null
if want cache; then
    log "starting the fake API server ($CACHE_TOKENS tokens) on CPU $LOAD_CPU"
    taskset -c "$LOAD_CPU" "$FAKE_API" --tokens "$CACHE_TOKENS" --token-prefix bench-token- \
        --counts-listen "127.0.0.1:$FAKE_COUNTS_PORT" --info "$W/fake.json" \
        >"$W/logs/fake_apiserver.out" 2>"$W/logs/fake_apiserver.err" &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    for _ in $(seq 100); do [[ -s $W/fake.json ]] && break; sleep 0.1; done
    [[ -s $W/fake.json ]] || die "fake API server did not start: $(cat "$W/logs/fake_apiserver.err")"
    FAKE_INFO=$(cat "$W/fake.json")
    KUBECONFIG_FAKE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kubeconfig"])' "$W/fake.json")
    COUNTS_URL="http://127.0.0.1:$FAKE_COUNTS_PORT/counts"
    RESET_URL="http://127.0.0.1:$FAKE_COUNTS_PORT/reset"
    authgate_cache_config "$AG_ON_PORT" 10000 "$KUBECONFIG_FAKE" >"$W/authgate-cache-on.yaml"
    authgate_cache_config "$AG_OFF_PORT" 0 "$KUBECONFIG_FAKE" >"$W/authgate-cache-off.yaml"
    declare -A CACHE_PORT=([on]=$AG_ON_PORT [off]=$AG_OFF_PORT)
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order=(on off); else order=(off on); fi
        for mode in "${order[@]}"; do
            s="authgate-cache-$mode"
            log "round $r/$ROUNDS cache $mode: fresh authgate, ${CACHE_WARMUP}s warm-up, ${DURATION}s run"
            start_authgate "$W/$s.yaml" "$W/logs/$s.log"
            pid=$STARTED_PID
            SRV_PIDS[$s]=$pid
            ACCESS_FILE[$s]="$W/logs/$s.log"
            url="https://127.0.0.1:${CACHE_PORT[$mode]}/bench"
            wait_http "$url" --cacert "$PKI/ca.crt" || die "$s did not start: $(tail -5 "$W/logs/$s.log")"
            expect 200 "$s token via TokenReview" -H "Authorization: Bearer bench-token-0" "$url" >/dev/null
            curl -s -X POST "$RESET_URL" >/dev/null
            # Warm-up: every token is used at least once (fills the caches when they are on).
            export WRK_TOKEN_PREFIX=bench-token- WRK_TOKEN_COUNT=$CACHE_TOKENS
            MEASURE_EXTRA=",\"cache\":\"$mode\",\"tokens\":$CACHE_TOKENS" \
                measure "$r" cache "$s" warmup wrk -c "$CONC" -d "${CACHE_WARMUP}s" "$url"
            cold=$(curl -s "$COUNTS_URL")
            curl -s -X POST "$RESET_URL" >/dev/null
            MEASURE_EXTRA=",\"cache\":\"$mode\",\"tokens\":$CACHE_TOKENS,\"api_warmup\":$cold" \
                measure "$r" cache "$s" run wrk -c "$CONC" -d "${DURATION}s" "$url"
            counts=$(curl -s "$COUNTS_URL")
            unset WRK_TOKEN_PREFIX WRK_TOKEN_COUNT
            # Attach the API counts of the measured run to its line.
            python3 - "$RUNS" "$counts" <<'PY'
import json, sys
path, counts = sys.argv[1], json.loads(sys.argv[2])
lines = open(path).read().splitlines()
last = json.loads(lines[-1])
last["api"] = counts
lines[-1] = json.dumps(last)
open(path, "w").write("\n".join(lines) + "\n")
PY
            stop "$pid"
        done
    done
    stop "$FAKE_PID"
fi
BENCH_END=$(date +%s)

# ---------------------------------------------------------------- report
stop "$AG_PID"
stop "$NGX_PID"
stop "$UP_PID"
mkdir -p "$OUT_DIR"
STAMP=$(date +%Y-%m-%dT%H%M%S)
((SMOKE)) && STAMP="$STAMP-smoke"
export B_STAMP=$STAMP B_SMOKE=$SMOKE B_ROUNDS=$ROUNDS B_DURATION=$DURATION B_WARMUP=$WARMUP \
    B_CACHE_WARMUP=$CACHE_WARMUP B_CONC=$CONC B_H2_CONNS=$H2_CONNS B_H2_STREAMS=$H2_STREAMS \
    B_CACHE_TOKENS=$CACHE_TOKENS B_ACCESS_LOG=$ACCESS_LOG B_LOADGEN=$LOADGEN B_SERVER_CPU=$SERVER_CPU \
    B_LOAD_CPU=$LOAD_CPU B_WALL=$((BENCH_END - BENCH_START)) B_NGINX=$NGINX B_OHA=$OHA B_ROOT=$ROOT \
    B_TLS_NGX=$TLS_NGX B_TLS_AG=$TLS_AG B_SERVER_KEY=$SERVER_KEY B_FAKE_INFO=$FAKE_INFO
python3 - "$W/meta.json" <<'PY'
import json, os, platform, subprocess, sys
e = os.environ
def sh(*cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else ""
    except Exception as err:  # noqa: BLE001
        return f"unavailable: {err}"
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
meta = {
    "date": e["B_STAMP"],
    "smoke": e["B_SMOKE"] == "1",
    "rounds": int(e["B_ROUNDS"]),
    "duration_s": int(e["B_DURATION"]),
    "warmup_s": int(e["B_WARMUP"]),
    "cache_warmup_s": int(e["B_CACHE_WARMUP"]),
    "concurrency": int(e["B_CONC"]),
    "h2_connections": int(e["B_H2_CONNS"]),
    "h2_streams_per_connection": int(e["B_H2_STREAMS"]),
    "cache_tokens": int(e["B_CACHE_TOKENS"]),
    "access_log": e["B_ACCESS_LOG"] == "1",
    "loadgen": e["B_LOADGEN"],
    "server_cpu": int(e["B_SERVER_CPU"]),
    "load_cpu": int(e["B_LOAD_CPU"]),
    "nproc": os.cpu_count(),
    "bench_wall_s": int(e["B_WALL"]),
    "cpu_model": cpu,
    "kernel": platform.release(),
    "nginx": sh(e["B_NGINX"], "-v"),
    "oha": sh(e["B_OHA"], "--version") if e["B_LOADGEN"] == "oha" else None,
    "wrk": sh("wrk", "-v"),
    "authgate_git": sh("git", "-C", e["B_ROOT"], "describe", "--always", "--dirty"),
    "rustc": sh("rustc", "--version"),
    "tls_nginx": e["B_TLS_NGX"],
    "tls_authgate": e["B_TLS_AG"],
    "server_key": e["B_SERVER_KEY"],
    "fake_api": json.loads(e["B_FAKE_INFO"]),
    "loadavg_end": open("/proc/loadavg").read().split()[:3],
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PY
rc=0
python3 "$ROOT/scripts/bench/report.py" --meta "$W/meta.json" --runs "$RUNS" --raw "$W/raw" \
    --out "$OUT_DIR/$STAMP" || rc=$?
log "results: $OUT_DIR/$STAMP.{json,md,svg} (wall time of the measurements: $((BENCH_END - BENCH_START)) s)"
exit "$rc"
