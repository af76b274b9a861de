//! authgate's integration-test harness: an rcgen PKI, a fake Kubernetes API,
//! recording upstreams (HTTP/1.1; h2c gRPC-style, Unix socket and https in
//! [`kinds`]), TLS and raw-bytes clients, a configuration builder and the
//! gate itself, run in-process on 127.0.0.1.
//!
//! [`Env::start`] is the usual entry point: a PKI, an upstream and a gate
//! configured by [`Yaml`]. Every call into authgate's library API is in
//! [`gate`].

pub mod fake_api;
pub mod gate;
pub mod kinds;
pub mod net;
pub mod pki;
pub mod process;
pub mod raw;

use std::net::SocketAddr;

pub use fake_api::{Endpoint, FakeApi, Fault, Rule, TokenIdentity};
pub use gate::{Gate, install_crypto_provider, tls_provider};
pub use kinds::{
    ChannelBody, GrpcUpstream, SeenBy, TlsOpts, TlsUpstream, UnixUpstream, channel_body,
};
pub use net::{Client, H2Session, Resp, Seen, TIMEOUT, Upstream};
pub use pki::{ClientCert, ClientOpts, Pki, Signer, Usage, Validity};
pub use process::{Running, free_port, wait_for_port};

/// Static token of `bob` (groups `dev`).
pub const BOB_TOKEN: &str = "bob-token-7f3a9c";
/// Static token of `carol` (no groups, no permissions).
pub const CAROL_TOKEN: &str = "carol-token-51be02";

/// `identity:` rules that map cluster.local SVIDs, then CNs (the default
/// reads CNs only: a SPIFFE rule must name its trust domain).
pub const SPIFFE_THEN_CN: &str =
    "identity:\n  rules:\n    - spiffe: {trust_domain: cluster.local}\n    - common_name: {}\n";

/// The test configuration, in parts a test can replace.
pub struct Yaml {
    /// Lines added under `tls:` (indented by two spaces).
    pub tls_extra: String,
    /// The `identity:` section, or empty for the default rules.
    pub identity: String,
    /// The `static:` section.
    pub statics: String,
    /// The `routes:` section.
    pub routes: String,
    /// Anything else at top level (`limits:`, `headers:`, ...).
    pub rest: String,
    pki_dir: String,
}

impl Yaml {
    /// Client certificates optional against the test root; bob and carol's
    /// tokens; dev may get/post under /api, ops may do anything under
    /// /admin; one route to `upstream`.
    pub fn new(pki: &Pki, upstream: SocketAddr) -> Self {
        Self {
            tls_extra: format!("  client_ca_file: {}\n", pki.ca_file.display()),
            identity: String::new(),
            statics: format!(
                "static:\n  tokens:\n    - {{token: {BOB_TOKEN}, user: bob, uid: \"1001\", groups: [dev]}}\n    - {{token: {CAROL_TOKEN}, user: carol}}\n  allow:\n    - {{group: dev, verbs: [get, post], paths: [\"/api/**\"]}}\n    - {{group: \"system:serviceaccounts:monitoring\", verbs: [get], paths: [\"/api/**\"]}}\n    - {{group: ops, verbs: [\"*\"], paths: [\"/admin\", \"/admin/**\"]}}\n"
            ),
            routes: format!("routes:\n  - {{path_prefix: /, upstream: \"http://{upstream}\"}}\n"),
            rest: String::new(),
            pki_dir: pki.path().display().to_string(),
        }
    }

    /// The whole file.
    pub fn render(&self) -> String {
        format!(
            "listen: \"127.0.0.1:0\"\ntls:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n{}{}{}{}{}",
            self.tls_extra,
            self.identity,
            self.statics,
            self.routes,
            self.rest,
            d = self.pki_dir,
        )
    }
}

/// A PKI, an upstream and a gate with the default test configuration.
pub struct Env {
    /// The PKI (the gate's server certificate and client CA).
    pub pki: Pki,
    /// The upstream of the default route.
    pub upstream: Upstream,
    /// The running gate.
    pub gate: Gate,
}

impl Env {
    /// Starts everything with `Yaml::new` adjusted by `edit`.
    pub async fn start(edit: impl FnOnce(&mut Yaml)) -> Self {
        Self::start_with(|_, y| edit(y)).await
    }

    /// Like [`Env::start`], with the PKI at hand (to write CRLs and such).
    pub async fn start_with(edit: impl FnOnce(&Pki, &mut Yaml)) -> Self {
        let pki = Pki::new();
        let upstream = Upstream::start().await;
        let mut y = Yaml::new(&pki, upstream.addr);
        edit(&pki, &mut y);
        let gate = Gate::start(&y.render()).await;
        Self {
            pki,
            upstream,
            gate,
        }
    }

    /// A fake Kubernetes API (that lets ServiceAccounts `get` under
    /// `/api/`) and a gate reviewing against it (1 s API timeout), with
    /// `extra` added at the top level of the configuration.
    pub async fn with_kube(extra: &str) -> (FakeApi, Self) {
        let pki = Pki::new();
        let api = FakeApi::start(&pki).await;
        api.allow(
            Rule::group("system:serviceaccounts")
                .verb("get")
                .path("/api/*"),
        );
        let upstream = Upstream::start().await;
        let mut y = Yaml::new(&pki, upstream.addr);
        y.rest = format!(
            "kubernetes:\n  kubeconfig: {}\n  timeout: 1s\n{extra}",
            api.kubeconfig.display()
        );
        let gate = Gate::start(&y.render()).await;
        (
            api,
            Self {
                pki,
                upstream,
                gate,
            },
        )
    }

    /// A client without a certificate.
    pub fn client(&self) -> Client {
        self.gate.client(&self.pki)
    }

    /// A client presenting a new certificate made with `opts`.
    pub fn cert_client(&self, name: &str, opts: &ClientOpts) -> Client {
        self.client().with_cert(&self.pki.client(name, opts))
    }
}
