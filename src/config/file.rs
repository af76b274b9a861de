//! The configuration file as the operator writes it (YAML).
//!
//! Every type here mirrors the file one-to-one and rejects unknown keys; defaults
//! and cross-field checks live in [`super::Config`]'s conversion, never here.

pub mod authn;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

pub use super::file_rewrites::{OneOrMany, RewritesFile};

/// `routes[].resource`: one check, or a list whose checks must all allow.
pub type ResourcesFile = OneOrMany<ResourceAttributesFile>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Address of the TLS listener. Default `0.0.0.0:8443`.
    pub listen: Option<SocketAddr>,
    /// Serving certificate and client-certificate verification.
    pub tls: Option<TlsFile>,
    /// How a verified client certificate becomes an identity.
    #[serde(default)]
    pub identity: IdentityFile,
    /// The embedded token and policy backend.
    #[serde(rename = "static")]
    pub static_backend: Option<StaticFile>,
    /// Path-prefix routes to upstreams.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// Names of the identity headers sent upstream.
    #[serde(default)]
    pub headers: HeadersFile,
    /// Connection and timing limits.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Logging.
    #[serde(default)]
    pub log: LogFile,
    /// The Kubernetes API client used by the token and access reviewers.
    pub kubernetes: Option<KubernetesFile>,
    /// TokenReview authentication (needs `kubernetes`).
    #[serde(default)]
    pub token_review: TokenReviewFile,
    /// SubjectAccessReview authorization (needs `kubernetes`).
    #[serde(default)]
    pub access_review: AccessReviewFile,
    /// The admin listener (health, readiness, metrics, cache flush).
    #[serde(default)]
    pub admin: AdminFile,
    /// Path allow-list and unauthenticated paths.
    #[serde(default)]
    pub paths: PathsFile,
    /// `proxy` (default): forward allowed requests to their route's upstream.
    /// `auth`: answer nginx `auth_request` / Envoy `ext_authz` checks.
    pub mode: Option<String>,
    /// The check endpoint of `mode: auth`.
    pub auth: Option<AuthEndpointFile>,
    /// The move from bearer tokens to client certificates.
    #[serde(default)]
    pub migration: MigrationFile,
    /// How requests are described to the authorizers.
    #[serde(default)]
    pub authorization: AuthorizationFile,
    /// External JWT issuers (kube-apiserver's structured authentication).
    #[serde(default)]
    pub authentication: authn::AuthenticationFile,
    /// Several TLS listeners, each with its own address, TLS material,
    /// identity rules and routes. The top-level `listen`, `tls`,
    /// `identity` and `routes` are the shorthand for one listener; the two
    /// forms cannot be mixed.
    pub listeners: Option<Vec<ListenerFile>>,
    /// Coordination of the replicas through the API (needs `kubernetes`).
    pub fleet: Option<FleetFile>,
}

/// `fleet:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// The ConfigMap every replica watches for revocations.
    #[serde(default)]
    pub revocation_object: ObjectRefFile,
    /// Each watch call ends after this and is started again, so a lost
    /// permission or a silently dead connection is noticed. Default `60s`.
    pub watch_timeout: Option<HumanDuration>,
}

/// A namespaced object's name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRefFile {
    /// Default: the pod's (`POD_NAMESPACE`, then the service account's
    /// namespace file).
    pub namespace: Option<String>,
    /// Default `authgate-revocation`.
    pub name: Option<String>,
}

/// One entry of `listeners`: what is per listener. Everything else
/// (backends, caches, `headers`, `paths`, `limits` (applied to each
/// listener on its own), `admin`, `log`) is shared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// Used in logs, metrics and errors. Default `listener-<index>`.
    pub name: Option<String>,
    /// Address of this TLS listener (required).
    pub listen: Option<SocketAddr>,
    /// Its serving certificate and client-certificate verification (required).
    pub tls: Option<TlsFile>,
    /// How its verified client certificates become identities.
    #[serde(default)]
    pub identity: IdentityFile,
    /// Its routes; a request is routed by its own listener's only.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
}

/// `authorization:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationFile {
    /// How a non-resource request's method becomes its verb:
    /// `kube-apiserver` (default: the lower-cased method, HEAD `get`) or
    /// `kube-rbac-proxy` (POST `create`, PUT `update`, PATCH `patch`,
    /// DELETE `delete`, GET and HEAD `get`).
    pub verb_mapping: Option<String>,
}

/// `auth:` (with `mode: auth`)
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthEndpointFile {
    /// Path of the check endpoint. Default `/auth`.
    pub path: Option<String>,
    /// Addresses or CIDRs of the front proxies whose client-certificate
    /// headers are believed (after verification against the client CA).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The one header read for the client certificate: URL-escaped PEM
    /// (nginx `$ssl_client_escaped_cert`), default `X-Client-Cert`; or
    /// `X-Forwarded-Client-Cert` (Envoy, its last element's `Cert=`).
    pub cert_header: Option<String>,
}

/// `migration:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationFile {
    /// User or group globs that must authenticate with a client certificate;
    /// their bearer tokens are refused everywhere. An entry is a glob, or
    /// `{glob: G, enforce: false}` to dry-run it.
    #[serde(default)]
    pub mtls_required: Vec<PinFile>,
    /// Label `authgate_identity_requests_total` with the identity.
    #[serde(default)]
    pub track_identities: bool,
    /// Identities tracked by name (report and metric); later ones count as
    /// `other`. Default 1000.
    pub max_identities: Option<usize>,
}

/// One `migration.mtls_required` entry: a glob, or a glob with `enforce`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PinFile {
    /// A glob, enforced.
    Glob(String),
    /// `{glob: G, enforce: false}`.
    Entry(PinEntryFile),
}

/// `migration.mtls_required[]` in its long form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinEntryFile {
    /// User or group glob.
    pub glob: String,
    /// Refuse the matching identities' tokens. Default `true`; `false`
    /// serves them and counts each in `authgate_would_refuse_total`.
    pub enforce: Option<bool>,
}

/// `admin:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Listen address, or `off`. Default `127.0.0.1:9090`.
    pub listen: Option<String>,
    /// Who may use `/metrics` and `/cache/flush`: `loopback` (default) or
    /// `authorized` (an identity allowed by the authorizers; needs `tls: true`).
    /// `/healthz` and `/readyz` are always open (kubelet probes them).
    pub access: Option<String>,
    /// Serve the admin listener with the main listener's TLS material.
    #[serde(default)]
    pub tls: bool,
    /// `/readyz` requires the Kubernetes API to have answered within this.
    /// Default `30s`.
    pub api_ready_window: Option<HumanDuration>,
    /// Concurrent admin connections. Default 64.
    pub max_connections: Option<usize>,
}

/// `kubernetes:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesFile {
    /// Kubeconfig path. Unset: `KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Deadline of one API call, including waiting for a slot. Default `5s`.
    pub timeout: Option<HumanDuration>,
    /// Concurrent API calls. Default 64.
    pub max_in_flight: Option<usize>,
    /// Sustained API calls per second. Default 200.
    pub qps: Option<f64>,
    /// Calls allowed in a burst above `qps`. Default 400.
    pub burst: Option<u32>,
}

/// `token_review:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenReviewFile {
    /// Default `true` when `kubernetes` is set.
    pub enabled: Option<bool>,
    /// Audiences sent in `spec.audiences`; a result counts only if
    /// `status.audiences` intersects them. Default: none (the API's default).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Tokens per second one client address may send that no cache answers
    /// (each would cost a TokenReview); over it, 401 without a review.
    /// Default 10 (burst 20); 0 turns the limit off.
    pub max_misses_per_client: Option<u32>,
    /// Result cache.
    #[serde(default)]
    pub cache: TokenCacheFile,
    /// Local verification of ServiceAccount JWTs with the cluster's keys.
    #[serde(default)]
    pub jwks: JwksFile,
}

/// `token_review.jwks:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksFile {
    /// Verify ServiceAccount JWTs locally first. Default `false`.
    pub enabled: Option<bool>,
    /// Required `iss`; must equal the discovered issuer. Default: the discovered one.
    pub issuer: Option<String>,
    /// Accepted `aud` values: a subset of `token_review.audiences`, and only
    /// with them. Default: `token_review.audiences`, else the issuer.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// How often the keys are fetched again (sooner if the JWKS response's
    /// `Cache-Control: max-age` says so). Default `60s`.
    pub refresh: Option<HumanDuration>,
    /// Send a token whose signature fails under a known `kid` of the
    /// cluster's issuer to TokenReview anyway. Default `false`: refused.
    pub review_bad_signatures: Option<bool>,
    /// A locally verified, cached token older than this is checked again with a
    /// TokenReview. Default `60s`.
    pub revalidate_after: Option<HumanDuration>,
}

/// `token_review.cache:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheFile {
    /// Entries kept. Default 10000; 0 disables caching (lookups still coalesce).
    pub max_entries: Option<u64>,
    /// How long an accepted token is trusted, capped by its JWT `exp`. Default `2m`.
    pub ttl: Option<HumanDuration>,
    /// How long a rejected token stays rejected. Default `10s`.
    pub failure_ttl: Option<HumanDuration>,
    /// A hit in this last fraction of an entry's life reviews it again in the
    /// background, so hot tokens never wait on an expiry. Default `0.2`;
    /// 0 turns it off.
    pub refresh_ahead: Option<f64>,
    /// TTLs are shortened by a random part of up to this fraction (never past a JWT's
    /// `exp`), so replicas do not expire together. Default `0.1`; 0 off.
    pub jitter: Option<f64>,
}

/// `access_review:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessReviewFile {
    /// Default `true` when `kubernetes` is set.
    pub enabled: Option<bool>,
    /// Decision cache.
    #[serde(default)]
    pub cache: AccessCacheFile,
}

/// `access_review.cache:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessCacheFile {
    /// Entries kept. Default 10000; 0 disables caching (lookups still coalesce).
    pub max_entries: Option<u64>,
    /// How long an allow is kept. Default `5m`.
    pub allow_ttl: Option<HumanDuration>,
    /// How long a deny is kept. Default `30s`.
    pub deny_ttl: Option<HumanDuration>,
    /// As `token_review.cache.refresh_ahead`. Default `0.2`; 0 off.
    pub refresh_ahead: Option<f64>,
    /// As `token_review.cache.jitter`. Default `0.1`; 0 off.
    pub jitter: Option<f64>,
}

/// `tls:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM serving certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the serving certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM bundle of CAs that client certificates must chain to. Unset: no
    /// client certificates are requested.
    pub client_ca_file: Option<PathBuf>,
    /// PEM CRLs checked against client certificates.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// Accept a client certificate whose issuer has no CRL in `crl_files`.
    /// Default `false`: such certificates are refused when any CRL is given.
    #[serde(default)]
    pub allow_unknown_revocation: bool,
    /// Accept CRLs past their `nextUpdate`. Default `false`: a stale CRL
    /// fails every client-certificate check and readiness.
    pub allow_stale_crl: Option<bool>,
    /// Lowest TLS version: `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// How often the files are re-read when no change event arrives. Default `30s`.
    pub reload_interval: Option<HumanDuration>,
    /// Offer HTTP/2 (ALPN `h2`). Default `true`; `false` serves HTTP/1.1
    /// only (kube-rbac-proxy's `--http2-disable`).
    pub http2: Option<bool>,
    /// A serving certificate generated at startup, used instead of
    /// `cert_file`/`key_file` (kube-rbac-proxy flags without
    /// `--tls-cert-file`); never read from YAML.
    #[serde(skip)]
    pub self_signed: Option<super::self_signed::SelfSigned>,
}

/// `identity:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Ordered certificate rules; first match wins. Default `[common_name: {}]`.
    pub rules: Option<Vec<RuleFile>>,
}

/// One entry of `identity.rules`: exactly one of `spiffe`, `common_name`,
/// `san`, and optionally the issuers it is bound to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// `spiffe: {trust_domain: T}`: a SPIFFE URI SAN names a ServiceAccount.
    pub spiffe: Option<SpiffeRuleFile>,
    /// `common_name: {}`: CN is the user, each O a group.
    pub common_name: Option<CommonNameRuleFile>,
    /// `san: {type, pattern, user, groups}`: a SAN matching a glob.
    pub san: Option<SanRuleFile>,
    /// PEM CAs: the rule applies only to certificates whose chain ends at
    /// one of them. Required of every rule when the client bundle holds
    /// more than one issuer.
    pub ca_file: Option<PathBuf>,
}

/// `spiffe:` rule body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiffeRuleFile {
    /// The trust domain whose SPIFFE IDs this rule maps (required).
    pub trust_domain: Option<String>,
}

/// `common_name:` rule body (no options yet).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonNameRuleFile {}

/// `san:` rule body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanRuleFile {
    /// `dns`, `uri` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Glob over the whole SAN value (`*` matches any run of characters).
    pub pattern: String,
    /// User name template; `{value}` is replaced by the SAN value.
    pub user: String,
    /// Groups given to the user.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `static:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFile {
    /// Bearer tokens and the identities they stand for.
    #[serde(default)]
    pub tokens: Vec<StaticTokenFile>,
    /// Allow rules; anything not allowed here goes to the next authorizer.
    #[serde(default)]
    pub allow: Vec<AllowFile>,
}

/// One entry of `static.tokens`. Exactly one of `token` and `token_sha256`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenFile {
    /// The token itself.
    pub token: Option<SecretString>,
    /// Hex SHA-256 of the token, so the file need not hold the secret.
    pub token_sha256: Option<String>,
    /// User name.
    pub user: String,
    /// Optional uid.
    pub uid: Option<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One entry of `static.allow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowFile {
    /// Applies to this user (exactly one of `user` and `group`).
    pub user: Option<String>,
    /// Applies to members of this group.
    pub group: Option<String>,
    /// Verbs (`get`, `create`, ...; `*` for all).
    pub verbs: Vec<String>,
    /// Non-resource path globs (`*` one segment, `**` any depth); a lone
    /// `*` is every path, as in RBAC `nonResourceURLs`. A path request's verb
    /// is the lower-cased method unless `authorization.verb_mapping` says
    /// `kube-rbac-proxy`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Resource rules, for routes that carry resource attributes.
    #[serde(default)]
    pub resources: Vec<ResourceRuleFile>,
}

/// One entry of `static.allow[].resources`; unset fields and `*` match anything.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRuleFile {
    /// API group (`""` is the core group).
    pub group: Option<String>,
    /// Resource, e.g. `services`.
    pub resource: Option<String>,
    /// Subresource, e.g. `proxy`.
    pub subresource: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
}

/// One entry of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Path prefix, matched on whole segments; the longest match wins.
    pub path_prefix: String,
    /// `http://host:port`, `https://host:port`, `h2c://host:port` or
    /// `unix:///path` (none with `mode: auth`).
    pub upstream: Option<String>,
    /// PEM CA bundle for an https upstream; unset uses the system roots.
    pub upstream_ca_file: Option<PathBuf>,
    /// PEM client certificate authgate presents to an https upstream (the
    /// requestheader front-proxy pattern); needs `upstream_client_key_file`.
    pub upstream_client_cert_file: Option<PathBuf>,
    /// PEM key of `upstream_client_cert_file`.
    pub upstream_client_key_file: Option<PathBuf>,
    /// Resource attributes to authorize instead of the request path: one
    /// object, or a list whose checks must all allow.
    pub resource: Option<ResourcesFile>,
    /// Fill `{{ .Value }}` in `resource` from a query parameter or header.
    pub rewrites: Option<RewritesFile>,
    /// Which credentials the route accepts.
    pub auth: Option<RouteAuthFile>,
    /// Protocols a request may upgrade to (`Upgrade:`), case-insensitive.
    /// Default `[websocket, SPDY/3.1]` (WebSocket; `kubectl exec`,
    /// `attach` and `port-forward`); `[]` allows none; `h2c` is refused.
    pub upgrades: Option<Vec<String>>,
    /// Allow upgrades on this route's `paths.unauthenticated` paths.
    /// Default `false`: a tunnel without an identity is refused.
    pub upgrades_on_public_paths: Option<bool>,
}

/// `routes[].auth`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthFile {
    /// `mtls`, `token` or both (the default).
    pub methods: Option<Vec<String>>,
    /// `allowed` (default), `deprecated` (served with a `Warning`) or
    /// `forbidden` (401).
    pub token: Option<String>,
    /// Refuse tokens as `methods`/`token` say. Default `true`; `false`
    /// (only on a route closed to tokens) serves them as `allowed` and
    /// counts each in `authgate_would_refuse_total`.
    pub enforce: Option<bool>,
}

/// `routes[].resource`: the SubjectAccessReview resource attributes of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceAttributesFile {
    /// Namespace.
    pub namespace: Option<String>,
    /// API group.
    pub group: Option<String>,
    /// API version.
    pub version: Option<String>,
    /// Resource.
    pub resource: String,
    /// Subresource.
    pub subresource: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// The verb checked whatever the method. Default: the method's
    /// Kubernetes verb (GET `get`, POST `create`, ...).
    pub verb: Option<String>,
}

/// `headers:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersFile {
    /// Default `X-Remote-User`.
    pub user: Option<String>,
    /// Default `X-Remote-Group`.
    pub group: Option<String>,
    /// Default `X-Remote-Uid`.
    pub uid: Option<String>,
    /// Default `X-Remote-Extra-`.
    pub extra_prefix: Option<String>,
    /// `xfcc`: add an Envoy-style `X-Forwarded-Client-Cert` for certificate
    /// clients. Default: none.
    pub forward_client_cert: Option<String>,
    /// Send identity headers at all. Default `true`. (Spoofable headers are
    /// stripped either way.)
    pub enabled: Option<bool>,
    /// Join all groups into one group header with this separator (as
    /// kube-rbac-proxy's `--auth-header-groups-field-separator`). Default:
    /// one header per group.
    pub group_separator: Option<String>,
    /// Strip request-steering headers (`X-HTTP-Method-Override`,
    /// `X-Original-URL`, `Forwarded`, `X-Real-IP`, ...). Default `true`.
    pub strip_steering: Option<bool>,
}

/// `paths:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsFile {
    /// When set, only paths matching one of these globs are served; others
    /// get 404 (kube-rbac-proxy's `--allow-paths`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Paths served without authentication or authorization, e.g. an
    /// upstream's own health check (kube-rbac-proxy's `--ignore-paths`).
    /// Identity headers are still stripped and none are set.
    #[serde(default)]
    pub unauthenticated: Vec<String>,
    /// Accept `;` path parameters (`/a;jsessionid=1/b`): routing and
    /// authorization then see the path with them removed. Default `false`:
    /// such a request gets 400, because Tomcat, Jetty and Spring ignore the
    /// parameters while a prefix match would not.
    pub allow_matrix_params: Option<bool>,
}

/// `limits:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Concurrent connections from one client address; more are closed at
    /// accept. Default 1000.
    pub max_connections_per_ip: Option<usize>,
    /// Connections older than this are ended gracefully (HTTP/1 closes
    /// after the response under way, HTTP/2 gets GOAWAY). Default `24h`.
    pub max_connection_age: Option<HumanDuration>,
    /// An upgraded connection (WebSocket, `kubectl exec`) with no bytes
    /// either way for this long is closed. Default `1h`.
    pub tunnel_idle_timeout: Option<HumanDuration>,
    /// Concurrent connections; more are closed at accept. Default 3072.
    pub max_connections: Option<usize>,
    /// TLS handshakes under way at once; more wait for a slot within
    /// `handshake_timeout`. Default 1024.
    pub max_handshakes: Option<usize>,
    /// TLS handshakes under way from one client address; more are closed
    /// at accept. Default 64.
    pub max_handshakes_per_ip: Option<usize>,
    /// TLS handshake deadline. Default `10s`.
    pub handshake_timeout: Option<HumanDuration>,
    /// HTTP/1 request-head deadline, also the keep-alive idle limit. Default `10s`.
    pub header_read_timeout: Option<HumanDuration>,
    /// Deadline for the upstream's response headers. Default `30s`.
    pub upstream_timeout: Option<HumanDuration>,
    /// An upstream connection kept for a client connection's next request
    /// is closed after this long unused. Default `60s`.
    pub upstream_idle_timeout: Option<HumanDuration>,
    /// Requests one upstream connection carries before it is closed.
    /// Default 1000.
    pub upstream_max_requests: Option<usize>,
    /// Largest request head in bytes. Default 32768.
    pub max_header_bytes: Option<usize>,
    /// HTTP/2 connections without a new request for this long are closed
    /// gracefully. Default `60s`.
    pub idle_timeout: Option<HumanDuration>,
    /// How long shutdown waits for in-flight requests. Default `25s`.
    pub shutdown_timeout: Option<HumanDuration>,
    /// On SIGTERM, how long readiness is false before the listener closes
    /// (lets endpoints update). Default `0s`.
    pub shutdown_delay: Option<HumanDuration>,
}

/// `log:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter such as `info` or `authgate=debug`. Default `info`;
    /// `RUST_LOG` overrides it.
    pub level: Option<String>,
}

/// A duration written as `500ms`, `5s`, `2m` or `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}
