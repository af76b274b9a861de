//! `routes[].resource` lists and `routes[].rewrites`, native and from a
//! kube-rbac-proxy `--config-file`.

use super::*;
use crate::config::krp::KrpFlags;
use crate::config::{Consume, file::File};

fn route(lines: &str) -> String {
    format!(
        "tls: {{cert_file: c, key_file: k}}\nroutes:\n  - path_prefix: /\n    upstream: \"http://x\"\n{lines}"
    )
}

#[test]
fn a_resource_is_one_object_or_a_list() {
    let c = Config::from_yaml(&route("    resource: {resource: pods}\n")).unwrap();
    assert_eq!(c.routes[0].resources.len(), 1);
    let c = Config::from_yaml(&route(
        "    resource:\n      - {resource: namespaces, verb: get}\n      - {resource: pods, namespace: a}\n",
    ))
    .unwrap();
    let r = &c.routes[0].resources;
    assert_eq!(
        (r.len(), r[0].verb.as_deref(), r[1].verb.as_deref()),
        (2, Some("get"), None)
    );
    assert_eq!(r[1].attributes.namespace, "a");
    assert!(c.routes[0].rewrites.is_none());
}

#[test]
fn rewrite_mistakes_name_the_key_and_the_reason() {
    let tpl = "    resource: {resource: pods, namespace: \"{{ .Value }}\"}\n";
    for (lines, want) in [
        ("    resource: []\n".to_owned(), "routes[0].resource: an empty list checks nothing"),
        (tpl.to_owned(), "routes[0].resource.namespace: {{ .Value }} needs routes[0].rewrites"),
        (
            "    resource: [{resource: a}, {resource: b, name: \"{{ .Name }}\"}]\n    rewrites: {header: x-n}\n".to_owned(),
            "routes[0].resource[1].name: \"{{ .Name }}\": only {{ .Value }} can be templated",
        ),
        (format!("{tpl}    rewrites: {{}}\n"), "routes[0].rewrites: needs query_parameter or header"),
        (
            format!("{tpl}    rewrites: {{query_parameter: ns, consume: strip}}\n"),
            "routes[0].rewrites.consume: \"strip\" is not pin, remove or keep",
        ),
        (
            format!("{tpl}    rewrites: {{query_parameter: \"a&b\"}}\n"),
            "routes[0].rewrites.query_parameter: \"a&b\" is not a plain parameter name",
        ),
        (format!("{tpl}    rewrites: {{header: Authorization}}\n"), "routes[0].rewrites.header: \"Authorization\" is set, stripped or read by authgate"),
        (format!("{tpl}    rewrites: {{header: X-Remote-User}}\n"), "routes[0].rewrites.header: \"x-remote-user\" is an identity header"),
        (
            "    resource: {resource: pods}\n    rewrites: {query_parameter: ns}\n".to_owned(),
            "routes[0].rewrites: no field of routes[0].resource uses {{ .Value }}",
        ),
        ("    rewrites: {query_parameter: ns}\n".to_owned(), "routes[0].rewrites: needs routes[0].resource with {{ .Value }}"),
        ("    resource: {resource: pods, verb: \"\"}\n".to_owned(), "routes[0].resource.verb: \"\" is not a verb"),
    ] {
        let e = err(&route(&lines));
        assert!(e.starts_with(want), "{lines}\n{e}");
    }
    let auth = "tls: {cert_file: c, key_file: k}\nmode: auth\nroutes:\n  - path_prefix: /\n    resource: {resource: pods, namespace: \"{{.Value}}\"}\n    rewrites: {query_parameter: ns}\n";
    assert!(
        err(auth).starts_with("routes[0].rewrites: needs mode: proxy"),
        "{}",
        err(auth)
    );
}

fn krp(config_file: &str) -> Result<Config, Error> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("krp.yaml");
    std::fs::write(&path, config_file).unwrap();
    let flags = KrpFlags {
        upstream: Some("http://127.0.0.1:8081/".into()),
        tls_cert_file: Some("s.crt".into()),
        tls_private_key_file: Some("s.key".into()),
        config_file: Some(path),
        ..Default::default()
    };
    Config::try_from(flags.apply(File::default())?)
}

#[test]
fn kube_rbac_proxy_rewrites_become_the_routes_rewrites() {
    let c = krp("authorization:\n  rewrites:\n    byQueryParameter:\n      name: \"namespace\"\n  resourceAttributes:\n    apiVersion: v1\n    resource: namespace\n    subresource: metrics\n    namespace: \"{{ .Value }}\"\n").unwrap();
    let r = &c.routes[0];
    let rw = r.rewrites.as_ref().unwrap();
    assert_eq!(
        (
            rw.query_parameter.as_deref(),
            rw.header.as_ref(),
            rw.consume
        ),
        (Some("namespace"), None, Consume::Pin)
    );
    assert_eq!(r.resources[0].templates.len(), 1);
    assert_eq!(r.resources[0].attributes.version, "v1");

    let c = krp("authorization:\n  rewrites:\n    byHttpHeader: {name: X-Scope-OrgID}\n    insecurePassthrough: true\n  resourceAttributes: {resource: namespaces, namespace: \"{{.Value}}\"}\n").unwrap();
    let rw = c.routes[0].rewrites.as_ref().unwrap();
    assert_eq!(
        (rw.header.as_ref().map(|h| h.as_str()), rw.consume),
        (Some("x-scope-orgid"), Consume::Keep)
    );

    for (file, want) in [
        (
            "authorization:\n  rewrites: {byQueryParameter: {name: namespace}}\n",
            "--config-file authorization.rewrites: needs authorization.resourceAttributes",
        ),
        (
            "authorization:\n  rewrites: {byQueryParameter: {name: \"\"}}\n  resourceAttributes: {resource: a}\n",
            "--config-file authorization.rewrites: needs byQueryParameter.name or byHttpHeader.name",
        ),
        (
            "authorization:\n  rewrites: {byQueryParameter: {name: ns}}\n  resourceAttributes: {resource: a}\n",
            "routes[0].rewrites: no field of routes[0].resource uses {{ .Value }}",
        ),
    ] {
        let e = krp(file).unwrap_err().to_string();
        assert!(e.starts_with(want), "{file}\n{e}");
    }
    let e = krp("authorization:\n  rewrites: {byQuery: {name: ns}}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("byQuery"), "{e}");
}
