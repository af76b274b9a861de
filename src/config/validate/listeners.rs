//! `listeners[]`, or the one-listener shorthand (`listen`, `tls`,
//! `identity`, `routes` at the top level): what is per listener.
//!
//! Each listener has its own address, TLS material (serving certificate,
//! client CA, CRLs), identity rules and routes, so that a request is routed
//! by its own listener's routes only and a client certificate is verified
//! by its own listener's CA only. The two forms cannot be mixed, and no two
//! listeners share a name or an address.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::file::{self, File};
use super::{identity, routes, tls_config};
use crate::config::{Error, ListenerConfig, Mode, VerbMapping};

/// The name of the one listener of the shorthand form.
pub(crate) const SHORTHAND_NAME: &str = "main";

/// The listeners of `f`, in file order (at least one); takes the listener
/// keys out of `f`.
pub(super) fn listeners(
    f: &mut File,
    mode: &Mode,
    verb_mapping: VerbMapping,
) -> Result<Vec<ListenerConfig>, Error> {
    let Some(list) = f.listeners.take() else {
        let raw = file::ListenerFile {
            name: None,
            listen: Some(f.listen.unwrap_or_else(|| ([0, 0, 0, 0], 8443).into())),
            tls: f.tls.take(),
            identity: std::mem::take(&mut f.identity),
            routes: std::mem::take(&mut f.routes),
        };
        return Ok(vec![listener(
            SHORTHAND_NAME.into(),
            raw,
            mode,
            verb_mapping,
        )?]);
    };
    refuse_mixed(f)?;
    if list.is_empty() {
        return Err(Error::invalid(
            "listeners",
            "is empty: give at least one listener (or use the top-level listen, tls and routes)",
        ));
    }
    let mut names = HashSet::new();
    let mut out: Vec<ListenerConfig> = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let key = format!("listeners[{i}]");
        let name = match &raw.name {
            None => format!("listener-{i}"),
            Some(n) => {
                check_name(&format!("{key}.name"), n)?;
                n.clone()
            }
        };
        if !names.insert(name.clone()) {
            return Err(Error::invalid(
                format!("{key}.name"),
                format!("{name:?} is already the name of an earlier listener"),
            ));
        }
        let Some(listen) = raw.listen else {
            return Err(Error::invalid(format!("{key}.listen"), "is required"));
        };
        if let Some(other) = out.iter().find(|o| conflicts(o.listen, listen)) {
            return Err(Error::invalid(
                format!("{key}.listen"),
                format!(
                    "{listen} overlaps the address {} of listener {:?}",
                    other.listen, other.name
                ),
            ));
        }
        let l = listener(name, raw, mode, verb_mapping).map_err(|e| within(&key, e))?;
        out.push(l);
    }
    Ok(out)
}

/// The shorthand keys set next to `listeners`: an error naming them.
fn refuse_mixed(f: &File) -> Result<(), Error> {
    let mut found = Vec::new();
    if f.listen.is_some() {
        found.push("listen");
    }
    if f.tls.is_some() {
        found.push("tls");
    }
    if f.identity.rules.is_some() {
        found.push("identity");
    }
    if !f.routes.is_empty() {
        found.push("routes");
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        "listeners",
        format!(
            "cannot be combined with the top-level {} (the one-listener shorthand); \
             move them into a listeners[] entry",
            found.join(", ")
        ),
    ))
}

/// One listener from its keys; errors name the keys as at the top level.
fn listener(
    name: String,
    raw: file::ListenerFile,
    mode: &Mode,
    verb_mapping: VerbMapping,
) -> Result<ListenerConfig, Error> {
    let tls = raw
        .tls
        .ok_or_else(|| Error::invalid("tls", "is required"))?;
    let mut tls = tls_config(tls)?;
    let identity_rules = identity::rules(raw.identity.rules, &tls)?;
    tls.rule_ca_files = identity_rules.iter().map(|r| r.ca_file.clone()).collect();
    if let Mode::Auth(ep) = mode
        && !ep.trusted_proxies.is_empty()
        && tls.client_ca_file.is_none()
    {
        return Err(Error::invalid(
            "auth.trusted_proxies",
            "needs tls.client_ca_file to verify the certificates proxies forward",
        ));
    }
    let routes = routes(raw.routes, mode, verb_mapping)?;
    Ok(ListenerConfig {
        name,
        listen: raw.listen.unwrap_or_else(|| ([0, 0, 0, 0], 8443).into()),
        tls,
        identity_rules,
        routes,
    })
}

/// `e` about a key of the listener at `key` (`listeners[2]`): its
/// listener keys prefixed, a shared key's reason naming the listener.
fn within(key: &str, e: Error) -> Error {
    match e {
        Error::Invalid { key: k, reason } => {
            let own = ["tls", "identity", "routes"].iter().any(|p| {
                k == *p || k.starts_with(&format!("{p}.")) || k.starts_with(&format!("{p}["))
            });
            if own {
                Error::invalid(format!("{key}.{k}"), reason)
            } else {
                Error::invalid(k, format!("{reason} (in {key})"))
            }
        }
        other => other,
    }
}

/// Names go into logs, metric labels and errors: short and plain.
fn check_name(key: &str, name: &str) -> Result<(), Error> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || name.len() > 63 || !name.chars().all(plain) {
        return Err(Error::invalid(
            key,
            format!("{name:?} must be 1 to 63 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// Whether two listen addresses cannot both be bound: the same port on the
/// same address, or on any address of the family when one is unspecified
/// (`0.0.0.0`; `[::]`, dual-stack, takes both families). Port 0 (an
/// ephemeral port each) never conflicts.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    let covers =
        |x: SocketAddr, y: SocketAddr| x.ip().is_unspecified() && (x.is_ipv6() || y.is_ipv4());
    a.ip() == b.ip() || covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests;
