//! The kubesvc binary: one program, several roles, a module each. Every role
//! parses its own flags and runs under a [`supervisor::Supervisor`], so the
//! process fails, naming the role, when any of its roles does.

mod agent;
mod controllers;
mod proxy;
mod server;
mod supervisor;
mod tool;
mod up;

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
    Role(Box<Role>),
    /// Test servers and probes to run inside pods (as Kubernetes' agnhost).
    #[command(subcommand)]
    Tool(tool::Tool),
    /// Run one container (the node agent starts this; not for direct use).
    #[command(hide = true)]
    Shim {
        /// The container's spec, as the agent wrote it.
        #[arg(required_unless_present = "exec")]
        spec: Option<std::path::PathBuf>,
        /// Run the command after `--` inside the container whose command is this pid.
        #[arg(long)]
        exec: Option<u32>,
        /// With --exec: stdin is a terminal, to become the command's controlling one.
        #[arg(long)]
        tty: bool,
        #[arg(last = true)]
        argv: Vec<String>,
    },
}

/// The long-running roles, each under a supervisor.
#[derive(Subcommand)]
enum Role {
    /// Run the Kubernetes-compatible API server (and, by default, the controllers).
    Server(server::Args),
    /// Run the controllers against any Kubernetes API server.
    Controllers(controllers::Args),
    /// Run the node agent: register this node and run the pods bound to it.
    Agent(agent::Args),
    /// Run the service proxy (a stand-in for kube-proxy) against any Kubernetes API server.
    Proxy(proxy::Args),
    /// Run a local cluster: server, controllers and nodes (agents in network namespaces of their own).
    Up(up::Args),
}

fn main() -> anyhow::Result<()> {
    // The shim runs before any thread or runtime exists: it changes namespaces.
    let role = match Cli::parse().command {
        Command::Shim { exec: Some(pid), argv, tty, .. } => {
            std::process::exit(kubesvc_agent::shim::exec_in(pid, &argv, tty))
        }
        Command::Shim { spec: Some(spec), .. } => std::process::exit(kubesvc_agent::shim::run(&spec)),
        Command::Shim { .. } => anyhow::bail!("kubesvc shim needs a spec or --exec"),
        Command::Tool(tool) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return rt.block_on(tool::run(tool));
        }
        Command::Role(role) => *role,
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
            Role::Agent(args) => agent::run(args).await,
            Role::Proxy(args) => proxy::run(args).await,
            Role::Up(args) => up::run(args).await,
        }
    })
}
