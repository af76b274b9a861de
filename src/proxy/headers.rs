//! Header hygiene on the way to the upstream (pure).
//!
//! First remove everything a client could use to claim an identity or to
//! steer the hop (identity headers in any casing, impersonation, forwarded
//! client certificates, `Authorization`, hop-by-hop headers); only then add
//! the identity authgate established.

use std::sync::{Arc, Mutex};

use http::header::{
    AUTHORIZATION, CONNECTION, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::authz::permit::Permit;
use crate::config::HeaderNames;
use crate::identity::Identity;

/// `X-Forwarded-Client-Cert`, set only by authgate (see `headers.forward_client_cert`).
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Prefixes of headers that carry identity or client-certificate claims.
/// Header names are always lower-case in `http`, so this covers every casing.
const SPOOFABLE_PREFIXES: &[&str] = &[
    "x-remote-",
    "impersonate-",
    "x-forwarded-client-cert",
    "x-client-cert",
    "client-cert",
    "ssl-client-",
    "x-ssl-client-",
];

/// Headers that steer how an upstream routes or attributes a request
/// (method overrides, rewritten URLs, client-address claims). authgate
/// authorized the method, path and peer it saw; an upstream framework that
/// honours one of these would act on something else. Stripped unless
/// `headers.strip_steering: false`. authgate sets its own `X-Forwarded-For`
/// (the peer it saw), `X-Forwarded-Host` and `X-Forwarded-Proto` afterwards.
const STEERING: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-rewrite-url",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
];

/// A header name as CGI, WSGI, Rack and PHP see it: they fold `_` into `-`
/// (both become `HTTP_X_REMOTE_USER`), so `x_remote_user` is `x-remote-user`
/// to the upstream and must be treated as it.
pub fn normalized(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('_') {
        std::borrow::Cow::Owned(name.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Whether `name` (lower-case, as `http` keeps it) claims an identity or a
/// client certificate, in any spelling an upstream folds to one.
fn is_spoofable(name: &str, names: &HeaderNames) -> bool {
    let n = normalized(name);
    let n = n.as_ref();
    SPOOFABLE_PREFIXES.iter().any(|p| n.starts_with(p))
        || n.starts_with(&*normalized(&names.extra_prefix))
        || [&names.user, &names.group, &names.uid]
            .iter()
            .any(|h| n == normalized(h.as_str()))
        || n == "authorization"
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// RFC 3986 unreserved characters stay; everything else is %-escaped
/// (the requestheader convention for `X-Remote-Extra-<key>`).
const EXTRA_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Removes every header a client could use to claim an identity (in every
/// spelling, `_` for `-` included), plus `Authorization`, the configured
/// identity header names and, unless turned off, the steering headers.
pub fn strip_spoofable(headers: &mut HeaderMap, names: &HeaderNames) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            is_spoofable(k.as_str(), names)
                || (names.strip_steering && STEERING.contains(&&*normalized(k.as_str())))
        })
        .cloned()
        .collect();
    for name in doomed
        .iter()
        .chain([&AUTHORIZATION, &names.user, &names.group, &names.uid])
    {
        headers.remove(name);
    }
}

/// The first header that claims an identity (`X-Remote-*`, `Impersonate-*`,
/// the configured identity names and extra prefix), if any. In `mode: auth`
/// authgate cannot strip them from what the front proxy forwards, so a
/// check request that carries one is refused.
pub fn claimed_identity<'h>(headers: &'h HeaderMap, names: &HeaderNames) -> Option<&'h HeaderName> {
    headers.keys().find(|k| {
        let n = normalized(k.as_str());
        let n = n.as_ref();
        n.starts_with("x-remote-")
            || n.starts_with("impersonate-")
            || n.starts_with(&*normalized(&names.extra_prefix))
            || [&names.user, &names.group, &names.uid]
                .iter()
                .any(|h| n == normalized(h.as_str()))
    })
}

/// Sets the identity headers: user, one group header per group, uid, and one
/// extra header per extra value.
///
/// Fails if a name or value cannot be a header (backends prevent that by
/// checking [`Identity::invalid_field`]), or if a group contains
/// `group_separator` (joined, it would read as two groups); the caller then
/// refuses the request.
pub fn set_identity(
    headers: &mut HeaderMap,
    id: &Identity,
    names: &HeaderNames,
) -> Result<(), Unrepresentable> {
    Built::of(id, names)?.apply(headers);
    Ok(())
}

/// The identity headers of one identity, built once: names and values in
/// the order [`set_identity`] sets them, each to be inserted (replacing
/// what the map holds under its name) or appended.
#[derive(Debug)]
pub struct Built(Vec<(HeaderName, HeaderValue, Set)>);

#[derive(Clone, Copy, Debug)]
enum Set {
    Insert,
    Append,
}

impl Built {
    /// The headers of `id` under `names` (none when they are disabled).
    pub fn of(id: &Identity, names: &HeaderNames) -> Result<Self, Unrepresentable> {
        let mut out = Vec::new();
        if !names.enabled {
            return Ok(Self(out));
        }
        out.push((names.user.clone(), value(id.user())?, Set::Insert));
        match &names.group_separator {
            Some(sep) => {
                if id.groups().iter().any(|g| g.contains(sep.as_str())) {
                    return Err(Unrepresentable);
                }
                out.push((
                    names.group.clone(),
                    value(&id.groups().join(sep))?,
                    Set::Insert,
                ));
            }
            None => {
                for g in id.groups() {
                    out.push((names.group.clone(), value(g)?, Set::Append));
                }
            }
        }
        if let Some(uid) = &id.uid() {
            out.push((names.uid.clone(), value(uid)?, Set::Insert));
        }
        for (key, values) in id.extra() {
            let name = format!(
                "{}{}",
                names.extra_prefix,
                utf8_percent_encode(key, EXTRA_KEY)
            );
            let name = HeaderName::try_from(name).map_err(|_| Unrepresentable)?;
            for v in values {
                out.push((name.clone(), value(v)?, Set::Append));
            }
        }
        Ok(Self(out))
    }

    /// Sets them on `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, v, set) in &self.0 {
            match set {
                Set::Insert => {
                    headers.insert(name.clone(), v.clone());
                }
                Set::Append => {
                    headers.append(name.clone(), v.clone());
                }
            }
        }
    }
}

/// The identity headers a client connection last sent, kept for its next
/// request of the same identity (the same `Arc`, which the caches and the
/// connection's certificate hand out again): a keep-alive connection
/// builds them once.
#[derive(Debug, Default)]
pub struct Memo(Mutex<Option<(Identity, Arc<Built>)>>);

impl Memo {
    /// The headers of `id`, built now or on an earlier request of it.
    pub fn get(&self, id: &Identity, names: &HeaderNames) -> Result<Arc<Built>, Unrepresentable> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((held, built)) = &*last
            && Identity::same(held, id)
        {
            return Ok(built.clone());
        }
        let built = Arc::new(Built::of(id, names)?);
        *last = Some((id.clone(), built.clone()));
        Ok(built)
    }
}

/// An identity that cannot be carried in the identity headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the identity cannot be expressed as headers")]
pub struct Unrepresentable;

fn value(s: &str) -> Result<HeaderValue, Unrepresentable> {
    HeaderValue::from_bytes(s.as_bytes()).map_err(|_| Unrepresentable)
}

/// Strip, then set: the whole rewrite of a permitted request. A public
/// path gets no identity headers; a granted identity gets its own (from
/// the connection's `memo`). An upgrade request keeps `Connection: upgrade`
/// and its `Upgrade` header.
pub fn rewrite(
    headers: &mut HeaderMap,
    permit: &Permit,
    names: &HeaderNames,
    memo: &Memo,
) -> Result<(), Unrepresentable> {
    sanitize(headers, names);
    if let Some(id) = permit.identity() {
        memo.get(id, names)?.apply(headers);
    }
    Ok(())
}

/// Removes hop-by-hop headers (an upgrade request keeps `Connection:
/// upgrade` and `Upgrade`; a request accepting trailers keeps exactly `TE:
/// trailers`) and every spoofable identity header.
pub fn sanitize(headers: &mut HeaderMap, names: &HeaderNames) {
    let upgrade = super::upgrade::requested(headers);
    let trailers = accepts_trailers(headers);
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
    }
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    strip_spoofable(headers, names);
}

/// Whether `TE` lists `trailers` (RFC 9110 section 10.1.4). gRPC needs it
/// end to end, and it is the one `TE` value HTTP/2 allows, so it is kept
/// on every hop (as Envoy does); every other `TE` coding is dropped.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers"))
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// [`rewrite`] for a granted identity (a permit is only minted by the
    /// authorizers; the gate's tests cover that path end to end).
    fn granted(
        h: &mut HeaderMap,
        id: &Identity,
        names: &HeaderNames,
    ) -> Result<(), Unrepresentable> {
        sanitize(h, names);
        set_identity(h, id, names)
    }
    use crate::identity::AuthMethod;

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("X-Remote-User", "mallory"),
            ("x-remote-group", "system:masters"),
            ("X-REMOTE-EXTRA-scopes", "all"),
            ("Impersonate-User", "admin"),
            ("impersonate-group", "system:masters"),
            ("X-Forwarded-Client-Cert", "Hash=abc"),
            ("Client-Cert", ":AAAA:"),
            ("Client-Cert-Chain", ":AAAA:"),
            ("SSL-Client-Verify", "SUCCESS"),
            ("Authorization", "Bearer secret"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Accept", "application/json"),
        ] {
            h.append(
                HeaderName::try_from(k).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        h
    }

    #[test]
    fn spoofed_identity_headers_are_replaced_by_the_real_identity() {
        let extra = BTreeMap::from([(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec!["X509SHA256=ab".to_owned()],
        )]);
        let id = Identity::new(
            "alice".into(),
            Some("u-1".into()),
            vec!["dev".into()],
            extra,
            AuthMethod::Mtls,
        );
        let mut h = spoofed();
        granted(&mut h, &id, &HeaderNames::default()).unwrap();
        let mut got: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        got.sort();
        let want = [
            ("accept", "application/json"),
            (
                "x-remote-extra-authentication.kubernetes.io%2fcredential-id",
                "X509SHA256=ab",
            ),
            ("x-remote-group", "dev"),
            ("x-remote-group", "system:authenticated"),
            ("x-remote-uid", "u-1"),
            ("x-remote-user", "alice"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn upgrade_requests_keep_their_upgrade_headers() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade, keep-alive"));
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        let id = Identity::new(
            "bob".into(),
            None,
            vec![],
            BTreeMap::new(),
            AuthMethod::Token,
        );
        granted(&mut h, &id, &HeaderNames::default()).unwrap();
        assert_eq!(h.get(CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.get(UPGRADE).unwrap(), "SPDY/3.1");
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        granted(&mut h, &id, &HeaderNames::default()).unwrap();
        assert!(
            h.get(UPGRADE).is_none(),
            "Upgrade without Connection: upgrade is dropped"
        );
    }

    #[test]
    fn te_is_kept_only_as_trailers() {
        let id = Identity::new(
            "bob".into(),
            None,
            vec![],
            BTreeMap::new(),
            AuthMethod::Token,
        );
        let cases: [(&[&str], Option<&str>); 6] = [
            (&["trailers"], Some("trailers")),
            (&["gzip, Trailers"], Some("trailers")),
            (&["deflate;q=0.5", "trailers;q=1"], Some("trailers")),
            (&["gzip"], None),
            (&["trailersx"], None),
            (&[], None),
        ];
        for (te, want) in cases {
            let mut h = HeaderMap::new();
            for v in te {
                h.append(TE, HeaderValue::from_str(v).unwrap());
            }
            h.insert(CONNECTION, HeaderValue::from_static("te"));
            granted(&mut h, &id, &HeaderNames::default()).unwrap();
            let got: Vec<&str> = h.get_all(TE).iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{te:?}");
            assert!(h.get(CONNECTION).is_none());
        }
    }

    #[test]
    fn custom_header_names_are_stripped_and_used() {
        let names = HeaderNames {
            user: HeaderName::from_static("x-user"),
            group: HeaderName::from_static("x-groups"),
            uid: HeaderName::from_static("x-uid"),
            extra_prefix: "x-extra-".into(),
            forward_client_cert: false,
            enabled: true,
            group_separator: Some("|".into()),
            strip_steering: true,
        };
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("mallory"));
        h.insert("x-extra-foo", HeaderValue::from_static("bar"));
        let id = Identity::new(
            "bob".into(),
            None,
            vec![],
            BTreeMap::new(),
            AuthMethod::Token,
        );
        granted(&mut h, &id, &names).unwrap();
        assert_eq!(h.get("x-user").unwrap(), "bob");
        assert_eq!(h.get("x-groups").unwrap(), "system:authenticated");
        assert!(h.get("x-extra-foo").is_none());
        assert!(h.get("x-remote-user").is_none());

        // A group holding the separator would read as two groups: refused.
        let sneaky = Identity::new(
            "eve".into(),
            None,
            vec!["dev|system:masters".into()],
            BTreeMap::new(),
            AuthMethod::Mtls,
        );
        assert_eq!(granted(&mut h, &sneaky, &names), Err(Unrepresentable));
    }

    #[test]
    fn claimed_identity_finds_identity_headers_but_not_certificate_headers() {
        let names = HeaderNames::default();
        let mut h = HeaderMap::new();
        h.insert("x-client-cert", HeaderValue::from_static("pem"));
        h.insert(
            "x-forwarded-client-cert",
            HeaderValue::from_static("Cert=x"),
        );
        assert_eq!(claimed_identity(&h, &names), None);
        for name in ["X-Remote-Extra-Scopes", "impersonate-uid", "x-remote-user"] {
            let mut h = h.clone();
            h.insert(
                HeaderName::try_from(name).unwrap(),
                HeaderValue::from_static("v"),
            );
            assert_eq!(
                claimed_identity(&h, &names).map(HeaderName::as_str),
                Some(name.to_ascii_lowercase().as_str())
            );
        }
    }

    /// (name, stripped, claims an identity), then spellings of it.
    #[rustfmt::skip]
    const LOOKALIKES: &[(&str, bool, bool, &[&str])] = &[
        ("x-remote-user", true, true, &["X_Remote_User", "x_remote-user", "X-REMOTE_USER"]),
        ("x-remote-group", true, true, &["x_remote_group", "X_REMOTE_GROUP"]),
        ("x-remote-extra-scopes", true, true, &["x_remote_extra_scopes", "X-Remote-Extra_Scopes"]),
        ("impersonate-user", true, true, &["impersonate_user", "IMPERSONATE_USER"]),
        ("x-forwarded-client-cert", true, false, &["x_forwarded_client_cert", "X-Forwarded_Client-Cert"]),
        ("client-cert-chain", true, false, &["client_cert_chain", "Client_Cert-Chain"]),
        ("ssl-client-verify", true, false, &["ssl_client_verify", "SSL_CLIENT_VERIFY"]),
        ("x-ssl-client-cert", true, false, &["x_ssl_client_cert"]),
        ("authorization", true, false, &["AUTHORIZATION"]),
        ("x-http-method-override", true, false, &["x_http_method_override", "X-HTTP_Method-Override"]),
        ("x-method-override", true, false, &["x_method_override"]),
        ("x-original-url", true, false, &["X_Original_URL"]),
        ("x-rewrite-url", true, false, &["x_rewrite_url"]),
        ("x-real-ip", true, false, &["X_Real_IP"]),
        ("x-forwarded-for", true, false, &["x_forwarded_for", "X-Forwarded_For"]),
        ("forwarded", true, false, &["FORWARDED"]),
        ("accept", false, false, &["ACCEPT"]),
        ("x-remote", false, false, &["x_remote"]),
        ("x-remoteuser", false, false, &["X_REMOTEUSER"]),
        ("remote-user", false, false, &["remote_user"]),
    ];

    /// The properties of the `header_name` fuzz target
    /// (fuzz/fuzz_targets/header_name.rs), over a table of look-alikes:
    /// `normalized` is idempotent and leaves no `_`; anything that
    /// normalises into a spoofable family or onto a steering header is
    /// stripped; `_`/`-` and case variants are classified alike; a claimed
    /// identity is always stripped.
    #[test]
    fn lookalike_header_names_classify_like_the_name_they_normalise_to() {
        let stripped = |name: &str, names: &HeaderNames| {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::try_from(name).unwrap(),
                HeaderValue::from_static("v"),
            );
            let claimed = claimed_identity(&h, names).is_some();
            strip_spoofable(&mut h, names);
            (h.is_empty(), claimed)
        };
        let custom = HeaderNames {
            user: HeaderName::from_static("x-auth-user"),
            extra_prefix: "x-auth-extra-".into(),
            ..HeaderNames::default()
        };
        for &(name, strip, claim, spellings) in LOOKALIKES {
            for n in std::iter::once(name).chain(spellings.iter().copied()) {
                let norm = normalized(n);
                assert_eq!(normalized(&norm), norm, "{n}: idempotent");
                assert_eq!(norm.len(), n.len(), "{n}");
                assert!(!norm.contains('_'), "{n}");
                for names in [&HeaderNames::default(), &custom] {
                    assert_eq!(stripped(n, names), (strip, claim), "{n} ({})", names.user);
                }
            }
        }
        // The configured names, in their spellings, under custom names.
        for n in ["x_auth_user", "X-Auth_User", "x_auth_extra_scopes"] {
            assert_eq!(stripped(n, &custom), (true, true), "{n}");
            assert_eq!(stripped(n, &HeaderNames::default()), (false, false), "{n}");
        }
    }

    /// A connection's memo answers only for the identity it was built for:
    /// the next request's other identity gets its own headers, never the
    /// last one's.
    #[test]
    fn the_memo_never_lends_one_identitys_headers_to_another() {
        let names = HeaderNames::default();
        let who = |user: &str, group: &str| {
            Identity::new(
                user.into(),
                None,
                vec![group.into()],
                BTreeMap::from([("scopes".to_owned(), vec![user.to_owned()])]),
                AuthMethod::Token,
            )
        };
        let (alice, bob) = (who("alice", "dev"), who("bob", "ops"));
        let memo = Memo::default();
        let first = memo.get(&alice, &names).unwrap();
        assert!(
            Arc::ptr_eq(&first, &memo.get(&alice, &names).unwrap()),
            "built once"
        );
        // An equal identity made again (a re-review after a flush) is rebuilt.
        let again = who("alice", "dev");
        assert_eq!(again, alice);
        assert!(!Arc::ptr_eq(&first, &memo.get(&again, &names).unwrap()));
        for (id, user, group) in [(&bob, "bob", "ops"), (&alice, "alice", "dev")] {
            let mut h = spoofed();
            sanitize(&mut h, &names);
            memo.get(id, &names).unwrap().apply(&mut h);
            let mut direct = spoofed();
            granted(&mut direct, id, &names).unwrap();
            assert_eq!(h, direct, "{user}");
            assert_eq!(h[&names.user], user);
            let groups: Vec<_> = h.get_all(&names.group).iter().collect();
            assert_eq!(groups, [group, "system:authenticated"]);
        }
    }
}
