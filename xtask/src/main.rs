//! authgate's benchmark tool, run as `cargo xtask <command>` (the alias is in
//! `.cargo/config.toml`). See `xtask/README.md` for what each figure means.
//!
//! - `bench`: authgate side by side with Debian's nginx (same TLS material,
//!   same upstream, same load generator), and authgate's caches on vs off
//!   against a fake Kubernetes API. Writes `bench/results/<date>.{json,md,svg}`.
//! - `load`: the load generator (HTTP/1.1 over TLS, bearer tokens or client
//!   certificates, keep-alive or a new connection per request, closed loop or
//!   a fixed offered rate). Prints one JSON line.
//! - `fake-api`: a fake Kubernetes API (TokenReview, SubjectAccessReview),
//!   with request counters and an optional trivial upstream.
//! - `rotation`: client-CA rotation and a CRL update under keep-alive load;
//!   counts per phase which requests succeeded, for clients whose
//!   certificate was valid at the time and for those whose was not.
//!
//! It does not depend on the authgate crate: it measures the release binary.

mod bench;
mod fake_api;
mod load;
mod pki;
mod procstat;
mod report;
mod rotation;

use clap::{Parser, Subcommand};

/// Errors are reported as text and end the command.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
/// `Result` with [`Error`].
pub(crate) type Res<T> = Result<T, Error>;

#[derive(Parser)]
#[command(name = "xtask", about = "authgate benchmark and load tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// authgate vs nginx side by side, and caches on vs off.
    Bench(bench::BenchArgs),
    /// The load generator (one JSON line on stdout).
    Load(load::LoadArgs),
    /// A fake Kubernetes API (TokenReview, SubjectAccessReview).
    FakeApi(fake_api::FakeApiArgs),
    /// Client-CA rotation and CRL update under load (scripts/rotation.sh).
    Rotation(rotation::RotationArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(a) => bench::run(&a),
        Command::Load(a) => load::main(a),
        Command::FakeApi(a) => fake_api::main(&a),
        Command::Rotation(a) => rotation::run(&a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            std::process::exit(1);
        }
    }
}
