//! `kubesvc tool`: small servers and probes to run inside pods, as
//! Kubernetes' agnhost provides them for its own tests and examples.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[derive(clap::Subcommand)]
pub enum Tool {
    /// Answer every HTTP request (and TCP or UDP message, if asked) with this host's name
    /// (`/clientip`: the client's address and port as seen here).
    ServeHostname {
        #[arg(long, default_value_t = 9376)]
        port: u16,
        /// Serve HTTP (default); `--http=false` with --tcp or --udp for those alone.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        http: bool,
        /// Also answer on TCP: the name, then close.
        #[arg(long)]
        tcp: bool,
        /// Also answer UDP datagrams with the name.
        #[arg(long)]
        udp: bool,
    },
    /// Echo what arrives back to its sender.
    Echo {
        /// TCP port to echo on.
        #[arg(long)]
        tcp: Option<u16>,
        /// UDP port to echo on.
        #[arg(long)]
        udp: Option<u16>,
    },
    /// Answer gRPC health checks (grpc.health.v1.Health/Check) with a fixed status.
    GrpcHealth {
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN.
        #[arg(long, default_value = "SERVING")]
        status: String,
    },
    /// Try one TCP connection and print ok, refused or timeout, with the time it took.
    Connect {
        /// HOST:PORT (a name is resolved as the pod resolves it).
        target: String,
        #[arg(long, default_value = "5")]
        timeout_seconds: f64,
    },
}

fn hostname() -> anyhow::Result<String> {
    Ok(nix::unistd::gethostname().context("reading the host name")?.to_string_lossy().into_owned())
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

pub async fn run(tool: Tool) -> anyhow::Result<()> {
    match tool {
        Tool::ServeHostname { port, http, tcp, udp } => serve_hostname(port, http, tcp, udp).await,
        Tool::Echo { tcp, udp } => echo(tcp, udp).await,
        Tool::Connect { target, timeout_seconds } => connect(&target, timeout_seconds).await,
        Tool::GrpcHealth { port, status } => {
            let grpc = kubesvc_agent::grpc::STATUSES;
            let Some(n) = grpc.iter().position(|s| *s == status) else {
                anyhow::bail!("grpc-health: --status must be one of {grpc:?}");
            };
            let listener =
                TcpListener::bind(any(port)).await.with_context(|| format!("listening on TCP port {port}"))?;
            eprintln!("answering gRPC health checks on port {port} with {status}");
            Ok(kubesvc_agent::grpc::serve_health(listener, n as u8).await?)
        }
    }
}

/// One HTTP request's head: its path, and whether the client asked to close after it.
struct Head {
    path: String,
    close: bool,
}

/// Reads one HTTP request's head (what follows it is not read).
async fn read_head(s: &mut TcpStream) -> std::io::Result<Option<Head>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let close = text.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close"))
    });
    Ok(Some(Head { path, close }))
}

async fn serve_hostname(port: u16, http: bool, tcp: bool, udp: bool) -> anyhow::Result<()> {
    let name = hostname()?;
    anyhow::ensure!(http || tcp || udp, "serve-hostname: nothing to serve (--http=false without --tcp or --udp)");
    anyhow::ensure!(!(http && tcp), "serve-hostname: --tcp and --http cannot share port {port}");
    let mut tasks = tokio::task::JoinSet::new();
    if http || tcp {
        let listener = TcpListener::bind(any(port)).await.with_context(|| format!("listening on TCP port {port}"))?;
        let name = name.clone();
        tasks.spawn(accept(listener, move |mut s| {
            let name = name.clone();
            async move {
                if !http {
                    let _ = s.write_all(name.as_bytes()).await;
                    return;
                }
                // Keep-alive: one answer per request until the client closes. `/clientip`
                // answers the client's address as this pod sees it (agnhost's netexec does).
                let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                while let Ok(Some(head)) = read_head(&mut s).await {
                    let body = if head.path == "/clientip" { peer.as_str() } else { name.as_str() };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n{body}",
                        body.len(),
                        if head.close { "Connection: close\r\n" } else { "" }
                    );
                    if s.write_all(answer.as_bytes()).await.is_err() || head.close {
                        break;
                    }
                }
            }
        }));
    }
    if udp {
        let socket = UdpSocket::bind(any(port)).await.with_context(|| format!("listening on UDP port {port}"))?;
        tasks.spawn(answer_datagrams(socket, move |_| name.as_bytes().to_vec()));
    }
    eprintln!("serving the host name on port {port}");
    first_failure(tasks).await
}

/// Accepts connections for ever, each handled on a task of its own.
async fn accept<F, Fut>(listener: TcpListener, handle: F) -> anyhow::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(handle(s));
    }
}

/// Answers every datagram with what `reply` makes of it.
async fn answer_datagrams(socket: UdpSocket, reply: impl Fn(&[u8]) -> Vec<u8>) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        socket.send_to(&reply(&buf[..n]), from).await?;
    }
}

async fn first_failure(mut tasks: tokio::task::JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    match tasks.join_next().await {
        Some(r) => r?,
        None => Ok(()),
    }
}

async fn echo(tcp: Option<u16>, udp: Option<u16>) -> anyhow::Result<()> {
    anyhow::ensure!(tcp.is_some() || udp.is_some(), "echo: give --tcp PORT, --udp PORT or both");
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(port) = tcp {
        let listener = TcpListener::bind(any(port)).await.with_context(|| format!("listening on TCP port {port}"))?;
        tasks.spawn(accept(listener, |s| async move {
            let (mut r, mut w) = s.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }));
    }
    if let Some(port) = udp {
        let socket = UdpSocket::bind(any(port)).await.with_context(|| format!("listening on UDP port {port}"))?;
        tasks.spawn(answer_datagrams(socket, <[u8]>::to_vec));
    }
    first_failure(tasks).await
}

/// Exit codes as agnhost's connect: 0 ok, 1 refused, 2 timeout, 3 anything else.
async fn connect(target: &str, timeout_seconds: f64) -> anyhow::Result<()> {
    let timeout = Duration::from_secs_f64(timeout_seconds.max(0.001));
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, TcpStream::connect(target)).await;
    let took = started.elapsed();
    let (word, code) = match result {
        Ok(Ok(_)) => ("ok", 0),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => ("refused", 1),
        Err(_) => ("timeout", 2),
        Ok(Err(e)) => {
            println!("error {:.1}ms {e}", took.as_secs_f64() * 1000.0);
            std::process::exit(3);
        }
    };
    println!("{word} {:.1}ms", took.as_secs_f64() * 1000.0);
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
