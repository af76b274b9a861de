//! The access log written outside `tracing`: each line is formatted by hand
//! straight into one shared buffer, and the buffer goes to the log writer
//! in batches (at 32 KiB, or every 100 ms), so a request costs a format and
//! a short lock instead of a `tracing` event and a channel message.
//!
//! The writer (given to [`install`]; the binary's is a `tracing-appender`
//! thread of its own, sharing a locked stderr with the one of the other
//! lines, so they never interleave inside a line) never blocks: a batch it
//! has no room for is dropped and its lines counted ([`dropped`]). Lines still in the buffer are lost
//! only if the process is killed (at most 100 ms' worth); a graceful exit
//! flushes them ([`Flush`]).
//!
//! Without [`install`] (tests, library use) lines go through `tracing` as
//! before, with the same fields.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use http::Method;

use crate::config::LogFormat;

/// A batch goes to the writer at this size.
const BATCH: usize = 32 * 1024;
/// Or after this long.
const TICK: Duration = Duration::from_millis(100);

/// One access line's fields (all token-free).
#[derive(Debug)]
pub struct Line<'a> {
    /// Client address.
    pub peer: SocketAddr,
    /// Method.
    pub method: &'a Method,
    /// Path, without its query.
    pub path: &'a str,
    /// Matched route prefix, or "".
    pub route: &'a str,
    /// User, or "".
    pub user: &'a str,
    /// How many groups.
    pub groups: usize,
    /// `mtls`, `token` or `none`.
    pub auth: &'a str,
    /// Response status.
    pub status: u16,
    /// `allowed` or the refusal's reason.
    pub reason: &'a str,
    /// Token-free detail of a refusal.
    pub detail: &'a str,
    /// Microseconds to the response head.
    pub latency_us: u64,
    /// What the token cache did.
    pub token_cache: &'a str,
    /// What the access cache did.
    pub access_cache: &'a str,
    /// The listener's name with several listeners; "" (and no field) with one.
    pub listener: &'a str,
    /// Served in a dry run (`dry_run=true`) that, enforced, would refuse it
    /// for this reason; the fields are left out otherwise.
    pub would_refuse: Option<&'a str>,
}

/// Where batches go: the log writer.
type Out = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

struct Sink {
    format: LogFormat,
    buf: Mutex<Batch>,
    /// Held while a batch is handed over: one at a time, in order.
    out: Mutex<Out>,
}

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

static SINK: OnceLock<Arc<Sink>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Flushes the buffer when dropped (keep it until the log writer's guard).
#[must_use = "dropping it flushes and stops nothing else; keep it until exit"]
pub struct Flush(Option<Arc<Sink>>);

impl Drop for Flush {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.flush();
        }
    }
}

/// Sends access lines, formatted as `format`, to `out` (which writes a
/// batch without blocking and says whether it took it), if the log level
/// lets `authgate::access` lines through at all. Call once, after the
/// `tracing` subscriber is set; later calls change nothing.
pub fn install(format: LogFormat, out: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Flush {
    if !tracing::enabled!(target: "authgate::access", tracing::Level::INFO) {
        return Flush(None);
    }
    let sink = Arc::new(Sink {
        format,
        buf: Mutex::new(Batch::default()),
        out: Mutex::new(Box::new(out)),
    });
    if SINK.set(sink.clone()).is_err() {
        return Flush(None);
    }
    let ticking = Arc::downgrade(&sink);
    let _ = std::thread::Builder::new()
        .name("authgate-access".into())
        .spawn(move || {
            while let Some(s) = ticking.upgrade() {
                s.flush();
                drop(s);
                std::thread::sleep(TICK);
            }
        });
    Flush(Some(sink))
}

/// Access lines dropped because the log writer had no room for them.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Logs `line`.
pub fn write(line: &Line<'_>) {
    let Some(sink) = SINK.get() else {
        via_tracing(line);
        return;
    };
    let full = {
        let mut b = sink.buf.lock().unwrap_or_else(|e| e.into_inner());
        match sink.format {
            LogFormat::Text => text(&mut b.bytes, line, SystemTime::now()),
            LogFormat::Json => json(&mut b.bytes, line, SystemTime::now()),
        }
        b.lines += 1;
        (b.bytes.len() >= BATCH).then(|| std::mem::take(&mut *b))
    };
    if let Some(batch) = full {
        sink.send(&batch);
    }
}

impl Sink {
    fn flush(&self) {
        let batch = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.bytes.is_empty() {
            self.send(&batch);
        }
    }

    fn send(&self, batch: &Batch) {
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if !(out)(&batch.bytes) {
            DROPPED.fetch_add(batch.lines, Ordering::Relaxed);
        }
    }
}

/// The line as `tracing`'s text formatter writes an event (no colours).
fn text(out: &mut Vec<u8>, l: &Line<'_>, now: SystemTime) {
    let _ = writeln!(
        out,
        "{}  INFO authgate::access: peer={} method={} path={:?} route={:?} user={:?} \
         groups={} auth={:?} status={} reason={:?} detail={:?} latency_us={} \
         token_cache={:?} access_cache={:?}{}",
        humantime::format_rfc3339_micros(now),
        l.peer,
        l.method,
        l.path,
        l.route,
        l.user,
        l.groups,
        l.auth,
        l.status,
        l.reason,
        l.detail,
        l.latency_us,
        l.token_cache,
        l.access_cache,
        l.would_refuse
            .map(|r| format!(" dry_run=true would_refuse={r:?}"))
            .unwrap_or_default(),
    );
    if !l.listener.is_empty() {
        // Before the newline `writeln!` wrote.
        out.pop();
        let _ = writeln!(out, " listener={:?}", l.listener);
    }
}

/// The line as `tracing`'s JSON formatter writes an event (flattened).
fn json(out: &mut Vec<u8>, l: &Line<'_>, now: SystemTime) {
    let s = |out: &mut Vec<u8>, key: &str, v: &str| {
        let _ = write!(out, ",\"{key}\":");
        let _ = serde_json::to_writer(&mut *out, v);
    };
    let _ = write!(
        out,
        "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"peer\":\"{}\"",
        humantime::format_rfc3339_micros(now),
        l.peer
    );
    s(out, "method", l.method.as_str());
    s(out, "path", l.path);
    s(out, "route", l.route);
    s(out, "user", l.user);
    let _ = write!(out, ",\"groups\":{}", l.groups);
    s(out, "auth", l.auth);
    let _ = write!(out, ",\"status\":{}", l.status);
    s(out, "reason", l.reason);
    s(out, "detail", l.detail);
    let _ = write!(out, ",\"latency_us\":{}", l.latency_us);
    s(out, "token_cache", l.token_cache);
    s(out, "access_cache", l.access_cache);
    if !l.listener.is_empty() {
        s(out, "listener", l.listener);
    }
    if let Some(r) = l.would_refuse {
        out.extend_from_slice(b",\"dry_run\":true");
        s(out, "would_refuse", r);
    }
    out.extend_from_slice(b",\"target\":\"authgate::access\"}\n");
}

fn via_tracing(l: &Line<'_>) {
    // Optional fields are left out when `None`, as in the batched lines.
    tracing::info!(
        target: "authgate::access",
        peer = %l.peer,
        method = %l.method,
        path = l.path,
        route = l.route,
        user = l.user,
        groups = l.groups,
        auth = l.auth,
        status = l.status,
        reason = l.reason,
        detail = l.detail,
        latency_us = l.latency_us,
        token_cache = l.token_cache,
        access_cache = l.access_cache,
        listener = (!l.listener.is_empty()).then_some(l.listener),
        dry_run = l.would_refuse.map(|_| true),
        would_refuse = l.would_refuse,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(path: &'a str, user: &'a str) -> Line<'a> {
        Line {
            peer: "127.0.0.1:40000".parse().unwrap(),
            method: &Method::GET,
            path,
            route: "/",
            user,
            groups: 2,
            auth: "token",
            status: 200,
            reason: "allowed",
            detail: "",
            latency_us: 57,
            token_cache: "hit",
            access_cache: "none",
            listener: "",
            would_refuse: None,
        }
    }

    /// Hostile values stay inside their field: a quote, a backslash or a
    /// newline in a path or user cannot start a field or a line of its own.
    #[test]
    fn json_lines_escape_what_would_break_them() {
        let mut out = Vec::new();
        let evil = "/a\"b\\c\nd\u{7}";
        json(
            &mut out,
            &line(evil, "x\",\"user\":\"admin"),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["path"], evil);
        assert_eq!(v["user"], "x\",\"user\":\"admin");
        assert_eq!(v["target"], "authgate::access");
        assert_eq!(v["status"], 200);
        assert_eq!(v["groups"], 2);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn text_lines_quote_and_escape_strings() {
        let mut out = Vec::new();
        text(&mut out, &line("/a\"b\nc", "bob"), SystemTime::UNIX_EPOCH);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "1970-01-01T00:00:00.000000Z  INFO authgate::access: peer=127.0.0.1:40000 method=GET \
             path=\"/a\\\"b\\nc\" route=\"/\" user=\"bob\" groups=2 auth=\"token\" status=200 \
             reason=\"allowed\" detail=\"\" latency_us=57 token_cache=\"hit\" access_cache=\"none\"\n"
        );
    }

    /// With several listeners, each line names its listener (with one, the
    /// field is left out, so the lines are as they were).
    #[test]
    fn lines_name_the_listener_when_there_are_several() {
        let mut l = line("/", "bob");
        l.listener = "metrics";
        let mut out = Vec::new();
        text(&mut out, &l, SystemTime::UNIX_EPOCH);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with(" access_cache=\"none\" listener=\"metrics\"\n"),
            "{s}"
        );
        let mut out = Vec::new();
        json(&mut out, &l, SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["listener"], "metrics");
        let mut out = Vec::new();
        json(&mut out, &line("/", "bob"), SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("listener").is_none(), "{v}");
    }

    #[test]
    fn a_dry_run_line_says_so_and_why() {
        let mut l = line("/x", "bob");
        l.would_refuse = Some("token_forbidden");
        let mut out = Vec::new();
        text(&mut out, &l, SystemTime::UNIX_EPOCH);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.ends_with(" dry_run=true would_refuse=\"token_forbidden\"\n"),
            "{s}"
        );
        let mut out = Vec::new();
        json(&mut out, &l, SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["would_refuse"], "token_forbidden");
        let mut out = Vec::new();
        json(&mut out, &line("/x", "bob"), SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("dry_run").is_none());
    }

    /// A batch the writer refuses is counted line by line.
    #[test]
    fn a_refused_batch_counts_its_lines_as_dropped() {
        let sink = Sink {
            format: LogFormat::Json,
            buf: Mutex::new(Batch::default()),
            out: Mutex::new(Box::new(|_| false)),
        };
        for _ in 0..3 {
            let mut b = sink.buf.lock().unwrap();
            json(&mut b.bytes, &line("/", "bob"), SystemTime::now());
            b.lines += 1;
        }
        let before = dropped();
        sink.flush();
        assert_eq!(dropped() - before, 3);
        assert!(sink.buf.lock().unwrap().bytes.is_empty());
    }
}
