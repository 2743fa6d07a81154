//! The kubesvc binary: one program, several roles, a module each. Every role
//! parses its own flags and runs under a [`supervisor::Supervisor`], so the
//! process fails, naming the role, when any of its roles does.

mod controllers;
mod server;
mod supervisor;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kubesvc", version, about = "Kubernetes Services in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes-compatible API server (and, by default, the controllers).
    Server(server::Args),
    /// Run the controllers against any Kubernetes API server.
    Controllers(controllers::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Controllers(args) => controllers::run(args).await,
        }
    })
}
