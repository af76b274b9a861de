#!/usr/bin/env bash
# Soak: REQUESTS requests (default 1,000,000) across TOKENS bearer tokens
# (default 10,000, reviewed by the fake API) and CERTS client certificates
# (default 100), while RSS and open file descriptors of authgate are sampled
# every second. Fails if memory keeps growing once the caches are full: the
# RSS at the end may exceed the RSS at 40% of the run by at most
# SOAK_GROWTH_MIB (default 8). Bounded by SOAK_TIMEOUT seconds (default 900):
# no request starts after it, and the run fails if not all were answered.
# SOAK_OUT=DIR keeps the samples (epoch, RSS KiB, fds), the load result and
# authgate's log. The fake API, its upstream (--upstream-listen) and the load
# generator are `xtask fake-api` and `xtask load` (xtask/README.md).
#
#   scripts/soak.sh [--quick]      (--quick: 100k requests, 2,000 tokens, 20 certs)
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-1000000}
TOKENS=${TOKENS:-10000}
CERTS=${CERTS:-100}
if [[ "${1:-}" == "--quick" ]]; then REQUESTS=100000 TOKENS=2000 CERTS=20; fi
GROWTH_MIB=${SOAK_GROWTH_MIB:-8}
TIMEOUT=${SOAK_TIMEOUT:-900}

say() { printf '[soak] %s\n' "$*" >&2; }
work=$(mktemp -d -t authgate-soak.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

say "building (release)"
cargo build --release --locked --bin authgate >&2
cargo build --release --locked --package xtask >&2
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/authgate
xtask=$target/release/xtask

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "making a PKI with $CERTS client certificates"
"$bin" certs init "$work" >/dev/null
for i in $(seq 0 $((CERTS - 1))); do
    "$bin" certs client "$work" --name "client-$i" --cn "soak-user-$i" --org soak >/dev/null
done

say "starting the fake API ($TOKENS tokens) and an upstream"
"$xtask" fake-api --tokens "$TOKENS" --upstream-listen 127.0.0.1:0 --info "$work/api.json" \
    >/dev/null 2>"$work/api.log" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/api.json" ]] && break; sleep 0.1; done
[[ -s "$work/api.json" ]] || { say "the fake API did not start:"; cat "$work/api.log" >&2; exit 1; }
info() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/api.json" "$1"; }
kubeconfig=$(info kubeconfig)
upstream_url=$(info upstream_url)

port=$(free_port)
cat >"$work/authgate.yaml" <<YAML
listen: "127.0.0.1:$port"
tls: {cert_file: $work/server.crt, key_file: $work/server.key, client_ca_file: $work/ca.crt}
static:
  allow: [{group: soak, verbs: [get], paths: ["/**"]}]
routes: [{path_prefix: /, upstream: "$upstream_url"}]
kubernetes: {kubeconfig: $kubeconfig, qps: 100000, burst: 100000}
token_review: {cache: {max_entries: $TOKENS}}
access_review: {cache: {max_entries: $TOKENS}}
admin: {listen: "off"}
log: {level: warn}
YAML
"$bin" serve --config "$work/authgate.yaml" 2>"$work/authgate.log" &
gate=$!
pids+=("$gate")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

say "sampling RSS and fds of pid $gate; sending $REQUESTS requests"
(
    while kill -0 "$gate" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$gate/status" 2>/dev/null || echo 0)
        fds=$(find "/proc/$gate/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        printf '%s %s %s\n' "$(date +%s)" "$rss" "$fds"
        sleep 1
    done
) >"$work/samples.txt" &
pids+=($!)

# xtask load starts no request after TIMEOUT s; the outer timeout is a backstop.
load_rc=0
timeout --kill-after=10 "$((TIMEOUT + 60))" "$xtask" load --target "127.0.0.1:$port" --ca "$work/ca.crt" \
    --tokens "$TOKENS" --certs-dir "$work" --certs "$CERTS" --deadline "$TIMEOUT" \
    --requests "$REQUESTS" --connections 32 --path /soak >"$work/load.json" || load_rc=$?
sleep 2
if ((load_rc != 0)) || ! [[ -s "$work/load.json" ]]; then
    echo '{"requests": 0, "wanted": '"$REQUESTS"', "non_200": 0, "errors": 0, "deadline_hit": true, "seconds": '"$TIMEOUT"'}' >"$work/load.json"
    say "xtask load failed or was killed (exit $load_rc)"
fi
alive=1
kill -0 "$gate" 2>/dev/null || alive=0
if [[ -n "${SOAK_OUT:-}" ]]; then
    mkdir -p "$SOAK_OUT"
    cp "$work/samples.txt" "$work/load.json" "$work/authgate.log" "$SOAK_OUT/"
    say "samples, load result and authgate log copied to $SOAK_OUT"
fi

python3 - "$work/samples.txt" "$work/load.json" "$GROWTH_MIB" "$alive" <<'PY'
import json, sys
samples = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
load = json.load(open(sys.argv[2]))
limit = float(sys.argv[3])
alive = sys.argv[4] == "1"
if len(samples) < 5:
    sys.exit("too few samples")
rss = [s[1] / 1024 for s in samples]
fds = [s[2] for s in samples]
mark = rss[int(len(rss) * 0.4)]
end, peak = rss[-1], max(rss)
print(f"requests {load['requests']} of {load['wanted']}, non-200 {load['non_200']}, transport errors {load['errors']}, {load['seconds']} s "
      f"({load['requests'] / max(load['seconds'], 0.1):.0f} req/s)")
print(f"RSS MiB: start {rss[0]:.1f}, at 40% {mark:.1f}, peak {peak:.1f}, end {end:.1f}; fds: min {min(fds)}, max {max(fds)}, end {fds[-1]}")
print("RSS over time (MiB, every ~10%): " + " ".join(f"{rss[int(i * (len(rss) - 1) / 10)]:.1f}" for i in range(11)))
bad = []
if end - mark > limit:
    bad.append(f"RSS grew {end - mark:.1f} MiB after the caches filled (limit {limit})")
if load["non_200"] or load["errors"]:
    bad.append("requests failed")
if load["requests"] < load["wanted"]:
    bad.append(f"only {load['requests']} of {load['wanted']} requests answered before the deadline")
if not alive:
    bad.append("authgate exited during the soak")
if fds[-1] > max(fds[: len(fds) // 2] + [0]) + 16:
    bad.append("file descriptors keep growing")
if bad:
    sys.exit("SOAK FAILED: " + "; ".join(bad))
print("soak passed")
PY
