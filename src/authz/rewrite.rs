//! `routes[].rewrites` at request time (pure): the values a request carries
//! in the rewrite parameter or header, read the way the most lenient
//! upstream could read them, and what the upstream then gets.
//!
//! Reading refuses (400) whatever two parsers could read differently: a
//! `;` in the query (once a separator), a malformed `%` escape in a
//! parameter name, a name spelled like the parameter in another case or
//! with `_`/`.`/`-` swapped, a header name an upstream folds into the
//! rewrite header (`X_Scope_OrgID`), an empty value or list element, and
//! more than [`MAX_REWRITE_VALUES`] distinct values. Every value is then
//! authorized ([`super::attributes::bind`]), and [`consume`] makes
//! the forwarded request carry exactly those (`pin`), none (`remove`), or
//! the client's own spelling when it is already canonical (`keep`).

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::config::rewrites::MAX_REWRITE_VALUES;
use crate::config::{Consume, Rewrites, RouteConfig};

/// Why a request's rewrite values are refused (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Neither the parameter nor the header is present.
    #[error("this route needs a value in {0}")]
    Missing(String),
    /// A spelling two parsers could read differently.
    #[error("{from}: {why}")]
    Ambiguous {
        /// `query parameter "namespace"` or `header x-scope-orgid`.
        from: String,
        /// What is ambiguous.
        why: &'static str,
    },
    /// An empty value or list element.
    #[error("{0} has an empty value")]
    Empty(String),
    /// `consume: keep` and a copy is not spelled canonically.
    #[error(
        "{0} must be spelled canonically on this route (consume: keep): plain name=value, one value per header line"
    )]
    NotCanonical(String),
    /// Too many distinct values.
    #[error("more than {MAX_REWRITE_VALUES} distinct values of {0}")]
    TooMany(String),
    /// A value that makes a field the apiserver would refuse.
    #[error("a value of {from} does not make a valid {field}: it must be {rule}")]
    Invalid {
        /// Where the value came from.
        from: String,
        /// The field it fills.
        field: &'static str,
        /// What the field requires.
        rule: &'static str,
    },
}

/// The distinct values of each source, in the order they first appear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Values {
    /// From the query parameter.
    pub query: Vec<String>,
    /// From the header.
    pub header: Vec<String>,
}

impl Values {
    /// Where `value` came from, for messages.
    pub fn source_of(&self, value: &str) -> String {
        if self.query.iter().any(|v| v == value) {
            "the query parameter".to_owned()
        } else {
            "the header".to_owned()
        }
    }

    /// Every distinct value, query first.
    pub fn all(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for v in self.query.iter().chain(&self.header) {
            if !out.contains(&v.as_str()) {
                out.push(v);
            }
        }
        out
    }
}

/// The path-and-query to forward once `values` are authorized, after
/// consuming the rewrite parameter of `route`, with its rewrite header
/// consumed in `headers`.
pub fn consume(
    route: &RouteConfig,
    values: &Values,
    pq: PathAndQuery,
    headers: &mut HeaderMap,
) -> Result<PathAndQuery, Refused> {
    let Some(rw) = &route.rewrites else {
        return Ok(pq);
    };
    if rw.consume == Consume::Keep {
        return Ok(pq);
    }
    if let Some(h) = &rw.header {
        headers.remove(h);
        if rw.consume == Consume::Pin {
            for v in &values.header {
                // Checked as a field value, so a valid header value.
                let v = HeaderValue::from_str(v).map_err(|_| Refused::Empty(header_source(h)))?;
                headers.append(h.clone(), v);
            }
        }
    }
    let (Some(name), Some(query)) = (&rw.query_parameter, pq.query()) else {
        return Ok(pq);
    };
    let mut kept: Vec<String> = query
        .split('&')
        .filter(|pair| {
            let raw = pair.split_once('=').map_or(*pair, |(k, _)| k);
            decode(raw).ok().as_deref() != Some(name.as_str())
        })
        .map(str::to_owned)
        .collect();
    if rw.consume == Consume::Pin {
        for v in &values.query {
            kept.push(format!("{name}={}", utf8_percent_encode(v, VALUE)));
        }
    }
    kept.retain(|p| !p.is_empty());
    let pq = if kept.is_empty() {
        pq.path().to_owned()
    } else {
        format!("{}?{}", pq.path(), kept.join("&"))
    };
    PathAndQuery::try_from(pq).map_err(|_| Refused::Empty(query_source(name)))
}

/// Everything but RFC 3986 unreserved characters is escaped.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The values of the rewrite sources of `rw` in a request; `body`:
/// whether the request carries a body.
pub fn values(
    rw: &Rewrites,
    query: Option<&str>,
    headers: &HeaderMap,
    body: bool,
) -> Result<Values, Refused> {
    let keep = rw.consume == Consume::Keep;
    let mut v = Values::default();
    if let Some(name) = &rw.query_parameter {
        // Go's `FormValue`, PHP and Rack read a form body's fields as
        // parameters too, Rack a body without a type, Rails a JSON one,
        // and the body is not read here.
        if is_form(headers) || (body && may_hold_parameters(headers)) {
            return Err(Refused::Ambiguous {
                from: query_source(name),
                why: "a form, multipart, JSON or untyped body can carry the parameter too, and it is not read here",
            });
        }
        v.query = query_values(name, query.unwrap_or_default(), keep)?;
    }
    if let Some(name) = &rw.header {
        // A header `Connection` names is dropped before forwarding: the
        // upstream would see none of the values authorized.
        if names_in_connection(headers, name) {
            return Err(Refused::Ambiguous {
                from: header_source(name),
                why: "the Connection header names it, so it would not be forwarded",
            });
        }
        v.header = header_values(name, headers, keep)?;
    }
    let sources = || {
        let q = rw.query_parameter.as_deref().map(query_source);
        let h = rw.header.as_ref().map(header_source);
        q.into_iter().chain(h).collect::<Vec<_>>().join(" or ")
    };
    let n = v.all().len();
    if n == 0 {
        return Err(Refused::Missing(sources()));
    }
    if n > MAX_REWRITE_VALUES {
        return Err(Refused::TooMany(sources()));
    }
    Ok(v)
}

/// Whether the request says its body is a form.
fn is_form(headers: &HeaderMap) -> bool {
    media_types(headers)
        .any(|m| m == "application/x-www-form-urlencoded" || m == "multipart/form-data")
}

/// Whether a body with these headers is one some framework reads
/// parameters from: no `Content-Type` (Rack takes it for a form), any
/// `multipart/*` (Rack), or JSON (Rails merges it into `params`).
fn may_hold_parameters(headers: &HeaderMap) -> bool {
    let mut types = media_types(headers).peekable();
    types.peek().is_none()
        || types
            .any(|m| m.starts_with("multipart/") || m == "application/json" || m.ends_with("+json"))
}

/// The media type of each `Content-Type`, lower-cased, without parameters.
fn media_types(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers.get_all(http::header::CONTENT_TYPE).iter().map(|v| {
        let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        v.split(';').next().unwrap_or_default().trim().to_owned()
    })
}

/// Whether a `Connection` header lists `name`.
fn names_in_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| {
            t.trim_ascii()
                .eq_ignore_ascii_case(name.as_str().as_bytes())
        })
}

/// `query parameter "name"`, for messages.
pub fn query_source(name: &str) -> String {
    format!("query parameter {name:?}")
}

/// `header name`, for messages.
pub fn header_source(name: &HeaderName) -> String {
    format!("header {name}")
}

fn query_values(name: &str, query: &str, keep: bool) -> Result<Vec<String>, Refused> {
    let ambiguous = |why| Refused::Ambiguous {
        from: query_source(name),
        why,
    };
    if query.contains(';') {
        return Err(ambiguous(
            "the query has a ';', which some servers read as a separator",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key).map_err(|()| {
            ambiguous(
                "a parameter name has a malformed escape, a control character or is not UTF-8",
            )
        })?;
        if key != name {
            if spelled_like(&key, name) {
                return Err(ambiguous("another parameter is spelled like it"));
            }
            continue;
        }
        let value = decode(raw_value).map_err(|()| {
            ambiguous("a value has a malformed escape, a control character or is not UTF-8")
        })?;
        if keep && (raw_key != name || raw_value != value) {
            return Err(Refused::NotCanonical(query_source(name)));
        }
        if value.is_empty() {
            return Err(Refused::Empty(query_source(name)));
        }
        if !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(out)
}

fn header_values(
    name: &HeaderName,
    headers: &HeaderMap,
    keep: bool,
) -> Result<Vec<String>, Refused> {
    let ambiguous = |why| Refused::Ambiguous {
        from: header_source(name),
        why,
    };
    if headers
        .keys()
        .any(|k| k != name && k.as_str().replace('_', "-") == name.as_str())
    {
        return Err(ambiguous(
            "another header is spelled like it with '_', which some servers fold into '-'",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for line in headers.get_all(name) {
        let line = line
            .to_str()
            .map_err(|_| ambiguous("a value is not visible ASCII"))?;
        if keep && line.contains(',') {
            return Err(Refused::NotCanonical(header_source(name)));
        }
        for element in line.split(',') {
            let element = element.trim_matches([' ', '\t']);
            if element.is_empty() {
                return Err(Refused::Empty(header_source(name)));
            }
            if !out.iter().any(|v| v == element) {
                out.push(element.to_owned());
            }
        }
    }
    Ok(out)
}

/// Form decoding (`+` is a space), strictly: every `%` starts a `%XX`
/// escape, the result is UTF-8 and holds no control character.
fn decode(raw: &str) -> Result<String, ()> {
    let b = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let hex = b.get(i + 1..i + 3).ok_or(())?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(());
        }
    }
    let spaced = raw.replace('+', " ");
    let s = percent_decode_str(&spaced)
        .decode_utf8()
        .map_err(|_| ())?
        .into_owned();
    if s.chars().any(char::is_control) {
        return Err(());
    }
    Ok(s)
}

/// Whether some framework reads parameter `key` as `name` (or as a part
/// of it: `name[0]`, `name[x]` and `name.x` are arrays and objects of
/// `name` to `qs`, PHP and Rack).
fn spelled_like(key: &str, name: &str) -> bool {
    let (k, n) = (fold(key), fold(name));
    let nested = |sep: char| {
        key.trim()
            .to_ascii_lowercase()
            .strip_prefix(&name.to_ascii_lowercase())
            .is_some_and(|rest| rest.starts_with(sep))
    };
    k == n || k.strip_prefix(&n).is_some_and(|rest| rest.starts_with('[')) || nested('.')
}

/// A parameter name as the most forgiving frameworks compare it: trimmed,
/// lower-cased, `.`, `-` and space read as `_`, a trailing `[]` dropped;
/// and as PHP reads brackets: what follows the first `[...]` group is
/// dropped, and a `[` that no `]` closes reads as `_`.
fn fold(name: &str) -> String {
    let t = name.trim();
    let t = match (t.find('['), t.find(']')) {
        // `a[b]x` is `a[b]` to PHP.
        (Some(open), Some(close)) if close > open => &t[..=close],
        _ => t,
    };
    let t = t.strip_suffix("[]").unwrap_or(t);
    let unclosed = t.find('[').filter(|&i| !t[i..].contains(']'));
    t.char_indices()
        .map(|(i, c)| match c {
            '.' | '-' | ' ' => '_',
            '[' if Some(i) == unclosed => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
