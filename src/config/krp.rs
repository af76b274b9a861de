//! kube-rbac-proxy's command-line flags, mapped onto the configuration file,
//! so a sidecar's `args:` can stay as they are when its image changes to
//! authgate.
//!
//! Flags override the file (`--config` is optional when flags say enough).
//! Any kube-rbac-proxy flag turns the Kubernetes backend on, as
//! kube-rbac-proxy always reviews tokens and access with the API. Flags for
//! features authgate does not have are refused by name. `--upstream-force-h2c`
//! makes the route an `h2c://` upstream; `--upstream-client-cert-file` and
//! `--upstream-client-key-file` are its client certificate. The rest of
//! kube-rbac-proxy's flags (logging flags it ignores, `--http2-disable`,
//! `--tls-cipher-suites`, refusals, the self-signed certificate, the admin
//! listener) are in [`super::krp_flags`].

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::file::{
    AllowFile, File, HumanDuration, KubernetesFile, ResourceAttributesFile, ResourceRuleFile,
    RouteFile, TlsFile,
};
use super::krp_flags::{self, CompatFlags};
use super::{Error, VerbMapping};

/// Refuses kube-rbac-proxy flags that authgate does not implement, naming
/// each; `Ok` when there are none.
pub fn refuse_unsupported<S: AsRef<str>>(args: &[S]) -> Result<(), String> {
    let refused: Vec<String> = args
        .iter()
        .filter_map(|a| {
            let a = a.as_ref();
            let flag = a.split('=').next().unwrap_or(a);
            krp_flags::refusal(flag)
                .map(|why| format!("kube-rbac-proxy flag {flag} is not supported: {why}"))
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused.join("\n"))
    }
}

/// The kube-rbac-proxy flags authgate understands.
#[derive(Args, Debug, Default, Clone)]
pub struct KrpFlags {
    /// `listen`.
    #[arg(long, value_name = "ADDR")]
    pub secure_listen_address: Option<String>,
    /// The single route `/` to this upstream.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// `tls.cert_file`.
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// `tls.key_file`.
    #[arg(long, value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,
    /// `tls.client_ca_file`.
    #[arg(long, value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// `tls.min_version`: VersionTLS12 or VersionTLS13.
    #[arg(long, value_name = "VERSION")]
    pub tls_min_version: Option<String>,
    /// `tls.reload_interval`.
    #[arg(long, value_name = "DURATION")]
    pub tls_reload_interval: Option<String>,
    /// `token_review.audiences` (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub auth_token_audiences: Vec<String>,
    /// `kubernetes.kubeconfig`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// `headers.enabled` (kube-rbac-proxy's default is false).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub auth_header_fields_enabled: Option<bool>,
    /// `headers.user`.
    #[arg(long, value_name = "NAME")]
    pub auth_header_user_field_name: Option<String>,
    /// `headers.group`.
    #[arg(long, value_name = "NAME")]
    pub auth_header_groups_field_name: Option<String>,
    /// `headers.group_separator`.
    #[arg(long, value_name = "SEP")]
    pub auth_header_groups_field_separator: Option<String>,
    /// `paths.allow` (comma-separated globs).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub allow_paths: Vec<String>,
    /// `paths.unauthenticated` (comma-separated globs).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub ignore_paths: Vec<String>,
    /// `routes[0].upstream_ca_file`.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca_file: Option<PathBuf>,
    /// `routes[0].upstream` as `h2c://` (HTTP/2 with prior knowledge);
    /// needs an `http://` `--upstream`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub upstream_force_h2c: Option<bool>,
    /// `routes[0].upstream_client_cert_file`.
    #[arg(long, value_name = "FILE")]
    pub upstream_client_cert_file: Option<PathBuf>,
    /// `routes[0].upstream_client_key_file`.
    #[arg(long, value_name = "FILE")]
    pub upstream_client_key_file: Option<PathBuf>,
    /// kube-rbac-proxy's own YAML (`authorization.resourceAttributes`, `static`).
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// `admin.listen` on 0.0.0.0 (health and readiness).
    #[arg(long, value_name = "PORT")]
    pub proxy_endpoints_port: Option<u16>,
    /// `kubernetes.qps`.
    #[arg(long, value_name = "QPS")]
    pub kube_api_qps: Option<f64>,
    /// `kubernetes.burst`.
    #[arg(long, value_name = "N")]
    pub kube_api_burst: Option<u32>,
    /// klog verbosity: 0-3 info, 4+ debug.
    #[arg(long, short = 'v', value_name = "LEVEL")]
    pub v: Option<u8>,
    /// `--oidc-*`: one `authentication.jwt[]` issuer ([`super::krp_oidc`]).
    #[command(flatten)]
    pub oidc: super::krp_oidc::KrpOidcFlags,
    /// The ignored klog flags, `--http2-disable`, `--tls-cipher-suites`.
    #[command(flatten)]
    pub compat: CompatFlags,
}

impl KrpFlags {
    /// Whether any kube-rbac-proxy flag was given, logging flags aside
    /// (none may be dropped: `--allow-paths` next to `--config` narrows it).
    pub fn any(&self) -> bool {
        self.secure_listen_address.is_some()
            || self.upstream.is_some()
            || self.tls_cert_file.is_some()
            || self.tls_private_key_file.is_some()
            || self.client_ca_file.is_some()
            || self.config_file.is_some()
            || self.kubeconfig.is_some()
            || self.tls_min_version.is_some()
            || self.tls_reload_interval.is_some()
            || !self.auth_token_audiences.is_empty()
            || self.auth_header_fields_enabled.is_some()
            || self.auth_header_user_field_name.is_some()
            || self.auth_header_groups_field_name.is_some()
            || self.auth_header_groups_field_separator.is_some()
            || !self.allow_paths.is_empty()
            || !self.ignore_paths.is_empty()
            || self.upstream_ca_file.is_some()
            || self.upstream_force_h2c.is_some()
            || self.upstream_client_cert_file.is_some()
            || self.upstream_client_key_file.is_some()
            || self.proxy_endpoints_port.is_some()
            || self.kube_api_qps.is_some()
            || self.kube_api_burst.is_some()
            || self.compat.any()
            || self.oidc.any()
    }

    /// Applies the flags to `f` (flags win).
    pub fn apply(self, mut f: File) -> Result<File, Error> {
        self.oidc.apply(&mut f)?;
        if let Some(v) = self.v {
            f.log.level = Some(if v >= 4 { "debug" } else { "info" }.to_owned());
        }
        if !self.any() {
            return Ok(f);
        }
        self.apply_tls(&mut f)?;
        self.apply_route(&mut f)?;
        // kube-rbac-proxy gives paths the Kubernetes verbs (POST `create`),
        // and its users' RBAC rules say so; the file may still choose.
        f.authorization
            .verb_mapping
            .get_or_insert_with(|| VerbMapping::KubeRbacProxy.name().to_owned());
        if let Some(addr) = self.secure_listen_address {
            f.listen = Some(addr.parse().map_err(|_| {
                Error::invalid(
                    "--secure-listen-address",
                    format!("{addr:?} is not host:port"),
                )
            })?);
        }
        let k = f.kubernetes.get_or_insert_with(KubernetesFile::default);
        k.kubeconfig = self.kubeconfig.or_else(|| k.kubeconfig.take());
        k.qps = self.kube_api_qps.or(k.qps);
        k.burst = self.kube_api_burst.or(k.burst);
        if !self.auth_token_audiences.is_empty() {
            f.token_review.audiences = self.auth_token_audiences;
        }
        // kube-rbac-proxy's defaults: headers off, `x-remote-groups` joined by `|`.
        let h = &mut f.headers;
        h.enabled = self
            .auth_header_fields_enabled
            .or(h.enabled)
            .or(Some(false));
        h.user = self.auth_header_user_field_name.or_else(|| h.user.take());
        h.group = self
            .auth_header_groups_field_name
            .or_else(|| h.group.take())
            .or_else(|| Some("x-remote-groups".into()));
        h.group_separator = self
            .auth_header_groups_field_separator
            .or_else(|| h.group_separator.take())
            .or_else(|| Some("|".into()));
        if !self.allow_paths.is_empty() {
            f.paths.allow = go_patterns("--allow-paths", self.allow_paths)?;
        }
        if !self.ignore_paths.is_empty() {
            f.paths.unauthenticated = go_patterns("--ignore-paths", self.ignore_paths)?;
        }
        krp_flags::admin_listener(&mut f.admin, f.listen, self.proxy_endpoints_port)?;
        self.compat.apply(&mut f)?;
        Ok(f)
    }

    fn apply_tls(&self, f: &mut File) -> Result<(), Error> {
        let min_version = match self.tls_min_version.as_deref() {
            None => None,
            Some("VersionTLS12") => Some("1.2".to_owned()),
            Some("VersionTLS13") => Some("1.3".to_owned()),
            Some(other) => {
                return Err(Error::invalid(
                    "--tls-min-version",
                    format!("{other:?}: authgate supports VersionTLS12 and VersionTLS13"),
                ));
            }
        };
        let reload = match &self.tls_reload_interval {
            None => None,
            Some(d) => Some(HumanDuration(humantime::parse_duration(d).map_err(
                |e| Error::invalid("--tls-reload-interval", format!("{d:?}: {e}")),
            )?)),
        };
        let tls = match (
            f.tls.take(),
            &self.tls_cert_file,
            &self.tls_private_key_file,
        ) {
            (Some(t), _, _) => t,
            (None, cert, key) => krp_flags::tls_file(cert.as_ref(), key.as_ref())?,
        };
        f.tls = Some(TlsFile {
            cert_file: self.tls_cert_file.clone().unwrap_or(tls.cert_file),
            key_file: self.tls_private_key_file.clone().unwrap_or(tls.key_file),
            client_ca_file: self.client_ca_file.clone().or(tls.client_ca_file),
            min_version: min_version.or(tls.min_version),
            reload_interval: reload.or(tls.reload_interval),
            ..tls
        });
        Ok(())
    }

    fn apply_route(&self, f: &mut File) -> Result<(), Error> {
        let mut krp = match &self.config_file {
            Some(path) => Some(read_krp_file(path)?),
            None => None,
        };
        if let Some(upstream) = &self.upstream {
            let upstream = self.upstream_url(upstream.trim_end_matches('/'))?;
            let resource = krp.as_ref().and_then(|k| k.resource_attributes());
            let rewrites = krp.as_mut().and_then(|k| k.authorization.rewrites.take());
            let rewrites = rewrites
                .map(|r| r.translate(resource.is_some()))
                .transpose()?;
            f.routes = vec![RouteFile {
                path_prefix: "/".into(),
                upstream: Some(upstream),
                upstream_ca_file: self.upstream_ca_file.clone(),
                upstream_client_cert_file: self.upstream_client_cert_file.clone(),
                upstream_client_key_file: self.upstream_client_key_file.clone(),
                resource: resource.map(Into::into),
                rewrites,
                auth: None,
                upgrades: None,
                upgrades_on_public_paths: None,
            }];
        } else {
            let needs_upstream = [
                ("--upstream-ca-file", self.upstream_ca_file.is_some()),
                ("--upstream-force-h2c", self.upstream_force_h2c.is_some()),
                (
                    "--upstream-client-cert-file",
                    self.upstream_client_cert_file.is_some(),
                ),
                (
                    "--upstream-client-key-file",
                    self.upstream_client_key_file.is_some(),
                ),
            ];
            if let Some((flag, _)) = needs_upstream.iter().find(|(_, set)| *set) {
                return Err(Error::invalid(*flag, "needs --upstream"));
            }
            // They shape the one route --upstream makes; dropped, the route
            // would authorize its path instead.
            let k = krp.as_ref();
            if k.and_then(KrpFile::resource_attributes).is_some()
                || k.is_some_and(|k| k.authorization.rewrites.is_some())
            {
                return Err(Error::invalid(
                    "--config-file",
                    "authorization.resourceAttributes and authorization.rewrites need --upstream",
                ));
            }
        }
        if let Some(k) = krp {
            let rules = k.static_rules()?;
            if !rules.is_empty() {
                f.static_backend
                    .get_or_insert_with(Default::default)
                    .allow
                    .extend(rules);
            }
        }
        Ok(())
    }
}

impl KrpFlags {
    /// `--upstream`, as `h2c://` with `--upstream-force-h2c`: kube-rbac-proxy
    /// then dials the upstream over plain TCP and speaks HTTP/2 at once.
    fn upstream_url(&self, upstream: &str) -> Result<String, Error> {
        if self.upstream_force_h2c != Some(true) {
            return Ok(upstream.to_owned());
        }
        match upstream.strip_prefix("http://") {
            Some(rest) => Ok(format!("h2c://{rest}")),
            None => Err(Error::invalid(
                "--upstream-force-h2c",
                format!(
                    "needs an http:// --upstream, not {upstream:?} (h2c is HTTP/2 without TLS)"
                ),
            )),
        }
    }
}

/// kube-rbac-proxy's `--config-file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KrpFile {
    #[serde(default)]
    authorization: KrpAuthorization,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KrpAuthorization {
    resource_attributes: Option<KrpResourceAttributes>,
    rewrites: Option<super::krp_rewrites::KrpRewrites>,
    #[serde(default, rename = "static")]
    static_rules: Vec<KrpStatic>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KrpResourceAttributes {
    namespace: Option<String>,
    api_group: Option<String>,
    api_version: Option<String>,
    resource: Option<String>,
    subresource: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KrpStatic {
    user: Option<KrpUser>,
    verb: Option<String>,
    namespace: Option<String>,
    api_group: Option<String>,
    resource: Option<String>,
    subresource: Option<String>,
    name: Option<String>,
    resource_request: Option<bool>,
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KrpUser {
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

fn read_krp_file(path: &std::path::Path) -> Result<KrpFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_saphyr::from_str(&text)
        .map_err(|e| Error::Parse(format!("--config-file {}: {e}", path.display())))
}

impl KrpFile {
    fn resource_attributes(&self) -> Option<ResourceAttributesFile> {
        let r = self.authorization.resource_attributes.as_ref()?;
        Some(ResourceAttributesFile {
            namespace: r.namespace.clone(),
            group: r.api_group.clone(),
            version: r.api_version.clone(),
            resource: r.resource.clone().unwrap_or_default(),
            subresource: r.subresource.clone(),
            name: r.name.clone(),
            verb: None,
        })
    }

    /// Static rules: each names a user or one group, a verb, and a path or resource.
    fn static_rules(&self) -> Result<Vec<AllowFile>, Error> {
        let mut out = Vec::new();
        for (i, s) in self.authorization.static_rules.iter().enumerate() {
            let key = format!("--config-file authorization.static[{i}]");
            let user = s.user.as_ref();
            let (name, group) = match (
                user.and_then(|u| u.name.clone()),
                user.map(|u| u.groups.as_slice()),
            ) {
                (Some(n), _) => (Some(n), None),
                (None, Some([g])) => (None, Some(g.clone())),
                _ => {
                    return Err(Error::invalid(
                        key,
                        "needs user.name or exactly one user.groups entry",
                    ));
                }
            };
            let verbs = vec![s.verb.clone().unwrap_or_else(|| "*".into())];
            let resource_request = s.resource_request.unwrap_or_else(|| s.path.is_none());
            let (paths, resources) = if resource_request {
                let r = ResourceRuleFile {
                    group: s.api_group.clone(),
                    resource: s.resource.clone(),
                    subresource: s.subresource.clone(),
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                };
                (vec![], vec![r])
            } else {
                (vec![s.path.clone().unwrap_or_else(|| "/**".into())], vec![])
            };
            out.push(AllowFile {
                user: name,
                group,
                verbs,
                paths,
                resources,
            });
        }
        Ok(out)
    }
}

/// kube-rbac-proxy's path patterns (Go's `path.Match`: `*` is any run of
/// characters within one segment, however many stars) as authgate path
/// globs, which match no more: runs of stars become one, and globset's
/// `{a,b}` is escaped. Character classes, whose negation differs between
/// the two, are refused.
fn go_patterns(flag: &str, patterns: Vec<String>) -> Result<Vec<String>, Error> {
    patterns
        .into_iter()
        .map(|p| {
            if p.contains('[') {
                return Err(Error::invalid(
                    flag,
                    "character classes ([...]) are not supported here; list the paths, or use paths.* in the config file",
                ));
            }
            let mut out = String::with_capacity(p.len());
            for c in p.chars() {
                match c {
                    '*' if out.ends_with('*') => {}
                    '{' | '}' => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn flags() -> KrpFlags {
        KrpFlags {
            upstream: Some("http://127.0.0.1:8081/".into()),
            tls_cert_file: Some("s.crt".into()),
            tls_private_key_file: Some("s.key".into()),
            ..Default::default()
        }
    }

    #[test]
    fn kube_rbac_proxy_flags_give_paths_kube_rbac_proxys_verbs() {
        let c = Config::try_from(flags().apply(File::default()).unwrap()).unwrap();
        assert_eq!(c.routes[0].verb_mapping, VerbMapping::KubeRbacProxy);
        let attrs =
            crate::authz::attributes::for_route(&c.routes[0], &http::Method::POST, "/metrics");
        assert_eq!(attrs.verb, "create");
    }

    #[test]
    fn upstream_flags_map_onto_the_route() {
        let f = KrpFlags {
            upstream: Some("https://127.0.0.1:6443/".into()),
            upstream_ca_file: Some("up-ca.crt".into()),
            upstream_client_cert_file: Some("front-proxy.crt".into()),
            upstream_client_key_file: Some("front-proxy.key".into()),
            ..flags()
        };
        let c = Config::try_from(f.apply(File::default()).unwrap()).unwrap();
        let up = c.routes[0].upstream.clone().unwrap();
        assert!(up.target.is_https());
        assert_eq!(up.ca_file, Some("up-ca.crt".into()));
        let pair = up.client_cert.unwrap();
        assert_eq!(
            (pair.cert_file, pair.key_file),
            ("front-proxy.crt".into(), "front-proxy.key".into())
        );

        let h2c = KrpFlags {
            upstream_force_h2c: Some(true),
            ..flags()
        };
        let c = Config::try_from(h2c.apply(File::default()).unwrap()).unwrap();
        assert_eq!(
            c.routes[0].upstream.as_ref().unwrap().target,
            crate::config::UpstreamTarget::H2c(http::uri::Authority::from_static("127.0.0.1:8081"))
        );
        assert!(c.routes[0].upgrades.is_empty());
        let off = KrpFlags {
            upstream_force_h2c: Some(false),
            ..flags()
        };
        let c = Config::try_from(off.apply(File::default()).unwrap()).unwrap();
        assert!(matches!(
            c.routes[0].upstream.as_ref().unwrap().target,
            crate::config::UpstreamTarget::Http(_)
        ));
    }

    #[test]
    fn upstream_flags_that_cannot_apply_are_refused_by_name() {
        let https_h2c = KrpFlags {
            upstream: Some("https://app:8443".into()),
            upstream_force_h2c: Some(true),
            ..flags()
        };
        let e = https_h2c.apply(File::default()).unwrap_err().to_string();
        assert!(
            e.starts_with("--upstream-force-h2c: needs an http:// --upstream"),
            "{e}"
        );
        let no_upstream = KrpFlags {
            upstream: None,
            upstream_client_key_file: Some("k".into()),
            ..flags()
        };
        let e = no_upstream.apply(File::default()).unwrap_err().to_string();
        assert_eq!(e, "--upstream-client-key-file: needs --upstream");
        // A certificate without its key is refused by validation, naming the key.
        let half = KrpFlags {
            upstream: Some("https://app:8443".into()),
            upstream_client_cert_file: Some("c".into()),
            ..flags()
        };
        let e = Config::try_from(half.apply(File::default()).unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "routes[0].upstream_client_cert_file: needs routes[0].upstream_client_key_file"
        );
    }

    #[test]
    fn the_upstream_flags_parse_as_kube_rbac_proxy_writes_them() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            krp: KrpFlags,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "authgate",
            "--upstream=http://127.0.0.1:8081",
            "--upstream-force-h2c",
            "--upstream-client-cert-file=/etc/front/tls.crt",
            "--upstream-client-key-file",
            "/etc/front/tls.key",
        ])
        .unwrap();
        assert_eq!(cli.krp.upstream_force_h2c, Some(true));
        assert_eq!(
            cli.krp.upstream_client_key_file,
            Some("/etc/front/tls.key".into())
        );
        let cli = <Cli as clap::Parser>::try_parse_from(["authgate", "--upstream-force-h2c=false"])
            .unwrap();
        assert_eq!(cli.krp.upstream_force_h2c, Some(false));
    }

    #[test]
    fn the_upstream_flags_are_no_longer_refused() {
        for flag in [
            "--upstream-force-h2c",
            "--upstream-client-cert-file=c.crt",
            "--upstream-client-key-file=c.key",
        ] {
            assert_eq!(refuse_unsupported(&[flag]), Ok(()), "{flag}");
        }
        assert!(refuse_unsupported(&["--http2-max-size=1"]).is_err());
    }

    #[test]
    fn the_file_may_still_choose_the_verb_mapping() {
        let f =
            crate::config::parse_yaml("authorization: {verb_mapping: kube-apiserver}\n").unwrap();
        let c = Config::try_from(flags().apply(f).unwrap()).unwrap();
        assert_eq!(c.routes[0].verb_mapping, VerbMapping::KubeApiserver);
        // Without flags, nothing changes.
        let f = crate::config::parse_yaml(
            "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://x\"}]\n",
        )
        .unwrap();
        let c = Config::try_from(KrpFlags::default().apply(f).unwrap()).unwrap();
        assert_eq!(c.routes[0].verb_mapping, VerbMapping::KubeApiserver);
    }
}
