//! Adversarial review (review-a): kube-rbac-proxy flags that open more than
//! kube-rbac-proxy does.

use super::*;

fn file() -> File {
    crate::config::parse_yaml(
        "tls: {cert_file: c, key_file: k}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:1\"}]\n",
    )
    .expect("file")
}

/// kube-rbac-proxy matches `--ignore-paths` with Go's `path.Match`, where
/// `**` is two `*`s (one segment); authgate hands the pattern to globset,
/// where `**` crosses segments (and `{a,b}` alternates, `[!x]` negates): more paths go unauthenticated than the same flag exempts
/// in kube-rbac-proxy.
#[test]
fn review_a_ignore_paths_match_no_more_than_go_path_match() {
    let c = Config::try_from(
        parse(&["--ignore-paths=/static/**"])
            .expect("flags")
            .apply(file())
            .expect("apply"),
    )
    .expect("config");
    let mut b = globset::GlobSetBuilder::new();
    for g in &c.paths.unauthenticated {
        b.add(g.clone());
    }
    let set = b.build().expect("set");
    // path.Match("/static/**", "/static/a") is true: the one segment.
    assert!(set.is_match("/static/a"));
    // path.Match("/static/**", "/static/a/b/secret") is false.
    assert!(
        !set.is_match("/static/a/b/secret"),
        "--ignore-paths=/static/** exempts deep paths kube-rbac-proxy guards"
    );
}

/// `--config-file` with `authorization.resourceAttributes` next to an
/// authgate file (no `--upstream`): the resource check is dropped without a
/// word, and the route authorizes the path instead (a non-resource check
/// kube-rbac-proxy would never make).
#[test]
fn review_a_config_file_resource_attributes_are_not_dropped_without_upstream() {
    let dir = tempfile::tempdir().expect("dir");
    let krp = dir.path().join("krp.yaml");
    std::fs::write(
        &krp,
        "authorization:\n  resourceAttributes:\n    namespace: monitoring\n    resource: services\n    subresource: proxy\n",
    )
    .expect("write");
    let arg = format!("--config-file={}", krp.display());
    match parse(&[arg.as_str()]).expect("flags").apply(file()) {
        Err(_) => {} // refused by name: fine
        Ok(f) => {
            let c = Config::try_from(f).expect("config");
            assert!(
                !c.routes[0].resources.is_empty(),
                "resourceAttributes of --config-file silently dropped: route checks the path"
            );
        }
    }
}
