//! `promtool check rules` and `promtool test rules` on the shipped rules,
//! and on mutants of them: a unit test that still passes when its alert is
//! broken would prove nothing.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::{alerts, dashboard_queries, promtool, repo, rule_groups, yaml_file};

const TESTS: &str = "deploy/monitoring/tests/authgate.test.yaml";

/// Runs `promtool <args>` in `dir`: (success, stdout + stderr).
fn run(promtool: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A directory with `groups` as `authgate.rules.yaml` (JSON is YAML) and a
/// copy of the unit tests that load it.
fn workspace(groups: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = serde_json::to_string_pretty(groups).expect("JSON");
    std::fs::write(dir.path().join("authgate.rules.yaml"), rules).expect("write the rules");
    std::fs::copy(repo().join(TESTS), dir.path().join("authgate.test.yaml"))
        .expect("copy the unit tests");
    dir
}

/// The rule file with `alert`'s expression replaced by `expr`.
fn mutant(alert: &str, expr: &str) -> Value {
    let mut groups = rule_groups();
    for g in groups["groups"].as_array_mut().expect("groups") {
        for r in g["rules"].as_array_mut().expect("rules") {
            if r["alert"] == alert {
                r["expr"] = Value::String(expr.to_owned());
            }
        }
    }
    groups
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    let dir = workspace(&rule_groups());
    let (ok, out) = run(
        &promtool,
        dir.path(),
        &["check", "rules", "authgate.rules.yaml"],
    );
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(
        &promtool,
        dir.path(),
        &["test", "rules", "authgate.test.yaml"],
    );
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_test_where_it_fires_and_one_where_it_does_not() {
    let tests = yaml_file(TESTS);
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for (alert, _) in alerts(&rule_groups()) {
        let of: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == alert).collect();
        let fires = of
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = of
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty));
        assert!(fires, "{alert}: no unit test where it fires");
        assert!(quiet, "{alert}: no unit test where it stays quiet");
    }
}

/// The unit tests of `alert` alone (promtool evaluates every test of a
/// file; the others would only cost time).
fn tests_of(alert: &str) -> Value {
    let mut tests = yaml_file(TESTS);
    let keep: Vec<Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter(|t| {
            t["alert_rule_test"]
                .as_array()
                .is_some_and(|cases| cases.iter().any(|c| c["alertname"] == alert))
        })
        .cloned()
        .collect();
    tests["tests"] = Value::Array(keep);
    tests
}

#[test]
fn the_unit_tests_fail_when_any_alert_never_fires_or_always_fires() {
    let Some(promtool) = promtool() else { return };
    for (alert, _) in alerts(&rule_groups()) {
        for (what, expr) in [
            ("never fires", "vector(1) == 2"),
            ("always fires", "vector(1)"),
        ] {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let rules = serde_json::to_string(&mutant(&alert, expr)).expect("JSON");
            std::fs::write(dir.path().join("authgate.rules.yaml"), rules)
                .expect("write the mutant");
            let tests = serde_json::to_string(&tests_of(&alert)).expect("JSON");
            std::fs::write(dir.path().join("authgate.test.yaml"), tests).expect("write its tests");
            let (ok, out) = run(
                &promtool,
                dir.path(),
                &["test", "rules", "authgate.test.yaml"],
            );
            assert!(
                !ok && out.contains("FAILED") && out.contains(&format!("alertname: {alert},")),
                "the unit tests pass although {alert} {what}:\n{out}"
            );
        }
    }
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    let Some(promtool) = promtool() else { return };
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    // Recording rules, so promtool parses each query.
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"record": format!("dashboard:query_{i}"), "expr": q}))
        .collect();
    let groups = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = workspace(&groups);
    let (ok, out) = run(
        &promtool,
        dir.path(),
        &["check", "rules", "authgate.rules.yaml"],
    );
    assert!(ok, "a dashboard query does not parse:\n{out}");
}
