#!/usr/bin/env bash
# Coverage-guided fuzzing of authgate's pure parsers (fuzz/, cargo-fuzz + libFuzzer).
#
#   scripts/fuzz.sh              every target for 600 s
#   scripts/fuzz.sh 120          every target for 120 s
#   scripts/fuzz.sh 60 config_parse request_attributes
#
# Targets (fuzz/fuzz_targets/): cert_identity, authorization_header,
# request_attributes, config_parse, xfcc_parse, header_name.
#
# Environment:
#   AUTHGATE_CACHE_DIR  default ~/.cache/authgate; cargo-fuzz is installed
#                       under it (cargo-fuzz/bin) on first use
#   FUZZ_SANITIZER      address (default) or none; libFuzzer stays
#                       coverage-guided either way, ASan adds memory checks
#                       (useful mainly for the C parts: ring, libFuzzer itself)
#   FUZZ_PARALLEL       targets run at once (default: 2 on 2+ cores, else 1)
#   FUZZ_ARGS           extra libFuzzer flags for every target, e.g.
#                       "-only_ascii=1" or "-max_len=65536"
#   CARGO_BUILD_JOBS    default 2
#
# cargo-fuzz passes nightly-only rustc flags (-Zsanitizer, -Cpasses=sancov...);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
#
# The corpus grows in fuzz/corpus/<target>/ (only the seed-* files are
# committed); crashes go to fuzz/artifacts/<target>/; logs to
# fuzz/target/fuzz-logs/. Prints one line per target (executions, exec/s,
# corpus size, result) and exits 1 if any target crashed, printing the
# artifact path and the command that reproduces it. Each target is bounded
# by SECONDS + 300 s of wall time; nothing is left running on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_PER_TARGET=${1:-600}
shift || true
if ! [[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
ALL_TARGETS=(cert_identity authorization_header request_attributes config_parse xfcc_parse header_name)
if (($#)); then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi
for t in "${TARGETS[@]}"; do
    [[ -f fuzz/fuzz_targets/$t.rs ]] || { echo "unknown target: $t" >&2; exit 2; }
done

SANITIZER=${FUZZ_SANITIZER:-address}
case $SANITIZER in address | none) ;; *) echo "FUZZ_SANITIZER: address or none" >&2; exit 2 ;; esac
if [[ -z ${FUZZ_PARALLEL:-} ]]; then
    FUZZ_PARALLEL=$(($(nproc) >= 2 ? 2 : 1))
fi
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
export RUSTC_BOOTSTRAP=1

CACHE=${AUTHGATE_CACHE_DIR:-$HOME/.cache/authgate}
FUZZ_ROOT=$CACHE/cargo-fuzz
export PATH="$FUZZ_ROOT/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz into $FUZZ_ROOT"
    cargo install cargo-fuzz --locked --root "$FUZZ_ROOT"
fi

# Seeds: committed, but regenerate if a checkout lost them.
for t in "${TARGETS[@]}"; do
    if ! compgen -G "fuzz/corpus/$t/seed-*" >/dev/null; then
        bash fuzz/gen_seeds.sh
        break
    fi
done

FUZZ_FLAGS=(--sanitizer "$SANITIZER")
echo "== building ${TARGETS[*]} (sanitizer $SANITIZER, $CARGO_BUILD_JOBS jobs)"
for t in "${TARGETS[@]}"; do
    (cd fuzz && cargo fuzz build "${FUZZ_FLAGS[@]}" "$t")
done

LOGS=$ROOT/fuzz/target/fuzz-logs
mkdir -p "$LOGS"

# Process groups of the running targets, killed on any exit.
declare -A PGID=()
cleanup() {
    for pid in "${PGID[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in "${PGID[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # target: runs it in its own process group, bounded in time
    local t=$1
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    setsid timeout --signal=INT --kill-after=30 "$((SECONDS_PER_TARGET + 300))" \
        bash -c 'cd "$1/fuzz" && shift && exec cargo fuzz run "$@"' _ "$ROOT" \
        "${FUZZ_FLAGS[@]}" "$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=4096 ${FUZZ_ARGS:-} \
        >"$LOGS/$t.log" 2>&1 &
    PGID[$t]=$!
}

fuzz_stat() { # log name: a libFuzzer final stat, or the last status line's count
    local v
    v=$(grep -a "^stat::$2:" "$1" | tail -n1 | awk '{print $2}')
    echo "${v:--}"
}

declare -A RC=()
finish() { # target
    local t=$1 rc=0
    wait "${PGID[$t]}" || rc=$?
    unset "PGID[$t]"
    RC[$t]=$rc
}

echo "== fuzzing ${#TARGETS[@]} target(s) for ${SECONDS_PER_TARGET}s each, $FUZZ_PARALLEL at a time"
running=()
for t in "${TARGETS[@]}"; do
    if ((${#running[@]} >= FUZZ_PARALLEL)); then
        finish "${running[0]}"
        running=("${running[@]:1}")
    fi
    echo "   started $t ($(date +%H:%M:%S))"
    start "$t"
    running+=("$t")
done
for t in "${running[@]}"; do
    finish "$t"
done

crashed=0
printf '\n%-22s %14s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${TARGETS[@]}"; do
    log=$LOGS/$t.log
    execs=$(fuzz_stat "$log" number_of_executed_units)
    rate=$(fuzz_stat "$log" average_exec_per_sec)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    artifact=$(grep -ao "Test unit written to [^ ]*" "$log" | tail -n1 | sed 's/^Test unit written to //' || true)
    if [[ -n $artifact ]]; then
        result="CRASH $artifact"
        crashed=1
    elif ((RC[$t] != 0)); then
        result="FAILED (exit ${RC[$t]}, see $log)"
        crashed=1
    else
        result=ok
    fi
    printf '%-22s %14s %10s %8s  %s\n' "$t" "$execs" "$rate" "$corpus" "$result"
done

if ((crashed)); then
    echo
    for t in "${TARGETS[@]}"; do
        log=$LOGS/$t.log
        artifact=$(grep -ao "Test unit written to [^ ]*" "$log" | tail -n1 | sed 's/^Test unit written to //' || true)
        [[ -n $artifact ]] || continue
        echo "== $t crashed; panic:"
        grep -a -m1 -A3 "panicked at" "$log" || grep -a -m1 -A3 "ERROR:" "$log" || true
        echo "   reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${FUZZ_FLAGS[*]} $t $artifact)"
        echo "   minimize:  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin ${FUZZ_FLAGS[*]} $t $artifact)"
    done
    exit 1
fi
