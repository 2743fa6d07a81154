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
    #[command(flatten)]
    Role(Role),
    /// Run one container (the node agent starts this; not for direct use).
    #[command(hide = true)]
    Shim {
        /// The container's spec, as the agent wrote it.
        spec: std::path::PathBuf,
    },
}

/// The long-running roles, each under a supervisor.
#[derive(Subcommand)]
enum Role {
    /// Run the Kubernetes-compatible API server (and, by default, the controllers).
    Server(server::Args),
    /// Run the controllers against any Kubernetes API server.
    Controllers(controllers::Args),
}

fn main() -> anyhow::Result<()> {
    // The shim runs before any thread or runtime exists: it changes namespaces.
    let role = match Cli::parse().command {
        Command::Shim { spec } => std::process::exit(kubesvc_agent::shim::run(&spec)),
        Command::Role(role) => role,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match role {
            Role::Server(args) => server::run(args).await,
            Role::Controllers(args) => controllers::run(args).await,
        }
    })
}
