//! `static.allow` paths and `authorization.verb_mapping`.

use super::{MINIMAL, err};
use crate::config::Config;

#[test]
fn path_globs_that_match_no_request_path_are_refused() {
    let with = |p: &str| {
        format!("{MINIMAL}static: {{allow: [{{user: a, verbs: [get], paths: [/ok, \"{p}\"]}}]}}\n")
    };
    for (p, reason) in [
        ("api", "must start with '/'"),
        ("*/x", "must start with '/'"),
        ("/a//b", "'//'"),
        ("/a/../b", "dot segment"),
        ("/a/./b", "dot segment"),
    ] {
        let got = err(&with(p));
        assert!(
            got.starts_with("static.allow[0].paths[1]: ") && got.contains(reason),
            "{p}: {got}"
        );
    }
    for p in ["*", "**", "/", "/api/**"] {
        if let Err(e) = Config::from_yaml(&with(p)) {
            panic!("{p}: {e}");
        }
    }
    let got = err(&format!(
        "{MINIMAL}paths: {{unauthenticated: [\"/a//b\"]}}\n"
    ));
    assert!(got.starts_with("paths.unauthenticated[0]: "), "{got}");
}

#[test]
fn verb_mapping_is_kube_apiserver_or_kube_rbac_proxy() {
    for v in ["kube-apiserver", "kube-rbac-proxy"] {
        let yaml = format!("{MINIMAL}authorization: {{verb_mapping: {v}}}\n");
        if let Err(e) = Config::from_yaml(&yaml) {
            panic!("{v}: {e}");
        }
    }
    assert_eq!(
        err(&format!("{MINIMAL}authorization: {{verb_mapping: rbac}}\n")),
        "authorization.verb_mapping: \"rbac\" is not kube-apiserver or kube-rbac-proxy"
    );
}
