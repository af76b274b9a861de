//! Adversarial review (review-a): spellings a lenient upstream reads as the
//! rewrite parameter that authgate lets through unread.

use super::*;

/// Node's `qs` (Express's default query parser), PHP and Rack read
/// `namespace[0]=x` and `namespace[a]=x` as the parameter `namespace`
/// (an array or object holding `x`). authgate reads neither as the
/// parameter, refuses neither as ambiguous, and forwards them next to the
/// pinned value: `qs` gives the upstream `["kube-system", "team-a"]`.
#[test]
fn review_a_bracketed_spellings_of_the_parameter_are_read_or_refused() {
    for bad in [
        "namespace[0]=kube-system&namespace=team-a",
        "namespace[x]=kube-system&namespace=team-a",
        "namespace%5B0%5D=kube-system&namespace=team-a",
    ] {
        let r = q(bad);
        assert!(
            matches!(r, Err(Refused::Ambiguous { .. })) || r.as_ref().is_ok_and(|v| v.len() == 2),
            "{bad}: {r:?} (kube-system reaches the upstream unauthorized)"
        );
    }
}

/// Probe (holds): a fragment in the request target never hides a value.
#[test]
fn review_a_fragment_probe() {
    let pq: PathAndQuery = "/q?namespace=team-a#&namespace=kube-system"
        .parse()
        .expect("parses");
    let query = pq.query();
    let v = values(
        &rw(Some("namespace"), None, Consume::Pin),
        query,
        &HeaderMap::new(),
        false,
    );
    let got = v.map(|v| v.query);
    // Either both values are read (and checked) or the fragment is gone
    // from what is forwarded too.
    let forwarded = format!("{pq}");
    assert!(
        got.as_ref().is_ok_and(|v| v.len() == 2) || !forwarded.contains("kube-system"),
        "{got:?} {forwarded}"
    );
}
