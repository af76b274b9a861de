//! Hostile spellings first: what each would make authgate and a lenient
//! upstream read, and what the upstream finally gets.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;
use crate::authz::attributes::{Bound, Target, bind};
use crate::config::Config;

fn rw(query: Option<&str>, header: Option<&str>, consume: Consume) -> Rewrites {
    Rewrites {
        query_parameter: query.map(Into::into),
        header: header.map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap()),
        consume,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

fn q(query: &str) -> Result<Vec<String>, Refused> {
    values(
        &rw(Some("namespace"), None, Consume::Pin),
        Some(query),
        &HeaderMap::new(),
        false,
    )
    .map(|v| v.query)
}

#[test]
fn every_spelling_of_the_parameter_is_read_or_refused() {
    let ok = |v: &[&str]| Ok(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let ambiguous = |r: &Result<Vec<String>, Refused>| matches!(r, Err(Refused::Ambiguous { .. }));
    assert_eq!(q("namespace=a"), ok(&["a"]));
    assert_eq!(q("x=1&namespace=a&y=2"), ok(&["a"]));
    // Percent-encoded name: it is the parameter (Go, Python and Rust decode names).
    assert_eq!(q("%6Eamespace=evil&namespace=a"), ok(&["evil", "a"]));
    assert_eq!(q("namespace=%61"), ok(&["a"]));
    // Every copy counts, none is skipped; duplicates are one value.
    assert_eq!(q("namespace=a&namespace=b&namespace=a"), ok(&["a", "b"]));
    // `+` and `%20` are both a space (and no namespace has one).
    assert_eq!(q("namespace=a+b"), ok(&["a b"]));
    assert_eq!(q("namespace=a%20b"), ok(&["a b"]));
    // Empty values (`namespace=`, bare `namespace`) would ask about every namespace.
    assert!(matches!(q("namespace="), Err(Refused::Empty(_))));
    assert!(matches!(q("namespace"), Err(Refused::Empty(_))));
    // `;` was a separator in Go before 1.17 and still is in some frameworks.
    assert!(ambiguous(&q("x=1;namespace=evil&namespace=a")));
    assert!(ambiguous(&q("namespace=a;b")));
    // Names other frameworks would fold into the parameter.
    for bad in [
        "Namespace=evil&namespace=a",
        "NAMESPACE=evil",
        "namespace[]=evil",
        " namespace=evil",
        "namespace%20=evil",
        "name.space=evil",
        "name-space=evil",
    ] {
        let r = q(bad);
        // `name.space` and `name-space` fold to `name_space`, not `namespace`.
        if bad.starts_with("name.") || bad.starts_with("name-") {
            assert_eq!(
                r,
                Err(Refused::Missing("query parameter \"namespace\"".into())),
                "{bad}"
            );
        } else {
            assert!(ambiguous(&r), "{bad}: {r:?}");
        }
    }
    // Malformed escapes, IIS `%u`, NUL and invalid UTF-8 in a name or value.
    for bad in [
        "n%zzamespace=a",
        "%u006Eamespace=a",
        "namespace%00=a",
        "namespace%=a",
        "%FFnamespace=a",
        "namespace=%zz",
        "namespace=a%00",
    ] {
        assert!(ambiguous(&q(bad)), "{bad}: {:?}", q(bad));
    }
    // Other parameters' values are the upstream's business.
    assert_eq!(q("query=up%7Bjob%3D%22x%22%7D&namespace=a"), ok(&["a"]));
    assert_eq!(
        q(""),
        Err(Refused::Missing("query parameter \"namespace\"".into()))
    );
    let many: Vec<String> = (0..=MAX_REWRITE_VALUES)
        .map(|i| format!("namespace=n{i}"))
        .collect();
    assert!(matches!(q(&many.join("&")), Err(Refused::TooMany(_))));
    let enough: Vec<String> = (0..MAX_REWRITE_VALUES)
        .map(|i| format!("namespace=n{i}"))
        .collect();
    assert_eq!(q(&enough.join("&")).unwrap().len(), MAX_REWRITE_VALUES);
}

#[test]
fn every_line_and_element_of_the_header_is_read_or_refused() {
    let h = |pairs: &[(&str, &str)], consume| {
        values(
            &rw(None, Some("x-scope-orgid"), consume),
            None,
            &headers(pairs),
            false,
        )
        .map(|v| v.header)
    };
    let pin = Consume::Pin;
    assert_eq!(h(&[("X-Scope-OrgID", "a")], pin).unwrap(), ["a"]);
    // Repeated and comma-joined are the same thing in HTTP; all are read.
    assert_eq!(
        h(&[("x-scope-orgid", "a"), ("X-SCOPE-ORGID", "b")], pin).unwrap(),
        ["a", "b"]
    );
    assert_eq!(
        h(&[("x-scope-orgid", "a, b,c")], pin).unwrap(),
        ["a", "b", "c"]
    );
    assert!(matches!(
        h(&[("x-scope-orgid", "a,,b")], pin),
        Err(Refused::Empty(_))
    ));
    assert!(matches!(
        h(&[("x-scope-orgid", "")], pin),
        Err(Refused::Empty(_))
    ));
    // Underscore spellings CGI/WSGI/PHP fold into the header.
    assert!(matches!(
        h(&[("x_scope_orgid", "evil"), ("x-scope-orgid", "a")], pin),
        Err(Refused::Ambiguous { .. })
    ));
    assert!(matches!(
        h(&[("x-scope-orgid", "caf\u{e9}")], pin),
        Err(Refused::Ambiguous { .. })
    ));
    assert!(matches!(h(&[], pin), Err(Refused::Missing(_))));
    // keep: one value per line, else the upstream may read "a, b" as one.
    assert!(matches!(
        h(&[("x-scope-orgid", "a,b")], Consume::Keep),
        Err(Refused::NotCanonical(_))
    ));
    assert_eq!(
        h(
            &[("x-scope-orgid", "a"), ("x-scope-orgid", "b")],
            Consume::Keep
        )
        .unwrap(),
        ["a", "b"]
    );
}

#[test]
fn keep_refuses_spellings_the_upstream_could_read_otherwise() {
    let k = |query| {
        values(
            &rw(Some("namespace"), None, Consume::Keep),
            Some(query),
            &HeaderMap::new(),
            false,
        )
    };
    assert!(k("namespace=a&namespace=b").is_ok());
    for bad in ["%6Eamespace=a", "namespace=%61", "namespace=a+b"] {
        assert!(matches!(k(bad), Err(Refused::NotCanonical(_))), "{bad}");
    }
}

fn route(yaml: &str) -> RouteConfig {
    let d = tempfile::tempdir().unwrap();
    let text = format!(
        "tls: {{cert_file: {p}/c, key_file: {p}/k}}\nroutes:\n  - path_prefix: /\n    upstream: \"http://127.0.0.1:9\"\n{yaml}",
        p = d.path().display()
    );
    Config::from_yaml(&text).unwrap().routes.remove(0)
}

fn namespaces(b: &Bound) -> Vec<(&str, &str)> {
    b.checks
        .iter()
        .map(|a| match &a.target {
            Target::Resource(r) => (a.verb.as_str(), r.namespace.as_str()),
            Target::NonResource { .. } => panic!("a path check"),
        })
        .collect()
}

#[test]
fn one_check_per_value_and_resource_and_invalid_values_are_refused() {
    let r = route(
        "    resource:\n      - {resource: pods, namespace: \"{{ .Value }}\"}\n      - {resource: namespaces, verb: get}\n    rewrites: {query_parameter: namespace}\n",
    );
    let bind = |q: &str| bind(&r, &Method::DELETE, "/x", Some(q), &HeaderMap::new(), false);
    let b = bind("namespace=a&namespace=b").unwrap();
    assert_eq!(
        namespaces(&b),
        [("delete", "a"), ("delete", "b"), ("get", "")]
    );
    for bad in [
        "namespace=*",
        "namespace=a+b",
        "namespace=A",
        "namespace=%7B%7B.Value%7D%7D",
        "namespace=a.b",
        "namespace=-a",
    ] {
        let e = bind(bad).unwrap_err();
        assert!(
            matches!(
                e,
                Refused::Invalid {
                    field: "namespace",
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
    }
}

fn consumed(r: &RouteConfig, pq: &str, h: &[(&str, &str)]) -> (String, HeaderMap) {
    let mut hm = headers(h);
    let uri: http::Uri = pq.parse().unwrap();
    let b = bind(r, &Method::GET, "/x", uri.query(), &hm, false).unwrap();
    let pq = b
        .consume(r, uri.path_and_query().unwrap().clone(), &mut hm)
        .unwrap();
    (pq.to_string(), hm)
}

#[test]
fn the_upstream_gets_exactly_the_authorized_values() {
    let yaml = |consume: &str| {
        format!(
            "    resource: {{resource: pods, namespace: \"{{{{.Value}}}}\"}}\n    rewrites: {{query_parameter: namespace, header: x-tenant, consume: {consume}}}\n"
        )
    };
    let pin = route(&yaml("pin"));
    // Two copies of the parameter, one percent-encoded: both authorized,
    // both pinned in canonical spelling, no other copy left.
    let (pq, h) = consumed(
        &pin,
        "/x?a=1&%6Eamespace=b&namespace=a&z",
        &[("x-tenant", "c, d")],
    );
    assert_eq!(pq, "/x?a=1&z&namespace=b&namespace=a");
    let lines: Vec<_> = h
        .get_all("x-tenant")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(lines, ["c", "d"]);
    let remove = route(&yaml("remove"));
    let (pq, h) = consumed(&remove, "/x?namespace=a&b=2", &[("x-tenant", "c")]);
    assert_eq!(pq, "/x?b=2");
    assert!(h.get("x-tenant").is_none());
    let (pq, _) = consumed(&remove, "/x?namespace=a", &[]);
    assert_eq!(pq, "/x");
    let keep = route(&yaml("keep"));
    let (pq, h) = consumed(&keep, "/x?namespace=a&namespace=b", &[("x-tenant", "c")]);
    assert_eq!(pq, "/x?namespace=a&namespace=b");
    assert_eq!(h.get("x-tenant").unwrap(), "c");
}
mod review_a;

/// Review: bodies some framework reads parameters from, beside forms.
#[test]
fn a_body_some_framework_reads_parameters_from_is_refused() {
    let with = |types: &[&str], body| {
        let pairs: Vec<(&str, &str)> = types.iter().map(|t| ("content-type", *t)).collect();
        values(
            &rw(Some("namespace"), None, Consume::Pin),
            Some("namespace=allowed"),
            &headers(&pairs),
            body,
        )
    };
    let ambiguous = |r: Result<Values, Refused>| matches!(r, Err(Refused::Ambiguous { .. }));
    // Rack reads an untyped body as a form, and any multipart; Rails a JSON one.
    for types in [
        &[][..],
        &["multipart/mixed; boundary=x"],
        &["Multipart/Related"],
        &["application/json"],
        &["application/merge-patch+json; charset=utf-8"],
        &["text/plain", "application/json"],
    ] {
        assert!(ambiguous(with(types, true)), "{types:?}");
    }
    // A type no framework reads parameters from, or no body at all.
    for types in [
        &["application/yaml"][..],
        &["application/vnd.kubernetes.protobuf"],
    ] {
        assert_eq!(
            with(types, true).map(|v| v.query),
            Ok(vec!["allowed".to_owned()])
        );
    }
    for types in [&[][..], &["application/json"]] {
        assert_eq!(
            with(types, false).map(|v| v.query),
            Ok(vec!["allowed".to_owned()])
        );
    }
}

/// Review: PHP reads `org[id` as `org_id`, and `filter[ns]x` as `filter[ns]`.
#[test]
fn php_bracket_spellings_are_refused() {
    let read = |name: &str, query: &str| {
        values(
            &rw(Some(name), None, Consume::Pin),
            Some(query),
            &HeaderMap::new(),
            false,
        )
    };
    let ambiguous = |r: Result<Values, Refused>| matches!(r, Err(Refused::Ambiguous { .. }));
    assert!(ambiguous(read("org_id", "org[id=evil&org_id=a")));
    assert!(ambiguous(read("org_id", "org_id=a&org[id=evil")));
    assert!(ambiguous(read(
        "filter[ns]",
        "filter[ns]x=evil&filter[ns]=a"
    )));
    assert!(ambiguous(read(
        "namespace",
        "namespace[x]y=evil&namespace=a"
    )));
    // Unrelated names stay unrelated.
    assert_eq!(
        read("org_id", "org[idx]=1&org_id=a").map(|v| v.query),
        Ok(vec!["a".to_owned()])
    );
}
