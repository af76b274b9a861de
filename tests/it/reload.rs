//! Hot reload of TLS material as kubelet updates a mounted Secret: an atomic
//! `..data` symlink swap. Rotations under load, bad files, CRL updates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::*;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A directory laid out like a Secret volume: `name -> ..data/name`,
/// `..data -> ..<version>/`.
struct SecretDir {
    dir: PathBuf,
    version: usize,
}

impl SecretDir {
    fn new(root: &Path) -> Self {
        let dir = root.join("secret");
        std::fs::create_dir_all(&dir).expect("secret dir");
        Self { dir, version: 0 }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn publish_owned(&mut self, files: &[(String, Vec<u8>)]) {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_slice()))
            .collect();
        self.publish(&refs);
    }

    /// Publishes a new version of every file at once, as kubelet does.
    fn publish(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let data = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&data)).expect("version dir");
        for (name, content) in files {
            std::fs::write(self.dir.join(&data).join(name), content).expect("write");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        for (name, _) in files {
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
                    .expect("file link");
            }
        }
    }
}

/// The files of a Secret with a serving pair (serial `serial`), the bundle
/// and the CRL given to the returned function.
fn crl_secret(pki: &Pki, serial: u64) -> impl Fn(&PathBuf) -> Vec<(String, Vec<u8>)> + use<> {
    let (crt, key) = pki.server_pair(serial);
    let bundle = read(&pki.bundle_file);
    move |crl| {
        vec![
            ("tls.crt".to_owned(), crt.clone().into_bytes()),
            ("tls.key".to_owned(), key.clone().into_bytes()),
            ("ca.crt".to_owned(), bundle.clone()),
            ("ca.crl".to_owned(), read(crl)),
        ]
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read")
}

/// The serial the server presents on a new handshake.
async fn served_serial(client: &Client) -> String {
    let tls = client.connect().await.expect("connect");
    let leaf = tls.get_ref().1.peer_certificates().expect("server certs")[0].clone();
    let (_, cert) = X509Certificate::from_der(&leaf).expect("parse");
    cert.raw_serial_as_string()
}

/// Requests on new connections in a loop, counting outcomes.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(client: Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.get_with_token("/api/x", BOB_TOKEN).await {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        };
        Self {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Stops the loop; (succeeded, failed).
    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task");
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The rendered `y`, serving the certificate and key of `secret`.
fn serving_from_secret(y: &Yaml, pki: &Pki, secret: &SecretDir) -> String {
    y.render()
        .replace(
            &pki.server_cert.display().to_string(),
            &secret.path("tls.crt").display().to_string(),
        )
        .replace(
            &pki.server_key.display().to_string(),
            &secret.path("tls.key").display().to_string(),
        )
}

async fn start(pki: &Pki, secret: &SecretDir, upstream: &Upstream, crl: bool) -> Gate {
    let mut y = Yaml::new(pki, upstream.addr);
    y.tls_extra = format!(
        "  client_ca_file: {}\n  reload_interval: 1s\n",
        secret.path("ca.crt").display()
    );
    if crl {
        y.tls_extra.push_str(&format!(
            "  crl_files: [{}]\n",
            secret.path("ca.crl").display()
        ));
    }
    let text = serving_from_secret(&y, pki, secret);
    Gate::start(&text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_serving_cert_and_client_ca_under_load_fails_no_request() {
    let pki = Pki::new();
    let other = Pki::new();
    let upstream = Upstream::start().await;
    let mut secret = SecretDir::new(pki.path());
    let (crt, key) = pki.server_pair(1001);
    secret.publish(&[
        ("tls.crt", crt.as_bytes()),
        ("tls.key", key.as_bytes()),
        ("ca.crt", &read(&pki.ca_file)),
    ]);
    let gate = start(&pki, &secret, &upstream, false).await;
    let client = gate.client(&pki);
    assert_eq!(served_serial(&client).await, "03:e9");

    // A client loop on new connections, running through both rotations.
    let load = Load::start(client.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. New serving certificate.
    let (crt, key) = pki.server_pair(1002);
    let swapped = Instant::now();
    secret.publish(&[
        ("tls.crt", crt.as_bytes()),
        ("tls.key", key.as_bytes()),
        ("ca.crt", &read(&pki.ca_file)),
    ]);
    while served_serial(&client).await != "03:ea" {
        assert!(
            swapped.elapsed() < Duration::from_secs(3),
            "new serial not served within debounce + poll"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. New client CA: certificates of the old CA stop working, the new CA's start.
    let old_ca_client = client
        .clone()
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"])));
    let new_ca_client = client.clone().with_cert(&other.client(
        "alice2",
        &ClientOpts::cn("alice", &["dev"]).signer(Signer::Root),
    ));
    assert_eq!(old_ca_client.get("/api/x", &[]).await.unwrap().status, 200);
    assert!(new_ca_client.get("/api/x", &[]).await.is_err());
    secret.publish(&[
        ("tls.crt", crt.as_bytes()),
        ("tls.key", key.as_bytes()),
        ("ca.crt", &read(&other.ca_file)),
    ]);
    let swapped = Instant::now();
    while new_ca_client.get("/api/x", &[]).await.is_err() {
        assert!(
            swapped.elapsed() < Duration::from_secs(3),
            "new client CA not in service"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        old_ca_client.get("/api/x", &[]).await.is_err(),
        "the old CA is no longer trusted"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "{ok} requests succeeded");
    assert!(ok > 20);
    assert_eq!(
        gate.metric(r#"authgate_tls_reloads_total{result="success"}"#)
            .await,
        2.0
    );
}

#[tokio::test]
async fn a_corrupt_or_mismatched_file_keeps_the_old_material_in_service() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut secret = SecretDir::new(pki.path());
    let (crt, key) = pki.server_pair(2001);
    let ca = read(&pki.ca_file);
    secret.publish(&[
        ("tls.crt", crt.as_bytes()),
        ("tls.key", key.as_bytes()),
        ("ca.crt", &ca),
    ]);
    let gate = start(&pki, &secret, &upstream, false).await;
    let client = gate.client(&pki);
    let (_, other_key) = pki.server_pair(2002);
    let bad: [&[(&str, &[u8])]; 3] = [
        &[
            (
                "tls.crt",
                b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            ),
            ("tls.key", key.as_bytes()),
            ("ca.crt", &ca),
        ],
        &[
            ("tls.crt", crt.as_bytes()),
            ("tls.key", other_key.as_bytes()),
            ("ca.crt", &ca),
        ],
        &[
            ("tls.crt", crt.as_bytes()),
            ("tls.key", key.as_bytes()),
            ("ca.crt", b""),
        ],
    ];
    for (i, files) in bad.into_iter().enumerate() {
        secret.publish(files);
        let want = (i + 1) as f64;
        let deadline = Instant::now() + Duration::from_secs(3);
        while gate
            .metric(r#"authgate_tls_reloads_total{result="failure"}"#)
            .await
            < want
        {
            assert!(
                Instant::now() < deadline,
                "case {i}: the failure was not counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(served_serial(&client).await, "07:d1", "case {i}");
        assert_eq!(
            client
                .get_with_token("/api/x", BOB_TOKEN)
                .await
                .unwrap()
                .status,
            200,
            "case {i}"
        );
    }
    assert!(
        gate.metric("authgate_tls_reload_last_failure_timestamp_seconds")
            .await
            > 0.0
    );
    // Serving the last good material, but not ready: the files on disk are
    // not what is served.
    let (status, body) = gate.admin("GET", "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]tls_reload failed: the last reload failed"),
        "{body}"
    );
    // Good files again (a new serial): ready again.
    let (crt, key) = pki.server_pair(2003);
    secret.publish(&[
        ("tls.crt", crt.as_bytes()),
        ("tls.key", key.as_bytes()),
        ("ca.crt", &ca),
    ]);
    until_ready(&gate).await;
}

async fn until_ready(gate: &Gate) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.admin("GET", "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready after a good reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_serial_added_to_the_crl_is_refused_after_reload() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut secret = SecretDir::new(pki.path());
    let files = crl_secret(&pki, 3001);
    let first = files(&pki.crl_file("empty.crl", &[]));
    secret.publish_owned(&first);
    let gate = start(&pki, &secret, &upstream, true).await;
    let alice = gate
        .client(&pki)
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"]).serial(777)));
    assert_eq!(alice.get("/api/x", &[]).await.unwrap().status, 200);
    let revoked = files(&pki.crl_file("revoked.crl", &[777]));
    secret.publish_owned(&revoked);
    let deadline = Instant::now() + Duration::from_secs(3);
    while alice.get("/api/x", &[]).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "revoked certificate still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A CRL from a CA outside the bundle is refused; the good CRL stays in force.
    let stranger = Pki::new();
    let mut foreign = files(&pki.crl_file("revoked.crl", &[777]));
    foreign[3].1 = read(&stranger.crl_file("stranger.crl", &[]));
    secret.publish_owned(&foreign);
    let deadline = Instant::now() + Duration::from_secs(3);
    while gate
        .metric(r#"authgate_tls_reloads_total{result="failure"}"#)
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "foreign CRL not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(alice.get("/api/x", &[]).await.is_err(), "still revoked");
}

/// One keep-alive HTTP/1.1 (or HTTP/2) connection for several requests.
struct KeepAlive {
    send: KeepAliveSender,
}

enum KeepAliveSender {
    H1(hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>),
}

impl KeepAlive {
    async fn open(client: &Client, h2: bool) -> Self {
        let tls = client.connect().await.expect("TLS");
        let io = hyper_util::rt::TokioIo::new(tls);
        let send = if h2 {
            let (s, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            KeepAliveSender::H2(s)
        } else {
            let (s, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            KeepAliveSender::H1(s)
        };
        Self { send }
    }

    /// `GET path` on this connection: (status, reason, `Connection` header),
    /// or `Err` when the connection is gone.
    async fn get(&mut self, path: &str) -> Result<(u16, String, Option<String>), String> {
        let mut req = http::Request::get(path);
        if matches!(self.send, KeepAliveSender::H1(_)) {
            req = req.header("host", "localhost");
        } else {
            req = req.uri(format!("https://localhost{path}"));
        }
        let req = req.body(http_body_util::Empty::new()).expect("request");
        let sent = match &mut self.send {
            KeepAliveSender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                tokio::time::timeout(TIMEOUT, s.send_request(req)).await
            }
            KeepAliveSender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                tokio::time::timeout(TIMEOUT, s.send_request(req)).await
            }
        };
        let resp = sent
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let conn = resp
            .headers()
            .get("connection")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok((status, reason, conn))
    }
}

/// Successful reloads so far.
async fn reloads(gate: &Gate) -> f64 {
    gate.metric(r#"authgate_tls_reloads_total{result="success"}"#)
        .await
}

/// Waits until the gate has installed more than `before` reloads.
async fn reloaded(gate: &Gate, before: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while reloads(gate).await <= before {
        assert!(Instant::now() < deadline, "no reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After the refusal, the connection is closed: nothing more goes through it.
async fn assert_closed(conn: &mut KeepAlive) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match conn.get("/api/x").await {
            Err(_) => return,
            Ok((status, reason, _)) => {
                assert_ne!(status, 200, "served on a closed identity");
                assert!(reason.starts_with("cert_"), "{status} {reason}");
            }
        }
        assert!(Instant::now() < deadline, "connection still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_certificate_revoked_while_its_connection_is_open_is_refused_and_the_connection_closed() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut secret = SecretDir::new(pki.path());
    let files = crl_secret(&pki, 3002);
    secret.publish_owned(&files(&pki.crl_file("empty.crl", &[])));
    let gate = start(&pki, &secret, &upstream, true).await;
    let alice = gate
        .client(&pki)
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"]).serial(778)));
    let carol = gate
        .client(&pki)
        .with_cert(&pki.client("carol", &ClientOpts::cn("carol", &["dev"]).serial(779)));
    let mut h1 = KeepAlive::open(&alice, false).await;
    let mut h2 = KeepAlive::open(&alice.clone().http2(), true).await;
    let mut other = KeepAlive::open(&carol, false).await;
    for c in [&mut h1, &mut h2, &mut other] {
        assert_eq!(c.get("/api/x").await.expect("served").0, 200);
    }
    let served = upstream.count();
    let before = reloads(&gate).await;
    secret.publish_owned(&files(&pki.crl_file("revoked.crl", &[778])));
    reloaded(&gate, before).await;
    // The same connections, the next request: refused, and told to close.
    let (status, reason, conn) = h1.get("/api/x").await.expect("answered");
    assert_eq!((status, reason.as_str()), (401, "cert_revoked"));
    assert_eq!(conn.as_deref(), Some("close"));
    assert_closed(&mut h1).await;
    let (status, reason, _) = h2.get("/api/x").await.expect("answered");
    assert_eq!((status, reason.as_str()), (401, "cert_revoked"));
    assert_closed(&mut h2).await;
    assert_eq!(upstream.count(), served, "a revoked certificate was served");
    // A certificate that is still good keeps its connection.
    assert_eq!(other.get("/api/x").await.expect("served").0, 200);
    assert_eq!(other.get("/api/x").await.expect("served").0, 200);
}

#[tokio::test]
async fn a_certificate_whose_ca_left_the_bundle_is_refused_on_its_open_connection() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut secret = SecretDir::new(pki.path());
    let (crt, key) = pki.server_pair(3003);
    let publish = |secret: &mut SecretDir, ca: Vec<u8>| {
        secret.publish_owned(&[
            ("tls.crt".to_owned(), crt.clone().into_bytes()),
            ("tls.key".to_owned(), key.clone().into_bytes()),
            ("ca.crt".to_owned(), ca),
        ]);
    };
    publish(&mut secret, read(&pki.ca_file));
    let gate = start(&pki, &secret, &upstream, false).await;
    let alice = gate
        .client(&pki)
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"])));
    let mut conn = KeepAlive::open(&alice, false).await;
    assert_eq!(conn.get("/api/x").await.expect("served").0, 200);
    let served = upstream.count();
    // trust-manager's last step: the old CA is gone from the bundle.
    let newer = Pki::new();
    let before = reloads(&gate).await;
    publish(&mut secret, read(&newer.ca_file));
    reloaded(&gate, before).await;
    let (status, reason, _) = conn.get("/api/x").await.expect("answered");
    assert_eq!((status, reason.as_str()), (401, "cert_untrusted"));
    assert_closed(&mut conn).await;
    assert_eq!(upstream.count(), served);
}

#[tokio::test]
async fn a_certificate_that_expires_during_its_connection_is_refused_from_then_on() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    y.rest = String::new();
    let gate = Gate::start(&y.render()).await;
    let brief = gate.client(&pki).with_cert(&pki.client(
        "brief",
        &ClientOpts::cn("brief", &["dev"]).validity(Validity::Lasts(2)),
    ));
    let mut conn = KeepAlive::open(&brief, false).await;
    assert_eq!(conn.get("/api/x").await.expect("served").0, 200);
    let served = upstream.count();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, reason, conn_header) = conn.get("/api/x").await.expect("answered");
    assert_eq!((status, reason.as_str()), (401, "cert_expired"));
    assert_eq!(conn_header.as_deref(), Some("close"));
    assert_closed(&mut conn).await;
    assert_eq!(upstream.count(), served);
}

#[tokio::test]
async fn connections_older_than_the_age_limit_are_closed() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    y.rest = "limits: {max_connection_age: 1s}\n".into();
    let gate = Gate::start(&y.render()).await;
    let mut conn = KeepAlive::open(&gate.client(&pki), false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        conn.get("/api/x").await.is_err(),
        "connection outlived its age"
    );
}

/// A WebSocket upstream that accepts one upgrade and echoes.
async fn echo_ws_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let Ok(Ok((mut tcp, _))) =
            tokio::time::timeout(Duration::from_secs(20), listener.accept()).await
        else {
            return;
        };
        let Some(head) = raw::read_head(&mut tcp).await else {
            return;
        };
        let mut buf = [0u8; 4096];
        let text = String::from_utf8_lossy(&head).to_string();
        let key = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default();
        let accept = authgate::proxy::upgrade::accept_key(key.as_bytes());
        let reply = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let _ = tcp.write_all(reply.as_bytes()).await;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await
        {
            if n == 0 || tcp.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    addr
}

/// Opens a WebSocket tunnel through the gate as `client` and checks it echoes.
async fn open_tunnel(client: &Client) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = client.connect().await.expect("tls");
    let req = "GET /api/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("101 in time")
        .expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    tls.write_all(b"ping").await.expect("write");
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&buf[..n], b"ping");
    tls
}

/// Whether the tunnel still echoes within 3 s (false: closed).
async fn tunnel_alive(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tls.write_all(b"still-there?").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

#[tokio::test]
async fn a_tunnel_closes_when_its_certificate_is_revoked() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let ws = echo_ws_upstream().await;
    let mut secret = SecretDir::new(pki.path());
    let files = crl_secret(&pki, 3004);
    secret.publish_owned(&files(&pki.crl_file("empty.crl", &[])));
    let mut y = Yaml::new(&pki, upstream.addr);
    y.routes = format!("routes:\n  - {{path_prefix: /, upstream: \"http://{ws}\"}}\n");
    y.tls_extra = format!(
        "  client_ca_file: {}\n  reload_interval: 1s\n  crl_files: [{}]\n",
        secret.path("ca.crt").display(),
        secret.path("ca.crl").display()
    );
    let text = serving_from_secret(&y, &pki, &secret);
    let gate = Gate::start(&text).await;
    let alice = gate
        .client(&pki)
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"]).serial(880)));
    let mut tls = open_tunnel(&alice).await;
    let before = reloads(&gate).await;
    secret.publish_owned(&files(&pki.crl_file("revoked.crl", &[880])));
    reloaded(&gate, before).await;
    // The tunnel checks its certificate every second: closed within ~2 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !tunnel_alive(&mut tls).await,
        "the tunnel outlived the revocation"
    );
}

#[tokio::test]
async fn a_tunnel_closes_at_the_connection_age_limit() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let ws = echo_ws_upstream().await;
    let mut y = Yaml::new(&pki, upstream.addr);
    y.routes = format!("routes:\n  - {{path_prefix: /, upstream: \"http://{ws}\"}}\n");
    y.rest = "limits: {max_connection_age: 2s}\n".into();
    let gate = Gate::start(&y.render()).await;
    let alice = gate
        .client(&pki)
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"])));
    let mut tls = open_tunnel(&alice).await;
    assert!(tunnel_alive(&mut tls).await, "closed too early");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        !tunnel_alive(&mut tls).await,
        "the tunnel outlived max_connection_age"
    );
}

/// A rule's `ca_file` drops the CA that issued an open connection's
/// certificate while the client bundle keeps it: the certificate still
/// verifies, but no longer names the identity it was given.
#[tokio::test]
async fn a_certificate_whose_rule_no_longer_binds_its_issuer_is_refused_on_its_open_connection() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut secret = SecretDir::new(pki.path());
    let (crt, key) = pki.server_pair(3004);
    let two = [read(&pki.ca_file), read(&pki.foreign_file)].concat();
    let publish = |secret: &mut SecretDir, spiffe_ca: Vec<u8>| {
        secret.publish_owned(&[
            ("tls.crt".to_owned(), crt.clone().into_bytes()),
            ("tls.key".to_owned(), key.clone().into_bytes()),
            ("ca.crt".to_owned(), two.clone()),
            ("spiffe-ca.crt".to_owned(), spiffe_ca),
            ("cn-ca.crt".to_owned(), read(&pki.foreign_file)),
        ]);
    };
    publish(&mut secret, read(&pki.ca_file));
    let mut y = Yaml::new(&pki, upstream.addr);
    y.tls_extra = format!(
        "  client_ca_file: {}\n  reload_interval: 1s\n",
        secret.path("ca.crt").display()
    );
    y.identity = format!(
        "identity:\n  rules:\n    - {{spiffe: {{trust_domain: cluster.local}}, ca_file: {}}}\n    - {{common_name: {{}}, ca_file: {}}}\n",
        secret.path("spiffe-ca.crt").display(),
        secret.path("cn-ca.crt").display()
    );
    let text = serving_from_secret(&y, &pki, &secret);
    let gate = Gate::start(&text).await;
    let svid = ClientOpts::spiffe("spiffe://cluster.local/ns/monitoring/sa/prometheus")
        .signer(Signer::Root);
    let prom = gate.client(&pki).with_cert(&pki.client("prom", &svid));
    let alice = ClientOpts::cn("alice", &["dev"]).signer(Signer::Foreign);
    let alice = gate.client(&pki).with_cert(&pki.client("alice", &alice));
    let mut conn = KeepAlive::open(&prom, false).await;
    let mut other = KeepAlive::open(&alice, false).await;
    assert_eq!(conn.get("/api/x").await.expect("served").0, 200);
    assert_eq!(other.get("/api/x").await.expect("served").0, 200);
    let served = upstream.count();
    // The SPIFFE rule is rebound to the other issuer only.
    let before = reloads(&gate).await;
    publish(&mut secret, read(&pki.foreign_file));
    reloaded(&gate, before).await;
    let (status, reason, _) = conn.get("/api/x").await.expect("answered");
    assert_eq!((status, reason.as_str()), (401, "cert_untrusted"));
    assert_closed(&mut conn).await;
    assert_eq!(
        upstream.count(),
        served,
        "served under a rule that no longer applies"
    );
    // A certificate whose rule still binds its issuer keeps its connection.
    assert_eq!(other.get("/api/x").await.expect("served").0, 200);
}

/// A TLS session resumed after a reload would skip the client-certificate
/// check the new material makes. Two things stop it, each enough alone:
/// every reload starts a fresh session store and ticket key (so the session
/// does not resume), and a resumed connection's first request verifies its
/// chain again (checked by making the ticket key outlive the reload).
#[tokio::test]
async fn a_session_from_before_a_crl_reload_is_not_resumed_for_a_revoked_certificate() {
    let pki = Pki::new();
    let upstream = Upstream::start().await;
    let mut secret = SecretDir::new(pki.path());
    let files = crl_secret(&pki, 3101);
    secret.publish_owned(&files(&pki.crl_file("empty.crl", &[])));
    let gate = start(&pki, &secret, &upstream, true).await;
    let alice = gate
        .client(&pki)
        .with_cert(&pki.client("alice", &ClientOpts::cn("alice", &["dev"]).serial(778)));
    // One client configuration for every connection: it keeps its sessions.
    let config = alice.tls_config();
    let addr = gate.addr;
    let get = |config: Arc<rustls::ClientConfig>| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get("/api/x")
            .header("host", "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((resp.status().as_u16(), resumed))
    };
    assert_eq!(get(config.clone()).await, Ok((200, false)));
    // The session resumes while the material is unchanged (else this test
    // would prove nothing).
    assert_eq!(get(config.clone()).await, Ok((200, true)));
    let before = reloads(&gate).await;
    secret.publish_owned(&files(&pki.crl_file("revoked.crl", &[778])));
    reloaded(&gate, before).await;
    let after = get(config.clone()).await;
    assert!(
        !matches!(after, Ok((200, _))),
        "a revoked certificate got through on a resumed session: {after:?}"
    );
}
