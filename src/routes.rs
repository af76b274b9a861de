//! Request paths and routes: normalise the path once, then pick the route
//! with the longest whole-segment prefix.
//!
//! Authorization and forwarding both use the *normalised* path, so what is
//! authorized is exactly what the upstream receives (`/api/../admin` can never
//! be authorized as `/api/...` and served as `/admin`).

use std::collections::HashMap;

use percent_encoding::percent_decode_str;

/// Why a request path was refused (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// Not origin-form (`*`, or no leading `/`).
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// An encoded `/`, `\`, NUL or control character, or a malformed `%` escape.
    #[error("request path contains an encoded separator, control character or bad escape")]
    Encoding,
    /// `..` would climb above the root.
    #[error("request path escapes the root with '..'")]
    Escapes,
    /// A `;` path parameter (`/admin;jsessionid=1/secret`). Tomcat, Jetty
    /// and Spring drop parameters before matching, so the upstream would
    /// serve `/admin/secret` while a prefix match saw another route.
    #[error("request path has ';' parameters (paths.allow_matrix_params is off)")]
    MatrixParams,
}

/// What to do with `;` path parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatrixParams {
    /// Refuse the request (the default).
    #[default]
    Refuse,
    /// Remove them from every segment before dot segments are resolved,
    /// as Tomcat does, and route, authorize and forward without them.
    Strip,
}

/// Normalises a request path: decodes percent-escapes of unreserved
/// characters, rejects escapes that would change the path's structure,
/// refuses `;` parameters, resolves `.` and `..`, and collapses repeated
/// `/`. A trailing `/` is kept.
pub fn normalize_path(raw: &str) -> Result<String, BadPath> {
    normalize_path_with(raw, MatrixParams::Refuse)
}

/// [`normalize_path`], with `matrix` deciding about `;` parameters.
pub fn normalize_path_with(raw: &str, matrix: MatrixParams) -> Result<String, BadPath> {
    if !raw.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    let segments = decoded.split('/').map(|seg| match seg.split_once(';') {
        None => Ok(seg),
        Some(_) if matrix == MatrixParams::Refuse => Err(BadPath::MatrixParams),
        Some((name, _params)) => Ok(name),
    });
    let segments = segments.collect::<Result<Vec<&str>, BadPath>>()?;
    let trailing = matches!(segments.last(), Some(&("" | "." | ".."))) && segments.len() > 1;
    let mut out: Vec<&str> = Vec::new();
    for seg in segments {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop().ok_or(BadPath::Escapes)?;
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing || path.is_empty() {
        path.push('/');
    }
    Ok(path)
}

/// Decodes `%XX` escapes of RFC 3986 unreserved characters and keeps every
/// other escape upper-cased; refuses escapes of `/`, `\`, control characters
/// and malformed escapes, which different servers decode differently.
fn decode_unreserved(raw: &str) -> Result<String, BadPath> {
    if !raw.contains('%') {
        if raw.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
            return Err(BadPath::Encoding);
        }
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_control() || b == b'\\' {
            return Err(BadPath::Encoding);
        }
        if b != b'%' {
            // Bytes, not chars: a multi-byte UTF-8 character is copied whole.
            out.push(b);
            i += 1;
            continue;
        }
        let hex = raw.get(i + 1..i + 3).ok_or(BadPath::Encoding)?;
        let v = u8::from_str_radix(hex, 16).map_err(|_| BadPath::Encoding)?;
        if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
            out.push(v);
        } else if v == b'/' || v == b'\\' || v.is_ascii_control() {
            return Err(BadPath::Encoding);
        } else {
            out.push(b'%');
            out.extend_from_slice(hex.to_ascii_uppercase().as_bytes());
        }
        i += 3;
    }
    // Input is a &str and only ASCII was decoded, so this cannot fail.
    String::from_utf8(out).map_err(|_| BadPath::Encoding)
}

/// Normalises a configured `path_prefix` (no trailing slash except for `/`).
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let p = normalize_path(prefix).map_err(|e| format!("{prefix:?}: {e}"))?;
    if percent_decode_str(&p).decode_utf8().is_err() {
        return Err(format!("{prefix:?} is not UTF-8"));
    }
    Ok(match p.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    })
}

/// Whether `prefix` (normalised) covers `path` on whole segments:
/// `/api` covers `/api` and `/api/v1` but not `/apis`.
pub fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A route's place in the configuration (`routes[i]`): what forwarding
/// looks its upstream up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteId(u32);

impl RouteId {
    /// Not a route: the admin endpoints, which are answered, never forwarded.
    pub const ADMIN: Self = Self(u32::MAX);

    /// `routes[index]`.
    pub fn new(index: usize) -> Self {
        Self(u32::try_from(index).unwrap_or(u32::MAX - 1))
    }

    /// The index into the configured routes (`None` for [`Self::ADMIN`]).
    pub fn index(self) -> Option<usize> {
        (self != Self::ADMIN).then_some(self.0 as usize)
    }
}

/// The routes by prefix. A lookup walks the path's own prefixes from the
/// longest down (`/a/b/c`, `/a/b`, `/a`, `/`), so it costs one hash probe per
/// path segment however many routes there are.
#[derive(Debug)]
pub struct RouteTable<T> {
    by_prefix: HashMap<String, T>,
}

impl<T> RouteTable<T> {
    /// Builds a table from `(normalised prefix, value)` pairs; a later
    /// duplicate prefix replaces an earlier one (config validation forbids them).
    pub fn new(routes: Vec<(String, T)>) -> Self {
        Self {
            by_prefix: routes.into_iter().collect(),
        }
    }

    /// The route with the longest prefix covering the normalised `path`.
    pub fn select(&self, path: &str) -> Option<&T> {
        let mut candidate = path.trim_end_matches('/');
        loop {
            if candidate.is_empty() {
                return self.by_prefix.get("/");
            }
            if let Some(v) = self.by_prefix.get(candidate) {
                return Some(v);
            }
            candidate = &candidate[..candidate.rfind('/').unwrap_or(0)];
        }
    }

    /// Every route, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.by_prefix.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_or_are_refused() {
        let cases: &[(&str, Result<&str, BadPath>)] = &[
            ("/", Ok("/")),
            ("/api/v1", Ok("/api/v1")),
            ("/api/v1/", Ok("/api/v1/")),
            ("//api///v1", Ok("/api/v1")),
            ("/api/./v1", Ok("/api/v1")),
            ("/api/../admin", Ok("/admin")),
            ("/api/%2e%2e/admin", Ok("/admin")),
            ("/api/%2E%2E/admin", Ok("/admin")),
            ("/api/.%2e/admin", Ok("/admin")),
            ("/%61pi", Ok("/api")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/api/..", Ok("/")),
            ("/..", Err(BadPath::Escapes)),
            ("/a/../../b", Err(BadPath::Escapes)),
            ("/api%2fv1", Err(BadPath::Encoding)),
            ("/api%5cv1", Err(BadPath::Encoding)),
            ("/api%00", Err(BadPath::Encoding)),
            ("/api%zz", Err(BadPath::Encoding)),
            ("/api%2", Err(BadPath::Encoding)),
            ("/a\\b", Err(BadPath::Encoding)),
            ("/api/..;/admin", Err(BadPath::MatrixParams)),
            ("/api/.;x=1/admin", Err(BadPath::MatrixParams)),
            ("/api/%2e%2e;jsessionid=1/admin", Err(BadPath::MatrixParams)),
            ("/api/a;b/c", Err(BadPath::MatrixParams)),
            ("/admin;jsessionid=1/secret", Err(BadPath::MatrixParams)),
            // An escaped ';' is a character of the segment, not a parameter.
            ("/a%3bb", Ok("/a%3Bb")),
            // Found by the request_attributes fuzz target: non-ASCII UTF-8
            // next to an escape was re-encoded as Latin-1.
            ("/%20é", Ok("/%20é")),
            ("/café/%61pi", Ok("/café/api")),
            ("/caf%C3%A9", Ok("/caf%C3%A9")),
            ("/é/%2e%2e/x", Ok("/x")),
            ("/%é", Err(BadPath::Encoding)),
            ("api", Err(BadPath::NotAbsolute)),
            ("*", Err(BadPath::NotAbsolute)),
        ];
        for (raw, want) in cases {
            let got = normalize_path(raw);
            assert_eq!(got.as_deref(), want.as_deref(), "{raw}");
            if let Ok(p) = &got {
                assert_eq!(
                    normalize_path(p).as_deref(),
                    Ok(p.as_str()),
                    "not idempotent: {raw}"
                );
            }
        }
    }

    #[test]
    fn matrix_parameters_are_stripped_before_dot_segments_when_allowed() {
        let strip = |raw| normalize_path_with(raw, MatrixParams::Strip);
        for (raw, want) in [
            ("/admin;jsessionid=1/secret", Ok("/admin/secret")),
            ("/api/..;/admin", Ok("/admin")),
            ("/api/.;x=1/admin", Ok("/api/admin")),
            ("/api/%2e%2e;jsessionid=1/admin", Ok("/admin")),
            ("/a;b=c;d/e;f", Ok("/a/e")),
            ("/a/;x", Ok("/a/")),
            ("/;x/..;y/..", Err(BadPath::Escapes)),
            ("/a%3bb;c", Ok("/a%3Bb")),
        ] {
            let got = strip(raw);
            assert_eq!(got.as_deref(), want.as_deref(), "{raw}");
            if let Ok(p) = &got {
                // What was stripped is a plain path: the strict rule accepts it.
                assert_eq!(normalize_path(p).as_deref(), Ok(p.as_str()), "{raw}");
            }
        }
    }

    #[test]
    fn prefixes_cover_whole_segments_only() {
        let cases = [
            ("/", "/anything", true),
            ("/api", "/api", true),
            ("/api", "/api/v1", true),
            ("/api", "/apis", false),
            ("/api", "/", false),
            ("/api/v1", "/api", false),
        ];
        for (prefix, path, want) in cases {
            assert_eq!(covers(prefix, path), want, "{prefix} {path}");
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = RouteTable::new(vec![
            ("/".to_owned(), "root"),
            ("/api/v1".to_owned(), "v1"),
            ("/api".to_owned(), "api"),
        ]);
        assert_eq!(t.select("/api/v1/pods"), Some(&"v1"));
        assert_eq!(t.select("/api/v2"), Some(&"api"));
        assert_eq!(t.select("/apis"), Some(&"root"));
        assert_eq!(t.select("/api/v1"), Some(&"v1"));
        assert_eq!(t.select("/api/v1/"), Some(&"v1"));
        assert_eq!(t.select("/"), Some(&"root"));
        let no_root = RouteTable::new(vec![("/api".to_owned(), "api")]);
        assert_eq!(no_root.select("/metrics"), None);
        assert_eq!(no_root.select("/"), None);
        assert_eq!(no_root.select("/api"), Some(&"api"));
    }

    #[test]
    fn configured_prefixes_lose_trailing_slashes() {
        assert_eq!(normalize_prefix("/api/").unwrap(), "/api");
        assert_eq!(normalize_prefix("/").unwrap(), "/");
        assert!(normalize_prefix("api").is_err());
    }
}
