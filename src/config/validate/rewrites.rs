//! `routes[].resource` (one check or a list) and `routes[].rewrites`.

use http::HeaderName;

use super::super::file::{ResourcesFile, RewritesFile};
use super::super::rewrites::{Field, Template};
use super::super::{
    Consume, Error, HeaderNames, Mode, ResourceAttributes, ResourceCheck, Rewrites, RouteConfig,
};

/// Headers a rewrite may not read: credentials, framing, routing and
/// hop-by-hop headers, which authgate itself sets, strips or forwards.
const RESERVED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-client-cert",
];

/// The checks and rewrites of `routes[i]` (`key`).
pub(super) fn route_checks(
    key: &str,
    resource: Option<ResourcesFile>,
    rewrites: Option<RewritesFile>,
    mode: &Mode,
) -> Result<(Vec<ResourceCheck>, Option<Rewrites>), Error> {
    if resource.as_ref().is_some_and(|r| r.0.is_empty()) {
        return Err(Error::invalid(
            format!("{key}.resource"),
            "an empty list checks nothing; leave it unset to authorize the path",
        ));
    }
    let list = resource.map(|r| r.0).unwrap_or_default();
    let rewrites = rewrites
        .map(|r| rewrites_config(&format!("{key}.rewrites"), r, mode))
        .transpose()?;
    let one = list.len() == 1;
    let mut checks = Vec::with_capacity(list.len());
    for (i, r) in list.into_iter().enumerate() {
        let k = if one {
            format!("{key}.resource")
        } else {
            format!("{key}.resource[{i}]")
        };
        let verb = match r.verb {
            Some(v) if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(Error::invalid(
                    format!("{k}.verb"),
                    format!("{v:?} is not a verb"),
                ));
            }
            v => v,
        };
        let attributes = ResourceAttributes {
            namespace: r.namespace.unwrap_or_default(),
            group: r.group.unwrap_or_default(),
            version: r.version.unwrap_or_default(),
            resource: r.resource,
            subresource: r.subresource.unwrap_or_default(),
            name: r.name.unwrap_or_default(),
        };
        let mut templates = Vec::new();
        for field in Field::ALL {
            if let Some(t) = Template::parse(field.get(&attributes))
                .map_err(|why| Error::invalid(format!("{k}.{}", field.key()), why))?
            {
                if rewrites.is_none() {
                    return Err(Error::invalid(
                        format!("{k}.{}", field.key()),
                        format!(
                            "{{{{ .Value }}}} needs {key}.rewrites to say where the value comes from"
                        ),
                    ));
                }
                templates.push((field, t));
            }
        }
        checks.push(ResourceCheck {
            attributes,
            verb,
            templates,
        });
    }
    if rewrites.is_some() {
        if checks.is_empty() {
            return Err(Error::invalid(
                format!("{key}.rewrites"),
                format!(
                    "needs {key}.resource with {{{{ .Value }}}} in a field (a path check takes no value)"
                ),
            ));
        }
        if checks.iter().all(|c| c.templates.is_empty()) {
            return Err(Error::invalid(
                format!("{key}.rewrites"),
                format!(
                    "no field of {key}.resource uses {{{{ .Value }}}}, so the value would authorize nothing"
                ),
            ));
        }
    }
    Ok((checks, rewrites))
}

fn rewrites_config(key: &str, r: RewritesFile, mode: &Mode) -> Result<Rewrites, Error> {
    if matches!(mode, Mode::Auth(_)) {
        return Err(Error::invalid(
            key,
            "needs mode: proxy (in mode: auth the front proxy forwards the request, so authgate cannot consume the value)",
        ));
    }
    let query_parameter = match r.query_parameter {
        Some(p)
            if p.is_empty()
                || p.bytes()
                    .any(|b| !b.is_ascii_graphic() || b"&=;%+#".contains(&b)) =>
        {
            return Err(Error::invalid(
                format!("{key}.query_parameter"),
                format!("{p:?} is not a plain parameter name (visible ASCII without & = ; % + #)"),
            ));
        }
        p => p,
    };
    let header = match r.header {
        None => None,
        Some(h) => {
            let name = HeaderName::try_from(h.as_str()).map_err(|_| {
                Error::invalid(
                    format!("{key}.header"),
                    format!("{h:?} is not a header name"),
                )
            })?;
            let lower = name.as_str();
            if RESERVED.contains(&lower) || lower.starts_with("impersonate-") || lower.contains('_')
            {
                return Err(Error::invalid(
                    format!("{key}.header"),
                    format!("{h:?} is set, stripped or read by authgate itself, or has '_'"),
                ));
            }
            Some(name)
        }
    };
    if query_parameter.is_none() && header.is_none() {
        return Err(Error::invalid(key, "needs query_parameter or header"));
    }
    let consume = match r.consume.as_deref() {
        None => Consume::default(),
        Some(c) => Consume::from_name(c).ok_or_else(|| {
            Error::invalid(
                format!("{key}.consume"),
                format!("{c:?} is not pin, remove or keep"),
            )
        })?,
    };
    Ok(Rewrites {
        query_parameter,
        header,
        consume,
    })
}

/// A rewrite header may not be an identity header: authgate sets those.
pub(super) fn check_headers(routes: &[RouteConfig], names: &HeaderNames) -> Result<(), Error> {
    for (i, r) in routes.iter().enumerate() {
        let Some(h) = r.rewrites.as_ref().and_then(|w| w.header.as_ref()) else {
            continue;
        };
        let h = h.as_str();
        if [&names.user, &names.group, &names.uid]
            .iter()
            .any(|n| n.as_str() == h)
            || h.starts_with(&names.extra_prefix)
        {
            return Err(Error::invalid(
                format!("routes[{i}].rewrites.header"),
                format!("{h:?} is an identity header, which authgate sets"),
            ));
        }
    }
    Ok(())
}
