#!/usr/bin/env bash
# Provision a real kube-apiserver + etcd on 127.0.0.1 for authgate's end-to-end tests.
#
# Usage:
#   scripts/kube-apiserver.sh build        build (or reuse) kube-apiserver, print its path
#   scripts/kube-apiserver.sh start DIR    start etcd + kube-apiserver with state in DIR,
#                                          write DIR/env, DIR/admin.kubeconfig, DIR/gateway.kubeconfig
#   scripts/kube-apiserver.sh stop DIR     stop what `start DIR` started (safe to repeat)
#
# Where the binary comes from: Debian bookworm ships the `kubernetes` *source* package
# (1.20.5+really1.20.2-...), whose orig tarball is upstream v1.20.2 including vendor/.
# It is fetched with `apt-get source --download-only` through a private apt configuration
# (deb-src entries derived from the system's own sources; /etc/apt is not modified), built
# offline in GOPATH mode with Debian's Go 1.19, and cached under
#   ${AUTHGATE_CACHE_DIR:-$HOME/.cache/authgate}/kube-apiserver-v1.20.2
# together with the GOPATH/source tree and the Go build cache (so rebuilds are warm).
# Two fixes are applied before building:
#   1. pkg/generated/openapi/zz_generated.openapi.go is generated with the vendored openapi-gen;
#   2. vendor/github.com/modern-go/reflect2 (1.0.1, panics under Go >= 1.18 when a map is
#      JSON-encoded) is replaced by Debian's 1.0.2 copy.
#
# Environment knobs:
#   AUTHGATE_CACHE_DIR         cache directory (default $HOME/.cache/authgate)
#   KAS_BUILD_JOBS             go build -p value (default 2)
#   KAS_BUILD_TIMEOUT          seconds allowed for the compile step (default 3600)
#   KAS_START_TIMEOUT          seconds to wait for /readyz (default 60)
#
# stdout carries only results (the binary path for `build`, a short summary for `start`);
# progress goes to stderr. Tokens are only ever written to files in DIR (mode 0600).

set -euo pipefail

KAS_VERSION="v1.20.2"            # upstream version inside Debian's source package
KAS_MAJOR="1"
KAS_MINOR="20"
DEB_SOURCE_PKG="kubernetes"
# Bump when the way the tree is prepared changes, to force a re-prepare of the cached tree.
PREP_REVISION="1"

CACHE_DIR="${AUTHGATE_CACHE_DIR:-$HOME/.cache/authgate}"
KAS_BIN="$CACHE_DIR/kube-apiserver-$KAS_VERSION"
GOPATH_DIR="$CACHE_DIR/gopath"
K8S_SRC="$GOPATH_DIR/src/k8s.io/kubernetes"
SRC_DL_DIR="$CACHE_DIR/debian-src"
GO_BIN="/usr/lib/go/bin/go"      # Debian's golang-go (1.19 on bookworm); verified to work
REFLECT2_DEBIAN="/usr/share/gocode/src/github.com/modern-go/reflect2"

BUILD_JOBS="${KAS_BUILD_JOBS:-2}"
BUILD_TIMEOUT="${KAS_BUILD_TIMEOUT:-3600}"
START_TIMEOUT="${KAS_START_TIMEOUT:-60}"

SA_ISSUER="https://kubernetes.default.svc"
API_AUDIENCES="https://kubernetes.default.svc"
SERVICE_CIDR="10.0.0.0/24"

log() { printf '[kube-apiserver.sh] %s\n' "$*" >&2; }
die() { printf '[kube-apiserver.sh] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $0 build | start DIR | stop DIR

  build       build kube-apiserver $KAS_VERSION from Debian's kubernetes source package
              (cached at $KAS_BIN) and print its path
  start DIR   start etcd + kube-apiserver on 127.0.0.1 with all state/logs in DIR; writes
              DIR/env, DIR/admin.kubeconfig, DIR/gateway.kubeconfig
  stop DIR    stop the processes started by 'start DIR' (idempotent)
EOF
  exit 2
}

# ---------------------------------------------------------------------------------------
# apt helpers
# ---------------------------------------------------------------------------------------

APT_UPDATED=0

pkg_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

apt_install() {
  # apt_install pkg...   installs the given packages if any is missing
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  [[ $EUID -eq 0 ]] || die "need to install ${missing[*]} (apt-get) but not running as root"
  export DEBIAN_FRONTEND=noninteractive
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    timeout 600 apt-get update -q >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  timeout 1200 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

ensure_build_deps() {
  apt_install golang-go golang-github-modern-go-reflect2-dev dpkg-dev
  [[ -x "$GO_BIN" ]] || die "$GO_BIN not found after installing golang-go"
  [[ -d "$REFLECT2_DEBIAN" ]] || die "$REFLECT2_DEBIAN not found (golang-github-modern-go-reflect2-dev)"
}

ensure_runtime_deps() {
  local pkgs=()
  command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
  command -v etcd >/dev/null 2>&1 || die "etcd not found after installing etcd-server"
}

# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------

cached_binary_ok() {
  [[ -x "$KAS_BIN" ]] || return 1
  local v
  v="$(timeout 20 "$KAS_BIN" --version 2>/dev/null)" || return 1
  [[ "$v" == *"$KAS_VERSION"* ]]
}

fetch_source() {
  # Downloads Debian's kubernetes source package into $SRC_DL_DIR (once).
  mkdir -p "$SRC_DL_DIR"
  if compgen -G "$SRC_DL_DIR/${DEB_SOURCE_PKG}_*.orig.tar.*" >/dev/null; then
    return 0
  fi
  log "fetching Debian source package '$DEB_SOURCE_PKG' (apt-get source --download-only)"
  local tmp f base
  tmp="$(mktemp -d)"
  # Private apt configuration: deb-src twins of the system's active entries, separate lists
  # directory. Nothing under /etc/apt or /var/lib/apt/lists is touched.
  mkdir -p "$tmp/sources.list.d" "$tmp/lists/partial"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    base="$(basename "$f")"
    sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$tmp/sources.list.d/$base"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    base="$(basename "$f")"
    sed -n -E 's/^[[:space:]]*deb([[:space:]])/deb-src\1/p' "$f" >"$tmp/sources.list.d/$base"
  done
  local aptopts=(
    -o "Dir::Etc::SourceList=$tmp/none.list"
    -o "Dir::Etc::SourceParts=$tmp/sources.list.d"
    -o "Dir::State::Lists=$tmp/lists"
    -o "APT::Sandbox::User=root"
  )
  # Non-fatal: a third-party repository without deb-src must not stop us; `apt-get source`
  # below fails clearly if the Debian entry is unusable.
  timeout 600 apt-get "${aptopts[@]}" update -q >&2 || log "warning: apt-get update (deb-src) reported errors"
  (cd "$SRC_DL_DIR" && timeout 1200 apt-get "${aptopts[@]}" source --download-only "$DEB_SOURCE_PKG" >&2) || {
    rm -rf "$tmp"
    die "apt-get source --download-only $DEB_SOURCE_PKG failed"
  }
  rm -rf "$tmp"
  compgen -G "$SRC_DL_DIR/${DEB_SOURCE_PKG}_*.orig.tar.*" >/dev/null \
    || die "no orig tarball for $DEB_SOURCE_PKG in $SRC_DL_DIR"
}

prepare_tree() {
  # Extracts the orig tarball to $GOPATH/src/k8s.io/kubernetes and applies the two fixes.
  local tarball stamp want
  tarball="$(compgen -G "$SRC_DL_DIR/${DEB_SOURCE_PKG}_*.orig.tar.*" | LC_ALL=C sort | tail -n1)"
  stamp="$K8S_SRC/.authgate-prepared"
  want="$(basename "$tarball") $KAS_VERSION prep=$PREP_REVISION"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "source tree already prepared: $K8S_SRC"
    return 0
  fi

  local top
  top="$(tar tf "$tarball" | head -n1 || true)"
  top="${top%%/*}"
  [[ "$top" == "kubernetes-${KAS_VERSION#v}" ]] \
    || die "$(basename "$tarball") contains '$top', expected kubernetes-${KAS_VERSION#v}; update KAS_VERSION in $0"

  log "extracting $(basename "$tarball") to $K8S_SRC"
  rm -rf "$K8S_SRC"
  mkdir -p "$K8S_SRC"
  tar xf "$tarball" -C "$K8S_SRC" --strip-components=1

  log "fix 1/2: vendor/github.com/modern-go/reflect2 <- Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
  rm -rf "$K8S_SRC/vendor/github.com/modern-go/reflect2"
  cp -a "$REFLECT2_DEBIAN" "$K8S_SRC/vendor/github.com/modern-go/reflect2"

  log "fix 2/2: generating pkg/generated/openapi/zz_generated.openapi.go"
  local work="$CACHE_DIR/work"
  mkdir -p "$work"
  (
    cd "$K8S_SRC" || exit 1
    go_env
    timeout 1200 "$GO_BIN" build -p "$BUILD_JOBS" -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen \
      || { echo "building openapi-gen failed" >&2; exit 1; }
    # Same selection as build/root/Makefile.generated_files (KUBE_OPENAPI_TAG_FILES):
    # every Go dir outside ./vendor, ./_*, ./.* (staging/src named as vendor/), whose files
    # carry a '// +k8s:' tag and '+k8s:openapi-gen=', minus code-generator and sample-apiserver.
    dirs="$(
      find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print0 \
        | { xargs -0 grep -l -E '^// *\+k8s:' || true; } \
        | { xargs grep -l -F '+k8s:openapi-gen=' || true; } \
        | sed -e 's|^\./staging/src/|vendor/|' -e 's|^\./||' -e 's|/[^/]*$||' \
        | { grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' || true; } \
        | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -
    )" || exit 1
    [[ -n "$dirs" ]] || { echo "no +k8s:openapi-gen packages found" >&2; exit 1; }
    echo "openapi-gen over $(tr ',' '\n' <<<"$dirs" | wc -l) packages" >&2
    timeout 600 "$work/openapi-gen" \
      --logtostderr \
      -i "$dirs" \
      -o "$GOPATH_DIR/src" \
      -p k8s.io/kubernetes/pkg/generated/openapi \
      -O zz_generated.openapi \
      -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
      -r "$work/openapi-violations.report" >&2 \
      || { echo "openapi-gen failed" >&2; exit 1; }
  ) || die "openapi generation failed"
  grep -q 'func GetOpenAPIDefinitions' "$K8S_SRC/pkg/generated/openapi/zz_generated.openapi.go" \
    || die "zz_generated.openapi.go was not generated"

  printf '%s\n' "$want" >"$stamp"
}

go_env() {
  export GOPATH="$GOPATH_DIR"
  export GOCACHE="$CACHE_DIR/go-build"
  export GO111MODULE=off
  export CGO_ENABLED=0
  export GOPROXY=off
  export GOFLAGS=""
  export GOENV=off
  export GOTOOLCHAIN=local
  export GOOS=linux
  unset GOROOT GOBIN
}

compile_apiserver() {
  local out="$KAS_BIN.tmp.$$"
  local vpkg="k8s.io/kubernetes/vendor/k8s.io/component-base/version"
  local cpkg="k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version"
  local ldflags="-s -w"
  local p
  for p in "$vpkg" "$cpkg"; do
    ldflags+=" -X $p.gitVersion=$KAS_VERSION -X $p.gitMajor=$KAS_MAJOR -X $p.gitMinor=$KAS_MINOR -X $p.gitTreeState=archive"
  done
  log "compiling kube-apiserver $KAS_VERSION (go build -p $BUILD_JOBS; cold ~5-10 min on 2 cores)"
  local t0=$SECONDS
  (
    cd "$K8S_SRC" || exit 1
    go_env
    timeout "$BUILD_TIMEOUT" "$GO_BIN" build -p "$BUILD_JOBS" -ldflags "$ldflags" -o "$out" ./cmd/kube-apiserver >&2
  ) || { rm -f "$out"; die "go build ./cmd/kube-apiserver failed (or exceeded ${BUILD_TIMEOUT}s)"; }
  log "compiled in $((SECONDS - t0))s"
  local v
  v="$(timeout 20 "$out" --version 2>&1)" || { rm -f "$out"; die "built binary does not run: $v"; }
  [[ "$v" == *"$KAS_VERSION"* ]] || { rm -f "$out"; die "built binary reports '$v', expected $KAS_VERSION"; }
  mv -f "$out" "$KAS_BIN"
}

build_if_needed() {
  if cached_binary_ok; then
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  # Serialise concurrent builds (e.g. several test processes calling `start` at once).
  exec 9>"$CACHE_DIR/.build.lock"
  flock -n 9 || log "another build holds $CACHE_DIR/.build.lock; waiting"
  flock -w "$((BUILD_TIMEOUT + 1800))" 9 || die "timed out waiting for the build lock"
  if cached_binary_ok; then
    exec 9>&-
    return 0
  fi
  local t0=$SECONDS
  ensure_build_deps
  fetch_source
  prepare_tree
  compile_apiserver
  exec 9>&-
  log "kube-apiserver $KAS_VERSION ready at $KAS_BIN (build step took $((SECONDS - t0))s)"
}

cmd_build() {
  build_if_needed
  printf '%s\n' "$KAS_BIN"
}

# ---------------------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------------------

proc_alive() {
  # alive and not a zombie
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/stat" ]] || return 1
  state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

proc_is() {
  # proc_is PID NAME : PID is alive and its executable's basename is NAME
  local pid="$1" name="$2" exe
  proc_alive "$pid" || return 1
  exe="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1 || true)"
  [[ "$(basename -- "${exe:-/}")" == "$name"* ]]
}

read_pid() { [[ -f "$1" ]] && tr -dc '0-9' <"$1" || true; }

stop_one() {
  # stop_one PIDFILE NAME
  local pidfile="$1" name="$2" pid i
  pid="$(read_pid "$pidfile")"
  if [[ -n "$pid" ]] && proc_is "$pid" "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do proc_alive "$pid" || break; sleep 0.1; done
    if proc_alive "$pid"; then
      log "$name (pid $pid) did not exit after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do proc_alive "$pid" || break; sleep 0.1; done
      proc_alive "$pid" && die "$name (pid $pid) is still alive after SIGKILL"
    fi
  fi
  rm -f "$pidfile"
}

spawn() {
  # spawn PIDFILE LOGFILE CMD... : start CMD in its own session, detached from our stdio.
  local pidfile="$1" logfile="$2" i
  shift 2
  rm -f "$pidfile"
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
  for ((i = 0; i < 100; i++)); do [[ -s "$pidfile" ]] && break; sleep 0.05; done
  [[ -s "$pidfile" ]] || die "could not start $1"
}

port_free() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -z "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

USED_PORTS=" "
pick_port() {
  # pick_port VAR: a port below the ephemeral range that nothing uses (callers retry on a
  # bind race). Sets VAR; not meant to be called in a $(...) subshell.
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    [[ "$USED_PORTS" == *" $port "* ]] && continue
    if port_free "$port"; then
      USED_PORTS+="$port "
      printf -v "$1" '%s' "$port"
      return 0
    fi
  done
  die "could not find a free port on 127.0.0.1"
}

# ---------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------

gen_pki() {
  local pki="$DIR/pki"
  mkdir -p "$pki"
  chmod 700 "$pki"
  if [[ ! -s "$pki/ca.pem" || ! -s "$pki/ca-key.pem" ]]; then
    log "creating CA"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -keyout "$pki/ca-key.pem" -out "$pki/ca.pem" \
      -subj "/CN=authgate-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -addext "subjectKeyIdentifier=hash" 2>/dev/null
    rm -f "$pki/apiserver.pem"
  fi
  if [[ ! -s "$pki/apiserver.pem" || ! -s "$pki/apiserver-key.pem" ]]; then
    log "creating serving certificate for 127.0.0.1/localhost"
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
      -keyout "$pki/apiserver-key.pem" -out "$pki/apiserver.csr" \
      -subj "/CN=kube-apiserver" 2>/dev/null
    cat >"$pki/apiserver.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl x509 -req -sha256 -days 3650 -in "$pki/apiserver.csr" \
      -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" -CAcreateserial \
      -extfile "$pki/apiserver.ext" -out "$pki/apiserver.pem" 2>/dev/null
    rm -f "$pki/apiserver.csr"
  fi
  if [[ ! -s "$pki/sa.key" || ! -s "$pki/sa.pub" ]]; then
    log "creating service-account signing key pair"
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  fi
  chmod 600 "$pki"/*key* 2>/dev/null || true
}

gen_tokens() {
  [[ -s "$DIR/admin.token" ]] || (umask 077 && openssl rand -hex 32 >"$DIR/admin.token")
  [[ -s "$DIR/gateway.token" ]] || (umask 077 && openssl rand -hex 32 >"$DIR/gateway.token")
  chmod 600 "$DIR/admin.token" "$DIR/gateway.token"
  # token,user,uid[,"group1,group2"]
  (
    umask 077
    {
      printf '%s,admin,authgate-admin,"system:masters"\n' "$(cat "$DIR/admin.token")"
      printf '%s,authgate-gateway,authgate-gateway\n' "$(cat "$DIR/gateway.token")"
    } >"$DIR/tokens.csv"
  )
  (umask 077 && printf 'Authorization: Bearer %s\n' "$(cat "$DIR/admin.token")" >"$DIR/.admin-auth-header")
}

write_kubeconfig() {
  # write_kubeconfig FILE USER TOKENFILE
  local file="$1" user="$2" tokenfile="$3" ca_b64
  ca_b64="$(base64 -w0 <"$DIR/pki/ca.pem")"
  (
    umask 077
    cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: authgate-test
  cluster:
    server: "$APISERVER_URL"
    certificate-authority-data: "$ca_b64"
users:
- name: "$user"
  user:
    token: "$(cat "$tokenfile")"
contexts:
- name: "$user@authgate-test"
  context:
    cluster: authgate-test
    user: "$user"
current-context: "$user@authgate-test"
preferences: {}
EOF
    mv -f "$file.tmp" "$file"
  )
}

readyz_ok() {
  local out
  out="$(curl -sS --max-time 3 --cacert "$DIR/pki/ca.pem" -H "@$DIR/.admin-auth-header" \
    "$APISERVER_URL/readyz" 2>/dev/null || true)"
  [[ "$out" == "ok" ]]
}

tail_log() {
  local f="$1"
  [[ -f "$f" ]] || return 0
  printf -- '----- last 40 lines of %s -----\n' "$f" >&2
  tail -n 40 "$f" >&2 || true
  printf -- '----- end of %s -----\n' "$f" >&2
}

START_IN_PROGRESS=0
on_exit() {
  local rc=$?
  if ((START_IN_PROGRESS)) && ((rc != 0)); then
    log "start FAILED (exit $rc); cleaning up"
    tail_log "$DIR/etcd.log"
    tail_log "$DIR/kube-apiserver.log"
    START_IN_PROGRESS=0
    (stop_one "$DIR/kube-apiserver.pid" kube-apiserver; stop_one "$DIR/etcd.pid" etcd) || true
  fi
  exit "$rc"
}

start_etcd() {
  local attempt i
  for attempt in 1 2 3; do
    pick_port ETCD_CLIENT_PORT
    pick_port ETCD_PEER_PORT
    ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"
    rm -rf "$DIR/etcd-data"
    mkdir -p "$DIR/etcd-data"
    chmod 700 "$DIR/etcd-data"
    printf '\n===== %s starting etcd (attempt %s) =====\n' "$(date -Is)" "$attempt" >>"$DIR/etcd.log"
    log "starting etcd on $ETCD_URL (peer port $ETCD_PEER_PORT)"
    spawn "$DIR/etcd.pid" "$DIR/etcd.log" "$(command -v etcd)" \
      --name authgate-test \
      --data-dir "$DIR/etcd-data" \
      --listen-client-urls "$ETCD_URL" \
      --advertise-client-urls "$ETCD_URL" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "authgate-test=http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster-state new \
      --logger zap \
      --log-outputs stderr \
      --log-level warn
    ETCD_PID="$(read_pid "$DIR/etcd.pid")"
    for ((i = 0; i < 300; i++)); do # 30 s
      if ! proc_alive "$ETCD_PID"; then break; fi
      if curl -fsS --max-time 2 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; then
        log "etcd is healthy (pid $ETCD_PID)"
        return 0
      fi
      sleep 0.1
    done
    if ! proc_alive "$ETCD_PID" && tail -n 20 "$DIR/etcd.log" | grep -qi 'address already in use'; then
      log "etcd port race, retrying with other ports"
      continue
    fi
    stop_one "$DIR/etcd.pid" etcd
    die "etcd did not become healthy within 30s (see $DIR/etcd.log)"
  done
  die "etcd could not bind free ports after 3 attempts"
}

start_apiserver() {
  local attempt i deadline
  for attempt in 1 2 3; do
    pick_port APISERVER_PORT
    APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
    printf '\n===== %s starting kube-apiserver (attempt %s) =====\n' "$(date -Is)" "$attempt" >>"$DIR/kube-apiserver.log"
    log "starting kube-apiserver on $APISERVER_URL"
    spawn "$DIR/kube-apiserver.pid" "$DIR/kube-apiserver.log" "$KAS_BIN" \
      --etcd-servers="$ETCD_URL" \
      --bind-address=127.0.0.1 \
      --advertise-address=127.0.0.1 \
      --secure-port="$APISERVER_PORT" \
      --cert-dir="$DIR/pki" \
      --tls-cert-file="$DIR/pki/apiserver.pem" \
      --tls-private-key-file="$DIR/pki/apiserver-key.pem" \
      --client-ca-file="$DIR/pki/ca.pem" \
      --token-auth-file="$DIR/tokens.csv" \
      --authorization-mode=RBAC \
      --service-account-key-file="$DIR/pki/sa.pub" \
      --service-account-signing-key-file="$DIR/pki/sa.key" \
      --service-account-issuer="$SA_ISSUER" \
      --api-audiences="$API_AUDIENCES" \
      --service-cluster-ip-range="$SERVICE_CIDR" \
      --enable-priority-and-fairness=false \
      --endpoint-reconciler-type=none \
      --profiling=false
    APISERVER_PID="$(read_pid "$DIR/kube-apiserver.pid")"
    deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
      proc_alive "$APISERVER_PID" || break
      if readyz_ok; then
        log "kube-apiserver is ready (pid $APISERVER_PID)"
        return 0
      fi
      sleep 0.25
    done
    if ! proc_alive "$APISERVER_PID" && tail -n 30 "$DIR/kube-apiserver.log" | grep -qi 'address already in use'; then
      log "kube-apiserver port race, retrying with another port"
      continue
    fi
    if proc_alive "$APISERVER_PID"; then
      die "kube-apiserver did not report /readyz=ok within ${START_TIMEOUT}s (log: $DIR/kube-apiserver.log)"
    fi
    die "kube-apiserver exited during startup (log: $DIR/kube-apiserver.log)"
  done
  die "kube-apiserver could not bind a free port after 3 attempts"
}

kc() { timeout 60 kubectl --kubeconfig "$DIR/admin.kubeconfig" --request-timeout=30s "$@"; }

already_running() {
  [[ -f "$DIR/env" ]] || return 1
  local apid epid
  apid="$(read_pid "$DIR/kube-apiserver.pid")"
  epid="$(read_pid "$DIR/etcd.pid")"
  [[ -n "$apid" && -n "$epid" ]] || return 1
  proc_is "$apid" kube-apiserver && proc_is "$epid" etcd || return 1
  APISERVER_URL="$(sed -n 's/^APISERVER_URL=//p' "$DIR/env")"
  [[ -n "$APISERVER_URL" && -f "$DIR/.admin-auth-header" ]] || return 1
  readyz_ok
}

print_summary() {
  printf 'kube-apiserver %s running at %s\n' "$KAS_VERSION" "$APISERVER_URL"
  printf 'environment: %s (source it; tokens are in files, never printed)\n' "$DIR/env"
}

cmd_start() {
  [[ $# -eq 1 && -n "$1" ]] || usage
  mkdir -p "$1"
  DIR="$(cd "$1" && pwd -P)"
  chmod 700 "$DIR"

  if already_running; then
    log "already running in $DIR"
    print_summary
    return 0
  fi
  trap on_exit EXIT
  # Leftovers of an earlier start in the same DIR.
  stop_one "$DIR/kube-apiserver.pid" kube-apiserver
  stop_one "$DIR/etcd.pid" etcd
  rm -f "$DIR/env"

  ensure_runtime_deps
  build_if_needed

  START_IN_PROGRESS=1
  local t0=$SECONDS
  gen_pki
  gen_tokens
  start_etcd
  start_apiserver

  write_kubeconfig "$DIR/admin.kubeconfig" admin "$DIR/admin.token"
  write_kubeconfig "$DIR/gateway.kubeconfig" authgate-gateway "$DIR/gateway.token"

  log "binding user authgate-gateway to ClusterRole system:auth-delegator"
  kc create clusterrolebinding authgate-gateway:auth-delegator \
    --clusterrole=system:auth-delegator --user=authgate-gateway \
    --dry-run=client -o yaml | kc apply -f - >&2 \
    || die "could not create the system:auth-delegator binding for authgate-gateway"

  (
    umask 077
    {
      printf '%s=%q\n' \
        APISERVER_URL "$APISERVER_URL" \
        APISERVER_CA "$DIR/pki/ca.pem" \
        ADMIN_KUBECONFIG "$DIR/admin.kubeconfig" \
        GATEWAY_KUBECONFIG "$DIR/gateway.kubeconfig" \
        ADMIN_TOKEN_FILE "$DIR/admin.token" \
        GATEWAY_TOKEN_FILE "$DIR/gateway.token" \
        GATEWAY_USER "authgate-gateway" \
        SERVICE_ACCOUNT_ISSUER "$SA_ISSUER" \
        API_AUDIENCES "$API_AUDIENCES" \
        ETCD_URL "$ETCD_URL" \
        ETCD_PID "$ETCD_PID" \
        APISERVER_PID "$APISERVER_PID" \
        KUBE_APISERVER_BIN "$KAS_BIN" \
        KUBE_APISERVER_VERSION "$KAS_VERSION"
    } >"$DIR/env.tmp"
    mv -f "$DIR/env.tmp" "$DIR/env"
  )
  START_IN_PROGRESS=0
  log "started in $((SECONDS - t0))s"
  print_summary
}

# ---------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------

cmd_stop() {
  [[ $# -eq 1 && -n "$1" ]] || usage
  if [[ ! -d "$1" ]]; then
    log "$1 does not exist; nothing to stop"
    return 0
  fi
  DIR="$(cd "$1" && pwd -P)"
  stop_one "$DIR/kube-apiserver.pid" kube-apiserver
  stop_one "$DIR/etcd.pid" etcd
  rm -f "$DIR/env"
  log "stopped (logs kept in $DIR)"
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd="$1"
  shift
  case "$cmd" in
    build) [[ $# -eq 0 ]] || usage; cmd_build ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
