//! Validated configuration.
//!
//! [`file::File`] is what the operator wrote; [`Config`] is what authgate runs
//! on: every default applied, every value typed, every cross-field rule
//! checked. `TryFrom<File>` is the only way from one to the other, and each of
//! its errors names the offending key. Runtime state (sockets, caches, clients)
//! is built from a `Config` in [`crate::app`], never stored here.

pub mod defaults;
pub mod file;
mod file_rewrites;
pub mod issuers;
pub mod krp;
pub mod krp_flags;
pub mod krp_oidc;
mod krp_rewrites;
pub mod rewrites;
pub mod self_signed;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::Glob;
use http::HeaderName;
use http::uri::Authority;

pub use rewrites::{Consume, ResourceCheck, Rewrites};
pub use validate::parse_yaml;

/// Reads and parses a YAML file (not yet validated).
pub fn read_file(path: &Path) -> Result<file::File, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(&text)
}

/// A configuration problem, naming the key (or file) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A value is well-formed YAML but not acceptable.
    #[error("{key}: {reason}")]
    Invalid {
        /// Dotted path of the key, e.g. `routes[0].upstream`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// An `Invalid` error for `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Everything authgate needs to run, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// TLS listener address (of the first listener).
    pub listen: SocketAddr,
    /// Serving certificate and client-certificate verification (of the
    /// first listener).
    pub tls: TlsConfig,
    /// Certificate-to-identity rules, in order (of the first listener).
    pub identity_rules: Vec<IdentityRule>,
    /// The embedded token and policy backend (empty when not configured).
    pub static_backend: StaticConfig,
    /// Routes, in file order (of the first listener).
    pub routes: Vec<RouteConfig>,
    /// Names of the identity headers sent upstream.
    pub headers: HeaderNames,
    /// Connection and timing limits.
    pub limits: Limits,
    /// Logging.
    pub log: LogConfig,
    /// The Kubernetes backend, when configured.
    pub kubernetes: Option<KubernetesConfig>,
    /// The admin listener.
    pub admin: AdminConfig,
    /// Path allow-list and unauthenticated paths.
    pub paths: PathRules,
    /// Proxy, or answer auth checks for a front proxy.
    pub mode: Mode,
    /// Token-to-certificate migration policy and tracking.
    pub migration: MigrationConfig,
    /// External JWT issuers (`authentication.jwt[]`), verified here only.
    pub issuers: Vec<issuers::IssuerConfig>,
    /// Every TLS listener, in file order: `listeners[]`, or the one of the
    /// shorthand form (named `main`). The first one's parts are also
    /// `listen`, `tls`, `identity_rules` and `routes` above.
    pub listeners: Vec<ListenerConfig>,
    /// Fleet-wide revocation, when configured.
    pub fleet: Option<FleetConfig>,
}

/// `fleet:` validated.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The revocation ConfigMap's namespace; `None`: the pod's, found at
    /// start.
    pub namespace: Option<String>,
    /// The revocation ConfigMap's name.
    pub name: String,
    /// The `timeoutSeconds` of each watch call.
    pub watch_timeout: Duration,
}

/// One TLS listener, validated: the parts that are its own. Backends,
/// caches, headers, paths, limits (applied to each listener separately)
/// and the admin listener are shared.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Its name in logs, metrics and errors (`listeners[].name`, else
    /// `listener-<index>`; `main` for the shorthand form).
    pub name: String,
    /// Address.
    pub listen: SocketAddr,
    /// Serving certificate and client-certificate verification.
    pub tls: TlsConfig,
    /// Certificate-to-identity rules, in order.
    pub identity_rules: Vec<IdentityRule>,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
}

/// What authgate does with an allowed request.
#[derive(Clone, Debug, Default)]
pub enum Mode {
    /// Forward it to its route's upstream.
    #[default]
    Proxy,
    /// Answer a front proxy's check (nginx `auth_request`, Envoy `ext_authz`).
    Auth(AuthEndpoint),
}

/// The check endpoint of `mode: auth`.
#[derive(Clone, Debug)]
pub struct AuthEndpoint {
    /// Its path, normalised (`/auth`).
    pub path: String,
    /// Peers whose certificate headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one header read for the client certificate (URL-escaped PEM, or
    /// XFCC when it is `x-forwarded-client-cert`).
    pub cert_header: HeaderName,
}

/// How bearer tokens are treated on a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenPolicy {
    /// Served.
    #[default]
    Allowed,
    /// Served, with a `Warning` header, and counted.
    Deprecated,
    /// Refused with 401.
    Forbidden,
}

/// `routes[].auth` validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteAuth {
    /// Client certificates are accepted.
    pub mtls: bool,
    /// Bearer tokens: allowed, deprecated or forbidden (forbidden when
    /// `methods` leaves out `token`).
    pub token: TokenPolicy,
    /// `false`: a dry run. The route reads credentials as [`Self::in_force`]
    /// says, and what `token` would refuse is only counted.
    pub enforce: bool,
}

impl RouteAuth {
    /// The methods the authenticator reads: these, or in a dry run (only
    /// allowed on a route closed to tokens) tokens as well.
    pub fn in_force(self) -> Self {
        if self.enforce {
            self
        } else {
            Self {
                mtls: self.mtls,
                token: TokenPolicy::Allowed,
                enforce: true,
            }
        }
    }
}

impl Default for RouteAuth {
    fn default() -> Self {
        Self {
            mtls: true,
            token: TokenPolicy::Allowed,
            enforce: true,
        }
    }
}

/// `migration:` validated.
#[derive(Clone, Debug)]
pub struct MigrationConfig {
    /// User or group globs pinned to client certificates.
    pub mtls_required: Vec<Glob>,
    /// `mtls_required` entries with `enforce: false`: their tokens are
    /// served and counted as would-refuse.
    pub mtls_required_dry_run: Vec<Glob>,
    /// Label the identity metric with the identity.
    pub track_identities: bool,
    /// Identities tracked by name; the rest are `other`.
    pub max_identities: usize,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            mtls_required: Vec::new(),
            mtls_required_dry_run: Vec::new(),
            track_identities: false,
            max_identities: 1000,
        }
    }
}

/// `paths:` validated.
#[derive(Clone, Debug, Default)]
pub struct PathRules {
    /// Only these paths are served, when non-empty.
    pub allow: Vec<Glob>,
    /// Served without authentication or authorization.
    pub unauthenticated: Vec<Glob>,
    /// Accept `;` path parameters, removing them before routing.
    pub allow_matrix_params: bool,
}

/// Who may use the guarded admin endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAccess {
    /// Peers on a loopback address only.
    Loopback,
    /// Identities the authorizers allow (verb `get` on `/metrics`, `create` on `/cache/flush`).
    Authorized,
}

/// `admin:` validated.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Listen address; `None` disables the admin listener.
    pub listen: Option<SocketAddr>,
    /// Guard of `/metrics` and `/cache/flush`.
    pub access: AdminAccess,
    /// Serve with the main TLS material.
    pub tls: bool,
    /// Readiness window for the Kubernetes API.
    pub api_ready_window: Duration,
    /// Concurrent admin connections.
    pub max_connections: usize,
}

/// `kubernetes:`, `token_review:` and `access_review:` validated.
#[derive(Clone, Debug)]
pub struct KubernetesConfig {
    /// Kubeconfig path; `None` infers (KUBECONFIG, ~/.kube/config, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Deadline of one API call, including queueing for a slot or a rate token.
    pub timeout: Duration,
    /// Concurrent API calls.
    pub max_in_flight: usize,
    /// Sustained calls per second.
    pub qps: f64,
    /// Burst size.
    pub burst: u32,
    /// TokenReview, if enabled.
    pub token_review: Option<TokenReviewConfig>,
    /// SubjectAccessReview, if enabled.
    pub access_review: Option<AccessReviewConfig>,
}

/// TokenReview settings.
#[derive(Clone, Debug)]
pub struct TokenReviewConfig {
    /// `spec.audiences`; empty means the API's default audience.
    pub audiences: Vec<String>,
    /// Cache size (0 = no caching).
    pub max_entries: u64,
    /// Success TTL (capped by the JWT `exp`).
    pub ttl: Duration,
    /// Rejection TTL.
    pub failure_ttl: Duration,
    /// Uncached tokens per second per client address (0: no limit).
    pub max_misses_per_client: u32,
    /// Refresh-ahead and jitter of the cache.
    pub freshness: Freshness,
    /// Local JWT verification, when enabled.
    pub jwks: Option<JwksConfig>,
}

/// `token_review.jwks:` validated.
#[derive(Clone, Debug)]
pub struct JwksConfig {
    /// Required `iss`; `None` takes the issuer from discovery.
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty means the discovered issuer.
    pub audiences: Vec<String>,
    /// Key refresh interval.
    pub refresh: Duration,
    /// Age after which a cached, locally verified token is reviewed again.
    pub revalidate_after: Duration,
    /// Review (rather than refuse) bad signatures under known keys.
    pub review_bad_signatures: bool,
}

/// SubjectAccessReview settings.
#[derive(Clone, Debug)]
pub struct AccessReviewConfig {
    /// Cache size (0 = no caching).
    pub max_entries: u64,
    /// Allow TTL.
    pub allow_ttl: Duration,
    /// Deny TTL.
    pub deny_ttl: Duration,
    /// Refresh-ahead and jitter of the cache.
    pub freshness: Freshness,
}

/// `*.cache.refresh_ahead` and `*.cache.jitter` validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Freshness {
    /// The end fraction of an entry's life in which a hit reviews it again
    /// in the background (0: never). In `[0, 0.5]`.
    pub refresh_ahead: f64,
    /// TTLs are shortened by up to this fraction (0: exact). In `[0, 0.5]`.
    pub jitter: f64,
}

impl Default for Freshness {
    /// Refresh in the last 20% of life; TTLs jittered by 10%.
    fn default() -> Self {
        Self {
            refresh_ahead: defaults::REFRESH_AHEAD,
            jitter: defaults::JITTER,
        }
    }
}

impl Freshness {
    /// Neither refresh-ahead nor jitter.
    pub const OFF: Self = Self {
        refresh_ahead: 0.0,
        jitter: 0.0,
    };
}

/// `tls:` validated.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Serving chain (PEM).
    pub cert_file: PathBuf,
    /// Serving key (PEM).
    pub key_file: PathBuf,
    /// Client CA bundle; `None` means client certificates are not requested.
    pub client_ca_file: Option<PathBuf>,
    /// CRLs for client certificates.
    pub crl_files: Vec<PathBuf>,
    /// Accept client certificates whose issuer has no CRL loaded.
    pub allow_unknown_revocation: bool,
    /// Accept CRLs past their `nextUpdate`.
    pub allow_stale_crl: bool,
    /// Lowest accepted protocol version.
    pub min_version: TlsVersion,
    /// Poll interval of the reloader.
    pub reload_interval: Duration,
    /// `identity.rules[i].ca_file`, by rule: loaded, checked and reloaded
    /// with the other TLS files.
    pub rule_ca_files: Vec<Option<PathBuf>>,
    /// Offer HTTP/2 in ALPN (`tls.http2`).
    pub http2: bool,
    /// A generated serving pair used instead of `cert_file`/`key_file`.
    pub self_signed: Option<std::sync::Arc<self_signed::SelfSigned>>,
}

/// A TLS protocol version floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Which SAN type a `san` rule reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanKind {
    /// dNSName.
    Dns,
    /// uniformResourceIdentifier.
    Uri,
    /// rfc822Name.
    Email,
}

/// One certificate-to-identity rule, bound to its issuers or not.
#[derive(Clone, Debug)]
pub struct IdentityRule {
    /// Which names of the certificate make the identity.
    pub kind: RuleKind,
    /// The rule applies only to chains that end at a CA of this file
    /// (loaded with the TLS files, as [`TlsConfig::rule_ca_files`]).
    pub ca_file: Option<PathBuf>,
}

impl IdentityRule {
    /// `kind`, for any issuer of the client bundle.
    pub fn unbound(kind: RuleKind) -> Self {
        Self {
            kind,
            ca_file: None,
        }
    }
}

/// What an [`IdentityRule`] reads.
#[derive(Clone, Debug)]
pub enum RuleKind {
    /// SPIFFE URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>` -> ServiceAccount user.
    Spiffe {
        /// Only this trust domain.
        trust_domain: String,
    },
    /// Subject CN -> user, each O -> group.
    CommonName,
    /// A SAN of `kind` matching `pattern` -> `user` (with `{value}`) and `groups`.
    San {
        /// SAN type.
        kind: SanKind,
        /// Glob over the whole value.
        pattern: Glob,
        /// User template.
        user: String,
        /// Groups.
        groups: Vec<String>,
    },
}

/// `static:` validated.
#[derive(Clone, Debug, Default)]
pub struct StaticConfig {
    /// Known tokens, by SHA-256 only.
    pub tokens: Vec<StaticToken>,
    /// Allow rules.
    pub allow: Vec<AllowRule>,
}

/// A static token, held as its SHA-256.
#[derive(Clone, Debug)]
pub struct StaticToken {
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// User name.
    pub user: String,
    /// Optional uid.
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
}

/// Whom an allow rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A user by name (`*` for any authenticated user).
    User(String),
    /// Members of a group.
    Group(String),
}

/// A static allow rule: `subject` may use `verbs` on `paths` or `resources`.
#[derive(Clone, Debug)]
pub struct AllowRule {
    /// Whom it applies to.
    pub subject: Subject,
    /// Verbs; `*` matches any.
    pub verbs: Vec<String>,
    /// Non-resource path globs.
    pub paths: Vec<Glob>,
    /// Resource rules.
    pub resources: Vec<ResourceRule>,
}

/// A resource pattern; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRule {
    /// API group.
    pub group: Option<String>,
    /// Resource.
    pub resource: Option<String>,
    /// Subresource.
    pub subresource: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: Option<String>,
}

/// One route, validated.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Normalised prefix (`/` or `/a/b`, no trailing slash).
    pub path_prefix: String,
    /// Where requests go and how; `None` only with `mode: auth`.
    pub upstream: Option<UpstreamConfig>,
    /// Resource checks authorized instead of the path; all must allow
    /// (empty: the path is authorized).
    pub resources: Vec<ResourceCheck>,
    /// Where `{{ .Value }}` of templated checks comes from.
    pub rewrites: Option<Rewrites>,
    /// Which credentials the route accepts.
    pub auth: RouteAuth,
    /// Protocols a request may upgrade to, lower-case.
    pub upgrades: Vec<String>,
    /// Upgrades allowed on public paths too.
    pub upgrades_on_public_paths: bool,
    /// How methods become verbs on this route's non-resource requests
    /// (`authorization.verb_mapping`).
    pub verb_mapping: VerbMapping,
}

/// A route's upstream, validated: `routes[].upstream` and its TLS files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Where it is and which protocol it speaks.
    pub target: UpstreamTarget,
    /// CA bundle for an `https` upstream; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// The client certificate presented to an `https` upstream.
    pub client_cert: Option<CertKeyFiles>,
}

/// The address and protocol of an upstream (`routes[].upstream`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamTarget {
    /// `http://host:port`: HTTP/1.1 over TCP.
    Http(Authority),
    /// `https://host:port`: TLS; HTTP/2 when the upstream offers `h2` by
    /// ALPN, HTTP/1.1 otherwise.
    Https(Authority),
    /// `h2c://host:port`: HTTP/2 with prior knowledge over TCP (gRPC).
    H2c(Authority),
    /// `unix:///path`: HTTP/1.1 over a Unix socket, `Host: localhost`.
    Unix(PathBuf),
}

impl UpstreamTarget {
    /// Whether this is an `https` upstream (the only kind with TLS files).
    pub fn is_https(&self) -> bool {
        matches!(self, Self::Https(_))
    }
}

/// As written in `routes[].upstream` (without a trailing `/`).
impl std::fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(a) => write!(f, "http://{a}"),
            Self::Https(a) => write!(f, "https://{a}"),
            Self::H2c(a) => write!(f, "h2c://{a}"),
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// A PEM certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertKeyFiles {
    /// PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM key matching the leaf.
    pub key_file: PathBuf,
}

/// How the HTTP method becomes the verb of a non-resource request
/// (`authorization.verb_mapping`). Resource requests (`routes[].resource`)
/// always take the Kubernetes verbs: GET and HEAD `get`, POST `create`, PUT
/// `update`, PATCH `patch`, DELETE `delete`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VerbMapping {
    /// As kube-apiserver: the lower-cased method (`get`, `post`, `put`,
    /// `patch`, `delete`, `options`, ...), HEAD being `get`. What RBAC
    /// `nonResourceURLs` rules are written against; the default.
    #[default]
    KubeApiserver,
    /// As kube-rbac-proxy: the Kubernetes verbs for every request (POST
    /// `create`, PUT `update`, ...); set by kube-rbac-proxy's flags.
    KubeRbacProxy,
}

impl VerbMapping {
    /// The name written in `authorization.verb_mapping`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::KubeApiserver => "kube-apiserver",
            Self::KubeRbacProxy => "kube-rbac-proxy",
        }
    }

    /// The mapping named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::KubeApiserver, Self::KubeRbacProxy]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// Identity header names.
#[derive(Clone, Debug)]
pub struct HeaderNames {
    /// User header.
    pub user: HeaderName,
    /// Group header (one per group).
    pub group: HeaderName,
    /// Uid header.
    pub uid: HeaderName,
    /// Extra prefix, lower-case, e.g. `x-remote-extra-`.
    pub extra_prefix: String,
    /// Add `X-Forwarded-Client-Cert` for certificate clients.
    pub forward_client_cert: bool,
    /// Send identity headers.
    pub enabled: bool,
    /// One joined group header with this separator, instead of one per group.
    pub group_separator: Option<String>,
    /// Strip request-steering headers.
    pub strip_steering: bool,
}

impl Default for HeaderNames {
    fn default() -> Self {
        Self {
            user: HeaderName::from_static("x-remote-user"),
            group: HeaderName::from_static("x-remote-group"),
            uid: HeaderName::from_static("x-remote-uid"),
            extra_prefix: "x-remote-extra-".to_owned(),
            forward_client_cert: false,
            enabled: true,
            group_separator: None,
            strip_steering: true,
        }
    }
}

/// The resource a route stands for (`routes[].resource`), as in
/// `SubjectAccessReviewSpec.resourceAttributes`. Empty strings are unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceAttributes {
    /// Namespace.
    pub namespace: String,
    /// API group (`""` is the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource, e.g. `services`.
    pub resource: String,
    /// Subresource, e.g. `proxy`.
    pub subresource: String,
    /// Object name.
    pub name: String,
}

/// Connection and timing limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections from one client address.
    pub max_connections_per_ip: usize,
    /// TLS handshakes under way at once.
    pub max_handshakes: usize,
    /// TLS handshakes under way from one client address.
    pub max_handshakes_per_ip: usize,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// HTTP/1 request-head deadline and keep-alive idle limit.
    pub header_read_timeout: Duration,
    /// Deadline for upstream response headers.
    pub upstream_timeout: Duration,
    /// Upstream connections unused for this long are closed.
    pub upstream_idle_timeout: Duration,
    /// Requests per upstream connection.
    pub upstream_max_requests: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// HTTP/2 connections with no new request for this long get GOAWAY.
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// How long readiness is false before the listener closes on shutdown.
    pub shutdown_delay: Duration,
    /// Upgraded connections idle for this long are closed.
    pub tunnel_idle_timeout: Duration,
    /// Connections older than this are ended gracefully.
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            max_handshakes: defaults::MAX_HANDSHAKES,
            max_handshakes_per_ip: defaults::MAX_HANDSHAKES_PER_IP,
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            upstream_timeout: defaults::UPSTREAM_TIMEOUT,
            upstream_idle_timeout: defaults::UPSTREAM_IDLE_TIMEOUT,
            upstream_max_requests: defaults::UPSTREAM_MAX_REQUESTS,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            idle_timeout: defaults::IDLE_TIMEOUT,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            shutdown_delay: defaults::SHUTDOWN_DELAY,
            tunnel_idle_timeout: defaults::TUNNEL_IDLE_TIMEOUT,
            max_connection_age: defaults::MAX_CONNECTION_AGE,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Tracing filter directive.
    pub level: String,
}

impl Config {
    /// Reads, parses and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::try_from(read_file(path)?)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        Self::try_from(parse_yaml(text)?)
    }
}
