//! `authgate migration check --prometheus URL --route /x --quiet-for 7d`:
//! can `/x` be closed to bearer tokens without refusing anyone seen in the
//! window? Asked of Prometheus, which holds every replica's migration
//! gauges ([`super::export`]) for longer than any one process lives.
//!
//! Two instant queries, evaluated at the command's clock:
//!
//! ```text
//! max by (method)   (max_over_time(authgate_route_last_seen_timestamp_seconds{route="/x"}[W]))
//! max by (identity) (max_over_time(authgate_identity_last_seen_timestamp_seconds{route="/x",method="token"}[W]))
//! ```
//!
//! A gauge holds the last-seen time, so its maximum over the window and
//! across replicas is the last token use on the route anywhere; a value at
//! or after `now - W` is a use inside the window. The route query also
//! proves that some scraped replica has the route configured (each route
//! has its series from start-up, at 0); without it the answer is an error,
//! not a "nobody". The route's own gauge is the authority on "anyone": if it
//! saw a token in the window and the identity gauge names nobody
//! (`migration.track_identities` off), the answer is still "would break".
//!
//! Exit codes: 0 nobody would break, 1 someone would (listed with the last
//! time seen), 2 no answer (Prometheus unreachable or answering an error,
//! an unknown route, bad flags). Never 0 without an answer.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::report::OTHER;
use super::when::rfc3339_string;

/// Nobody seen in the window would be refused.
pub const EXIT_QUIET: u8 = 0;
/// Someone seen in the window would be refused.
pub const EXIT_WOULD_BREAK: u8 = 1;
/// No answer.
pub const EXIT_ERROR: u8 = 2;

/// The largest Prometheus answer read.
const MAX_BODY: usize = 16 << 20;

/// The flags of `authgate migration check`.
#[derive(Clone, Debug, clap::Args)]
pub struct CheckArgs {
    /// Prometheus base URL (`http://prometheus:9090`; https uses the
    /// system roots).
    #[arg(long)]
    pub prometheus: String,
    /// The route as configured (`routes[].path_prefix`).
    #[arg(long)]
    pub route: String,
    /// The window: nobody may have used a token on the route within it
    /// (`7d`, `36h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub quiet_for: Duration,
    /// Deadline of each query.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why there is no answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A flag is unusable.
    #[error("{0}")]
    Usage(String),
    /// Prometheus could not be reached, or did not answer in time.
    #[error("cannot reach Prometheus at {at}: {why}")]
    Unreachable {
        /// Scheme and authority.
        at: String,
        /// What failed.
        why: String,
    },
    /// Prometheus answered, but not with a result.
    #[error("Prometheus answered an error: {0}")]
    Answer(String),
    /// No scraped replica reports the route.
    #[error(
        "no authgate replica scraped by Prometheus reported route {0:?} within the window \
         (is it a configured routes[].path_prefix, and are the replicas scraped?)"
    )]
    UnknownRoute(String),
}

/// One identity that used a token on the route in the window.
#[derive(Debug, PartialEq)]
pub struct Breaker {
    /// User name (`other`: identities beyond `migration.max_identities`).
    pub identity: String,
    /// Last token use, Unix seconds.
    pub last_seen: i64,
}

/// The answer.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// No token use in the window; the last one, if any, before it.
    Quiet {
        /// Unix seconds, 0: never.
        last_token: i64,
    },
    /// Token use in the window.
    WouldBreak {
        /// Who, last seen first; empty when identities are not tracked.
        who: Vec<Breaker>,
        /// The route's last token use.
        last_token: i64,
    },
}

/// A PromQL string literal (double-quoted, escaped).
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The two queries: last use per method on the route, and last token use
/// per identity on it.
pub fn queries(route: &str, window: Duration) -> [String; 2] {
    let (r, w) = (literal(route), window.as_secs().max(1));
    [
        format!(
            "max by (method) (max_over_time(authgate_route_last_seen_timestamp_seconds{{route={r}}}[{w}s]))"
        ),
        format!(
            "max by (identity) (max_over_time(authgate_identity_last_seen_timestamp_seconds{{route={r},method=\"token\"}}[{w}s]))"
        ),
    ]
}

/// The samples of an instant-vector answer: (label, value) pairs keyed by
/// the one label each query groups by.
pub fn parse_vector(body: &[u8], label: &str) -> Result<Vec<(String, f64)>, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::Answer(format!("not a Prometheus API answer ({e})")))?;
    if v["status"] != "success" {
        return Err(Error::Answer(format!(
            "{}: {}",
            v["errorType"].as_str().unwrap_or("status is not success"),
            v["error"].as_str().unwrap_or("-")
        )));
    }
    // A partial answer (a store down behind Thanos or Mimir) may leave out
    // exactly the replica that saw a token: no answer, never "nobody".
    if let Some(w) = v["warnings"].as_array().filter(|w| !w.is_empty()) {
        return Err(Error::Answer(format!(
            "a partial answer, with warnings: {w:?}"
        )));
    }
    if v["data"]["resultType"] != "vector" {
        return Err(Error::Answer("the result is not an instant vector".into()));
    }
    let rows = v["data"]["result"]
        .as_array()
        .ok_or_else(|| Error::Answer("no result list".into()))?;
    rows.iter()
        .map(|r| {
            let key = r["metric"][label].as_str().unwrap_or_default().to_owned();
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| Error::Answer(format!("a sample without a value: {r}")))?;
            Ok((key, value))
        })
        .collect()
}

/// Decides from the two answers, at `now` (Unix seconds).
pub fn verdict(
    route: &str,
    by_method: &[(String, f64)],
    by_identity: &[(String, f64)],
    now: i64,
    window: Duration,
) -> Result<Verdict, Error> {
    if by_method.is_empty() {
        return Err(Error::UnknownRoute(route.to_owned()));
    }
    let cutoff = now.saturating_sub(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
    // Timestamps are whole seconds; NaN or negative reads as never.
    #[expect(clippy::cast_possible_truncation, reason = "Unix seconds fit an i64")]
    let secs = |v: f64| {
        if v.is_finite() && v > 0.0 {
            v as i64
        } else {
            0
        }
    };
    let last_token = by_method
        .iter()
        .filter(|(m, _)| m == "token")
        .map(|(_, v)| secs(*v))
        .max()
        .unwrap_or(0);
    let recent = |t: i64| t > 0 && t >= cutoff;
    let mut who: Vec<Breaker> = by_identity
        .iter()
        .map(|(id, v)| Breaker {
            identity: id.clone(),
            last_seen: secs(*v),
        })
        .filter(|b| recent(b.last_seen))
        .collect();
    who.sort_by(|a, b| (b.last_seen, &a.identity).cmp(&(a.last_seen, &b.identity)));
    // Either gauge seeing a token in the window is enough to say no.
    Ok(if recent(last_token) || !who.is_empty() {
        Verdict::WouldBreak { who, last_token }
    } else {
        Verdict::Quiet { last_token }
    })
}

/// What to print and the exit code.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code ([`EXIT_QUIET`], [`EXIT_WOULD_BREAK`], [`EXIT_ERROR`]).
    pub code: u8,
    /// For stdout.
    pub stdout: String,
    /// For stderr.
    pub stderr: String,
}

/// The verdict as text and an exit code.
pub fn describe(route: &str, window: Duration, v: &Verdict) -> Outcome {
    let w = humantime::format_duration(window);
    let when = |t: i64| {
        if t > 0 {
            rfc3339_string(t)
        } else {
            "never".to_owned()
        }
    };
    match v {
        Verdict::Quiet { last_token } => Outcome {
            code: EXIT_QUIET,
            stdout: format!(
                "route {route}: no bearer token within the last {w} (last token: {}); \
                 closing it to tokens refuses nobody seen in that window\n",
                when(*last_token)
            ),
            stderr: String::new(),
        },
        Verdict::WouldBreak { who, last_token } => {
            let mut out = format!(
                "route {route}: bearer tokens used within the last {w} (last: {}); \
                 closing it to tokens would refuse:\n{:<48} LAST_SEEN\n",
                when(*last_token),
                "IDENTITY"
            );
            for b in who {
                let note = if b.identity == OTHER {
                    "  (identities beyond migration.max_identities)"
                } else {
                    ""
                };
                let _ = writeln!(out, "{:<48} {}{note}", b.identity, when(b.last_seen));
            }
            if who.is_empty() {
                out.push_str(
                    "(unnamed: the replicas do not label identities; set migration.track_identities)\n",
                );
            }
            Outcome {
                code: EXIT_WOULD_BREAK,
                stdout: out,
                stderr: String::new(),
            }
        }
    }
}

/// Runs the check.
pub async fn run(args: &CheckArgs) -> Outcome {
    match answer(args).await {
        Ok(v) => describe(&args.route, args.quiet_for, &v),
        Err(e) => Outcome {
            code: EXIT_ERROR,
            stdout: String::new(),
            stderr: format!("authgate migration check: {e}; no answer\n"),
        },
    }
}

async fn answer(args: &CheckArgs) -> Result<Verdict, Error> {
    if args.quiet_for.is_zero() {
        return Err(Error::Usage("--quiet-for must be longer than 0s".into()));
    }
    let base = args.prometheus.trim_end_matches('/');
    let uri: Uri = base
        .parse()
        .map_err(|e| Error::Usage(format!("--prometheus {base:?} is not a URL: {e}")))?;
    let at = match (uri.scheme_str(), uri.host()) {
        (Some(s @ ("http" | "https")), Some(h)) => {
            format!(
                "{s}://{h}{}",
                uri.port().map_or(String::new(), |p| format!(":{p}"))
            )
        }
        _ => {
            return Err(Error::Usage(format!(
                "--prometheus {base:?} is not an http(s) URL"
            )));
        }
    };
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = i64::try_from(clock.as_secs()).unwrap_or(i64::MAX);
    // Evaluated at this instant to the millisecond: a whole second would
    // leave out the samples of its fraction.
    let at_time = format!("{}.{:03}", clock.as_secs(), clock.subsec_millis());
    let client = client()?;
    let [by_method, by_identity] = queries(&args.route, args.quiet_for);
    let get = |q: String| {
        let url = format!(
            "{base}/api/v1/query?query={}&time={at_time}",
            utf8_percent_encode(&q, NON_ALPHANUMERIC)
        );
        query(&client, url, &at, args.timeout)
    };
    let by_method = parse_vector(&get(by_method).await?, "method")?;
    let by_identity = parse_vector(&get(by_identity).await?, "identity")?;
    verdict(&args.route, &by_method, &by_identity, now, args.quiet_for)
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<bytes::Bytes>,
>;

fn client() -> Result<Client, Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let tls = rustls::ClientConfig::builder()
        .with_platform_verifier()
        .map_err(|e| Error::Usage(format!("the system roots cannot be loaded: {e}")))?
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// One query: the body of a 2xx answer, or why not. Prometheus answers
/// errors (400 bad query, 422 cannot execute, 503 overloaded) with a JSON
/// body, read for its message.
async fn query(
    client: &Client,
    url: String,
    at: &str,
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let unreachable = |why: String| Error::Unreachable {
        at: at.to_owned(),
        why,
    };
    let req = Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| Error::Usage(format!("--prometheus: {e}")))?;
    let fetch = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, Error>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        unreachable(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        ))
    })??;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    Err(match parse_vector(&body, "") {
        Err(Error::Answer(why)) if body.first() == Some(&b'{') => {
            Error::Answer(format!("HTTP {status}, {why}"))
        }
        _ => Error::Answer(format!("HTTP {status}")),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
