//! kube-rbac-proxy v0.21's flags beyond the core mapping of
//! [`super::krp`]: the logging flags it accepts and ignores, `--http2-disable`,
//! `--tls-cipher-suites`, the flags authgate refuses (each naming what to use
//! instead), the serving certificate it generates without `--tls-cert-file`,
//! and the one extra port it opens (only for `--proxy-endpoints-port`).
//!
//! [`FLAGS`] lists every flag of kube-rbac-proxy v0.21; the README's
//! migration table lists the same, and a test keeps them in step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use super::Error;
use super::file::{AdminFile, File, TlsFile};
use super::self_signed;

/// Every flag of kube-rbac-proxy v0.21 (its `options.go`, the klog flags
/// it disables in `deprecated.go`, and the global `-v`, `--vmodule`,
/// `--log-flush-frequency`, `--version`, `--help`).
pub const FLAGS: &[&str] = &[
    "--insecure-listen-address",
    "--secure-listen-address",
    "--upstream",
    "--upstream-force-h2c",
    "--upstream-ca-file",
    "--upstream-client-cert-file",
    "--upstream-client-key-file",
    "--config-file",
    "--allow-paths",
    "--ignore-paths",
    "--proxy-endpoints-port",
    "--tls-cert-file",
    "--tls-private-key-file",
    "--tls-min-version",
    "--tls-cipher-suites",
    "--tls-reload-interval",
    "--client-ca-file",
    "--auth-header-fields-enabled",
    "--auth-header-user-field-name",
    "--auth-header-groups-field-name",
    "--auth-header-groups-field-separator",
    "--auth-token-audiences",
    "--oidc-issuer",
    "--oidc-clientID",
    "--oidc-groups-claim",
    "--oidc-username-claim",
    "--oidc-username-prefix",
    "--oidc-groups-prefix",
    "--oidc-sign-alg",
    "--oidc-ca-file",
    "--kubeconfig",
    "--kube-api-qps",
    "--kube-api-burst",
    "--http2-disable",
    "--http2-max-concurrent-streams",
    "--http2-max-size",
    "--logtostderr",
    "--add-dir-header",
    "--alsologtostderr",
    "--log-backtrace-at",
    "--log-dir",
    "--log-file",
    "--log-file-max-size",
    "--one-output",
    "--skip-headers",
    "--skip-log-headers",
    "--stderrthreshold",
    "--v",
    "--vmodule",
    "--log-flush-frequency",
    "--version",
    "--help",
];

/// kube-rbac-proxy flags authgate refuses (by prefix), with the reason and
/// the authgate key or flag to use instead.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "--insecure-listen-address",
        "authgate serves TLS only; use --secure-listen-address (`listen`)",
    ),
    (
        "--http2-max-concurrent-streams",
        "authgate allows 250 streams per HTTP/2 connection, not configurable; bound load with `limits.max_connections` and `limits.max_connections_per_ip`",
    ),
    (
        "--http2-max-size",
        "authgate bounds an HTTP/2 header list by `limits.max_header_bytes`; set that instead",
    ),
    (
        "--version",
        "`authgate serve` has no --version; run `authgate --version`",
    ),
];

/// The reason `flag` (a command-line word, `--name` or `--name=value`) is
/// refused, if it is.
pub fn refusal(flag: &str) -> Option<&'static str> {
    let name = flag.split('=').next().unwrap_or(flag);
    REFUSED
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, why)| *why)
}

/// Go's `strconv.ParseBool`, which kube-rbac-proxy's boolean flags use.
fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean")),
    }
}

/// kube-rbac-proxy's flags that [`super::krp::KrpFlags`] does not map
/// itself. Boolean flags take `--flag` or `--flag=value` (as pflag: `--flag
/// false` would make `false` an argument); the others `--flag=value` or
/// `--flag value`.
#[derive(Args, Debug, Default, Clone)]
pub struct CompatFlags {
    /// klog flag, accepted and ignored (authgate always logs to stderr).
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub logtostderr: Option<bool>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub add_dir_header: Option<bool>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub alsologtostderr: Option<bool>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "FILE:N")]
    pub log_backtrace_at: Option<String>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "DIR")]
    pub log_dir: Option<String>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "FILE")]
    pub log_file: Option<String>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "MB")]
    pub log_file_max_size: Option<u64>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub one_output: Option<bool>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub skip_headers: Option<bool>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub skip_log_headers: Option<bool>,
    /// klog flag, accepted and ignored.
    #[arg(long, hide = true, value_name = "SEVERITY")]
    pub stderrthreshold: Option<String>,
    /// klog flag, accepted and ignored (use `RUST_LOG` for per-module levels).
    #[arg(long, hide = true, value_name = "PATTERN=N")]
    pub vmodule: Option<String>,
    /// klog flag, accepted and ignored (authgate's log writer flushes itself).
    #[arg(long, hide = true, value_name = "DURATION")]
    pub log_flush_frequency: Option<String>,
    /// `tls.http2: false`: HTTP/1.1 only (ALPN without `h2`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub http2_disable: Option<bool>,
    /// Accepted when it lists every TLS 1.2 suite authgate offers (see
    /// README); authgate never offers others.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub tls_cipher_suites: Vec<String>,
}

/// The TLS 1.2 suites authgate (rustls) offers, by their Go names; the
/// second name is Go's older alias.
const OFFERED_TLS12: &[(&str, &str)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    ),
];

/// TLS 1.3 suites: Go ignores them in `CipherSuites` (TLS 1.3's are fixed),
/// and so does authgate.
const TLS13: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The listed suites authgate does not offer (a warning), or the refusal
/// when the list leaves out a TLS 1.2 suite authgate would still offer
/// (authgate cannot narrow its set, and must not offer more than was
/// asked); with `tls13_only`, TLS 1.2 suites are never offered anyway.
pub fn check_cipher_suites(list: &[String], tls13_only: bool) -> Result<Vec<String>, Error> {
    let listed = |s: &(&str, &str)| list.iter().any(|l| l == s.0 || l == s.1);
    let omitted: Vec<&str> = OFFERED_TLS12
        .iter()
        .filter(|s| !listed(s))
        .map(|s| s.0)
        .collect();
    if !list.is_empty() && !omitted.is_empty() && !tls13_only {
        return Err(Error::invalid(
            "--tls-cipher-suites",
            format!(
                "authgate always offers the TLS 1.2 suites {}, and this list leaves out {}; list them all, drop the flag, or use --tls-min-version=VersionTLS13 (`tls.min_version: \"1.3\"`)",
                OFFERED_TLS12
                    .iter()
                    .map(|s| s.0)
                    .collect::<Vec<_>>()
                    .join(","),
                omitted.join(",")
            ),
        ));
    }
    for l in list {
        if !l.starts_with("TLS_") {
            return Err(Error::invalid(
                "--tls-cipher-suites",
                format!("{l:?} is not a cipher suite name"),
            ));
        }
    }
    Ok(list
        .iter()
        .filter(|l| {
            !TLS13.contains(&l.as_str()) && !OFFERED_TLS12.iter().any(|s| s.0 == *l || s.1 == *l)
        })
        .cloned()
        .collect())
}

impl CompatFlags {
    /// Whether a flag that changes serving was given (not a logging flag).
    pub fn any(&self) -> bool {
        self.http2_disable.is_some() || !self.tls_cipher_suites.is_empty()
    }

    /// The ignored logging flags that were given, by name.
    pub fn ignored(&self) -> Vec<&'static str> {
        [
            ("--logtostderr", self.logtostderr.is_some()),
            ("--add-dir-header", self.add_dir_header.is_some()),
            ("--alsologtostderr", self.alsologtostderr.is_some()),
            ("--log-backtrace-at", self.log_backtrace_at.is_some()),
            ("--log-dir", self.log_dir.is_some()),
            ("--log-file", self.log_file.is_some()),
            ("--log-file-max-size", self.log_file_max_size.is_some()),
            ("--one-output", self.one_output.is_some()),
            ("--skip-headers", self.skip_headers.is_some()),
            ("--skip-log-headers", self.skip_log_headers.is_some()),
            ("--stderrthreshold", self.stderrthreshold.is_some()),
            ("--vmodule", self.vmodule.is_some()),
            ("--log-flush-frequency", self.log_flush_frequency.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// What to warn about at startup: one line for all ignored logging
    /// flags, one for cipher suites authgate does not offer.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let ignored = self.ignored();
        if !ignored.is_empty() {
            out.push(format!(
                "kube-rbac-proxy logging flags accepted and ignored: {} (authgate logs to stderr; set log.level, log.format or RUST_LOG)",
                ignored.join(", ")
            ));
        }
        if let Ok(unoffered) = check_cipher_suites(&self.tls_cipher_suites, true)
            && !unoffered.is_empty()
        {
            out.push(format!(
                "--tls-cipher-suites: {} not offered (authgate offers only ECDHE suites with AEAD ciphers)",
                unoffered.join(",")
            ));
        }
        out
    }

    /// Applies `--http2-disable` and checks `--tls-cipher-suites` (after
    /// `f.tls` is set).
    pub fn apply(&self, f: &mut File) -> Result<(), Error> {
        let tls13_only = f
            .tls
            .as_ref()
            .is_some_and(|t| t.min_version.as_deref() == Some("1.3"));
        check_cipher_suites(&self.tls_cipher_suites, tls13_only)?;
        if let (Some(disable), Some(tls)) = (self.http2_disable, f.tls.as_mut()) {
            tls.http2 = Some(!disable);
        }
        Ok(())
    }
}

/// `tls:` from `--tls-cert-file` and `--tls-private-key-file` when the file
/// has none. Without either, a self-signed certificate for the host name,
/// `localhost` and `127.0.0.1`, generated now and kept in memory, as
/// kube-rbac-proxy does (a warning says so at startup); one without the
/// other is refused.
pub fn tls_file(cert: Option<&PathBuf>, key: Option<&PathBuf>) -> Result<TlsFile, Error> {
    let (cert_file, key_file, self_signed) = match (cert, key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), None),
        (None, None) => {
            let host = self_signed::host_name();
            let pair = self_signed::generate(host.as_deref()).map_err(|e| {
                Error::invalid(
                    "--tls-cert-file",
                    format!("unset, and a self-signed certificate could not be made: {e}"),
                )
            })?;
            let mem = PathBuf::from("<self-signed>");
            (mem.clone(), mem, Some(pair))
        }
        (Some(_), None) => {
            return Err(Error::invalid(
                "--tls-private-key-file",
                "is needed with --tls-cert-file",
            ));
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "--tls-cert-file",
                "is needed with --tls-private-key-file",
            ));
        }
    };
    Ok(TlsFile {
        cert_file,
        key_file,
        client_ca_file: None,
        crl_files: vec![],
        allow_unknown_revocation: false,
        allow_stale_crl: None,
        min_version: None,
        reload_interval: None,
        http2: None,
        self_signed,
    })
}

/// The warning for a generated serving certificate, if `f` uses one.
pub fn self_signed_warning(tls: &super::TlsConfig) -> Option<String> {
    tls.self_signed.as_ref().map(|s| {
        format!(
            "no --tls-cert-file: serving a self-signed certificate generated at startup for {} (clients cannot verify it; give --tls-cert-file and --tls-private-key-file)",
            s.names.join(", ")
        )
    })
}

/// `admin:` for a sidecar started with kube-rbac-proxy's flags, which opens
/// no port but `--secure-listen-address`: no admin listener, unless
/// `--proxy-endpoints-port` asks for one. That port is on the host of
/// `listen` and served with the main TLS material, as kube-rbac-proxy
/// serves its `/healthz` there. A file's own `admin.listen` stays when the
/// flag is not given.
pub fn admin_listener(
    admin: &mut AdminFile,
    listen: Option<SocketAddr>,
    port: Option<u16>,
) -> Result<(), Error> {
    match port {
        Some(0) => admin.listen = Some("off".into()),
        None => {
            admin.listen.get_or_insert_with(|| "off".into());
        }
        Some(p) => {
            let host = listen.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |l| l.ip());
            if listen.map(|l| l.port()) == Some(p) {
                return Err(Error::invalid(
                    "--proxy-endpoints-port",
                    format!("{p} is the port of --secure-listen-address"),
                ));
            }
            admin.listen = Some(SocketAddr::new(host, p).to_string());
            admin.tls = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
