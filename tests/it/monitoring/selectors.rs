//! The label matchers of the `authgate_*` selectors in an expression, and
//! the labels of the series in a scrape: a selector that names a label or
//! a value the metric never has selects nothing, however real its name.

use std::collections::{BTreeMap, BTreeSet};

/// Labels Prometheus adds from the target (the ServiceMonitor), absent
/// from a direct scrape.
const TARGET_LABELS: [&str; 7] = [
    "namespace",
    "job",
    "instance",
    "pod",
    "service",
    "endpoint",
    "container",
];

/// One matcher: label, operator, value (unquoted).
pub(super) type Matcher = (String, String, String);

/// Reads a quoted string starting at `i` (the quote): (value, index after).
fn quoted(b: &[u8], mut i: usize) -> (String, usize) {
    let q = b[i];
    i += 1;
    let mut out = Vec::new();
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
        }
        out.push(b[i]);
        i += 1;
    }
    (String::from_utf8_lossy(&out).into_owned(), i + 1)
}

/// Every `authgate_*` selector with braces: (metric, matchers).
pub(super) fn selectors(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], b'"' | b'\'' | b'`') {
            i = quoted(b, i).1;
            continue;
        }
        if !ident(b[i]) || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && ident(b[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        if !name.starts_with("authgate_") || b.get(i) != Some(&b'{') {
            continue;
        }
        let mut matchers = Vec::new();
        i += 1;
        while i < b.len() && b[i] != b'}' {
            if b[i] == b',' || b[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let l = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let label = expr[l..i].to_owned();
            let o = i;
            while i < b.len() && matches!(b[i], b'=' | b'!' | b'~') {
                i += 1;
            }
            let op = expr[o..i].to_owned();
            let (value, next) = quoted(b, i);
            i = next;
            matchers.push((label, op, value));
        }
        out.push((name.to_owned(), matchers));
    }
    out
}

/// Label name -> values seen, per sample name of an exposition.
pub(super) fn series_labels(
    exposition: &str,
) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| l.starts_with("authgate_")) {
        let (name, rest) = line.split_once('{').unwrap_or((line, ""));
        let name = name.split(' ').next().unwrap_or_default().to_owned();
        let labels = out.entry(name).or_default();
        let sel = format!("authgate_x{{{}", rest.rsplit_once('}').map_or("", |r| r.0));
        for (label, _, value) in selectors(&format!("{sel}}}")).into_iter().flat_map(|s| s.1) {
            labels.entry(label).or_default().insert(value);
        }
    }
    out
}

/// Why `matcher` of `metric` selects nothing in `scraped`, if it does not.
pub(super) fn unmatched(
    metric: &str,
    (label, op, value): &Matcher,
    scraped: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Option<String> {
    if TARGET_LABELS.contains(&label.as_str()) {
        return None;
    }
    let Some(values) = scraped.get(metric).and_then(|m| m.get(label)) else {
        return Some(format!("{metric} has no label {label}"));
    };
    // Positive matchers: each plain alternative is a value seen.
    let wanted: Vec<&str> = match op.as_str() {
        "=" => vec![value.as_str()],
        "=~" => value
            .split('|')
            .filter(|a| a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
            .collect(),
        _ => Vec::new(),
    };
    wanted
        .into_iter()
        .find(|w| !values.contains(*w))
        .map(|w| format!("{metric}{{{label}{op}\"{value}\"}}: no series with {label}=\"{w}\""))
}

#[test]
fn selectors_and_series_labels_are_read_outside_strings() {
    let s = selectors(
        r#"rate(authgate_a_total{result!="miss", kind=~"x|y"}[5m]) / "authgate_b{c=\"d\"}""#,
    );
    let m = |l: &str, o: &str, v: &str| (l.to_owned(), o.to_owned(), v.to_owned());
    assert_eq!(
        s,
        [(
            "authgate_a_total".to_owned(),
            vec![m("result", "!=", "miss"), m("kind", "=~", "x|y")]
        )]
    );
    let scraped = series_labels(
        "authgate_a_total{result=\"hit\",kind=\"x\"} 1\nauthgate_a_total{result=\"miss\",kind=\"z\"} 2\n",
    );
    assert_eq!(unmatched("authgate_a_total", &s[0].1[0], &scraped), None);
    assert!(
        unmatched("authgate_a_total", &s[0].1[1], &scraped)
            .is_some_and(|w| w.contains("kind=\"y\""))
    );
    assert!(unmatched("authgate_a_total", &m("cause", "=", "size"), &scraped).is_some());
    assert_eq!(
        unmatched("authgate_a_total", &m("namespace", "=~", ".*"), &scraped),
        None
    );
}
