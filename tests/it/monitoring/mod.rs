//! The monitoring kit's content (`deploy/monitoring`): promtool checks and
//! unit-tests the alerts (each one fires on its failure and stays quiet
//! otherwise, and breaking any one fails its tests), the dashboard's queries
//! parse, and every metric the rules and the dashboard read is in a real
//! `/metrics` scrape of the authgate binary. The manifests themselves are
//! checked with the others in `deploy::monitoring`.
//!
//! Needs `promtool` (Debian's `prometheus` package) on `PATH`, or
//! `PROMTOOL`. Without it the promtool tests are skipped, unless
//! `AUTHGATE_REQUIRE_PROMETHEUS=1` (CI sets it), when they fail.

mod promtool;
mod scrape;
mod selectors;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).expect("a readable kit file");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} is YAML: {e}"))
}

/// The PrometheusRule's spec: a Prometheus rule file (`groups:`).
fn rule_groups() -> Value {
    yaml_file("deploy/monitoring/prometheusrule.yaml")["spec"].clone()
}

/// Every rule of the rule file: (alert name, expression).
fn alerts(groups: &Value) -> Vec<(String, String)> {
    groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| {
            (
                r["alert"].as_str().expect("alerting rules only").to_owned(),
                r["expr"].as_str().expect("an expr").to_owned(),
            )
        })
        .collect()
}

fn dashboard() -> Value {
    let path = repo().join("deploy/monitoring/dashboards/authgate.json");
    let text = std::fs::read_to_string(path).expect("the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and template
/// variable queries, with Grafana's variables replaced by values.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard(), &mut out);
    out.iter()
        .map(|q| {
            let q = q
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$namespace", ".*");
            // label_values(metric, label) is Grafana's; the selector is PromQL.
            match q.strip_prefix("label_values(") {
                Some(rest) => rest.split(',').next().unwrap_or_default().to_owned(),
                None => q,
            }
        })
        .collect()
}

/// The `authgate_*` metric names an expression reads (outside string
/// literals, so label values never count).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if ident(c) && !c.is_ascii_digit() => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                if word.starts_with("authgate_") && (start == 0 || b[start - 1] != b'$') {
                    out.insert(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// promtool, if installed; panics when missing and required.
#[expect(clippy::print_stderr, reason = "says why the test did nothing")]
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PROMTOOL").map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var("AUTHGATE_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "promtool is required (AUTHGATE_REQUIRE_PROMETHEUS=1) but not installed \
             (apt-get install prometheus)"
        );
        eprintln!("skipped: promtool is not installed");
    }
    found
}

#[test]
fn metric_names_skip_label_values_functions_and_variables() {
    let names = metric_names(
        r#"sum by (le) (rate(authgate_a_bucket{x="authgate_not_me",y=~'authgate_no'}[$__rate_interval])) / authgate_b:c + time()"#,
    );
    let want: BTreeSet<String> = ["authgate_a_bucket", "authgate_b:c"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want);
}
