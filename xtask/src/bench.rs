//! `xtask bench`: authgate side by side with Debian's nginx, and authgate's
//! caches on vs off against the fake API.
//!
//! Layout: the server under test (nginx with one worker, or authgate with
//! one tokio worker thread, `TOKIO_WORKER_THREADS=1`) is pinned with
//! `taskset` to `BENCH_SERVER_CPU` (default 1); the load generator
//! (`xtask load`, or h2load for HTTP/2), the shared upstream (a second
//! nginx, `return 200`) and the fake API are pinned to `BENCH_LOAD_CPU`
//! (default 0). Everything listens on 127.0.0.1. Both servers use the same
//! rcgen CA, server certificate and client certificate.
//!
//! Per configuration: a closed-loop probe of each server (also the warm-up)
//! gives its capacity; the offered load of the open-loop runs is
//! `--rate-fraction` (0.7) of the slower server's capacity (or `--rate`).
//! Then `--rounds` rounds, the A/B order alternating by round; in each, each
//! server gets a closed-loop run (capacity, req/s) and an open-loop run at
//! the common offered load (server CPU time per request, latency).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::Res;
use crate::load::{self, LoadResult};

mod idle;
mod latency;
use crate::pki::Pki;
use crate::procstat;
use crate::report::{self, Run};

/// The configurations, in the order they are measured.
pub(crate) const CONFIGS: [&str; 7] = [
    "token",
    "mtls",
    "handshake",
    "h2",
    "cache",
    "idle",
    "latency",
];
/// Idle keep-alive connections per server in the `idle` measurement (under
/// authgate's per-address cap of 1000).
const IDLE_CONNS: usize = 900;
/// HTTP/2: connections; streams per connection = concurrency / this.
const H2_CONNS: usize = 10;
/// Distinct tokens in the cache runs.
const CACHE_TOKENS: usize = 1000;

/// `xtask bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Short run: 2 rounds x 3 s (about 2.5 minutes after the build).
    #[arg(long)]
    smoke: bool,
    /// Rounds (default 5, smoke 2).
    #[arg(long)]
    rounds: Option<u32>,
    /// Seconds per measurement (default 10, smoke 3).
    #[arg(long)]
    duration: Option<f64>,
    /// Connections (HTTP/1.1), or streams in total (HTTP/2).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Comma list of: token, mtls, handshake, h2, cache, idle, latency.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "token,mtls,handshake,h2,cache,idle,latency"
    )]
    only: Vec<String>,
    /// Neither server writes access lines (default: both, one line per request to a file).
    #[arg(long)]
    no_access_log: bool,
    /// Results directory (relative paths: to the repository root).
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Keep the work directory (configs, logs, raw load output).
    #[arg(long)]
    keep: bool,
    /// Do not run `cargo build --release --bin authgate`.
    #[arg(long)]
    no_build: bool,
    /// The authgate binary (default: next to this xtask binary).
    #[arg(long)]
    authgate: Option<PathBuf>,
    /// Offered load (req/s) of the open-loop runs, every configuration
    /// (default: --rate-fraction of the slower server's probed capacity;
    /// latency: half of authgate's).
    #[arg(long)]
    rate: Option<f64>,
    /// Fraction of the slower server's capacity offered in the open-loop runs.
    #[arg(long, default_value_t = 0.7)]
    rate_fraction: f64,
    /// CPU of the server under test.
    #[arg(long, env = "BENCH_SERVER_CPU", default_value_t = 1)]
    server_cpu: usize,
    /// CPU of the load generator, the upstream and the fake API.
    #[arg(long, env = "BENCH_LOAD_CPU", default_value_t = 0)]
    load_cpu: usize,
}

fn log(msg: &str) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    eprintln!("[bench {h:02}:{m:02}:{s:02}] {msg}");
}

/// `YYYY-MM-DDTHHMMSS` (UTC) for `secs` since the epoch.
pub(crate) fn utc_stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

pub(crate) fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn nginx_path() -> Option<PathBuf> {
    if have("nginx") {
        return Some(PathBuf::from("nginx"));
    }
    let p = PathBuf::from("/usr/sbin/nginx");
    p.exists().then_some(p)
}

/// Loopback ports free now, below the ephemeral range (so that no client
/// connection of the benchmark can be holding one later).
pub(crate) fn free_ports(n: usize) -> Res<Vec<u16>> {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32768);
    let start = 20000.min(low / 2);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..5000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = start + (seed % u64::from(low - start)) as u16;
        if ports.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
            ports.push(port);
            if ports.len() == n {
                return Ok(ports);
            }
        }
    }
    Err("no free loopback ports".into())
}

/// Children that are stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
#[derive(Default)]
pub(crate) struct Procs {
    children: Vec<(String, Child)>,
}

impl Procs {
    pub(crate) fn add(&mut self, name: &str, child: Child) -> u32 {
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        pid
    }

    pub(crate) fn stop(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|(_, c)| c.id() == pid) {
            let (_, c) = self.children.remove(i);
            stop_child(c);
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in self.children.drain(..).rev() {
            stop_child(c);
        }
    }
}

fn stop_child(mut c: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// The work directory, removed when dropped unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            log(&format!("work directory kept: {}", self.path.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn append(path: &Path) -> Res<File> {
    Ok(File::options().create(true).append(true).open(path)?)
}

/// `program args` pinned to `cpu`, output appended to `logfile`.
fn pinned(cpu: usize, program: &Path, logfile: &Path) -> Res<Command> {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu.to_string()).arg(program);
    let f = append(logfile)?;
    c.stdout(f.try_clone()?).stderr(f).stdin(Stdio::null());
    Ok(c)
}

/// Waits until something accepts TCP connections on `port` (10 s).
pub(crate) fn wait_port(port: u16) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A plain HTTP/1.0 request to a loopback address: the body.
fn plain_http(method: &str, addr: &str, path: &str) -> Res<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

fn tail(path: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Everything a run of the benchmark shares.
struct Bench<'a> {
    args: &'a BenchArgs,
    exe: PathBuf,
    authgate: PathBuf,
    nginx: PathBuf,
    w: PathBuf,
    procs: Procs,
    ca: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
    token: String,
    up_port: u16,
    duration: f64,
    seq: u32,
    runs: Vec<Run>,
    server_cpu: usize,
    load_cpu: usize,
    rt: tokio::runtime::Runtime,
}

/// The server under test in one measurement.
struct Target {
    name: String,
    port: u16,
    pid: u32,
    access: Option<PathBuf>,
}

/// What runs the load of one measurement.
enum LoadCmd {
    Xtask(Vec<String>),
    H2load(Vec<String>),
}

/// A load command with its duration and offered rate (None: closed loop).
struct Job {
    cmd: LoadCmd,
    secs: f64,
    rate: Option<f64>,
}

impl Bench<'_> {
    fn url(port: u16) -> String {
        format!("https://127.0.0.1:{port}/bench")
    }

    /// The load generator command for `cfg` against `port`.
    fn load_cmd(&self, cfg: &str, port: u16, secs: f64, rate: Option<f64>) -> Job {
        let c = self.args.concurrency;
        if cfg == "h2" {
            let streams = c.div_ceil(H2_CONNS);
            let mut a = vec![
                "-c".to_owned(),
                H2_CONNS.to_string(),
                "-m".to_owned(),
                streams.to_string(),
                "-D".to_owned(),
                format!("{}", secs.ceil().max(1.0)),
                "-H".to_owned(),
                format!("Authorization: Bearer {}", self.token),
            ];
            if let Some(r) = rate {
                // --rps is per client (connection).
                a.push(format!("--rps={}", (r / H2_CONNS as f64).max(1.0).round()));
            }
            a.push(Self::url(port));
            return Job {
                cmd: LoadCmd::H2load(a),
                secs,
                rate,
            };
        }
        let mut a = vec![
            "load".to_owned(),
            "--target".to_owned(),
            format!("127.0.0.1:{port}"),
            "--ca".to_owned(),
            self.ca.display().to_string(),
            "--connections".to_owned(),
            c.to_string(),
            "--duration".to_owned(),
            secs.to_string(),
        ];
        match cfg {
            "token" => a.extend(["--token".to_owned(), self.token.clone()]),
            "mtls" | "handshake" => {
                a.extend([
                    "--cert".to_owned(),
                    self.client_crt.display().to_string(),
                    "--key".to_owned(),
                    self.client_key.display().to_string(),
                ]);
                if cfg == "handshake" {
                    a.push("--new-connection".to_owned());
                }
            }
            _ => a.extend([
                "--tokens".to_owned(),
                CACHE_TOKENS.to_string(),
                "--token-prefix".to_owned(),
                "bench-token-".to_owned(),
            ]),
        }
        if let Some(r) = rate {
            a.extend(["--rate".to_owned(), format!("{r:.0}")]);
        }
        Job {
            cmd: LoadCmd::Xtask(a),
            secs,
            rate,
        }
    }

    /// Runs the load pinned to the load CPU, bounded in time: the result.
    fn run_load(&self, cmd: &LoadCmd, raw: &Path, secs: f64) -> (i32, Option<LoadResult>, String) {
        let (program, args, h2log) = match cmd {
            LoadCmd::Xtask(a) => (self.exe.clone(), a.clone(), None),
            LoadCmd::H2load(a) => {
                let lf = raw.with_extension("h2log");
                let mut a = a.clone();
                a.insert(0, format!("--log-file={}", lf.display()));
                (PathBuf::from("h2load"), a, Some(lf))
            }
        };
        let out = raw.with_extension("out");
        let err = raw.with_extension("err");
        let spawn = || -> Res<Child> {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(self.load_cpu.to_string()).arg(&program);
            c.args(&args);
            c.stdout(File::create(&out)?)
                .stderr(File::create(&err)?)
                .stdin(Stdio::null());
            Ok(c.spawn()?)
        };
        let mut child = match spawn() {
            Ok(c) => c,
            Err(e) => return (-1, None, format!("spawn: {e}")),
        };
        let until = Instant::now() + Duration::from_secs_f64(secs + 60.0);
        let rc = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s.code().unwrap_or(-1),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break -2;
                }
            }
        };
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let errtext = tail(&err, 5);
        let parsed = match &h2log {
            None => serde_json::from_str::<LoadResult>(stdout.trim()).ok(),
            Some(lf) => parse_h2load(&stdout, lf).ok(),
        };
        if let Some(lf) = h2log {
            let _ = std::fs::remove_file(lf);
        }
        (rc, parsed, errtext)
    }

    /// One measurement: server CPU and core times around the load.
    fn measure(&mut self, t: &Target, round: u32, cfg: &str, phase: &str, job: &Job) -> usize {
        let (cmd, secs, rate) = (&job.cmd, job.secs, job.rate);
        self.seq += 1;
        let raw = self
            .w
            .join("raw")
            .join(format!("{:03}-r{round}-{cfg}-{}-{phase}", self.seq, t.name));
        if let Some(a) = &t.access {
            let _ = File::options()
                .write(true)
                .open(a)
                .and_then(|f| f.set_len(0));
        }
        let pids = procstat::family(t.pid);
        let loadavg = procstat::loadavg();
        let c0 = procstat::sample(&pids);
        let s0 = procstat::core_ticks(self.server_cpu);
        let l0 = procstat::core_ticks(self.load_cpu);
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let t0 = Instant::now();
        // xtask load samples the server's CPU itself, over exactly the load
        // window (keep-alive connections already open).
        let cmd = match cmd {
            LoadCmd::Xtask(a) => {
                let mut a = a.clone();
                a.push("--sample-pids".to_owned());
                a.push(
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                );
                LoadCmd::Xtask(a)
            }
            LoadCmd::H2load(a) => LoadCmd::H2load(a.clone()),
        };
        let (rc, result, err) = self.run_load(&cmd, &raw, secs);
        let wall = t0.elapsed().as_secs_f64();
        let c1 = procstat::sample(&pids);
        let s1 = procstat::core_ticks(self.server_cpu);
        let l1 = procstat::core_ticks(self.load_cpu);
        let (mut lines, mut resumed) = (None, None);
        if let Some(a) = &t.access
            && !self.args.no_access_log
        {
            let f = File::open(a).map(BufReader::new);
            let (mut n, mut r) = (0u64, 0u64);
            if let Ok(f) = f {
                for l in f.lines().map_while(Result::ok) {
                    if t.name == "nginx" {
                        n += 1;
                        r += u64::from(l.contains(" r=r "));
                    } else if l.contains("authgate::access") {
                        n += 1;
                    }
                }
            }
            lines = Some(n);
            resumed = (t.name == "nginx").then_some(r);
            let _ = File::options()
                .write(true)
                .open(a)
                .and_then(|f| f.set_len(0));
        }
        if rc != 0 {
            log(&format!(
                "WARNING: load generator exited {rc} for {cfg}/{} round {round}: {err}",
                t.name
            ));
        }
        let hz = procstat::clk_tck() as f64;
        let frac = |a: (u64, u64), b: (u64, u64)| {
            let total = b.1.saturating_sub(a.1);
            if total == 0 {
                0.0
            } else {
                b.0.saturating_sub(a.0) as f64 / total as f64
            }
        };
        let mut run = Run {
            seq: self.seq,
            round,
            config: cfg.to_owned(),
            server: t.name.clone(),
            phase: phase.to_owned(),
            tool: if matches!(cmd, LoadCmd::H2load(_)) {
                "h2load"
            } else {
                "xtask-load"
            }
            .to_owned(),
            mode: if rate.is_some() { "open" } else { "closed" }.to_owned(),
            offered_rate: rate,
            rc,
            start_unix: start,
            wall_s: wall,
            loadavg,
            server_pids: pids,
            server_processes_read: c1.processes,
            outer_server_cpu_s: c1.ticks.saturating_sub(c0.ticks) as f64 / hz,
            server_cpu_ticks: c1.ticks.saturating_sub(c0.ticks),
            server_cpu_s: c1.ticks.saturating_sub(c0.ticks) as f64 / hz,
            server_sched_s: c1.sched_ns.saturating_sub(c0.sched_ns) as f64 / 1e9,
            cpu_window_s: wall,
            cpu_window: "load generator process lifetime".to_owned(),
            server_core_busy: frac(s0, s1),
            load_core_busy: frac(l0, l1),
            access_lines: lines,
            access_tls_resumed: resumed,
            load_error: (!err.is_empty() && rc != 0).then_some(err),
            load: result,
            ..Run::default()
        };
        if let Some(c) = run.load.as_ref().and_then(|l| l.server_cpu.as_ref()) {
            run.server_cpu_ticks = c.ticks;
            run.server_cpu_s = c.ticks as f64 / hz;
            run.server_sched_s = c.sched_ns as f64 / 1e9;
            run.cpu_window_s = c.window_s;
            run.cpu_window = "first request to last answer (sampled by xtask load)".to_owned();
        }
        report::derive(&mut run);
        self.runs.push(run);
        self.runs.len() - 1
    }

    fn start_nginx(&mut self, name: &str, cpu: usize) -> Res<u32> {
        let conf = self.w.join(format!("{name}.conf"));
        let elog = self.w.join("logs").join(format!("{name}-error.log"));
        let ok = Command::new(&self.nginx)
            .args(["-t", "-q", "-e"])
            .arg(&elog)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&self.w)
            .status()?
            .success();
        if !ok {
            return Err(format!("nginx -t {name} failed: {}", tail(&elog, 5)).into());
        }
        let mut c = pinned(
            cpu,
            &self.nginx,
            &self.w.join("logs").join(format!("{name}.out")),
        )?;
        c.arg("-e")
            .arg(&elog)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&self.w);
        Ok(self.procs.add(name, c.spawn()?))
    }

    fn start_authgate(&mut self, name: &str, config: &Path, logfile: &Path) -> Res<u32> {
        let out = Command::new(&self.authgate)
            .arg("check-config")
            .arg("--config")
            .arg(config)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "authgate check-config {}: {}",
                config.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let mut c = pinned(self.server_cpu, &self.authgate, logfile)?;
        c.arg("serve").arg("--config").arg(config);
        c.env("TOKIO_WORKER_THREADS", "1");
        Ok(self.procs.add(name, c.spawn()?))
    }

    /// Status of one request (fresh connection).
    fn status(&self, port: u16, cert: bool, bearer: Option<&str>) -> Res<u16> {
        let config = if cert {
            load::client_config(&self.ca, Some((&self.client_crt, &self.client_key)))?
        } else {
            load::client_config(&self.ca, None)?
        };
        self.rt.block_on(load::check(
            SocketAddr::from(([127, 0, 0, 1], port)),
            &config,
            "/bench",
            bearer,
        ))
    }

    fn expect(
        &self,
        server: &str,
        what: &str,
        want: u16,
        port: u16,
        cert: bool,
        bearer: Option<&str>,
    ) -> Res<()> {
        match self.status(port, cert, bearer) {
            Ok(s) if s == want => Ok(()),
            Ok(s) => Err(format!("sanity: {server} {what}: want {want}, got {s}").into()),
            Err(e) => Err(format!("sanity: {server} {what}: want {want}, got error {e}").into()),
        }
    }

    /// HTTP/2 through h2load, one request: must negotiate h2 and get 2xx.
    fn expect_h2(&self, server: &str, port: u16) -> Res<()> {
        let out = Command::new("timeout")
            .args(["20", "h2load", "-n", "1", "-c", "1", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token))
            .arg(Self::url(port))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("Application protocol: h2") && text.contains("status codes: 1 2xx") {
            Ok(())
        } else {
            Err(format!("sanity: {server} HTTP/2 via h2load failed: {text}").into())
        }
    }

    fn tls_info(&self, port: u16) -> String {
        let run = || -> Res<String> {
            let config = load::client_config(&self.ca, Some((&self.client_crt, &self.client_key)))?;
            self.rt.block_on(load::tls_info(
                SocketAddr::from(([127, 0, 0, 1], port)),
                &config,
                None,
            ))
        };
        run().unwrap_or_else(|e| format!("failed: {e}"))
    }
}

fn nginx_common(w: &Path, name: &str) -> String {
    let w = w.display();
    format!(
        "worker_processes 1;
daemon off;
master_process on;
pid {w}/{name}.pid;
error_log {w}/logs/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
    client_body_temp_path {w}/nginx-tmp/body;
    proxy_temp_path {w}/nginx-tmp/proxy;
    fastcgi_temp_path {w}/nginx-tmp/fastcgi;
    uwsgi_temp_path {w}/nginx-tmp/uwsgi;
    scgi_temp_path {w}/nginx-tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
"
    )
}

fn nginx_upstream_conf(w: &Path, port: u16) -> String {
    format!(
        "{}    access_log off;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
",
        nginx_common(w, "nginx-upstream")
    )
}

fn nginx_edge_conf(w: &Path, b: &Bench<'_>, pki: &Pki, port: u16, access: &Path) -> String {
    let access = if b.args.no_access_log {
        "access_log off;".to_owned()
    } else {
        format!("access_log {} bench;", access.display())
    };
    let t = &b.token;
    format!(
        r#"{common}    log_format bench '$remote_addr "$request" $status $user r=$ssl_session_reused $ssl_protocol $ssl_cipher $request_time';
    {access}
    ssl_protocols TLSv1.3;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client optional;
    ssl_verify_depth 2;
    # Static token list (nginx does no SubjectAccessReview).
    map $http_authorization $token_user {{
        "Bearer {t}" "bench-user";
        default "";
    }}
    map $http_authorization $token_group {{
        "Bearer {t}" "bench";
        default "";
    }}
    # Client certificate: CN is the user, O the group (when it verified).
    map $ssl_client_s_dn $cert_cn {{
        "~(^|,)CN=(?<cn>[^,]+)" $cn;
        default "";
    }}
    map $ssl_client_s_dn $cert_o {{
        "~(^|,)O=(?<o>[^,]+)" $o;
        default "";
    }}
    map "$ssl_client_verify:$cert_cn" $user {{
        "~^SUCCESS:(?<u>.+)$" $u;
        default $token_user;
    }}
    map "$ssl_client_verify:$cert_cn" $group {{
        "~^SUCCESS:." $cert_o;
        default $token_group;
    }}
    upstream shared_upstream {{
        server 127.0.0.1:{up};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;
        location / {{
            if ($user = "") {{
                return 401 '{{"error": "Unauthorized"}}\n';
            }}
            proxy_pass http://shared_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header X-Remote-User $user;
            proxy_set_header X-Remote-Group $group;
        }}
    }}
}}
"#,
        common = nginx_common(w, "nginx-edge"),
        crt = pki.server_crt.display(),
        key = pki.server_key.display(),
        ca = pki.ca_crt.display(),
        up = b.up_port,
    )
}

fn authgate_common(b: &Bench<'_>, pki: &Pki, port: u16) -> String {
    format!(
        "listen: \"127.0.0.1:{port}\"
tls:
  cert_file: {crt}
  key_file: {key}
  client_ca_file: {ca}
  min_version: \"1.3\"
routes:
  - {{path_prefix: /, upstream: \"http://127.0.0.1:{up}\"}}
limits:
  shutdown_timeout: 1s
admin:
  listen: \"off\"
log:
  level: {level}
",
        crt = pki.server_crt.display(),
        key = pki.server_key.display(),
        ca = pki.ca_crt.display(),
        up = b.up_port,
        level = if b.args.no_access_log { "warn" } else { "info" },
    )
}

/// Parses h2load's summary and its `--log-file` (start µs, status, µs).
fn parse_h2load(stdout: &str, log_file: &Path) -> Res<LoadResult> {
    let num_after = |key: &str| -> Option<f64> {
        let i = stdout.find(key)? + key.len();
        stdout[i..]
            .trim_start()
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?
            .parse()
            .ok()
    };
    let finished = num_after("finished in").ok_or("h2load: no 'finished in'")?;
    let failed = num_after("succeeded,").unwrap_or(0.0) as u64;
    let errored = num_after("failed,").unwrap_or(0.0) as u64;
    let timeout = num_after("errored,").unwrap_or(0.0) as u64;
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let f = BufReader::new(File::open(log_file)?);
    for line in f.lines().map_while(Result::ok) {
        let mut it = line.split('\t');
        let (_, Some(st), Some(us)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let (Ok(st), Ok(us)) = (st.trim().parse::<i64>(), us.trim().parse::<u64>()) else {
            continue;
        };
        if st > 0 {
            *statuses.entry(u16::try_from(st).unwrap_or(0)).or_default() += 1;
            hist.saturating_record(us.max(1));
        }
    }
    let ok: u64 = statuses
        .iter()
        .filter(|(k, _)| (200..300).contains(*k))
        .map(|(_, v)| v)
        .sum();
    let answered: u64 = statuses.values().sum();
    let q = |p: f64| {
        if hist.is_empty() {
            0.0
        } else {
            hist.value_at_quantile(p) as f64
        }
    };
    let mut error_kinds = BTreeMap::new();
    if failed + errored + timeout > 0 {
        error_kinds.insert("failed".to_owned(), failed);
        error_kinds.insert("errored".to_owned(), errored);
        error_kinds.insert("timeout".to_owned(), timeout);
    }
    Ok(LoadResult {
        requests: answered,
        ok,
        non_2xx: answered - ok,
        non_200: answered - statuses.get(&200).copied().unwrap_or(0),
        // h2load's "failed" includes non-2xx answers.
        errors: errored + timeout,
        seconds: finished,
        rps: if finished > 0.0 {
            ok as f64 / finished
        } else {
            0.0
        },
        latency_us: load::Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: hist.max() as f64,
            mean: if hist.is_empty() { 0.0 } else { hist.mean() },
        },
        statuses,
        error_kinds,
        ..LoadResult::default()
    })
}

fn random_hex(n: usize) -> Res<String> {
    let mut b = vec![0u8; n];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| "no random")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// `xtask bench`.
pub(crate) fn run(args: &BenchArgs) -> Res<i32> {
    for c in &args.only {
        if !CONFIGS.contains(&c.as_str()) {
            return Err(format!(
                "--only: unknown configuration {c} (known: {})",
                CONFIGS.join(",")
            )
            .into());
        }
    }
    let want = |c: &str| args.only.iter().any(|x| x == c);
    let root = repo_root();
    let (rounds, duration, warmup, cache_warmup) = if args.smoke {
        (
            args.rounds.unwrap_or(2),
            args.duration.unwrap_or(3.0),
            1.0,
            2.0,
        )
    } else {
        (
            args.rounds.unwrap_or(5),
            args.duration.unwrap_or(10.0),
            2.0,
            3.0,
        )
    };
    let nproc = std::thread::available_parallelism().map_or(1, usize::from);
    let (server_cpu, load_cpu) = if nproc < 2 {
        log("WARNING: fewer than 2 CPUs: server and load generator share CPU 0");
        (0, 0)
    } else {
        (args.server_cpu, args.load_cpu)
    };

    // Tools.
    let deps = root.join("scripts/bench-deps.sh");
    if nginx_path().is_none() || (want("h2") && !have("h2load")) || !have("taskset") {
        log("installing the Debian packages (scripts/bench-deps.sh)");
        let ok = Command::new("bash")
            .arg(&deps)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "{} failed: install nginx, nghttp2-client (h2load) and util-linux (taskset)",
                deps.display()
            )
            .into());
        }
    }
    let nginx = nginx_path().ok_or("nginx not found (run scripts/bench-deps.sh)")?;
    let exe = std::env::current_exe()?;
    let authgate = match &args.authgate {
        Some(p) => p.clone(),
        None => exe.parent().ok_or("no exe dir")?.join("authgate"),
    };
    if !args.no_build && args.authgate.is_none() {
        log("building authgate (cargo build --release --locked --bin authgate)");
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        c.args(["build", "--release", "--locked", "--bin", "authgate"])
            .current_dir(&root);
        // Not the variables `cargo run` set for xtask: build scripts that
        // depend on them (ring's CARGO_PKG_*, CARGO_MANIFEST_DIR) would rerun
        // and rebuild the whole tree, and again at the next plain build.
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str()
                && (k.starts_with("CARGO_PKG_")
                    || matches!(
                        k,
                        "CARGO_MANIFEST_DIR"
                            | "CARGO_MANIFEST_PATH"
                            | "CARGO_MANIFEST_LINKS"
                            | "CARGO_CRATE_NAME"
                            | "CARGO_BIN_NAME"
                            | "CARGO_PRIMARY_PACKAGE"
                            | "CARGO_RUSTC_CURRENT_DIR"
                    ))
            {
                c.env_remove(k);
            }
        }
        // The same target directory as this binary.
        if let Some(t) = exe.parent().and_then(Path::parent) {
            c.env("CARGO_TARGET_DIR", t);
        }
        if !c.status()?.success() {
            return Err("cargo build of authgate failed".into());
        }
    }
    if !authgate.exists() {
        return Err(format!(
            "missing {} (build it, or drop --no-build)",
            authgate.display()
        )
        .into());
    }

    // Work directory.
    let stamp_secs = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let wpath = std::env::temp_dir().join(format!(
        "authgate-bench.{}-{stamp_secs}",
        std::process::id()
    ));
    std::fs::create_dir_all(wpath.join("logs"))?;
    std::fs::create_dir_all(wpath.join("raw"))?;
    std::fs::create_dir_all(wpath.join("nginx-tmp"))?;
    // nginx's workers run as another user (nobody) when started as root.
    std::fs::set_permissions(
        wpath.join("nginx-tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;
    let work = WorkDir {
        path: wpath.clone(),
        keep: args.keep,
    };
    let w = work.path.clone();

    let pki = Pki::create(&w.join("pki"))?;
    let (client_crt, client_key) = pki.client("bench-client", "bench-user", "bench")?;
    let ports = free_ports(5)?;
    let (up_port, ngx_port, ag_port, on_port, off_port) =
        (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let mut b = Bench {
        args,
        exe,
        authgate,
        nginx,
        w: w.clone(),
        procs: Procs::default(),
        ca: pki.ca_crt.clone(),
        client_crt,
        client_key,
        token: format!("bench-{}", random_hex(16)?),
        up_port,
        duration,
        seq: 0,
        runs: Vec::new(),
        server_cpu,
        load_cpu,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    let access_ngx = w.join("logs/nginx-edge-access.log");
    let access_ag = w.join("logs/authgate-edge.log");
    std::fs::write(
        w.join("nginx-upstream.conf"),
        nginx_upstream_conf(&w, up_port),
    )?;
    std::fs::write(
        w.join("nginx-edge.conf"),
        nginx_edge_conf(&w, &b, &pki, ngx_port, &access_ngx),
    )?;
    let static_section = format!(
        "static:\n  tokens:\n    - {{token: \"{}\", user: bench-user, groups: [bench]}}\n  allow:\n    - {{group: bench, verbs: [\"*\"], paths: [\"/\", \"/**\"]}}\n",
        b.token
    );
    let ag_conf = w.join("authgate-edge.yaml");
    std::fs::write(
        &ag_conf,
        format!("{}{static_section}", authgate_common(&b, &pki, ag_port)),
    )?;

    log(&format!(
        "work directory {}; server CPU {server_cpu}, load CPU {load_cpu}; load: {}",
        w.display(),
        procstat::loadavg()
    ));
    let up_pid = b.start_nginx("nginx-upstream", load_cpu)?;
    if !wait_port(up_port) {
        return Err("upstream nginx did not start".into());
    }
    let ngx_pid = b.start_nginx("nginx-edge", server_cpu)?;
    let ag_pid = b.start_authgate("authgate", &ag_conf, &access_ag)?;
    if !wait_port(ngx_port) {
        return Err(format!(
            "nginx did not start: {}",
            tail(&w.join("logs/nginx-edge-error.log"), 5)
        )
        .into());
    }
    if !wait_port(ag_port) {
        return Err(format!("authgate did not start: {}", tail(&access_ag, 5)).into());
    }
    std::thread::sleep(Duration::from_millis(300));

    // Sanity checks: both servers answer the same way.
    let token = b.token.clone();
    for (s, port) in [("nginx", ngx_port), ("authgate", ag_port)] {
        b.expect(s, "token", 200, port, false, Some(&token))?;
        b.expect(
            s,
            "wrong token",
            401,
            port,
            false,
            Some(&format!("nope-{token}")),
        )?;
        b.expect(s, "no credentials", 401, port, false, None)?;
        b.expect(s, "client certificate", 200, port, true, None)?;
        if want("h2") {
            b.expect_h2(s, port)?;
        }
    }
    let tls_nginx = b.tls_info(ngx_port);
    let tls_authgate = b.tls_info(ag_port);
    log(&format!("TLS nginx:    {tls_nginx}"));
    log(&format!("TLS authgate: {tls_authgate}"));

    let targets = [
        Target {
            name: "nginx".to_owned(),
            port: ngx_port,
            pid: ngx_pid,
            access: Some(access_ngx),
        },
        Target {
            name: "authgate".to_owned(),
            port: ag_port,
            pid: ag_pid,
            access: Some(access_ag),
        },
    ];
    let configs: Vec<&str> = CONFIGS[..4].iter().copied().filter(|c| want(c)).collect();
    let bench_start = Instant::now();

    // Probe (closed loop, also the warm-up): capacity of each server.
    let mut rates: BTreeMap<String, f64> = BTreeMap::new();
    let mut capacity: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for cfg in &configs {
        for t in &targets {
            log(&format!("probe {cfg} {} ({warmup}s closed loop)", t.name));
            let cmd = b.load_cmd(cfg, t.port, warmup, None);
            let i = b.measure(t, 0, cfg, "probe", &cmd);
            let rps = b.runs[i].load.as_ref().map_or(0.0, |l| l.rps);
            capacity
                .entry((*cfg).to_owned())
                .or_default()
                .insert(t.name.clone(), rps);
        }
        let slower = capacity[*cfg]
            .values()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let rate = args.rate.unwrap_or(args.rate_fraction * slower).max(10.0);
        log(&format!(
            "{cfg}: offered load of the open-loop runs {rate:.0} req/s"
        ));
        rates.insert((*cfg).to_owned(), rate);
    }
    for r in 1..=rounds {
        let order: [usize; 2] = if r % 2 == 1 { [0, 1] } else { [1, 0] };
        for cfg in &configs {
            for &i in &order {
                let t = &targets[i];
                log(&format!(
                    "round {r}/{rounds} {cfg} {} closed loop ({duration}s, load {})",
                    t.name,
                    procstat::loadavg()
                ));
                let cmd = b.load_cmd(cfg, t.port, duration, None);
                b.measure(t, r, cfg, "closed", &cmd);
                let rate = rates[*cfg];
                log(&format!(
                    "round {r}/{rounds} {cfg} {} open loop at {rate:.0} req/s ({duration}s)",
                    t.name
                ));
                let cmd = b.load_cmd(cfg, t.port, duration, Some(rate));
                b.measure(t, r, cfg, "open", &cmd);
            }
        }
    }

    // Caches on vs off.
    let mut fake_info = Value::Null;
    if want("cache") {
        fake_info = cache_runs(&mut b, &pki, rounds, cache_warmup, on_port, off_port)?;
    }
    let idle = if want("idle") {
        idle::measure(&b, &targets, IDLE_CONNS)?
    } else {
        Value::Null
    };
    let latency = if want("latency") {
        let upstream = Target {
            name: latency::UPSTREAM.to_owned(),
            port: up_port,
            pid: up_pid,
            access: None,
        };
        latency::measure(&mut b, &targets, &upstream, warmup, rounds)?
    } else {
        Value::Null
    };
    let bench_wall = bench_start.elapsed().as_secs();
    b.procs.stop(ag_pid);
    b.procs.stop(ngx_pid);
    b.procs.stop(up_pid);

    let mut stamp = utc_stamp(stamp_secs);
    if args.smoke {
        stamp.push_str("-smoke");
    }
    let mut meta = json!({
        "date": stamp,
        "smoke": args.smoke,
        "rounds": rounds,
        "duration_s": duration,
        "warmup_s": warmup,
        "cache_warmup_s": cache_warmup,
        "concurrency": args.concurrency,
        "h2_connections": H2_CONNS,
        "h2_streams_per_connection": args.concurrency.div_ceil(H2_CONNS),
        "cache_tokens": CACHE_TOKENS,
        "access_log": !args.no_access_log,
        "loadgen": "xtask load for HTTP/1.1, h2load for HTTP/2",
        "rate_fraction": args.rate_fraction,
        "rate_override": args.rate,
        "offered_rates": rates,
        "probe_capacity": capacity,
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "nproc": nproc,
        "clk_tck": procstat::clk_tck(),
        "bench_wall_s": bench_wall,
        "cpu_model": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned())),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default(),
        "nginx": first_line(&b.nginx.display().to_string(), &["-v"]),
        "h2load": first_line("h2load", &["--version"]),
        "authgate_git": first_line("git", &["-C", &root.display().to_string(), "describe", "--always", "--dirty"]),
        "rustc": first_line("rustc", &["--version"]),
        "tls_nginx": tls_nginx,
        "tls_authgate": tls_authgate,
        "server_key": "ECDSA P-256 server certificate (SANs localhost, 127.0.0.1)",
        "fake_api": fake_info,
        "idle_connections": idle,
        "loadavg_end": procstat::loadavg(),
    });
    if !latency.is_null() {
        meta["latency"] = latency;
    }
    let out_dir = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    std::fs::create_dir_all(&out_dir)?;
    let runs = std::mem::take(&mut b.runs);
    let (md, problems) = report::write(&out_dir.join(&stamp), &meta, runs)?;
    print!("{md}");
    log(&format!(
        "results: {}.{{json,md,svg}} (wall time of the measurements: {bench_wall} s)",
        out_dir.join(&stamp).display()
    ));
    drop(b);
    drop(work);
    if problems.is_empty() {
        Ok(0)
    } else {
        eprintln!("bench: problems: {}", problems.join("; "));
        Ok(3)
    }
}

/// authgate with its caches on vs off against the fake API: a fresh
/// authgate per round and mode, a warm-up using every token, then a run.
fn cache_runs(
    b: &mut Bench<'_>,
    pki: &Pki,
    rounds: u32,
    warmup: f64,
    on_port: u16,
    off_port: u16,
) -> Res<Value> {
    let w = b.w.clone();
    let info_file = w.join("fake.json");
    log(&format!(
        "starting the fake API ({CACHE_TOKENS} tokens) on CPU {}",
        b.load_cpu
    ));
    let mut c = pinned(b.load_cpu, &b.exe.clone(), &w.join("logs/fake-api.log"))?;
    c.args([
        "fake-api",
        "--tokens",
        &CACHE_TOKENS.to_string(),
        "--token-prefix",
        "bench-token-",
        "--info",
    ])
    .arg(&info_file)
    .arg("--dir")
    .arg(w.join("fake-api"));
    let fake_pid = b.procs.add("fake-api", c.spawn()?);
    let until = Instant::now() + Duration::from_secs(10);
    while !info_file.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let info: Value = serde_json::from_str(&std::fs::read_to_string(&info_file).map_err(|e| {
        format!(
            "fake API did not start ({e}): {}",
            tail(&w.join("logs/fake-api.log"), 5)
        )
    })?)?;
    let kubeconfig = info["kubeconfig"]
        .as_str()
        .ok_or("fake API: no kubeconfig")?
        .to_owned();
    let counts_addr = info["counts_url"]
        .as_str()
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|u| u.strip_suffix("/counts"))
        .ok_or("fake API: no counts_url")?
        .to_owned();
    let counts = |method: &str, path: &str| -> Value {
        plain_http(method, &counts_addr, path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null)
    };
    let conf = |port: u16, max: usize| {
        format!(
            "{}kubernetes:\n  kubeconfig: {kubeconfig}\n  timeout: 5s\n  max_in_flight: 256\n  qps: 1000000\n  burst: 1000000\ntoken_review:\n  cache: {{max_entries: {max}}}\naccess_review:\n  cache: {{max_entries: {max}}}\n",
            authgate_common(b, pki, port)
        )
    };
    let on_conf = w.join("authgate-cache-on.yaml");
    let off_conf = w.join("authgate-cache-off.yaml");
    std::fs::write(&on_conf, conf(on_port, 10_000))?;
    std::fs::write(&off_conf, conf(off_port, 0))?;
    let duration = b.duration;
    for r in 1..=rounds {
        let order = if r % 2 == 1 {
            ["on", "off"]
        } else {
            ["off", "on"]
        };
        for mode in order {
            let name = format!("authgate-cache-{mode}");
            let (cfile, port) = if mode == "on" {
                (&on_conf, on_port)
            } else {
                (&off_conf, off_port)
            };
            log(&format!(
                "round {r}/{rounds} cache {mode}: fresh authgate, {warmup}s warm-up, {duration}s run"
            ));
            let logfile = w.join(format!("logs/{name}.log"));
            let pid = b.start_authgate(&name, cfile, &logfile)?;
            if !wait_port(port) {
                return Err(format!("{name} did not start: {}", tail(&logfile, 5)).into());
            }
            std::thread::sleep(Duration::from_millis(200));
            b.expect(
                &name,
                "token via TokenReview",
                200,
                port,
                false,
                Some("bench-token-0"),
            )?;
            counts("POST", "/reset");
            let t = Target {
                name: name.clone(),
                port,
                pid,
                access: Some(logfile),
            };
            let cmd = b.load_cmd("cache", port, warmup, None);
            let i = b.measure(&t, r, "cache", "warmup", &cmd);
            b.runs[i].cache = Some(mode.to_owned());
            let cold = counts("GET", "/counts");
            counts("POST", "/reset");
            let cmd = b.load_cmd("cache", port, duration, None);
            let i = b.measure(&t, r, "cache", "run", &cmd);
            let api = counts("GET", "/counts");
            let run = &mut b.runs[i];
            run.cache = Some(mode.to_owned());
            run.tokens = Some(CACHE_TOKENS);
            run.api_warmup = Some(cold);
            run.api = Some(api);
            report::derive(run);
            b.procs.stop(pid);
        }
    }
    b.procs.stop(fake_pid);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "1970-01-01T000000");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T000000");
        assert_eq!(utc_stamp(1_796_117_589), "2026-12-01T093309");
    }

    #[test]
    fn h2load_output() {
        let stdout = "finished in 3.00s, 5512.00 req/s, 371.57KB/s\n\
            requests: 16536 total, 16586 started, 16536 done, 16530 succeeded, 6 failed, 2 errored, 1 timeout\n\
            status codes: 16530 2xx, 0 3xx, 4 4xx, 0 5xx\n";
        let log = std::env::temp_dir().join(format!("xtask-test-h2log-{}", std::process::id()));
        std::fs::write(&log, "1\t200\t1000\n2\t200\t3000\n3\t401\t2000\n4\t-1\t5\n").unwrap();
        let r = parse_h2load(stdout, &log).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert_eq!((r.ok, r.non_2xx, r.requests), (2, 1, 3));
        assert_eq!(r.errors, 3);
        assert!((r.seconds - 3.0).abs() < 1e-9);
        assert!((r.rps - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.statuses.get(&200), Some(&2));
        assert!(r.latency_us.max >= 2999.0);
    }
}
