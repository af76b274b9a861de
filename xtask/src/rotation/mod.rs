//! `xtask rotation`: client-CA rotation and a CRL update under keep-alive
//! load, against the authgate binary. authgate checks a connection's
//! certificate again on every request once the TLS material changed; this
//! shows that doing so costs valid clients nothing, and that it refuses the
//! others from the reload on.
//!
//! - Scenario A (trust-manager rolling a re-keyed CA): the bundle holds CA
//!   `old`; 8 clients (4 HTTP/1.1, 4 HTTP/2 keep-alive connections) use
//!   `old` certificates. The bundle becomes `old`+`new` (both with the same
//!   subject DN, as cert-manager re-keys a CA), and after the reload 6
//!   clients move to `new` certificates one by one; then the bundle becomes
//!   `new`. The 2 clients still on `old` must be refused from that reload on
//!   (401 `cert_untrusted` on the open connection, which is closed; their
//!   reconnects fail in TLS).
//! - Scenario B: one CA with a CRL; 6 clients, two of them (HTTP/1.1 and
//!   HTTP/2) sharing one certificate. A new CRL revokes it: those two must
//!   get 401 `cert_revoked` on their open connections, and nothing after.
//!
//! Files are replaced by rename, as trust-manager and kubelet do; a reload
//! is seen on authgate's `authgate_tls_reloads_total{result="success"}`.
//! Bounded: `--phase-seconds` (at most 8) per phase, five phases, plus
//! reload waits (at most 10 s each). Writes `<out>/<UTC>-rotation.txt` and
//! exits 3 if a check fails (see [`tally::judge`]).

mod client;
mod tally;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use self::client::Client;
use self::tally::{Board, CertId, Expect, Trust};
use crate::bench::{Procs, first_line, free_ports, repo_root, utc_stamp, wait_port};
use crate::pki::{ClientCa, Pki};
use crate::{Res, fake_api, load};

/// Both CAs of scenario A have this subject.
const ROTATED_CA: &str = "authgate rotation client CA";
/// Successful valid-certificate requests every phase must have.
const MIN_OK_PER_PHASE: u64 = 50;
/// How long a reload may take to show (debounce 250 ms, poll 1 s).
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// `xtask rotation`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct RotationArgs {
    /// The authgate binary (default: target/release/authgate).
    #[arg(long)]
    authgate: Option<PathBuf>,
    /// Seconds of load per phase (at most 8).
    #[arg(long, default_value_t = 4.0)]
    phase_seconds: f64,
    /// Milliseconds between two requests of one client.
    #[arg(long, default_value_t = 10)]
    interval_ms: u64,
    /// Directory of the results file.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Keep the work directory (PKI, configs, authgate logs).
    #[arg(long)]
    keep: bool,
}

/// What both scenarios share.
struct Ctx {
    authgate: PathBuf,
    work: PathBuf,
    /// The server's PKI (its CA is what clients trust).
    pki: Pki,
    upstream: SocketAddr,
    phase: Duration,
    every: Duration,
}

fn say(msg: &str) {
    eprintln!("[rotation] {msg}");
}

/// Writes `content` to `path` by rename, so a reader never sees half a file.
fn write_atomic(path: &Path, content: &str) -> Res<()> {
    let name = path.file_name().ok_or("no file name")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A value of `/metrics` on the admin listener (0 if absent).
async fn metric(admin: SocketAddr, series: &str) -> Res<f64> {
    let mut s = tokio::net::TcpStream::connect(admin).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text)).await??;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(Ok(0.0), |v| v.trim().parse())?)
}

const RELOADED: &str = r#"authgate_tls_reloads_total{result="success"}"#;
const RELOAD_FAILED: &str = r#"authgate_tls_reloads_total{result="failure"}"#;

fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Enters `phase` with `trust` written by `write`: the files are pending
/// until authgate's reload counter moves, then in service. Returns how
/// long the reload took to show.
async fn switch(
    board: &Mutex<Board>,
    admin: SocketAddr,
    (phase, trust): (usize, Trust),
    write: impl FnOnce() -> Res<()>,
) -> Res<Duration> {
    let before = metric(admin, RELOADED).await?;
    let failed = metric(admin, RELOAD_FAILED).await?;
    {
        let mut b = lock(board);
        b.phase = phase;
        b.pending = Some(trust);
    }
    let t0 = tokio::time::Instant::now();
    write()?;
    while metric(admin, RELOADED).await? <= before {
        if metric(admin, RELOAD_FAILED).await? > failed {
            return Err("authgate refused the new TLS files (see its log)".into());
        }
        if t0.elapsed() > RELOAD_DEADLINE {
            return Err("no reload within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = lock(board);
    b.in_service = b.pending.take().unwrap_or_default();
    Ok(t0.elapsed())
}

/// Starts authgate trusting `<trust>/ca.crt` (and `<trust>/ca.crl`). The
/// CN rule names the bundle as its `ca_file`: while a CA is rolled the
/// bundle holds two keys, i.e. two issuers to authgate, and an unbound rule
/// would not load.
/// Returns its address and its admin address.
fn start_gate(
    ctx: &Ctx,
    procs: &mut Procs,
    name: &str,
    trust: &Path,
    crl: bool,
) -> Res<[SocketAddr; 2]> {
    let ports = free_ports(2)?;
    let (t, p) = (trust.display(), &ctx.pki);
    let crl_line = if crl {
        format!("  crl_files: [{t}/ca.crl]\n")
    } else {
        String::new()
    };
    let yaml = format!(
        "listen: \"127.0.0.1:{}\"\ntls:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {t}/ca.crt\n{crl_line}  reload_interval: 1s\n\
identity: {{rules: [{{common_name: {{}}, ca_file: {t}/ca.crt}}]}}\n\
static:\n  allow: [{{group: rotation, verbs: [get], paths: [\"/**\"]}}]\n\
routes: [{{path_prefix: /, upstream: \"http://{}\"}}]\nadmin: {{listen: \"127.0.0.1:{}\"}}\nlog: {{level: warn}}\n",
        ports[0],
        p.server_crt.display(),
        p.server_key.display(),
        ctx.upstream,
        ports[1],
    );
    let config = ctx.work.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml)?;
    let log = std::fs::File::create(ctx.work.join(format!("{name}.log")))?;
    let child = Command::new(&ctx.authgate)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    procs.add(name, child);
    if !wait_port(ports[0]) || !wait_port(ports[1]) {
        return Err(format!(
            "authgate did not start; see {}/{name}.log",
            ctx.work.display()
        )
        .into());
    }
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    Ok([addr(ports[0]), addr(ports[1])])
}

/// A client with `certs` (cert, key, id), speaking `h2` or HTTP/1.1.
fn client(ctx: &Ctx, h2: bool, certs: &[((PathBuf, PathBuf), CertId)]) -> Res<Client> {
    let mut out = Vec::new();
    for ((crt, key), id) in certs {
        let cfg = load::client_config(&ctx.pki.ca_crt, Some((crt, key)))?;
        out.push((*id, client::with_alpn(&cfg, h2)));
    }
    Ok(Client {
        h2,
        certs: out,
        which: Arc::new(AtomicUsize::new(0)),
    })
}

/// Starts every client on `board`; their tasks.
fn spawn(
    ctx: &Ctx,
    clients: Vec<Client>,
    board: &Arc<Mutex<Board>>,
    target: SocketAddr,
) -> Vec<tokio::task::JoinHandle<()>> {
    clients
        .into_iter()
        .map(|c| tokio::spawn(client::run(c, board.clone(), target, ctx.every)))
        .collect()
}

/// Stops the clients and waits for them (each ends within its timeout).
async fn finish(board: &Mutex<Board>, tasks: Vec<tokio::task::JoinHandle<()>>) -> Res<()> {
    lock(board).stop = true;
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t).await??;
    }
    Ok(())
}

/// Scenario A; the board and the reload latencies.
async fn scenario_a(ctx: &Ctx) -> Res<(Board, Vec<Duration>)> {
    let dir = ctx.work.join("a");
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust)?;
    let (old, new) = (
        ClientCa::create(&dir, ROTATED_CA)?,
        ClientCa::create(&dir, ROTATED_CA)?,
    );
    // Each key publishes its CRL, as a CA with revocation does: the new
    // key's certificates must be checked against the new key's CRL, not
    // the old one's of the same issuer name.
    write_atomic(&trust.join("ca.crt"), &old.pem())?;
    write_atomic(&trust.join("ca.crl"), &old.crl_pem(&[], 1)?)?;
    let mut procs = Procs::default();
    let [target, admin] = start_gate(ctx, &mut procs, "authgate-a", &trust, true)?;
    let mut clients = Vec::new();
    for i in 0..8u64 {
        let cn = format!("rot-{i}");
        let o = CertId {
            ca: "old",
            serial: 1000 + i,
        };
        let n = CertId {
            ca: "new",
            serial: 2000 + i,
        };
        clients.push(client(
            ctx,
            i % 2 == 1,
            &[
                (
                    old.client(&format!("old-{i}"), &cn, "rotation", o.serial)?,
                    o,
                ),
                (
                    new.client(&format!("new-{i}"), &cn, "rotation", n.serial)?,
                    n,
                ),
            ],
        )?);
    }
    // Clients 6 and 7 (HTTP/1.1 and HTTP/2) never move.
    let movers: Vec<Arc<AtomicUsize>> = clients[..6].iter().map(|c| c.which.clone()).collect();
    let trusts = |cas: &[&'static str]| Trust {
        cas: cas.to_vec(),
        revoked: vec![],
    };
    let board = Arc::new(Mutex::new(Board {
        phases: vec![
            "A1 bundle=old, all on old".into(),
            "A2 bundle=old+new, 6 of 8 move to new".into(),
            "A3 bundle=new, 2 left on old".into(),
        ],
        in_service: trusts(&["old"]),
        ..Board::default()
    }));
    let tasks = spawn(ctx, clients, &board, target);
    tokio::time::sleep(ctx.phase).await;
    let both = format!("{}{}", old.pem(), new.pem());
    let both_crls = format!("{}{}", old.crl_pem(&[], 2)?, new.crl_pem(&[], 1)?);
    let (bundle, crls) = (trust.join("ca.crt"), trust.join("ca.crl"));
    // Bundle first, then CRLs: in between, the new key's CRL has no CA in
    // the bundle yet and that reload fails (the last good stays).
    let mut took = vec![
        switch(&board, admin, (1, trusts(&["old", "new"])), || {
            write_atomic(&bundle, &both)?;
            write_atomic(&crls, &both_crls)
        })
        .await?,
    ];
    let step = ctx.phase.div_f64(movers.len() as f64 + 1.0);
    for m in &movers {
        tokio::time::sleep(step).await;
        m.store(1, Ordering::Relaxed);
    }
    tokio::time::sleep(step).await;
    took.push(
        switch(&board, admin, (2, trusts(&["new"])), || {
            write_atomic(&bundle, &new.pem())?;
            write_atomic(&crls, &new.crl_pem(&[], 2)?)
        })
        .await?,
    );
    tokio::time::sleep(ctx.phase).await;
    finish(&board, tasks).await?;
    drop(procs);
    let board = Arc::try_unwrap(board).map_err(|_| "clients still hold the board")?;
    Ok((
        board
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        took,
    ))
}

/// Scenario B; the board and the reload latency.
async fn scenario_b(ctx: &Ctx) -> Res<(Board, Vec<Duration>)> {
    let dir = ctx.work.join("b");
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust)?;
    let ca = ClientCa::create(&dir, "authgate rotation CRL CA")?;
    write_atomic(&trust.join("ca.crt"), &ca.pem())?;
    write_atomic(&trust.join("ca.crl"), &ca.crl_pem(&[], 1)?)?;
    let mut procs = Procs::default();
    let [target, admin] = start_gate(ctx, &mut procs, "authgate-b", &trust, true)?;
    // Clients 0 (HTTP/1.1) and 1 (HTTP/2) share the certificate to revoke.
    const REVOKED: u64 = 3000;
    let shared = ca.client("revoked", "rot-revoked", "rotation", REVOKED)?;
    let mut clients = Vec::new();
    for i in 0..6u64 {
        let id = CertId {
            ca: "ca",
            serial: if i < 2 { REVOKED } else { 3000 + i },
        };
        let files = if i < 2 {
            shared.clone()
        } else {
            ca.client(
                &format!("c-{i}"),
                &format!("rot-{i}"),
                "rotation",
                id.serial,
            )?
        };
        clients.push(client(ctx, i % 2 == 1, &[(files, id)])?);
    }
    let trusts = |revoked: &[u64]| Trust {
        cas: vec!["ca"],
        revoked: revoked.to_vec(),
    };
    let board = Arc::new(Mutex::new(Board {
        phases: vec!["B1 CRL empty".into(), "B2 CRL revokes 1 of 5 certs".into()],
        in_service: trusts(&[]),
        ..Board::default()
    }));
    let tasks = spawn(ctx, clients, &board, target);
    tokio::time::sleep(ctx.phase).await;
    let crl = ca.crl_pem(&[REVOKED], 2)?;
    let crl_file = trust.join("ca.crl");
    let took = vec![
        switch(&board, admin, (1, trusts(&[REVOKED])), || {
            write_atomic(&crl_file, &crl)
        })
        .await?,
    ];
    tokio::time::sleep(ctx.phase).await;
    finish(&board, tasks).await?;
    drop(procs);
    let board = Arc::try_unwrap(board).map_err(|_| "clients still hold the board")?;
    Ok((
        board
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        took,
    ))
}

/// The report of one scenario, and whether every check held.
fn report(name: &str, board: &Board, refusal: &'static str, took: &[Duration]) -> (String, bool) {
    let mut text = tally::table(name, board);
    let ms: Vec<String> = took
        .iter()
        .map(|d| format!("{} ms", d.as_millis()))
        .collect();
    text.push_str(&format!(
        "reloads seen after writing the files: {}\n",
        ms.join(", ")
    ));
    let checks = tally::judge(
        board,
        Expect {
            refusal,
            min_ok_per_phase: MIN_OK_PER_PHASE,
        },
    );
    let pass = checks.iter().all(|(_, ok)| *ok);
    for (what, ok) in checks {
        text.push_str(&format!("  {} {what}\n", if ok { "PASS" } else { "FAIL" }));
    }
    (text, pass)
}

/// `xtask rotation`.
pub(crate) fn run(args: &RotationArgs) -> Res<i32> {
    if !(args.phase_seconds > 0.0 && args.phase_seconds <= 8.0) {
        return Err("--phase-seconds must be in (0, 8]".into());
    }
    let root = repo_root();
    let authgate = args
        .authgate
        .clone()
        .unwrap_or_else(|| root.join("target/release/authgate"));
    if !authgate.exists() {
        return Err(format!("{} not found (build it first)", authgate.display()).into());
    }
    let secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let work = std::env::temp_dir().join(format!("authgate-rotation-{}", std::process::id()));
    let pki = Pki::create(&work.join("server"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let upstream = upstream_listener.local_addr()?;
        tokio::spawn(fake_api::serve_upstream(upstream_listener));
        let ctx = Ctx {
            authgate: authgate.clone(),
            work: work.clone(),
            pki,
            upstream,
            phase: Duration::from_secs_f64(args.phase_seconds),
            every: Duration::from_millis(args.interval_ms.max(1)),
        };
        say("scenario A: client-CA rotation (same subject DN) under load");
        let a = scenario_a(&ctx).await?;
        say("scenario B: CRL update under load");
        let b = scenario_b(&ctx).await?;
        Ok::<_, crate::Error>((a, b))
    });
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        say(&format!("work directory kept: {}", work.display()));
    }
    let ((a, a_took), (b, b_took)) = result?;
    let (text_a, pass_a) = report("A", &a, "401 cert_untrusted", &a_took);
    let (text_b, pass_b) = report("B", &b, "401 cert_revoked", &b_took);
    let commit = first_line(
        "git",
        &[
            "-C",
            &root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let verdict = if pass_a && pass_b {
        "rotation passed"
    } else {
        "ROTATION FAILED"
    };
    let text = format!(
        "# scripts/rotation.sh at commit {commit}; {}\n# 8 clients (A) / 6 clients (B), half HTTP/1.1, half HTTP/2 keep-alive; one GET every {} ms each; {} s per phase\n\n{text_a}\n{text_b}\n{verdict}\n",
        authgate.display(),
        args.interval_ms,
        args.phase_seconds,
    );
    print!("{text}");
    std::fs::create_dir_all(&args.out)?;
    let file = args.out.join(format!("{}-rotation.txt", utc_stamp(secs)));
    std::fs::write(&file, &text)?;
    say(&format!("written to {}", file.display()));
    Ok(if pass_a && pass_b { 0 } else { 3 })
}
