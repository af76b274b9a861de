//! The report of `xtask bench`: `<out>.json` (settings, machine, every raw
//! number per run, the summary), `<out>.md` (Markdown tables of medians,
//! and of the medians of per-round ratios) and `<out>.svg` (a plot, written
//! by hand). A measured run fails when it has no successful response, more
//! than 1% errors or unexpected statuses, or the load generator failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Res;
use crate::load::LoadResult;

const MAX_ERROR_FRACTION: f64 = 0.01;
/// Busy time on the server's CPU outside the server's processes (fraction
/// of a CPU) above which a run is reported as disturbed.
const OTHER_LOAD_WARN: f64 = 0.3;
/// authgate / nginx req/s targets (closed loop).
const TARGETS: [(&str, f64); 3] = [("token", 1.2), ("mtls", 1.2), ("handshake", 1.0)];

fn label(cfg: &str) -> &'static str {
    match cfg {
        "token" => "token, keep-alive (HTTP/1.1)",
        "mtls" => "mTLS, keep-alive (HTTP/1.1)",
        "handshake" => "mTLS, new connection per request",
        "h2" => "token, HTTP/2",
        _ => "TokenReview + SAR via fake API",
    }
}

fn short(cfg: &str) -> &'static str {
    match cfg {
        "token" => "token k-a",
        "mtls" => "mTLS k-a",
        "handshake" => "handshakes",
        "h2" => "token h2",
        _ => "cache",
    }
}

/// One measurement: what was run, the server's CPU time, the load result,
/// and the numbers derived from them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) seq: u32,
    /// 0 for the probe (warm-up).
    pub(crate) round: u32,
    pub(crate) config: String,
    pub(crate) server: String,
    /// probe, closed, open (vs nginx); warmup, run (cache).
    pub(crate) phase: String,
    pub(crate) tool: String,
    /// closed or open (loop).
    pub(crate) mode: String,
    pub(crate) offered_rate: Option<f64>,
    /// Exit code of the load generator (-2: killed at its time bound).
    pub(crate) rc: i32,
    pub(crate) start_unix: f64,
    /// The measurement window (load generator start to exit).
    pub(crate) wall_s: f64,
    pub(crate) loadavg: String,
    /// The server's processes (nginx: master and worker).
    pub(crate) server_pids: Vec<u32>,
    pub(crate) server_processes_read: usize,
    /// utime + stime of the server's processes over `cpu_window` (ticks).
    pub(crate) server_cpu_ticks: u64,
    /// The same in seconds.
    pub(crate) server_cpu_s: f64,
    /// schedstat run time of the server's live threads over the window.
    pub(crate) server_sched_s: f64,
    /// Which window the CPU figures cover, and how long it was.
    pub(crate) cpu_window: String,
    pub(crate) cpu_window_s: f64,
    /// utime + stime over the load generator's whole lifetime (with
    /// connection setup), seconds; for reference.
    pub(crate) outer_server_cpu_s: f64,
    /// Busy fraction of the server's CPU (all processes, softirq...).
    pub(crate) server_core_busy: f64,
    /// Busy fraction of the load generator's CPU.
    pub(crate) load_core_busy: f64,
    pub(crate) access_lines: Option<u64>,
    /// nginx: access lines with `$ssl_session_reused` = r.
    pub(crate) access_tls_resumed: Option<u64>,
    pub(crate) load_error: Option<String>,
    pub(crate) load: Option<LoadResult>,
    pub(crate) cache: Option<String>,
    pub(crate) tokens: Option<usize>,
    /// Fake API counts during the warm-up, and during the run.
    pub(crate) api_warmup: Option<Value>,
    pub(crate) api: Option<Value>,
    /// Derived (see [`derive`]).
    pub(crate) d: Derived,
}

/// Numbers derived from a [`Run`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Derived {
    pub(crate) answered: u64,
    pub(crate) rps: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// The primary figure: 1e6 * server_cpu_s / answered.
    pub(crate) cpu_us_per_request: Option<f64>,
    /// The same from schedstat (finer, live threads only).
    pub(crate) sched_us_per_request: Option<f64>,
    pub(crate) server_cpu_cores: Option<f64>,
    pub(crate) server_core_other: Option<f64>,
    pub(crate) tls_resumed_fraction: Option<f64>,
    pub(crate) access_lines_per_response: Option<f64>,
    /// Open loop: achieved / offered.
    pub(crate) achieved_fraction: Option<f64>,
    pub(crate) api_calls_per_1000: Option<f64>,
    pub(crate) api_token_reviews_per_1000: Option<f64>,
    pub(crate) problem: Option<String>,
}

/// Fills `run.d` from the raw numbers.
pub(crate) fn derive(run: &mut Run) {
    let mut d = Derived::default();
    let Some(l) = &run.load else {
        d.problem = Some(format!(
            "no output from the load generator (exit {}){}",
            run.rc,
            run.load_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        run.d = d;
        return;
    };
    let answered = l.ok + l.non_2xx;
    let total = answered + l.errors;
    d.answered = answered;
    d.rps = Some(l.rps);
    d.p50_ms = Some(l.latency_us.p50 / 1e3);
    d.p99_ms = Some(l.latency_us.p99 / 1e3);
    if answered > 0 {
        d.cpu_us_per_request = Some(1e6 * run.server_cpu_s / answered as f64);
        d.sched_us_per_request = Some(1e6 * run.server_sched_s / answered as f64);
    }
    let window = if run.cpu_window_s > 0.0 {
        run.cpu_window_s
    } else {
        run.wall_s
    };
    if window > 0.0 {
        let cores = run.server_cpu_s / window;
        d.server_cpu_cores = Some(cores);
        d.server_core_other = Some(run.server_core_busy - cores);
    }
    if l.new_connection && l.connects > 0 {
        d.tls_resumed_fraction = Some(l.tls_resumed as f64 / l.connects as f64);
    }
    if let Some(lines) = run.access_lines
        && answered > 0
    {
        d.access_lines_per_response = Some(lines as f64 / answered as f64);
    }
    if let Some(r) = run.offered_rate
        && r > 0.0
    {
        d.achieved_fraction = Some(l.rps / r);
    }
    if let Some(api) = &run.api
        && answered > 0
    {
        let tr = api["token_reviews"].as_f64().unwrap_or(0.0);
        let sar = api["access_reviews"].as_f64().unwrap_or(0.0);
        d.api_token_reviews_per_1000 = Some(1000.0 * tr / answered as f64);
        d.api_calls_per_1000 = Some(1000.0 * (tr + sar) / answered as f64);
    }
    if l.ok == 0 {
        d.problem = Some("no successful responses".to_owned());
    } else if (l.non_2xx + l.errors) as f64 / total as f64 > MAX_ERROR_FRACTION {
        d.problem = Some(format!(
            "{} non-2xx and {} errors of {total}",
            l.non_2xx, l.errors
        ));
    }
    if run.rc != 0 {
        d.problem = Some(format!("load generator exit code {}", run.rc));
    }
    run.d = d;
}

/// Median, min, max of some values.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Spread {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn spread(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
    let mut v: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    let Some(x) = x else {
        return "–".to_owned();
    };
    let s = format!("{x:.digits$}");
    // Thousands separators on the integer part.
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    let (sign, digits_part) = int.strip_prefix('-').map_or(("", int), |r| ("-", r));
    let mut out = String::new();
    for (i, c) in digits_part.chars().enumerate() {
        if i > 0 && (digits_part.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

fn fmt_spread(s: Option<Spread>, digits: usize) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) => format!(
            "{} ({}–{})",
            fmt(Some(s.median), digits),
            fmt(Some(s.min), digits),
            fmt(Some(s.max), digits)
        ),
    }
}

/// Per server and loop mode: the spreads of one configuration.
#[derive(Clone, Debug, Serialize)]
struct ServerSummary {
    rps: Option<Spread>,
    p50_ms: Option<Spread>,
    p99_ms: Option<Spread>,
    cpu_us_per_request: Option<Spread>,
    sched_us_per_request: Option<Spread>,
    server_cpu_cores: Option<Spread>,
    server_core_busy: Option<Spread>,
    load_core_busy: Option<Spread>,
    tls_resumed_fraction: Option<Spread>,
    achieved_fraction: Option<Spread>,
}

fn server_summary(rs: &[&Run]) -> ServerSummary {
    ServerSummary {
        rps: spread(rs.iter().map(|r| r.d.rps)),
        p50_ms: spread(rs.iter().map(|r| r.d.p50_ms)),
        p99_ms: spread(rs.iter().map(|r| r.d.p99_ms)),
        cpu_us_per_request: spread(rs.iter().map(|r| r.d.cpu_us_per_request)),
        sched_us_per_request: spread(rs.iter().map(|r| r.d.sched_us_per_request)),
        server_cpu_cores: spread(rs.iter().map(|r| r.d.server_cpu_cores)),
        server_core_busy: spread(rs.iter().map(|r| Some(r.server_core_busy))),
        load_core_busy: spread(rs.iter().map(|r| Some(r.load_core_busy))),
        tls_resumed_fraction: spread(rs.iter().map(|r| {
            r.d.tls_resumed_fraction.or_else(|| {
                let (Some(res), Some(lines)) = (r.access_tls_resumed, r.access_lines) else {
                    return None;
                };
                (r.config == "handshake" && lines > 0).then(|| res as f64 / lines as f64)
            })
        })),
        achieved_fraction: spread(rs.iter().map(|r| r.d.achieved_fraction)),
    }
}

/// One configuration, nginx vs authgate.
#[derive(Clone, Debug, Serialize)]
struct Row {
    config: String,
    label: String,
    offered_rate: Option<f64>,
    /// "closed"/"open" -> server -> summary.
    servers: BTreeMap<String, BTreeMap<String, ServerSummary>>,
    /// Per round: authgate/nginx req/s (closed), nginx/authgate CPU per request (open and closed).
    per_round: Vec<Value>,
    rps_ratio: Option<Spread>,
    cpu_ratio_open: Option<Spread>,
    cpu_ratio_closed: Option<Spread>,
    target: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
struct CacheRow {
    cache: String,
    s: ServerSummary,
    api_calls_per_1000: Option<Spread>,
    api_token_reviews_per_1000: Option<Spread>,
    warmup_api_calls: Option<Spread>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn summarise(runs: &[Run]) -> (Vec<Row>, Vec<CacheRow>) {
    let mut configs: Vec<&str> = Vec::new();
    for r in runs {
        if r.config != "cache"
            && r.config != "latency"
            && (r.phase == "closed" || r.phase == "open")
            && !configs.contains(&r.config.as_str())
        {
            configs.push(&r.config);
        }
    }
    let mut rows = Vec::new();
    for cfg in configs {
        let mut servers: BTreeMap<String, BTreeMap<String, ServerSummary>> = BTreeMap::new();
        let mut by_round: BTreeMap<u32, BTreeMap<(String, String), &Run>> = BTreeMap::new();
        let mut offered = None;
        for mode in ["closed", "open"] {
            for server in ["nginx", "authgate"] {
                let rs: Vec<&Run> = runs
                    .iter()
                    .filter(|r| r.config == cfg && r.phase == mode && r.server == server)
                    .collect();
                for r in &rs {
                    by_round
                        .entry(r.round)
                        .or_default()
                        .insert((mode.to_owned(), server.to_owned()), r);
                    if mode == "open" {
                        offered = r.offered_rate;
                    }
                }
                servers
                    .entry(mode.to_owned())
                    .or_default()
                    .insert(server.to_owned(), server_summary(&rs));
            }
        }
        let mut per_round = Vec::new();
        for (round, m) in &by_round {
            let get = |mode: &str, s: &str| m.get(&(mode.to_owned(), s.to_owned()));
            let rps = ratio(
                get("closed", "authgate").and_then(|r| r.d.rps),
                get("closed", "nginx").and_then(|r| r.d.rps),
            );
            let cpu_open = ratio(
                get("open", "nginx").and_then(|r| r.d.cpu_us_per_request),
                get("open", "authgate").and_then(|r| r.d.cpu_us_per_request),
            );
            let cpu_closed = ratio(
                get("closed", "nginx").and_then(|r| r.d.cpu_us_per_request),
                get("closed", "authgate").and_then(|r| r.d.cpu_us_per_request),
            );
            per_round.push(json!({"round": round, "rps_ratio": rps, "cpu_ratio_open": cpu_open, "cpu_ratio_closed": cpu_closed}));
        }
        let pick = |k: &str| spread(per_round.iter().map(|v| v[k].as_f64()));
        rows.push(Row {
            config: cfg.to_owned(),
            label: label(cfg).to_owned(),
            offered_rate: offered,
            servers,
            rps_ratio: pick("rps_ratio"),
            cpu_ratio_open: pick("cpu_ratio_open"),
            cpu_ratio_closed: pick("cpu_ratio_closed"),
            per_round,
            target: TARGETS.iter().find(|(c, _)| *c == cfg).map(|(_, t)| *t),
        });
    }
    let mut cache = Vec::new();
    for mode in ["on", "off"] {
        let rs: Vec<&Run> = runs
            .iter()
            .filter(|r| r.config == "cache" && r.phase == "run" && r.cache.as_deref() == Some(mode))
            .collect();
        if rs.is_empty() {
            continue;
        }
        cache.push(CacheRow {
            cache: mode.to_owned(),
            s: server_summary(&rs),
            api_calls_per_1000: spread(rs.iter().map(|r| r.d.api_calls_per_1000)),
            api_token_reviews_per_1000: spread(rs.iter().map(|r| r.d.api_token_reviews_per_1000)),
            warmup_api_calls: spread(rs.iter().map(|r| {
                r.api_warmup.as_ref().map(|w| {
                    w["token_reviews"].as_f64().unwrap_or(0.0)
                        + w["access_reviews"].as_f64().unwrap_or(0.0)
                })
            })),
        });
    }
    (rows, cache)
}

/// The three paths of the latency runs (`Run::server`), with their labels.
const LATENCY_PATHS: [(&str, &str); 3] = [
    ("upstream", "upstream alone (plain HTTP/1.1)"),
    ("authgate", "authgate (TLS + token + authz + proxy)"),
    ("nginx", "nginx edge (TLS + token map + proxy), reference"),
];

/// One path of the latency runs: spreads over the rounds.
#[derive(Clone, Debug, Serialize)]
struct LatencyPath {
    server: String,
    label: String,
    rps: Option<Spread>,
    p50_ms: Option<Spread>,
    p99_ms: Option<Spread>,
    p999_ms: Option<Spread>,
    achieved_fraction: Option<Spread>,
    cpu_us_per_request: Option<Spread>,
}

/// The added-latency figure (configuration `latency`).
#[derive(Clone, Debug, Serialize)]
struct LatencySummary {
    authgate_peak_rps: Option<f64>,
    offered_rate: Option<f64>,
    paths: Vec<LatencyPath>,
    /// Per round: each path's p99 and the differences to the upstream alone, ms.
    per_round: Vec<Value>,
    /// p99(authgate) - p99(upstream alone), spread of the per-round values, ms.
    added_p99_ms: Option<Spread>,
    /// p99(nginx edge) - p99(upstream alone), for reference, ms.
    nginx_added_p99_ms: Option<Spread>,
    target_ms: f64,
    /// Median added p99 within the target.
    met: Option<bool>,
}

/// `edge - upstream` (ms), when both are known.
fn added_ms(edge: Option<f64>, upstream: Option<f64>) -> Option<f64> {
    match (edge, upstream) {
        (Some(e), Some(u)) if e.is_finite() && u.is_finite() => Some(e - u),
        _ => None,
    }
}

/// PASS or NOT met for an added latency against `target` ms.
fn latency_verdict(added: Option<f64>, target: f64) -> String {
    match added {
        Some(a) if a <= target => format!("≤ {target} ms: **PASS**"),
        Some(_) => format!("≤ {target} ms: **NOT met**"),
        None => format!("≤ {target} ms: – (no data)"),
    }
}

fn p999_ms(r: &Run) -> Option<f64> {
    r.load.as_ref().map(|l| l.latency_us.p999 / 1e3)
}

/// The latency runs summarised; None without any.
fn latency_summary(runs: &[Run], target_ms: f64) -> Option<LatencySummary> {
    let open: Vec<&Run> = runs
        .iter()
        .filter(|r| r.config == "latency" && r.phase == "open" && r.round > 0)
        .collect();
    if open.is_empty() {
        return None;
    }
    let paths = LATENCY_PATHS
        .iter()
        .map(|(server, label)| {
            let rs: Vec<&Run> = open
                .iter()
                .copied()
                .filter(|r| r.server == *server)
                .collect();
            LatencyPath {
                server: (*server).to_owned(),
                label: (*label).to_owned(),
                rps: spread(rs.iter().map(|r| r.d.rps)),
                p50_ms: spread(rs.iter().map(|r| r.d.p50_ms)),
                p99_ms: spread(rs.iter().map(|r| r.d.p99_ms)),
                p999_ms: spread(rs.iter().map(|r| p999_ms(r))),
                achieved_fraction: spread(rs.iter().map(|r| r.d.achieved_fraction)),
                cpu_us_per_request: spread(rs.iter().map(|r| r.d.cpu_us_per_request)),
            }
        })
        .collect();
    let mut rounds: Vec<u32> = open.iter().map(|r| r.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let per_round: Vec<Value> = rounds
        .iter()
        .map(|&round| {
            let p99 = |server: &str| {
                open.iter()
                    .find(|r| r.round == round && r.server == server)
                    .and_then(|r| r.d.p99_ms)
            };
            let (up, ag, ngx) = (p99("upstream"), p99("authgate"), p99("nginx"));
            json!({
                "round": round,
                "upstream_p99_ms": up,
                "authgate_p99_ms": ag,
                "nginx_p99_ms": ngx,
                "added_p99_ms": added_ms(ag, up),
                "nginx_added_p99_ms": added_ms(ngx, up),
            })
        })
        .collect();
    let pick = |k: &str| spread(per_round.iter().map(|v| v[k].as_f64()));
    let added = pick("added_p99_ms");
    Some(LatencySummary {
        authgate_peak_rps: runs
            .iter()
            .find(|r| r.config == "latency" && r.phase == "probe" && r.server == "authgate")
            .and_then(|r| r.d.rps),
        offered_rate: open.iter().find_map(|r| r.offered_rate),
        paths,
        added_p99_ms: added,
        nginx_added_p99_ms: pick("nginx_added_p99_ms"),
        per_round,
        target_ms,
        met: added.map(|a| a.median <= target_ms),
    })
}

/// The Markdown section of the latency runs.
fn latency_markdown(o: &mut String, meta: &Value, l: &LatencySummary) {
    let m = &meta["latency"];
    let _ = writeln!(
        o,
        "\n## Added latency at half of authgate's peak rate, vs the upstream alone (target ≤ {} ms)\n",
        l.target_ms
    );
    let _ = writeln!(
        o,
        "authgate's peak on the token keep-alive path: {} req/s (closed-loop probe, {} s). Offered load: {} req/s \
         ({:.0}% of the peak{}), open loop, {} connections, the same for each path; each round measures the three \
         paths in turn, the order reversed every round. *Upstream alone*: the upstream authgate proxies to (nginx \
         `return 200`, CPU {}) loaded directly, plain HTTP/1.1 keep-alive. *authgate*: TLS 1.3, bearer token, \
         authorization, proxy to that upstream (HTTP/1.1 keep-alive). *nginx edge*: nginx in front of the same \
         upstream (TLS 1.3, static token map, no authorization), for reference.\n",
        fmt(l.authgate_peak_rps, 0),
        m["probe_s"],
        fmt(l.offered_rate, 0),
        100.0 * m["rate_fraction"].as_f64().unwrap_or(0.0),
        if m["rate_override"].is_null() {
            String::new()
        } else {
            format!("; overridden: --rate {}", m["rate_override"])
        },
        m["connections"],
        meta["load_cpu"],
    );
    o.push_str("| path | achieved req/s | p50 ms | p99 ms | p99.9 ms | CPU µs per request of the server measured |\n");
    o.push_str("|---|---|---|---|---|---|\n");
    for p in &l.paths {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            p.label,
            fmt_spread(p.rps, 0),
            fmt_spread(p.p50_ms, 2),
            fmt_spread(p.p99_ms, 2),
            fmt_spread(p.p999_ms, 2),
            fmt_spread(p.cpu_us_per_request, 1),
        );
    }
    o.push_str("\n| added p99 | per round, ms | median, ms | target |\n|---|---|---|---|\n");
    let per_round = |k: &str| {
        let v: Vec<String> = l
            .per_round
            .iter()
            .map(|r| format!("r{}: {}", r["round"], fmt(r[k].as_f64(), 2)))
            .collect();
        v.join(", ")
    };
    let _ = writeln!(
        o,
        "| authgate − upstream alone | {} | **{}** | {} |",
        per_round("added_p99_ms"),
        fmt(med(l.added_p99_ms), 2),
        latency_verdict(med(l.added_p99_ms), l.target_ms),
    );
    if l.nginx_added_p99_ms.is_some() {
        let _ = writeln!(
            o,
            "| nginx edge − upstream alone (reference) | {} | {} | |",
            per_round("nginx_added_p99_ms"),
            fmt(med(l.nginx_added_p99_ms), 2),
        );
    }
}

/// The notes of the latency section.
fn latency_notes(meta: &Value, l: &LatencySummary) -> Vec<String> {
    let per_run = l
        .offered_rate
        .zip(meta["duration_s"].as_f64())
        .map(|(r, d)| r * d);
    vec![
        format!(
            "Added latency: the upstream-alone path is plain HTTP/1.1 and the authgate path TLS 1.3, so \
             \"added\" is everything a client sees by putting authgate in front: TLS on both ends (the load \
             generator's encryption and decryption as well as authgate's), the second loopback hop, and authgate's \
             own work (token check, authorization, header rewrite, proxying). It is not authgate's processing time \
             alone. Added p99 is the difference of the two p99s in the same round; the median is over the rounds."
        ),
        format!(
            "In the latency runs the load generator shares CPU {} with the upstream on every path (authgate and \
             the nginx edge run on CPU {}). The upstream does the same work on each path, but on the TLS paths the \
             load generator does more (TLS), which competes with the upstream for that core and is counted in \
             the added figure.",
            meta["load_cpu"], meta["server_cpu"]
        ),
        format!(
            "Latency percentiles of the latency runs are from about {} requests per run (offered rate x {} s); \
             p99.9 rests on the slowest few of them and is noisy in short runs.",
            fmt(per_run, 0),
            meta["duration_s"]
        ),
    ]
}

fn cpu_cols(s: &ServerSummary) -> String {
    [s.server_cpu_cores, s.server_core_busy, s.load_core_busy]
        .iter()
        .map(|x| fmt(x.map(|x| x.median), 2))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn ratios_text(per_round: &[Value], key: &str) -> String {
    let v: Vec<String> = per_round
        .iter()
        .filter_map(|r| r[key].as_f64())
        .map(|x| format!("{x:.2}"))
        .collect();
    if v.is_empty() {
        "–".to_owned()
    } else {
        v.join(", ")
    }
}

fn med(s: Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

#[allow(clippy::too_many_lines)]
fn markdown(
    meta: &Value,
    rows: &[Row],
    cache: &[CacheRow],
    latency: Option<&LatencySummary>,
    runs: &[Run],
    problems: &[String],
) -> String {
    let mut o = String::new();
    let smoke = meta["smoke"].as_bool().unwrap_or(false);
    let _ = writeln!(
        o,
        "# authgate vs nginx benchmark{}: {}\n",
        if smoke { " (smoke)" } else { "" },
        meta["date"].as_str().unwrap_or("?")
    );
    let measured: Vec<&Run> = runs.iter().filter(|r| r.round > 0).collect();
    let first = measured.first().map_or("?", |r| r.loadavg.as_str());
    let last = measured.last().map_or("?", |r| r.loadavg.as_str());
    let _ = writeln!(
        o,
        "{} CPUs ({}), kernel {}. Server under test on CPU {} (nginx: 1 worker; authgate: \
         TOKIO_WORKER_THREADS=1); load generators ({}), shared upstream (nginx `return 200`) and fake \
         API on CPU {}. TLS 1.3, {} from one rcgen CA for both servers; concurrency {} (HTTP/2: {} \
         connections x {} streams). {} rounds x {} s per measurement, A/B order alternating by round; \
         in each round each server gets a closed-loop run (capacity) and an open-loop run at the same \
         offered load ({:.0}% of the slower server's capacity in a closed-loop probe{}). Access logs: {}. \
         Load average (1/5/15 min) at the first measurement {first}, at the last {last}.\n",
        meta["nproc"],
        meta["cpu_model"].as_str().unwrap_or("?"),
        meta["kernel"].as_str().unwrap_or("?"),
        meta["server_cpu"],
        meta["loadgen"].as_str().unwrap_or("?"),
        meta["load_cpu"],
        meta["server_key"].as_str().unwrap_or("?"),
        meta["concurrency"],
        meta["h2_connections"],
        meta["h2_streams_per_connection"],
        meta["rounds"],
        meta["duration_s"],
        100.0 * meta["rate_fraction"].as_f64().unwrap_or(0.0),
        if meta["rate_override"].is_null() {
            String::new()
        } else {
            format!("; overridden: --rate {}", meta["rate_override"])
        },
        if meta["access_log"].as_bool().unwrap_or(false) {
            "on for both (one line per request to a file)"
        } else {
            "off for both"
        },
    );

    // `--only latency`: no empty vs-nginx tables (other runs as before).
    if !rows.is_empty() || latency.is_none() {
        o.push_str("## Server CPU time per request at the same offered load (primary figure)\n\n");
        o.push_str(
        "CPU time (utime + stime) of every process of the server under test over the run, divided by the \
         requests answered; open loop at the offered rate shown, the same for both servers. \
         Ratio > 1: authgate uses less CPU per request than nginx.\n\n",
    );
        o.push_str("| configuration | offered req/s | server | achieved req/s | p50 ms | p99 ms | server CPU µs per request | nginx/authgate CPU per request, per round | median ratio |\n");
        o.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for row in rows {
            for (i, server) in ["nginx", "authgate"].iter().enumerate() {
                let Some(s) = row.servers.get("open").and_then(|m| m.get(*server)) else {
                    continue;
                };
                let _ = writeln!(
                    o,
                    "| {} | {} | {server} | {} | {} | {} | {} | {} | {} |",
                    if i == 0 { row.label.as_str() } else { "" },
                    if i == 0 {
                        fmt(row.offered_rate, 0)
                    } else {
                        String::new()
                    },
                    fmt_spread(s.rps, 0),
                    fmt_spread(s.p50_ms, 2),
                    fmt_spread(s.p99_ms, 2),
                    fmt_spread(s.cpu_us_per_request, 1),
                    if i == 1 {
                        ratios_text(&row.per_round, "cpu_ratio_open")
                    } else {
                        String::new()
                    },
                    if i == 1 {
                        format!("**{}**", fmt(med(row.cpu_ratio_open), 2))
                    } else {
                        String::new()
                    },
                );
            }
        }

        o.push_str("\n## Capacity (closed loop)\n\n");
        o.push_str("| configuration | server | req/s median (min–max) | p50 ms | p99 ms | server CPU µs per request | CPU: server processes / its core / load core | authgate/nginx req/s per round | median ratio | target | nginx/authgate CPU per request (median) |\n");
        o.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for row in rows {
            let med_ratio = med(row.rps_ratio);
            let verdict = match (row.target, med_ratio) {
                (Some(t), Some(m)) => format!("≥{t} {}", if m >= t { "met" } else { "NOT met" }),
                _ => "–".to_owned(),
            };
            for (i, server) in ["nginx", "authgate"].iter().enumerate() {
                let Some(s) = row.servers.get("closed").and_then(|m| m.get(*server)) else {
                    continue;
                };
                let _ = writeln!(
                    o,
                    "| {} | {server} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    if i == 0 { row.label.as_str() } else { "" },
                    fmt_spread(s.rps, 0),
                    fmt_spread(s.p50_ms, 2),
                    fmt_spread(s.p99_ms, 2),
                    fmt_spread(s.cpu_us_per_request, 0),
                    cpu_cols(s),
                    if i == 1 {
                        ratios_text(&row.per_round, "rps_ratio")
                    } else {
                        String::new()
                    },
                    if i == 1 {
                        fmt(med_ratio, 2)
                    } else {
                        String::new()
                    },
                    if i == 1 {
                        verdict.clone()
                    } else {
                        String::new()
                    },
                    if i == 1 {
                        fmt(med(row.cpu_ratio_closed), 2)
                    } else {
                        String::new()
                    },
                );
            }
        }
    }

    if !cache.is_empty() {
        let _ = writeln!(
            o,
            "\n## authgate caches on vs off ({} distinct tokens, fake API)\n",
            meta["cache_tokens"]
        );
        let _ = writeln!(
            o,
            "Each round starts a fresh authgate, warms it up for {} s (every token used at least once), then \
             measures (closed loop, the load generator rotating the tokens). API calls are counted by the fake API.\n",
            meta["cache_warmup_s"]
        );
        o.push_str("| caches | req/s median (min–max) | p50 ms | p99 ms | API calls / 1000 requests (TokenReview + SAR) | of which TokenReview | calls during warm-up | authgate CPU µs per request | CPU: authgate / its core / load core |\n");
        o.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for c in cache {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.cache,
                fmt_spread(c.s.rps, 0),
                fmt_spread(c.s.p50_ms, 2),
                fmt_spread(c.s.p99_ms, 2),
                fmt_spread(c.api_calls_per_1000, 1),
                fmt_spread(c.api_token_reviews_per_1000, 1),
                fmt_spread(c.warmup_api_calls, 0),
                fmt_spread(c.s.cpu_us_per_request, 0),
                cpu_cols(&c.s),
            );
        }
    }

    if let Some(l) = latency {
        latency_markdown(&mut o, meta, l);
    }

    let mut notes = vec![
        format!(
            "Server CPU: `/proc/<pid>/stat` utime + stime (clock ticks, CLK_TCK {}) of nginx's master and worker, or of \
             authgate's one process, read by `xtask load` when the first request may start (keep-alive connections \
             already open, so their handshakes do not count) and after the last answer; for h2load (HTTP/2) around h2load's \
             whole lifetime (its 10 connection setups included). The schedstat-based figure (ns, live threads) is in the \
             JSON as `sched_us_per_request`.",
            meta["clk_tck"]
        ),
        "Latency in the open-loop runs of `xtask load` is measured from each request's scheduled start (queueing \
         counts); h2load (HTTP/2) measures from the actual send. An open-loop run whose achieved rate is below 95% \
         of the offered rate means the server (or the load generator) did not keep up."
            .to_owned(),
        "CPU columns of the capacity table are fractions of one CPU (medians): the server's processes, all busy time on \
         the server's CPU, and all busy time on the load generator's CPU. A server below 1.0 while the load CPU is near \
         1.0 means the load generator (with the upstream) was the limit."
            .to_owned(),
    ];
    let slow: Vec<String> = runs
        .iter()
        .filter(|r| r.phase == "open" && r.d.achieved_fraction.is_some_and(|f| f < 0.95))
        .map(|r| {
            format!(
                "round {} {} {} ({:.0}%)",
                r.round,
                r.config,
                r.server,
                100.0 * r.d.achieved_fraction.unwrap_or(0.0)
            )
        })
        .collect();
    if !slow.is_empty() {
        notes.push(format!(
            "Open-loop runs below 95% of the offered rate: {}",
            slow.join(", ")
        ));
    }
    let noisy: Vec<f64> = measured
        .iter()
        .filter_map(|r| r.d.server_core_other)
        .filter(|x| *x > OTHER_LOAD_WARN)
        .collect();
    if !noisy.is_empty() {
        let worst = noisy.iter().copied().fold(0.0, f64::max);
        notes.push(format!(
            "In {} of {} measurements the server's CPU was busy outside the server's processes for more than \
             {OTHER_LOAD_WARN} of a CPU (up to {worst:.2}: other processes were probably running there; see \
             `server_core_busy` per run in the JSON). CPU time per request is less disturbed by that than req/s.",
            noisy.len(),
            measured.len()
        ));
    }
    for row in rows.iter().filter(|r| r.config == "handshake") {
        let part = |server: &str| {
            let f = |mode: &str| {
                row.servers
                    .get(mode)
                    .and_then(|m| m.get(server))
                    .and_then(|s| s.tls_resumed_fraction)
                    .map_or("–".to_owned(), |f| format!("{:.0}%", 100.0 * f.median))
            };
            format!(
                "{server} {} (closed loop) and {} (open loop)",
                f("closed"),
                f("open")
            )
        };
        notes.push(format!(
            "Handshake runs, TLS connections that resumed a session (the client keeps a session cache, as a \
             real client would): {}; {}.",
            part("nginx"),
            part("authgate")
        ));
    }
    if rows.iter().any(|r| r.config == "h2") {
        notes.push(
            "HTTP/2 load: h2load, open loop with `--rps` (per connection = offered / connections)."
                .to_owned(),
        );
    }
    for k in ["tls_nginx", "tls_authgate"] {
        if let Some(t) = meta[k].as_str() {
            notes.push(format!(
                "{}: `{t}`",
                if k == "tls_nginx" {
                    "TLS with nginx"
                } else {
                    "TLS with authgate"
                }
            ));
        }
    }
    if let Some(l) = latency {
        notes.extend(latency_notes(meta, l));
    }
    if !problems.is_empty() {
        notes.push(format!("**Problems:** {}", problems.join("; ")));
    }
    o.push_str("\n## Notes\n\n");
    for n in notes {
        let _ = writeln!(o, "- {n}");
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round number (1, 1.2, 1.6, 2, ... 8 x 10^k) at least `x`.
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let k = 10f64.powf(x.log10().floor());
    for m in [1.0, 1.2, 1.6, 2.0, 2.4, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m * k >= x {
            return m * k;
        }
    }
    10.0 * k
}

type Groups = Vec<(String, Vec<(String, Option<Spread>)>)>;

fn panel(
    parts: &mut Vec<String>,
    x0: f64,
    groups: &Groups,
    title: &str,
    unit: &str,
    digits: usize,
) {
    let (panel_w, top, plot_h) = (330.0, 60.0, 310.0);
    let vmax = nice_ceiling(
        groups
            .iter()
            .flat_map(|(_, b)| b.iter().filter_map(|(_, s)| s.map(|s| s.max)))
            .fold(0.0, f64::max)
            * 1.1,
    );
    parts.push(format!(
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
        x0 + panel_w / 2.0,
        top - 18.0,
        esc(title)
    ));
    for i in 0..=4 {
        let v = vmax * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        parts.push(format!(
            r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#e2e2e2"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            x0 + panel_w,
            x0 - 4.0,
            y + 4.0,
            fmt(Some(v), digits)
        ));
    }
    parts.push(format!(
        r#"<line x1="{x0}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/>"#,
        top + plot_h,
        x0 + panel_w
    ));
    let (ux, uy) = (x0 - 48.0, top + plot_h / 2.0);
    parts.push(format!(
        r#"<text x="{ux}" y="{uy}" text-anchor="middle" transform="rotate(-90 {ux} {uy})">{}</text>"#,
        esc(unit)
    ));
    let gw = panel_w / groups.len().max(1) as f64;
    for (gi, (lbl, bars)) in groups.iter().enumerate() {
        let bw = gw * 0.7 / bars.len().max(1) as f64;
        let gx = x0 + gi as f64 * gw + gw * 0.15;
        for (bi, (name, s)) in bars.iter().enumerate() {
            let Some(s) = s else {
                continue;
            };
            let x = gx + bi as f64 * bw;
            let h = plot_h * s.median / vmax;
            let y = top + plot_h - h;
            let color = match name.as_str() {
                "nginx" => "#8c8c8c",
                "authgate" => "#2b6cb0",
                "cache on" => "#2f855a",
                _ => "#c05621",
            };
            let ylo = top + plot_h - plot_h * s.min / vmax;
            let yhi = top + plot_h - plot_h * s.max / vmax;
            let cx = x + (bw - 2.0) / 2.0;
            parts.push(format!(
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{color}"><title>{}: {}</title></rect><line x1="{cx:.1}" y1="{ylo:.1}" x2="{cx:.1}" y2="{yhi:.1}" stroke="black"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                (bw - 2.0).max(1.0),
                esc(name),
                fmt(Some(s.median), digits),
                yhi - 4.0,
                fmt(Some(s.median), digits)
            ));
        }
        parts.push(format!(
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + gi as f64 * gw + gw / 2.0,
            top + plot_h + 16.0,
            esc(lbl)
        ));
    }
}

fn svg(meta: &Value, rows: &[Row], cache: &[CacheRow]) -> String {
    let groups =
        |mode: &str, f: fn(&ServerSummary) -> Option<Spread>, with_cache: bool| -> Groups {
            let mut g: Groups = rows
                .iter()
                .map(|r| {
                    let bars = ["nginx", "authgate"]
                        .iter()
                        .map(|s| {
                            (
                                (*s).to_owned(),
                                r.servers.get(mode).and_then(|m| m.get(*s)).and_then(f),
                            )
                        })
                        .collect();
                    (short(&r.config).to_owned(), bars)
                })
                .collect();
            if with_cache && !cache.is_empty() {
                g.push((
                    "caches".to_owned(),
                    cache
                        .iter()
                        .map(|c| (format!("cache {}", c.cache), f(&c.s)))
                        .collect(),
                ));
            }
            g
        };
    let (width, height) = (80.0 + 3.0 * 330.0 + 2.0 * 90.0 + 20.0, 460.0);
    let title = format!(
        "authgate vs nginx, {}{}",
        meta["date"].as_str().unwrap_or("?"),
        if meta["smoke"].as_bool().unwrap_or(false) {
            " (smoke)"
        } else {
            ""
        }
    );
    let mut parts = vec![
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
        ),
        r#"<rect width="100%" height="100%" fill="white"/>"#.to_owned(),
        format!(
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            width / 2.0,
            esc(&title)
        ),
    ];
    panel(
        &mut parts,
        80.0,
        &groups("open", |s| s.cpu_us_per_request, false),
        "server CPU per request, same offered load",
        "CPU µs per request",
        0,
    );
    panel(
        &mut parts,
        80.0 + 420.0,
        &groups("closed", |s| s.rps, true),
        "capacity (closed loop)",
        "req/s (handshakes/s)",
        0,
    );
    panel(
        &mut parts,
        80.0 + 840.0,
        &groups("open", |s| s.p99_ms, false),
        "p99 latency, same offered load",
        "ms",
        1,
    );
    let mut lx = 80.0;
    for (name, color) in [
        ("nginx", "#8c8c8c"),
        ("authgate", "#2b6cb0"),
        ("cache on", "#2f855a"),
        ("cache off", "#c05621"),
    ] {
        parts.push(format!(
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{name}</text>"#,
            height - 30.0,
            lx + 16.0,
            height - 20.0
        ));
        lx += 120.0;
    }
    parts.push(
        "<text x=\"600\" y=\"440\">median, whiskers min–max over the rounds</text>".to_owned(),
    );
    parts.push("</svg>".to_owned());
    parts.join("\n") + "\n"
}

/// Writes `<out>.{json,md,svg}`: the Markdown text and the problems.
pub(crate) fn write(out: &Path, meta: &Value, runs: Vec<Run>) -> Res<(String, Vec<String>)> {
    let problems: Vec<String> = runs
        .iter()
        .filter(|r| r.round > 0 && (r.phase == "closed" || r.phase == "open" || r.phase == "run"))
        .filter_map(|r| {
            r.d.problem.as_ref().map(|p| {
                format!(
                    "round {} {} {} {}: {p}",
                    r.round, r.config, r.server, r.phase
                )
            })
        })
        .collect();
    let (rows, cache) = summarise(&runs);
    let target_ms = meta["latency"]["target_added_p99_ms"]
        .as_f64()
        .unwrap_or(1.0);
    let latency = latency_summary(&runs, target_ms);
    let md = markdown(meta, &rows, &cache, latency.as_ref(), &runs, &problems);
    let mut result = json!({
        "meta": meta,
        "summary": {"vs_nginx": rows, "cache": cache},
        "runs": runs,
        "problems": problems,
    });
    if let Some(l) = &latency {
        result["summary"]["latency"] = serde_json::to_value(l)?;
    }
    let with = |ext: &str| {
        let mut p = out.as_os_str().to_owned();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    std::fs::write(with(".json"), serde_json::to_string_pretty(&result)? + "\n")?;
    std::fs::write(with(".md"), &md)?;
    std::fs::write(with(".svg"), svg(meta, &rows, &cache))?;
    Ok((md, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ok: u64, non_2xx: u64, errors: u64, cpu_s: f64) -> Run {
        let mut r = Run {
            rc: 0,
            wall_s: 2.0,
            server_cpu_s: cpu_s,
            load: Some(LoadResult {
                ok,
                non_2xx,
                errors,
                rps: ok as f64,
                ..LoadResult::default()
            }),
            ..Run::default()
        };
        derive(&mut r);
        r
    }

    #[test]
    fn cpu_per_request_and_failures() {
        let r = run(1000, 0, 5, 0.05);
        assert!(r.d.problem.is_none());
        assert!((r.d.cpu_us_per_request.unwrap() - 50.0).abs() < 1e-9);
        assert!((r.d.server_cpu_cores.unwrap() - 0.025).abs() < 1e-9);
        assert!(run(990, 20, 0, 0.1).d.problem.is_some());
        assert!(run(0, 0, 0, 0.0).d.problem.is_some());
        let mut failed = run(1000, 0, 0, 0.1);
        failed.rc = 1;
        derive(&mut failed);
        assert!(failed.d.problem.is_some());
    }

    #[test]
    fn medians_and_format() {
        let s = spread([Some(3.0), None, Some(1.0), Some(2.0), Some(10.0)]).unwrap();
        assert!((s.median - 2.5).abs() < 1e-9);
        assert_eq!((s.min, s.max, s.n), (1.0, 10.0, 4));
        assert_eq!(fmt(Some(1234567.891), 1), "1,234,567.9");
        assert_eq!(fmt(Some(-1234.0), 0), "-1,234");
        assert_eq!(fmt(None, 0), "–");
        assert!((nice_ceiling(1234.0) - 1600.0).abs() < 1e-9);
    }

    fn latency_run(round: u32, server: &str, phase: &str, p99_us: f64) -> Run {
        let mut r = Run {
            round,
            config: "latency".to_owned(),
            server: server.to_owned(),
            phase: phase.to_owned(),
            offered_rate: (phase == "open").then_some(5000.0),
            load: Some(LoadResult {
                ok: 1000,
                rps: 5000.0,
                latency_us: crate::load::Latency {
                    p50: 100.0,
                    p99: p99_us,
                    p999: 2.0 * p99_us,
                    ..crate::load::Latency::default()
                },
                ..LoadResult::default()
            }),
            ..Run::default()
        };
        derive(&mut r);
        r
    }

    #[test]
    fn added_latency() {
        assert!((added_ms(Some(1.5), Some(0.25)).unwrap() - 1.25).abs() < 1e-9);
        assert!((added_ms(Some(0.2), Some(0.5)).unwrap() + 0.3).abs() < 1e-9);
        assert_eq!(added_ms(None, Some(0.5)), None);
        assert_eq!(added_ms(Some(f64::NAN), Some(0.5)), None);
        assert_eq!(latency_verdict(Some(1.0), 1.0), "≤ 1 ms: **PASS**");
        assert_eq!(latency_verdict(Some(1.01), 1.0), "≤ 1 ms: **NOT met**");
        assert_eq!(latency_verdict(None, 1.0), "≤ 1 ms: – (no data)");

        assert!(latency_summary(&[run(10, 0, 0, 0.0)], 1.0).is_none());
        // Rounds 1-3: upstream alone 1 ms; authgate 1.5, 3, 1.8 ms (added
        // 0.5, 2, 0.8: median 0.8); nginx only in round 1.
        let mut runs = vec![latency_run(0, "authgate", "probe", 9000.0)];
        runs[0].load.as_mut().unwrap().rps = 10_000.0;
        derive(&mut runs[0]);
        for (round, ag) in [(1, 1500.0), (2, 3000.0), (3, 1800.0)] {
            runs.push(latency_run(round, "upstream", "open", 1000.0));
            runs.push(latency_run(round, "authgate", "open", ag));
        }
        runs.push(latency_run(1, "nginx", "open", 1200.0));
        let l = latency_summary(&runs, 1.0).unwrap();
        assert_eq!(l.authgate_peak_rps, Some(10_000.0));
        assert_eq!(l.offered_rate, Some(5000.0));
        let added = l.added_p99_ms.unwrap();
        assert!((added.median - 0.8).abs() < 1e-9);
        assert!((added.min - 0.5).abs() < 1e-9 && (added.max - 2.0).abs() < 1e-9);
        assert_eq!(l.met, Some(true));
        assert_eq!(l.per_round.len(), 3);
        assert!((l.per_round[1]["added_p99_ms"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        assert!(l.per_round[1]["nginx_added_p99_ms"].is_null());
        let n = l.nginx_added_p99_ms.unwrap();
        assert!((n.median - 0.2).abs() < 1e-9 && n.n == 1);
        let ag = &l.paths[1];
        assert_eq!(ag.server, "authgate");
        assert!((ag.p999_ms.unwrap().median - 3.6).abs() < 1e-9);
        assert_eq!(latency_summary(&runs, 0.5).unwrap().met, Some(false));
        // The vs-nginx tables leave the latency runs out.
        assert!(summarise(&runs).0.is_empty());
    }
}
