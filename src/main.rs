//! The `authgate` command: flags -> Config -> App -> bind -> server::run.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use authgate::app::App;
use authgate::config::krp::{self, KrpFlags};
use authgate::config::krp_flags;
use authgate::config::{self, Config, LogConfig, LogFormat};
use authgate::{access_log, admin, demo, pki};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_appender::non_blocking::{ErrorCounter, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// mimalloc: 3-13% less server CPU per request than glibc's malloc (token,
/// mTLS, HTTP/2), for about 11 KB more per idle connection
/// (bench/results/2026-12-01T131410-smoke vs -glibc-malloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "mTLS-or-token auth edge for Kubernetes clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. kube-rbac-proxy's flags are accepted too (they
    /// override the file), so a sidecar's args can stay as they are.
    Serve {
        /// YAML configuration file.
        #[arg(long, env = "AUTHGATE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        krp: Box<KrpFlags>,
    },
    /// Validate a configuration file: exit 0, or exit 2 naming the key and reason.
    CheckConfig {
        /// YAML configuration file.
        #[arg(long, required_unless_present = "defaults")]
        config: Option<PathBuf>,
        /// Print every default, one `key: value` per line.
        #[arg(long)]
        defaults: bool,
        /// Validate the YAML only; do not load the TLS files (for checking
        /// a manifest's config outside the pod that mounts them).
        #[arg(long)]
        skip_files: bool,
    },
    /// Development PKI (use cert-manager in production).
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// The token-to-mTLS migration, fleet-wide.
    Migration {
        #[command(subcommand)]
        command: MigrationCommand,
    },
    /// Revoke cached credentials on every replica: add a flush (of USER, or
    /// of everything) to the fleet's revocation ConfigMap.
    Flush {
        /// Flush only this user's cache entries.
        #[arg(long)]
        user: Option<String>,
        /// Kubeconfig (default: KUBECONFIG, ~/.kube/config, in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// The ConfigMap's namespace (default: the config file's, else the
        /// kubeconfig context's).
        #[arg(long)]
        namespace: Option<String>,
        /// The ConfigMap's name (default: the config file's, else
        /// authgate-revocation).
        #[arg(long)]
        name: Option<String>,
        /// An authgate config file: its fleet.revocation_object and
        /// kubernetes.kubeconfig.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a self-contained demo: dev PKI, static backend, echo upstream.
    Demo {
        /// TLS listen address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Where the dev PKI and demo token are written.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Admin listener (health, metrics, migration report, cache flush);
        /// loopback only.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum MigrationCommand {
    /// Ask Prometheus whether closing a route to bearer tokens would refuse
    /// anyone seen in a window: exit 0 nobody, 1 someone (listed), 2 no answer.
    Check(authgate::migration::check::CheckArgs),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create DIR/ca.{crt,key} (kept if present) and DIR/server.{crt,key}.
    Init {
        /// Output directory.
        dir: PathBuf,
    },
    /// Issue DIR/NAME.{crt,key} signed by DIR/ca.*, with EKU clientAuth.
    Client {
        /// Directory holding ca.crt and ca.key.
        dir: PathBuf,
        /// Output file stem.
        #[arg(long)]
        name: String,
        /// Subject CN (the user name).
        #[arg(long)]
        cn: Option<String>,
        /// Subject O (a group); repeatable, at most two.
        #[arg(long = "org")]
        orgs: Vec<String>,
        /// URI SAN, e.g. spiffe://cluster.local/ns/NS/sa/SA; repeatable.
        #[arg(long = "uri")]
        uris: Vec<String>,
        /// DNS SAN; repeatable.
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// Email SAN; repeatable.
        #[arg(long = "email")]
        emails: Vec<String>,
        /// Lifetime in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

fn main() -> ExitCode {
    authgate::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve")
        && let Err(why) = krp::refuse_unsupported(&args[2..])
    {
        let _ = writeln!(std::io::stderr(), "authgate: {why}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { defaults: true, .. } => return print_defaults(),
        Command::CheckConfig {
            config: Some(config),
            skip_files,
            ..
        } => return check_config(&config, skip_files),
        Command::CheckConfig { config: None, .. } => return ExitCode::from(2),
        Command::Certs { command } => certs(command),
        Command::Migration {
            command: MigrationCommand::Check(args),
        } => return migration_check(&args),
        Command::Serve { config, krp } => {
            let warnings = krp.compat.warnings();
            match serve_config(config.as_deref(), *krp) {
                Ok(config) => runtime().and_then(|rt| rt.block_on(serve(config, warnings))),
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "authgate: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        Command::Flush {
            user,
            kubeconfig,
            namespace,
            name,
            config,
        } => {
            let args = authgate::fleet::cli::FlushArgs {
                user,
                kubeconfig,
                namespace,
                name,
                config,
            };
            runtime().and_then(|rt| rt.block_on(flush(args)))
        }
        Command::Demo {
            listen,
            dir,
            admin_listen,
        } => runtime().and_then(|rt| rt.block_on(run_demo(listen, dir, admin_listen))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "authgate: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// A current-thread runtime when there is one core to run on (one
/// available CPU, or `TOKIO_WORKER_THREADS=1`): no hand-offs between the
/// I/O driver and a worker thread. A multi-thread runtime otherwise.
fn runtime() -> Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let mut b = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    Ok(b.enable_all().build()?)
}

fn migration_check(args: &authgate::migration::check::CheckArgs) -> ExitCode {
    use authgate::migration::check;
    let out = match runtime() {
        Ok(rt) => rt.block_on(check::run(args)),
        Err(e) => check::Outcome {
            code: check::EXIT_ERROR,
            stdout: String::new(),
            stderr: format!("authgate: {e}\n"),
        },
    };
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    ExitCode::from(out.code)
}

fn print_defaults() -> ExitCode {
    let mut out = std::io::stdout();
    for (key, value) in config::defaults::TABLE {
        if writeln!(out, "{key}: {value}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Validates `path`, then loads its TLS files as serving would (the key
/// matches the certificate, the CA bundle parses, every CRL parses and is
/// signed by a bundle CA; each upstream CA bundle parses and each upstream
/// client key matches its certificate), so that what is `ok` here also serves.
fn check_config(path: &std::path::Path, skip_files: bool) -> ExitCode {
    let refuse = |what: String| {
        let _ = writeln!(std::io::stderr(), "{}: {what}", path.display());
        ExitCode::from(2)
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return refuse(e.to_string()),
    };
    let several = config.listeners.len() > 1;
    for (i, l) in config.listeners.iter().enumerate() {
        // `listeners[i].` before the key, with several listeners.
        let within = if several {
            format!("listeners[{i}].")
        } else {
            String::new()
        };
        if !skip_files && let Err(e) = authgate::tls::load(&l.tls) {
            return refuse(format!("{within}{}: {e}", tls_key(&l.tls, &e)));
        }
        // The CA bundles and client certificates of https upstreams, as
        // serving loads them (each client key must match its certificate).
        if !skip_files && let Err(e) = authgate::proxy::upstream::load_tls(&l.routes) {
            return refuse(format!("{within}{e}"));
        }
    }
    let _ = writeln!(std::io::stdout(), "{}: ok", path.display());
    ExitCode::SUCCESS
}

/// The `tls.*` key whose file a TLS error is about.
fn tls_key(tls: &config::TlsConfig, e: &authgate::tls::Error) -> String {
    let authgate::tls::Error::File { path, .. } = e else {
        return "tls".into();
    };
    if *path == tls.cert_file {
        return "tls.cert_file".into();
    }
    if *path == tls.key_file {
        return "tls.key_file".into();
    }
    if tls.client_ca_file.as_ref() == Some(path) {
        return "tls.client_ca_file".into();
    }
    tls.crl_files
        .iter()
        .position(|c| c == path)
        .map_or_else(|| "tls".into(), |i| format!("tls.crl_files[{i}]"))
}

fn certs(command: CertsCommand) -> Result {
    let mut out = std::io::stdout();
    match command {
        CertsCommand::Init { dir } => {
            let new_ca = pki::init(&dir)?;
            let ca = if new_ca { "created" } else { "kept existing" };
            writeln!(out, "{ca} {0}/ca.crt, {0}/ca.key", dir.display())?;
            writeln!(
                out,
                "issued {0}/server.crt, {0}/server.key (localhost, 127.0.0.1)",
                dir.display()
            )?;
        }
        CertsCommand::Client {
            dir,
            name,
            cn,
            orgs,
            uris,
            dns,
            emails,
            days,
        } => {
            let spec = pki::ClientSpec {
                name,
                cn,
                orgs,
                uris,
                dns,
                emails,
                days,
            };
            let (crt, key) = pki::issue_client(&dir, &spec)?;
            writeln!(out, "issued {}, {}", crt.display(), key.display())?;
        }
    }
    Ok(())
}

/// The configuration of `serve`: the file (if any) with kube-rbac-proxy
/// flags applied on top, validated.
fn serve_config(path: Option<&std::path::Path>, krp: KrpFlags) -> Result<Config, config::Error> {
    let file = match path {
        Some(p) => config::read_file(p)?,
        None if krp.any() => config::file::File::default(),
        None => {
            return Err(config::Error::invalid(
                "--config",
                "is required (or kube-rbac-proxy flags such as --upstream and --tls-cert-file)",
            ));
        }
    };
    Config::try_from(krp.apply(file)?)
}

async fn serve(config: Config, warnings: Vec<String>) -> Result {
    let logging = init_logging(&config.log);
    // kube-rbac-proxy flags: one line for the ignored ones, one for a
    // generated serving certificate.
    for w in warnings
        .into_iter()
        .chain(krp_flags::self_signed_warning(&config.tls))
    {
        tracing::warn!("{w}");
    }
    let app = Arc::new(App::build(&config).await?);
    let dropped = logging.dropped.clone();
    app.metrics.count_dropped_log_lines(Box::new(move || {
        dropped.dropped_lines() as u64 + access_log::dropped()
    }));
    // Every listener is bound before anything serves: one that cannot be
    // fails startup, naming it.
    let listeners = app.bind().await?;
    let stop = CancellationToken::new();
    app.spawn_background(&stop);
    if let Some(addr) = config.admin.listen {
        let admin_listener = TcpListener::bind(addr).await?;
        info!(admin = %admin_listener.local_addr()?, "admin listening");
        tokio::spawn(admin::serve(
            admin_listener,
            app.clone(),
            stop.clone().cancelled_owned(),
        ));
    }
    // Readiness turns false first; after `shutdown_delay` the listener closes
    // and in-flight requests get `shutdown_timeout` to finish.
    let health = app.health.clone();
    let delay = app.limits.shutdown_delay;
    let shutdown = async move {
        shutdown_signal().await;
        health.start_draining();
        if !delay.is_zero() {
            info!(
                ?delay,
                "readiness is now false; waiting before closing the listener"
            );
            tokio::time::sleep(delay).await;
        }
    };
    app.serve_all(listeners, shutdown).await;
    stop.cancel();
    info!("stopped");
    Ok(())
}

async fn flush(args: authgate::fleet::cli::FlushArgs) -> Result {
    let done = authgate::fleet::cli::flush(args).await?;
    writeln!(std::io::stdout(), "{done}")?;
    Ok(())
}

async fn run_demo(listen: SocketAddr, dir: PathBuf, admin_listen: SocketAddr) -> Result {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let setup = demo::setup(&dir, listen, echo.local_addr()?, admin_listen)?;
    let _logging = init_logging(&setup.config.log);
    let app = Arc::new(App::build(&setup.config).await?);
    let listener = TcpListener::bind(listen).await?;
    let admin_listener = TcpListener::bind(admin_listen).await?;
    tokio::spawn(demo::serve_echo(echo, std::future::pending()));
    tokio::spawn(admin::serve(
        admin_listener,
        app.clone(),
        std::future::pending(),
    ));
    let mut out = std::io::stdout();
    writeln!(out, "authgate demo listening on https://{listen}")?;
    writeln!(out, "config: {}/demo.yaml; try:\n", dir.display())?;
    for (what, cmd) in demo::curl_commands(&dir, listen) {
        writeln!(out, "# {what}\n{cmd}\n")?;
    }
    writeln!(
        out,
        "admin listener on http://{admin_listen} (loopback only); the migration features:\n"
    )?;
    for (what, cmd) in demo::admin_commands(admin_listen) {
        writeln!(out, "# {what}\n{cmd}\n")?;
    }
    writeln!(out, "Ctrl-C stops the demo.")?;
    out.flush()?;
    app.serve(listener, shutdown_signal()).await;
    Ok(())
}

/// Log lines queued for the writer thread; beyond this they are dropped
/// and counted (`authgate_log_lines_dropped_total`), never waited for.
const LOG_QUEUE: usize = 65_536;

/// Access-line batches (up to 32 KiB each) queued for their writer thread:
/// at most 2 MiB waits when stderr blocks; more is dropped and counted.
const ACCESS_BATCHES: usize = 64;

/// What keeps logging running; dropping it flushes, access lines first
/// (fields drop in order).
struct Logging {
    _access: access_log::Flush,
    _batches: WorkerGuard,
    _lines: WorkerGuard,
    /// Lines the line writer dropped.
    dropped: ErrorCounter,
}

/// stderr behind a lock: the two writer threads each write whole lines or
/// whole batches under it, so they never interleave inside a line.
#[derive(Clone)]
struct Stderr(Arc<std::sync::Mutex<std::io::BufWriter<std::io::Stderr>>>);

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Logging to stderr through a writer thread that writes in batches (one
/// `write` per batch, not per line), so a request never waits on stderr;
/// access lines are batched on their own ([`access_log`]) and have a
/// writer thread (and a queue bounded in bytes) of their own.
fn init_logging(log: &LogConfig) -> Logging {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let stderr = Stderr(Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(
        std::io::stderr(),
    ))));
    let (writer, lines) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE)
        .thread_name("authgate-log")
        .finish(stderr.clone());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let (batches, batch_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(ACCESS_BATCHES)
        .thread_name("authgate-access-log")
        .finish(stderr);
    let refused = batches.error_counter();
    let access = access_log::install(log.format, move |batch| {
        // Sends are one at a time (access_log), and only batches go
        // through this writer: its count moves only for this one.
        let before = refused.dropped_lines();
        let _ = batches.clone().write_all(batch);
        refused.dropped_lines() == before
    });
    Logging {
        _access: access,
        _batches: batch_guard,
        _lines: lines,
        dropped,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutdown signal received");
}
