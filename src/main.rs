//! The `authgate` command: flags -> Config -> App -> bind -> server::run.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use authgate::app::App;
use authgate::config::{Config, LogConfig, LogFormat};
use authgate::{demo, pki, server};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

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
    /// Run the server.
    Serve {
        /// YAML configuration file.
        #[arg(long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0, or exit 2 naming the key and reason.
    CheckConfig {
        /// YAML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Development PKI (use cert-manager in production).
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Run a self-contained demo: dev PKI, static backend, echo upstream.
    Demo {
        /// TLS listen address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Where the dev PKI and demo token are written.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { config } => return check_config(&config),
        Command::Certs { command } => certs(command),
        Command::Serve { config } => runtime().and_then(|rt| rt.block_on(serve(config))),
        Command::Demo { listen, dir } => {
            runtime().and_then(|rt| rt.block_on(run_demo(listen, dir)))
        }
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(_) => {
            let _ = writeln!(std::io::stdout(), "{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{}: {e}", path.display());
            ExitCode::from(2)
        }
    }
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

async fn serve(path: PathBuf) -> Result {
    let config = Config::load(&path)?;
    init_logging(&config.log);
    let app = Arc::new(App::build(&config).await?);
    let listener = TcpListener::bind(config.listen).await?;
    info!(listen = %listener.local_addr()?, "authgate serving");
    server::run(listener, app, shutdown_signal()).await;
    Ok(())
}

async fn run_demo(listen: SocketAddr, dir: PathBuf) -> Result {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let setup = demo::setup(&dir, listen, echo.local_addr()?)?;
    init_logging(&setup.config.log);
    let app = Arc::new(App::build(&setup.config).await?);
    let listener = TcpListener::bind(listen).await?;
    tokio::spawn(demo::serve_echo(echo, std::future::pending()));
    let mut out = std::io::stdout();
    writeln!(out, "authgate demo listening on https://{listen}")?;
    writeln!(out, "config: {}/demo.yaml; try:\n", dir.display())?;
    for (what, cmd) in demo::curl_commands(&dir, listen) {
        writeln!(out, "# {what}\n{cmd}\n")?;
    }
    writeln!(out, "Ctrl-C stops the demo.")?;
    out.flush()?;
    server::run(listener, app, shutdown_signal()).await;
    Ok(())
}

fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
