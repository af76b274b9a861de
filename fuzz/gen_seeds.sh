#!/usr/bin/env bash
# Writes the committed seed corpus (fuzz/corpus/<target>/seed-*).
# Certificates are made with openssl (self-signed, P-256, DER); the other
# seeds are literal. Re-running replaces the certificate seeds with fresh
# ones (new keys), which is harmless: they only seed the fuzzer.
set -euo pipefail
cd "$(dirname "$0")"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- cert_identity: DER certificates --------------------------------------
d=corpus/cert_identity
mkdir -p "$d"
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/key.pem" 2>/dev/null
cert() { # name subject [subjectAltName]
    local name=$1 subj=$2 san=${3:-}
    local args=(req -x509 -new -key "$tmp/key.pem" -days 3650 -subj "$subj" -multivalue-rdn
        -out "$tmp/$name.pem")
    [[ -n $san ]] && args+=(-addext "subjectAltName=$san")
    openssl "${args[@]}" 2>/dev/null
    openssl x509 -in "$tmp/$name.pem" -outform der -out "$d/seed-$name.der"
}
cert cn-orgs "/CN=alice/O=dev/O=ops"
cert spiffe "/O=spiffe" "URI:spiffe://cluster.local/ns/default/sa/builder"
cert san-mixed "/CN=web" "DNS:web.default.svc.cluster.local,DNS:*.example.com,email:bob@example.com,URI:https://example.com/a;b=c"
cert two-spiffe "/CN=x" "URI:spiffe://a/ns/n/sa/s,URI:spiffe://b/ns/n/sa/s"
cert two-cns "/CN=a/CN=b"
cert quoted "/CN=Quote \"me\", please\\/ok/O=a;b=c" "IP:127.0.0.1,DNS:localhost"
cert empty-subject "/" "DNS:only.dns.svc.cluster.local"

# --- authorization_header: header value(s), '\n' separates two ------------
d=corpus/authorization_header
mkdir -p "$d"
printf 'Bearer abc' >"$d/seed-bearer"
printf 'bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_' >"$d/seed-jwt"
printf 'BEARER   abc==' >"$d/seed-padded"
printf 'Basic dXNlcjpwYXNz' >"$d/seed-basic"
printf 'Bearer' >"$d/seed-empty"
printf 'Bearer a b' >"$d/seed-space"
printf 'Bearer a\nBearer b' >"$d/seed-repeated"
printf 'Bearer t\xc3\xa9' >"$d/seed-utf8"
# 16 KiB is the limit: the first is accepted, the second refused (and their
# size lets libFuzzer grow inputs that far).
{ printf 'Bearer '; head -c 16384 /dev/zero | tr '\0' a; } >"$d/seed-max-len"
{ printf 'Bearer '; head -c 16385 /dev/zero | tr '\0' a; } >"$d/seed-too-long"

# --- request_attributes: "METHOD PATH" ------------------------------------
d=corpus/request_attributes
mkdir -p "$d"
printf 'GET /api/v1/namespaces/default/pods' >"$d/seed-get"
printf 'POST //api///v1/./x/' >"$d/seed-slashes"
printf 'DELETE /api/%%2e%%2e/admin' >"$d/seed-encoded-dots"
printf 'PROPFIND /a%%20b/%%61pi%%3fq' >"$d/seed-escapes"
printf 'GET /api/..;/admin' >"$d/seed-dot-params"
printf 'PATCH /a/b/../../..' >"$d/seed-escape-root"
printf 'HEAD /caf\xc3\xa9/x' >"$d/seed-utf8"

# --- config_parse: YAML ---------------------------------------------------
d=corpus/config_parse
mkdir -p "$d"
printf 'tls: {cert_file: c.crt, key_file: k.key}\nroutes: [{path_prefix: /, upstream: "http://127.0.0.1:8080"}]\n' \
    >"$d/seed-minimal.yaml"
cp ../deploy/base/config.yaml "$d/seed-deploy.yaml"
cat >"$d/seed-full.yaml" <<'YAML'
listen: "127.0.0.1:9443"
tls:
  cert_file: s.crt
  key_file: s.key
  client_ca_file: ca.crt
  crl_files: [a.crl]
  min_version: "1.3"
identity:
  rules:
    - spiffe: {trust_domain: cluster.local}
    - san: {type: dns, pattern: "*.svc.cluster.local", user: "svc:{value}", groups: [svcs]}
    - common_name: {}
static:
  tokens:
    - {token: t0k3n, user: bob, groups: [dev]}
    - {token_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", user: eve}
  allow:
    - {group: dev, verbs: [get], paths: ["/api/**"]}
    - {user: eve, verbs: ["*"], resources: [{namespace: web, resource: services}]}
routes:
  - path_prefix: /api/
    upstream: "https://backend:8443"
    upstream_ca_file: up.crt
    resource: {namespace: web, resource: services, subresource: proxy, name: backend}
  - path_prefix: /
    upstream: "http://127.0.0.1:8080"
headers: {user: X-User, extra_prefix: X-Extra-, forward_client_cert: xfcc, group_separator: ","}
limits: {max_connections: 5, handshake_timeout: 1500ms, header_read_timeout: 2s, upstream_timeout: 1m, max_header_bytes: 65536, shutdown_delay: 5s}
log: {format: json, level: debug}
kubernetes: {timeout: 2s, max_in_flight: 8, qps: 50.5, burst: 10}
token_review: {audiences: [api], cache: {max_entries: 100, ttl: 1m, failure_ttl: 5s}}
access_review: {enabled: true, cache: {allow_ttl: 5m, deny_ttl: 30s}}
admin: {listen: "127.0.0.1:9090", access: authorized, tls: true, api_ready_window: 2m}
paths: {allow: ["/api/**", "/healthz"], unauthenticated: ["/healthz"]}
YAML
cat >"$d/seed-anchors.yaml" <<'YAML'
tls: &t {cert_file: c, key_file: k}
routes:
  - &r {path_prefix: /a, upstream: "http://x:1"}
  - {<<: *r, path_prefix: /b}
log: !!map {level: "info"}
YAML
# --- header_name: 8 bytes of variant mask, then a header name ---------------
d=corpus/header_name
mkdir -p "$d"
name_seed() { # file mask-hex name
    { printf '%b' "$(printf '%s' "$2" | sed 's/../\\x&/g')"; printf '%s' "$3"; } >"$d/seed-$1"
}
name_seed x-remote-user 0000000000000000 X-Remote-User
name_seed underscore ffffffffffffffff x_remote_group
name_seed extra 5555555555555555 X-Remote-Extra-Scopes
name_seed impersonate aaaaaaaaaaaaaaaa impersonate_uid
name_seed xfcc 0f0f0f0f0f0f0f0f x-forwarded_client-cert
name_seed ssl-client 0100000000000000 SSL_Client_Verify
name_seed method-override ffff000000000000 X-HTTP-Method-Override
name_seed forwarded 0000000000000000 Forwarded
name_seed accept ffffffffffffffff Accept

echo "seeds written under $(pwd)/corpus"
