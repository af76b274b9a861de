//! `fleet:`: the revocation object every replica watches.

use super::super::file::FleetFile;
use super::super::{Error, FleetConfig, defaults};
use super::duration;

/// `fleet:` validated; `has_kubernetes` says whether a `kubernetes` section
/// is configured (the object is watched through it).
pub(super) fn fleet(
    f: Option<FleetFile>,
    has_kubernetes: bool,
) -> Result<Option<FleetConfig>, Error> {
    let Some(f) = f else {
        return Ok(None);
    };
    if !has_kubernetes {
        return Err(Error::invalid(
            "fleet",
            "needs a kubernetes section (the revocation object is watched through the API)",
        ));
    }
    let o = f.revocation_object;
    let name = o
        .name
        .unwrap_or_else(|| defaults::FLEET_REVOCATION_OBJECT.to_owned());
    if !is_dns_subdomain(&name) {
        return Err(Error::invalid(
            "fleet.revocation_object.name",
            format!(
                "{name:?} is not a ConfigMap name (lower-case letters, digits, '-' and '.', at most 253)"
            ),
        ));
    }
    if let Some(ns) = &o.namespace
        && !is_dns_label(ns)
    {
        return Err(Error::invalid(
            "fleet.revocation_object.namespace",
            format!(
                "{ns:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
            ),
        ));
    }
    let watch_timeout = duration(
        "fleet.watch_timeout",
        f.watch_timeout,
        defaults::FLEET_WATCH_TIMEOUT,
    )?;
    if watch_timeout.as_secs() < 1 || watch_timeout.as_secs() > 3600 {
        return Err(Error::invalid(
            "fleet.watch_timeout",
            "must be from 1s to 1h (whole seconds: it is the watch's timeoutSeconds)",
        ));
    }
    Ok(Some(FleetConfig {
        namespace: o.namespace,
        name,
        watch_timeout,
    }))
}

/// An RFC 1123 label: what a namespace name must be.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An RFC 1123 subdomain: what a ConfigMap name must be.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "tls: {cert_file: /c, key_file: /k}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\n";

    fn load(extra: &str) -> Result<Config, Error> {
        Config::from_yaml(&format!("{BASE}{extra}"))
    }

    #[test]
    fn fleet_defaults_name_and_timeout_and_leaves_the_namespace_to_the_pod() {
        let c = load("kubernetes: {}\nfleet: {}\n").expect("valid");
        let f = c.fleet.expect("fleet on");
        assert_eq!(f.name, "authgate-revocation");
        assert_eq!(f.namespace, None);
        assert_eq!(f.watch_timeout, std::time::Duration::from_secs(60));
        assert!(load("kubernetes: {}\n").expect("valid").fleet.is_none());
    }

    #[test]
    fn fleet_errors_name_the_key() {
        for (yaml, key) in [
            ("fleet: {}\n", "fleet:"),
            (
                "kubernetes: {}\nfleet: {revocation_object: {name: Bad_Name}}\n",
                "fleet.revocation_object.name:",
            ),
            (
                "kubernetes: {}\nfleet: {revocation_object: {name: \"a,b=c\"}}\n",
                "fleet.revocation_object.name:",
            ),
            (
                "kubernetes: {}\nfleet: {revocation_object: {namespace: \"a.b\"}}\n",
                "fleet.revocation_object.namespace:",
            ),
            (
                "kubernetes: {}\nfleet: {watch_timeout: 500ms}\n",
                "fleet.watch_timeout:",
            ),
            (
                "kubernetes: {}\nfleet: {watch_timeout: 2h}\n",
                "fleet.watch_timeout:",
            ),
        ] {
            let e = load(yaml).expect_err(yaml).to_string();
            assert!(e.starts_with(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("authgate-revocation"));
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(!is_dns_subdomain(""));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
