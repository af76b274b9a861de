#!/usr/bin/env bash
# End-to-end tier: a real kube-apiserver + etcd on 127.0.0.1 (built from Debian's
# source package and cached by scripts/kube-apiserver.sh), then the ignored tests
# in tests/it/real_apiserver.rs against it through the authgate binary.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mktemp -d -t authgate-e2e.XXXXXX)
cleanup() {
    bash scripts/kube-apiserver.sh stop "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

bash scripts/kube-apiserver.sh start "$dir" >&2
AUTHGATE_E2E_DIR="$dir" cargo test --locked --test it real_apiserver:: -- --ignored --test-threads=1
