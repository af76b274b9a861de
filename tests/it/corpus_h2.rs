//! Bad-input corpus, HTTP/2 (ALPN h2) with hand-made frames: rapid reset,
//! header-list and CONTINUATION floods, malformed requests, spoofed identity
//! headers, and clients that never finish the connection preface.
//!
//! Frames are written by hand (HPACK literals without Huffman coding), so
//! inputs that the h2 crate's client refuses to produce reach the server.

use std::time::{Duration, Instant};

use testkit::raw::{self, Until};
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("frame length")
        .to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 5.1).
fn hpack_int(n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(u8::try_from(v).expect("small"));
        return;
    }
    out.push(u8::try_from(max).expect("small"));
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).expect("small") | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).expect("small"));
}

/// A header block of literal fields without indexing, byte for byte.
fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        hpack_int(7, name.len(), &mut out);
        out.extend_from_slice(name);
        hpack_int(7, value.len(), &mut out);
        out.extend_from_slice(value);
    }
    out
}

/// `GET path` pseudo-headers, then `extra`.
fn get_block(path: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path.as_bytes()),
    ];
    fields.extend_from_slice(extra);
    block(&fields)
}

/// A whole request: HEADERS, then CONTINUATION frames of at most 16 KiB.
fn request(stream: u32, block: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let mut flags = if i == 0 { END_STREAM } else { 0 };
        if i + 1 == chunks.len() {
            flags |= END_HEADERS;
        }
        out.extend(frame(kind, flags, stream, chunk));
    }
    out
}

/// The `:status` of a response block. h2 sends it first: indexed (200, 204,
/// 206, 304, 400, 404, 500) or a Huffman-coded literal.
fn status_of(b: &[u8]) -> Option<u16> {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let b = &b[b.iter().take_while(|x| *x & 0xe0 == 0x20).count()..];
    let first = *b.first()?;
    if first & 0x80 != 0 {
        let index = usize::from(first & 0x7f).checked_sub(8)?;
        return STATIC.get(index).copied();
    }
    let len = *b.get(1)?;
    let value = b.get(2..2 + usize::from(len & 0x7f))?;
    if len & 0x80 == 0 {
        return std::str::from_utf8(value).ok()?.parse().ok();
    }
    // Huffman codes of the digits (RFC 7541 appendix B): 0-2 have five bits
    // (00000..00010), 3-9 six (011001..011111).
    let bits: Vec<u8> = value
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1))
        .collect();
    let (mut at, mut digits) = (0, String::new());
    while bits.len() - at >= 5 {
        let five = bits[at..at + 5].iter().fold(0u8, |a, b| a << 1 | b);
        if five < 3 {
            digits.push(char::from(b'0' + five));
            at += 5;
        } else if (12..16).contains(&five) && bits.len() - at >= 6 {
            digits.push(char::from(b'0' + (five << 1 | bits[at + 5]) - 22));
            at += 6;
        } else {
            break; // EOS padding
        }
    }
    digits.parse().ok()
}

/// What the server did about a stream, or the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Status(u16),
    Reset(u32),
    GoAway(u32),
    Closed,
    Quiet,
}

impl Ev {
    /// A stream reset or connection error with a non-zero code.
    fn refused(&self) -> bool {
        matches!(self, Self::Reset(c) | Self::GoAway(c) if *c != 0)
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A raw HTTP/2 connection: a writer task and a frame reader.
struct H2 {
    rd: tokio::io::ReadHalf<Tls>,
    tx: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    buf: Vec<u8>,
    /// Answer SETTINGS and PINGs (off while a header block is unfinished).
    ack: bool,
}

impl H2 {
    /// TLS with ALPN h2, then `first` (normally the preface and SETTINGS).
    async fn open_with(env: &Env, first: Vec<u8>) -> Self {
        let tls = env.client().http2().connect().await.expect("TLS with h2");
        let (rd, mut wr) = tokio::io::split(tls);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
        });
        let h2 = Self {
            rd,
            tx,
            buf: Vec::new(),
            ack: true,
        };
        h2.send(first);
        h2
    }

    async fn open(env: &Env) -> Self {
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface.extend(frame(SETTINGS, 0, 0, &[]));
        Self::open_with(env, preface).await
    }

    fn send(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(bytes);
    }

    /// The next frame as (type, flags, stream, payload).
    async fn frame(&mut self, until: tokio::time::Instant) -> Result<(u8, u8, u32, Vec<u8>), Ev> {
        loop {
            if self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let id = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Ok((f[3], f[4], id, f[9..].to_vec()));
                }
            }
            let mut chunk = vec![0u8; 32 * 1024];
            match tokio::time::timeout_at(until, self.rd.read(&mut chunk)).await {
                Err(_) => return Err(Ev::Quiet),
                Ok(Ok(0) | Err(_)) => return Err(Ev::Closed),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until `stream` gets a status or a reset, the connection gets a
    /// GOAWAY or closes, or `wait` passes.
    async fn outcome(&mut self, stream: u32, wait: Duration) -> Ev {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let (kind, flags, id, payload) = match self.frame(until).await {
                Ok(f) => f,
                Err(ev) => return ev,
            };
            let code = |at: usize| u32::from_be_bytes(payload[at..at + 4].try_into().expect("4"));
            match kind {
                SETTINGS if flags & 1 == 0 && self.ack => self.send(frame(SETTINGS, 1, 0, &[])),
                PING if flags & 1 == 0 && self.ack => self.send(frame(PING, 1, 0, &payload)),
                HEADERS if id == stream => return Ev::Status(status_of(&payload).unwrap_or(0)),
                RST_STREAM if id == stream => return Ev::Reset(code(0)),
                GOAWAY => return Ev::GoAway(code(4)),
                _ => {}
            }
        }
    }
}

/// A good request over HTTP/1.1 and one over HTTP/2 both get 200, and are
/// the only new requests the upstream sees.
async fn assert_still_serves_both(env: &Env, case: &str) {
    raw::assert_still_serves(env, case).await;
    let before = env.upstream.count();
    let r = env
        .client()
        .http2()
        .get_with_token("/api/x", BOB_TOKEN)
        .await;
    let status = r.map(|r| r.status.as_u16());
    assert_eq!(status, Ok(200), "{case}: good HTTP/2 request afterwards");
    assert_eq!(env.upstream.count(), before + 1, "{case}");
}

/// Runs each case on a new connection: `(name, bytes after the preface,
/// stream to watch, expected event)`.
async fn run(env: &Env, cases: Vec<(&str, Vec<u8>, u32, Ev)>) {
    for (case, bytes, stream, want) in cases {
        let before = env.upstream.count();
        let mut c = H2::open(env).await;
        c.send(bytes);
        let got = c.outcome(stream, TIMEOUT).await;
        if want == Ev::Reset(0) {
            assert!(
                got.refused(),
                "{case}: want a reset or GOAWAY with an error, got {got:?}"
            );
        } else {
            assert_eq!(got, want, "{case}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(env.upstream.count(), before, "{case}: reached the upstream");
        assert_still_serves_both(env, case).await;
    }
}

#[tokio::test]
async fn http2_floods_are_cut_and_the_server_stays_healthy() {
    let env = Env::start(|_| {}).await;
    let auth = format!("Bearer {BOB_TOKEN}");
    let a: (&[u8], &[u8]) = (b"authorization", auth.as_bytes());
    let anonymous = get_block("/api/x", &[]);
    let rapid_reset: Vec<u8> = (0..1000u32)
        .flat_map(|i| {
            let id = 2 * i + 1;
            let open = frame(HEADERS, END_STREAM | END_HEADERS, id, &anonymous);
            [open, frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes())].concat()
        })
        .collect();
    let big = "a".repeat(40_000);
    let mib = "a".repeat(1 << 20);
    let names: Vec<String> = (0..10_000).map(|i| format!("x-h{i}")).collect();
    let mut many = vec![a];
    many.extend(names.iter().map(|n| (n.as_bytes(), &b"v"[..])));
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end it.
    let open = frame(HEADERS, END_STREAM, 1, &get_block("/api/x", &[a]));
    let filler = block(&[(b"x-f", &[b'f'; 100])]);
    let flood = |payload: &[u8]| -> Vec<u8> {
        let tail = (0..10_000).flat_map(|_| frame(CONTINUATION, 0, 1, payload));
        open.iter().copied().chain(tail).collect()
    };
    let calm = Ev::GoAway(ENHANCE_YOUR_CALM);
    let cases = vec![
        ("rapid_reset_of_1000_streams", rapid_reset, u32::MAX, calm),
        (
            "header_list_over_the_limit",
            request(1, &get_block("/api/x", &[a, (b"x-big", big.as_bytes())])),
            1,
            Ev::Status(431),
        ),
        (
            "ten_thousand_headers",
            request(1, &get_block("/api/x", &many)),
            1,
            Ev::Status(431),
        ),
        (
            "one_mib_header_value",
            request(1, &get_block("/api/x", &[a, (b"x-big", mib.as_bytes())])),
            1,
            calm,
        ),
        ("continuation_flood_of_empty_frames", flood(&[]), 1, calm),
        (
            "continuation_flood_of_small_frames",
            flood(&filler),
            1,
            calm,
        ),
    ];
    run(&env, cases).await;
}

#[tokio::test]
async fn malformed_http2_requests_are_refused_before_any_backend() {
    let env = Env::start(|_| {}).await;
    let auth = format!("Bearer {BOB_TOKEN}");
    let a: (&[u8], &[u8]) = (b"authorization", auth.as_bytes());
    let get = |path: &str, extra: &[(&[u8], &[u8])]| request(1, &get_block(path, extra));
    let pseudo = |method: &[u8], path: Option<&[u8]>| {
        let mut f: Vec<(&[u8], &[u8])> = vec![(b":method", method), (b":scheme", b"https")];
        f.push((b":authority", b"evil.example:443"));
        f.extend(path.map(|p| (&b":path"[..], p)));
        f.push(a);
        frame(HEADERS, END_STREAM | END_HEADERS, 1, &block(&f))
    };
    let connect = [
        (&b":method"[..], &b"CONNECT"[..]),
        (b":authority", b"evil.example:443"),
        a,
    ];
    let connect = frame(HEADERS, END_STREAM | END_HEADERS, 1, &block(&connect));
    let refused = Ev::Reset(0); // any stream reset or GOAWAY with an error code
    #[rustfmt::skip]
    let cases = vec![
        ("nul_in_authorization_value", get("/api/x", &[(b"authorization", b"Bearer bob\0tok")]), 1, refused),
        ("cr_in_authorization_value", get("/api/x", &[(b"authorization", b"Bearer bob\rtok")]), 1, refused),
        ("lf_in_authorization_value", get("/api/x", &[(b"authorization", b"Bearer bob\ntok")]), 1, refused),
        ("upper_case_identity_header_name", get("/api/x", &[a, (b"X-Remote-User", b"mallory")]), 1, refused),
        ("connection_specific_header", get("/api/x", &[a, (b"connection", b"keep-alive")]), 1, refused),
        ("transfer_encoding_header", get("/api/x", &[a, (b"transfer-encoding", b"chunked")]), 1, refused),
        ("te_other_than_trailers", get("/api/x", &[a, (b"te", b"gzip")]), 1, refused),
        ("unknown_pseudo_header", get("/api/x", &[(b":evil", b"1"), a]), 1, refused),
        ("pseudo_header_after_a_regular_header", get("/api/x", &[a, (b":path", b"/admin")]), 1, refused),
        ("missing_path", pseudo(b"GET", None), 1, refused),
        ("empty_path", get("", &[a]), 1, refused),
        ("nul_in_path", get("/api/\0x", &[a]), 1, refused),
        ("invalid_hpack_index", frame(HEADERS, END_STREAM | END_HEADERS, 1, &[0xff, 0xff, 0xff, 0x7f]), 1, refused),
        ("http1_request_after_the_preface", b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 1, refused),
        ("connect_method", connect, 1, Ev::Status(400)),
        ("connect_with_scheme_and_path", pseudo(b"CONNECT", Some(b"/api/x")), 1, refused),
        ("asterisk_path", pseudo(b"OPTIONS", Some(b"*")), 1, Ev::Status(400)),
        ("dot_dot_into_admin", get("/api/../admin", &[a]), 1, Ev::Status(403)),
        ("encoded_slash_in_path", get("/api%2fx", &[a]), 1, Ev::Status(400)),
        ("basic_authorization", get("/api/x", &[(b"authorization", b"Basic Ym9iOnB3")]), 1, Ev::Status(401)),
        ("duplicated_authorization", get("/api/x", &[a, a]), 1, Ev::Status(401)),
    ];
    run(&env, cases).await;
    // An HTTP/1.1 request instead of the preface.
    let h1 = b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let got = H2::open_with(&env, h1).await.outcome(1, TIMEOUT).await;
    assert!(
        got.refused() || got == Ev::Closed,
        "http1_instead_of_the_preface: {got:?}"
    );
    assert_still_serves_both(&env, "http1_instead_of_the_preface").await;
}

#[tokio::test]
async fn spoofed_identity_headers_over_http2_never_reach_the_upstream() {
    let env = Env::start(|_| {}).await;
    let auth = format!("Bearer {BOB_TOKEN}");
    #[rustfmt::skip]
    let fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"evil.example"), (b":path", b"/api/x"),
        (b"authorization", auth.as_bytes()),
        (b"x-remote-user", b"mallory-SPOOF"), (b"x-remote-user", b"eve-SPOOF"),
        (b"x-remote-group", b"system:masters SPOOF"), (b"x-remote-group", b"SPOOF"),
        (b"x-remote-uid", b"0-SPOOF"), (b"x-remote-extra-scopes", b"SPOOF"),
        (b"impersonate-user", b"admin-SPOOF"), (b"impersonate-group", b"SPOOF"), (b"impersonate-group", b"SPOOF"),
        (b"impersonate-uid", b"SPOOF"), (b"impersonate-extra-scopes", b"SPOOF"),
        (b"x-forwarded-client-cert", b"Hash=SPOOF"), (b"x-forwarded-client-cert", b"SPOOF"),
        (b"client-cert", b":SPOOF:"), (b"client-cert-chain", b":SPOOF:"),
        (b"ssl-client-verify", b"SUCCESS SPOOF"), (b"x-ssl-client-cert", b"SPOOF"),
    ];
    let mut c = H2::open(&env).await;
    c.send(request(1, &block(&fields)));
    assert_eq!(c.outcome(1, TIMEOUT).await, Ev::Status(200));
    assert_eq!(env.upstream.count(), 1);
    let seen = env.upstream.last();
    assert_eq!(seen.all("x-remote-user"), ["bob"]);
    assert_eq!(seen.all("x-remote-group"), ["dev", "system:authenticated"]);
    assert_eq!(seen.all("x-remote-uid"), ["1001"]);
    assert_eq!(
        seen.all("host"),
        [env.upstream.addr.to_string()],
        "upstream Host"
    );
    let banned = [
        "x-remote-extra-",
        "impersonate-",
        "x-forwarded-client-cert",
        "client-cert",
    ];
    for (name, value) in &seen.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains("SPOOF"),
            "{name}: {value} reached the upstream"
        );
        let name = name.as_str();
        assert!(
            !banned.iter().any(|b| name.starts_with(b)),
            "{name} reached the upstream"
        );
        assert!(
            !name.contains("ssl-client") && name != "authorization",
            "{name}"
        );
    }
    assert_still_serves_both(&env, "spoofed identity headers over HTTP/2").await;
}

/// A 1 s idle timeout (and 1 s handshake and header timeouts).
async fn idle_env() -> Env {
    let limits = "limits: {idle_timeout: 1s, handshake_timeout: 1s, header_read_timeout: 1s}\n";
    Env::start(|y| y.rest = limits.into()).await
}

#[tokio::test]
async fn silent_http2_connections_get_goaway_near_the_idle_timeout() {
    let env = idle_env().await;
    for case in [
        "preface_then_silence",
        "unfinished_header_block_then_silence",
    ] {
        let start = Instant::now();
        let mut c = H2::open(&env).await;
        if case == "unfinished_header_block_then_silence" {
            c.ack = false; // anything but CONTINUATION would be a protocol error
            c.send(frame(HEADERS, END_STREAM, 1, &get_block("/api/x", &[])));
        }
        let got = c.outcome(1, Duration::from_secs(6)).await;
        assert_eq!(got, Ev::GoAway(0), "{case}");
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_millis(3500),
            "{case}: GOAWAY after {elapsed:?}"
        );
        let before = env.upstream.count();
        raw::assert_still_serves(&env, case).await;
        assert_eq!(env.upstream.count(), before + 1, "{case}");
    }
}

#[tokio::test]

async fn http2_connections_that_never_finish_the_preface_are_closed_and_free_their_slot() {
    let limits = "limits: {idle_timeout: 1s, handshake_timeout: 1s, header_read_timeout: 1s, max_connections: 2}\n";
    let env = Env::start(|y| y.rest = limits.into()).await;
    let cases = [
        ("no_preface_at_all", &b""[..]),
        ("half_a_preface", b"PRI * HTTP/2.0\r\n"),
    ];
    let mut waiting = Vec::new();
    for (case, bytes) in cases {
        let tls = env.client().http2().connect().await.unwrap();
        let wait = Until::Close(Duration::from_secs(6));
        waiting.push((case, tokio::spawn(raw::exchange(tls, bytes.to_vec(), wait))));
    }
    for (case, task) in waiting {
        let reply = task.await.unwrap();
        assert!(reply.closed, "{case}: still open after 6 s");
    }
    // Both slots of max_connections must be free again.
    raw::assert_still_serves(&env, "after the silent HTTP/2 clients").await;
}
