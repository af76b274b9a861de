#!/bin/bash
# A/B of authgate builds: server CPU µs per request (utime+stime from /proc,
# read by `xtask load --sample-pids`) at one offered rate, rounds alternating.
# usage: BENCH_DIR=... scripts/ab-cpu.sh RATE ROUNDS SECS token|mtls BIN...
set -u
# The work directory of `xtask bench --keep` (its PKI, configs and upstream).
d=${BENCH_DIR:?set BENCH_DIR to a work directory kept by xtask bench --keep}
rate=$1; rounds=$2; secs=$3; mode=$4; shift 4
taskset -c 0 nginx -e $d/logs/nginx-upstream-error.log -c $d/nginx-upstream.conf -p $d/ 2>/dev/null &
ngx=$!
sleep 0.5
tok=$(grep -o 'bench-[0-9a-f]*' $d/authgate-edge.yaml | head -1)
declare -a ports
i=0
for b in "$@"; do
  p=$((25000+i)); ports[$i]=$p
  sed "s/127.0.0.1:23399/127.0.0.1:$p/" $d/authgate-edge.yaml > /tmp/ab-$i.yaml
  TOKIO_WORKER_THREADS=1 taskset -c 1 $b serve --config /tmp/ab-$i.yaml 2>/tmp/ab-$i.log &
  i=$((i+1))
done
sleep 1.5
tck=$(getconf CLK_TCK)
for r in $(seq 1 $rounds); do
  i=0
  for b in "$@"; do
    p=${ports[$i]}
    pid=$(pgrep -f "ab-$i.yaml" | head -1)
    if [ $mode = token ]; then auth="--token $tok"; else auth="--cert $d/pki/bench-client.crt --key $d/pki/bench-client.key"; fi
    out=$(taskset -c 0 ${XTASK:-target/release/xtask} load --target 127.0.0.1:$p --ca $d/pki/ca.crt --connections 50 --duration $secs $auth --rate $rate --sample-pids $pid 2>&1)
    echo "r$r $(basename $b) $(echo "$out" | tr '\n' ' ' | python3 -c 'import json,sys; j=json.loads(sys.stdin.read().strip().splitlines()[-1]); c=j["server_cpu"]; print("ok=%d non2xx=%d cpu_us=%.1f sched_us=%.1f p99_ms=%.2f" % (j["ok"], j["non_2xx"], c["ticks"]*1e6/100/max(j["ok"],1), c["sched_ns"]/1e3/max(j["ok"],1), j["latency_us"]["p99"]/1e3))')"
    i=$((i+1))
  done
done
pkill -f "ab-[0-9].yaml"; kill $ngx 2>/dev/null; wait 2>/dev/null
