//! Added latency (issue 12's target "p99 added latency at half of
//! authgate's peak rate, vs the upstream alone <= 1 ms"): a closed-loop probe
//! of authgate on the token keep-alive path gives its peak rate; then, at
//! [`RATE_FRACTION`] of it (open loop, the same connections), each round
//! measures the shared upstream alone (nginx `return 200`, loaded directly
//! over plain HTTP/1.1 keep-alive: `xtask load --plain`), authgate in front of
//! it (TLS 1.3, bearer token, authorization, proxy) and, for reference, nginx
//! as the edge in front of it, the order reversed every round. The report
//! (`report::latency_summary`) takes the p99 difference per round.

use serde_json::{Value, json};

use super::{Bench, Job, LoadCmd, Target, log, plain_http};
use crate::{Res, procstat};

/// Fraction of authgate's probed peak rate offered in the latency runs.
pub(crate) const RATE_FRACTION: f64 = 0.5;
/// The target: added p99 at most this many milliseconds.
pub(crate) const TARGET_MS: f64 = 1.0;
/// Run names (`Run::server`) of the three paths.
pub(crate) const UPSTREAM: &str = "upstream";
pub(crate) const AUTHGATE: &str = "authgate";
pub(crate) const NGINX: &str = "nginx";

/// The order of round `r`: the upstream alone, authgate, nginx; reversed in
/// even rounds.
pub(crate) fn order(r: u32) -> [usize; 3] {
    if r % 2 == 1 { [0, 1, 2] } else { [2, 1, 0] }
}

/// The token keep-alive load against `t`, plain HTTP when `plain`.
fn job(b: &Bench<'_>, t: &Target, plain: bool, secs: f64, rate: Option<f64>) -> Job {
    let mut j = b.load_cmd("token", t.port, secs, rate);
    if plain && let LoadCmd::Xtask(a) = &mut j.cmd {
        a.push("--plain".to_owned());
    }
    j
}

/// Probe, then `rounds` rounds over the three paths; `edges` are nginx and
/// authgate (as in `run`), `upstream` the shared upstream. The settings and
/// rates, for the JSON's `meta.latency`.
pub(super) fn measure(
    b: &mut Bench<'_>,
    edges: &[Target],
    upstream: &Target,
    probe_secs: f64,
    rounds: u32,
) -> Res<Value> {
    let ag = edges
        .iter()
        .find(|t| t.name == AUTHGATE)
        .ok_or("latency: no authgate target")?;
    let ngx = edges
        .iter()
        .find(|t| t.name == NGINX)
        .ok_or("latency: no nginx target")?;
    let body = plain_http("GET", &format!("127.0.0.1:{}", upstream.port), "/bench")?;
    if body != "ok\n" {
        return Err(format!("sanity: upstream alone (plain HTTP) answered {body:?}").into());
    }

    log(&format!(
        "latency: probe authgate token keep-alive ({probe_secs}s closed loop)"
    ));
    let probe = job(b, ag, false, probe_secs, None);
    let i = b.measure(ag, 0, "latency", "probe", &probe);
    let peak = b.runs[i].load.as_ref().map_or(0.0, |l| l.rps);
    let rate = b.args.rate.unwrap_or(RATE_FRACTION * peak).max(10.0);
    log(&format!(
        "latency: authgate peak {peak:.0} req/s; offered load {rate:.0} req/s"
    ));

    let paths: [(&Target, bool); 3] = [(upstream, true), (ag, false), (ngx, false)];
    let duration = b.duration;
    for r in 1..=rounds {
        for k in order(r) {
            let (t, plain) = paths[k];
            log(&format!(
                "round {r}/{rounds} latency {} open loop at {rate:.0} req/s ({duration}s, load {})",
                t.name,
                procstat::loadavg()
            ));
            let j = job(b, t, plain, duration, Some(rate));
            b.measure(t, r, "latency", "open", &j);
        }
    }
    Ok(json!({
        "probe_s": probe_secs,
        "authgate_peak_rps": peak,
        "rate_fraction": RATE_FRACTION,
        "rate_override": b.args.rate,
        "offered_rate": rate,
        "connections": b.args.concurrency,
        "target_added_p99_ms": TARGET_MS,
        "paths": {
            UPSTREAM: format!("nginx return 200 on 127.0.0.1:{} loaded directly, plain HTTP/1.1 keep-alive (xtask load --plain)", upstream.port),
            AUTHGATE: "authgate: TLS 1.3, bearer token, static authorization, proxy to the upstream over HTTP/1.1 keep-alive",
            NGINX: "nginx as the edge: TLS 1.3, static token map, proxy to the upstream over HTTP/1.1 keep-alive (reference)",
        },
        "order": "odd rounds upstream, authgate, nginx; even rounds reversed",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_alternates() {
        assert_eq!(order(1), [0, 1, 2]);
        assert_eq!(order(2), [2, 1, 0]);
        assert_eq!(order(3), order(1));
    }
}
