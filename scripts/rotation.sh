#!/usr/bin/env bash
# Client-CA rotation and a CRL update under keep-alive load (`xtask rotation`,
# xtask/src/rotation/): proves that re-verifying each connection's certificate
# after a reload costs valid clients nothing, and refuses the others from the
# reload on.
#
#   A: bundle old -> old+new (same subject DN, a re-keyed CA) -> clients move to
#      new certificates -> bundle new; 8 clients, HTTP/1.1 and HTTP/2 keep-alive;
#      each key publishes its own CRL (old, then old+new, then new).
#   B: one CA with a CRL; a new CRL revokes one client's serial mid-load.
#
# Prints a table per phase (requests OK / failed, by whether the client's
# certificate was valid at that moment), writes it to
# bench/results/<UTC>-rotation.txt and exits non-zero if a valid-certificate
# request failed, an invalid-certificate request succeeded after the switch,
# or a refusal did not close its connection. Not part of the test command.
#
#   scripts/rotation.sh [--debug] [xtask rotation options, e.g. --phase-seconds 3 --keep]
#
# --debug uses debug builds (quicker to build; dependencies are optimised in
# dev builds too). Bounded: 5 phases of --phase-seconds (default 4, at most 8)
# plus reload waits; the outer timeout below is a backstop.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

profile=release
if [[ "${1:-}" == "--debug" ]]; then
    profile=debug
    shift
fi
flags=(--locked)
[[ $profile == release ]] && flags+=(--release)
echo "[rotation] building authgate and xtask ($profile)" >&2
cargo build "${flags[@]}" --package authgate --bin authgate >&2
cargo build "${flags[@]}" --package xtask >&2
target=${CARGO_TARGET_DIR:-target}/$profile
exec timeout --kill-after=10 180 "$target/xtask" rotation --authgate "$target/authgate" "$@"
