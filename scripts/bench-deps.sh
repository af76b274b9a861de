#!/usr/bin/env bash
# Debian packages `cargo xtask bench` needs: nginx (the server compared with
# authgate, and the shared upstream), h2load (nghttp2-client: the HTTP/2
# load), taskset (util-linux). Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if ((${#need[@]} == 0)); then
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "bench-deps: need ${need[*]} (no apt-get here)" >&2; exit 1; }
SUDO=()
((EUID == 0)) || SUDO=(sudo)
echo "bench-deps: apt-get install ${need[*]}" >&2
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
