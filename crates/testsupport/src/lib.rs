//! Test support: kubesvc clusters for tests, two ways.
//!
//! - [`Cluster::in_process`]: the API server (and the controllers) in the
//!   test's own process, on a memory store at 127.0.0.1:0, with a kube client,
//!   kubectl and the kubeconfig. No root, no namespace, no process to spawn:
//!   for every API test that does not need a network or a process to kill.
//! - [`Cluster::start`]: `kubesvc server` as a process in a fresh network
//!   namespace (`ip netns add`) with a bridge holding the node address
//!   [`NODE_IP`]; the calling thread moves into it, so everything the test
//!   starts from it (the runtime [`Cluster::rt`], kubectl, python, the kube
//!   client) lives there too and no test touches the machine's own network.
//!   For restarts, crashes and the data plane. It needs root and `ip`.
//!
//! Dropping a cluster stops what it started and removes the namespace and the
//! data directory, by the names and PIDs it created. kubectl tests need
//! `kubectl` on PATH. Whatever is missing fails loudly; nothing skips.

pub mod kubelet;

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The address of the test namespace's one interface (a bridge), which the
/// server advertises as its own.
pub const NODE_IP: &str = "192.168.240.1";

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A network namespace made for one test; the creating thread is inside it.
pub struct NetNs {
    pub name: String,
    original: File,
}

impl NetNs {
    pub fn new() -> Result<NetNs> {
        if !nix::unistd::geteuid().is_root() {
            bail!("kubesvc's integration tests need root to create network namespaces (run them as root, as CI does)");
        }
        let name = format!("ksvc-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        // Opened first: once the namespace exists, every way out goes through Drop.
        let original = File::open("/proc/thread-self/ns/net")?;
        run(Command::new("ip").args(["netns", "add", &name])).context("is iproute2 installed?")?;
        let ns = NetNs { original, name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        run(Command::new("ip").args(["-n", &ns.name, "link", "add", "ksvc0", "type", "bridge"]))?;
        run(Command::new("ip").args(["-n", &ns.name, "addr", "add", &format!("{NODE_IP}/24"), "dev", "ksvc0"]))?;
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "ksvc0", "up"]))?;
        let target = File::open(format!("/run/netns/{}", ns.name))?;
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET).context("entering the test's network namespace")?;
        Ok(ns)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET);
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// What kubectl printed.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// stdout, failing the test with both streams if the command failed.
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(self.success, "command failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stdout
    }

    /// stderr, failing the test if the command succeeded.
    #[track_caller]
    pub fn err(self) -> String {
        assert!(!self.success, "command should have failed\nstdout:\n{}", self.stdout);
        self.stderr
    }
}

/// How an in-process cluster is set up; the defaults are `kubesvc server`'s.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run the controllers too.
    pub controllers: bool,
    pub watch_cache_size: usize,
    pub bookmark_interval: Duration,
    /// `--service-cidr`.
    pub service_cidr: &'static str,
    /// `--service-node-port-range`.
    pub node_port_range: &'static str,
    pub node_monitor_grace_period: Duration,
    /// How often the built-in Services are put right (10 s in a real server).
    pub builtin_interval: Duration,
    /// `--cluster-cidr`, for node pod CIDRs.
    pub cluster_cidr: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controllers: true,
            watch_cache_size: 10_000,
            bookmark_interval: Duration::from_secs(60),
            service_cidr: "10.96.0.0/12",
            node_port_range: "30000-32767",
            node_monitor_grace_period: Duration::from_secs(50),
            builtin_interval: Duration::from_millis(200),
            cluster_cidr: "10.244.0.0/16",
        }
    }
}

/// What a process cluster runs.
#[derive(Clone, Debug)]
enum Role {
    Server(Vec<String>),
    /// `kubesvc up --nodes N --name <the namespace's name>`.
    Up(u8),
}

/// What serves the cluster.
enum Server {
    /// `kubesvc server` in a network namespace made for the test.
    Process {
        binary: PathBuf,
        /// `kubesvc server` with these arguments, or `kubesvc up`.
        role: Role,
        child: Option<Child>,
        last_boot: Duration,
        // Dropped last: leaves and removes the namespace.
        _net: NetNs,
    },
    /// The API server in this process; it ends with the runtime.
    InProcess { store: Arc<dyn kubesvc_store::Store> },
}

/// A running kubesvc cluster.
pub struct Cluster {
    /// A runtime for the test's async work (for a namespaced cluster, its threads are in the namespace).
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    server: Server,
}

impl Cluster {
    /// The API server and controllers in this process, as `kubesvc server` runs them.
    pub fn in_process() -> Result<Cluster> {
        Self::in_process_with(Options::default())
    }

    /// As [`Cluster::in_process`], set up as `opts` says.
    pub fn in_process_with(opts: Options) -> Result<Cluster> {
        // Shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_test_writer()
            .try_init();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let dir = tempfile::Builder::new().prefix("kubesvc-test-").tempdir()?;
        let store: Arc<dyn kubesvc_store::Store> = Arc::new(kubesvc_store::memory::MemoryStore::new());
        let mut config =
            kubesvc_apiserver::Config::new(dir.path().to_path_buf(), SocketAddr::from(([127, 0, 0, 1], 0)));
        config.watch_cache_size = opts.watch_cache_size;
        config.bookmark_interval = opts.bookmark_interval;
        config.services = kubesvc_apiserver::services::ServiceNetwork::parse(opts.service_cidr, opts.node_port_range)?;
        let config_cidrs = config.services.cidrs.clone();
        // Stored as the kubernetes Service's endpoint, never connected to.
        config.advertise_address = Some(NODE_IP.parse::<IpAddr>()?);
        config.builtin_interval = opts.builtin_interval;
        let running = rt.block_on(kubesvc_apiserver::start(config, store.clone()))?;
        let kubeconfig = running.kubeconfig.clone();
        if opts.controllers {
            let client = rt.block_on(client_for(&kubeconfig))?;
            let mut copts = kubesvc_controllers::Options {
                node_monitor_grace_period: opts.node_monitor_grace_period,
                ..Default::default()
            };
            copts.ipam.cluster_cidrs =
                vec![kubesvc_api::net::Cidr::parse(opts.cluster_cidr).map_err(anyhow::Error::msg)?];
            copts.ipam.service_cidrs = config_cidrs;
            rt.spawn(async move {
                // Until the runtime ends with the cluster.
                let (_keep, stop) = tokio::sync::watch::channel(false);
                if let Err(e) = kubesvc_controllers::run(client, copts, stop).await {
                    tracing::error!(error = %chain(&e), "the controllers failed");
                }
            });
        }
        // Serves until the runtime is dropped with the cluster.
        let (_keep, stop) = tokio::sync::watch::channel(false);
        rt.spawn(async move {
            let _keep = _keep;
            if let Err(e) = running.serve_until(stop).await {
                tracing::error!(error = %chain(&e), "the API server failed");
            }
        });
        Ok(Cluster { rt, kubeconfig, dir, server: Server::InProcess { store } })
    }

    /// Starts `binary server` with durable storage in a fresh data directory, in a network namespace.
    pub fn start(binary: impl AsRef<Path>) -> Result<Cluster> {
        Self::start_with(binary, &[])
    }

    /// As [`Cluster::start`], with extra `kubesvc server` arguments.
    pub fn start_with(binary: impl AsRef<Path>, extra_args: &[&str]) -> Result<Cluster> {
        Self::process_cluster(binary.as_ref(), Role::Server(extra_args.iter().map(|s| s.to_string()).collect()))
    }

    /// `binary up --nodes N` in a fresh network namespace: the server, the
    /// controllers and N node agents, each node in a namespace of its own
    /// (`<cluster name>-node-<i>`, see [`Cluster::node_netns`]); returns once
    /// `up` says every node is Ready. Stopping it must leave nothing behind.
    pub fn up(binary: impl AsRef<Path>, nodes: u8) -> Result<Cluster> {
        Self::process_cluster(binary.as_ref(), Role::Up(nodes))
    }

    fn process_cluster(binary: &Path, role: Role) -> Result<Cluster> {
        let net = NetNs::new()?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let dir = tempfile::Builder::new().prefix("kubesvc-test-").tempdir()?;
        let mut c = Cluster {
            rt,
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            server: Server::Process {
                binary: binary.to_path_buf(),
                role,
                child: None,
                last_boot: Duration::ZERO,
                _net: net,
            },
        };
        c.boot()?;
        Ok(c)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The process server's parts; a test asking them of an in-process cluster is wrong.
    #[track_caller]
    fn process(&mut self) -> (&Path, &Role, &mut Option<Child>, &mut Duration) {
        match &mut self.server {
            Server::Process { binary, role, child, last_boot, .. } => (binary, role, child, last_boot),
            Server::InProcess { .. } => panic!("this needs a kubesvc process: start the cluster with Cluster::start"),
        }
    }

    fn boot(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let (log_path, dir, kubeconfig) = (self.log_path(), self.dir.path().to_path_buf(), self.kubeconfig.clone());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let name = self.netns_name().to_string();
        let up_out = self.dir.path().join("up.out");
        let (binary, role, child, last_boot) = self.process();
        let started = Instant::now();
        let mut cmd = Command::new(binary);
        match role {
            Role::Server(extra_args) => {
                cmd.args(["server", "--data-dir"])
                    .arg(&dir)
                    .args(["--listen", "0.0.0.0:6443", "--advertise-address", NODE_IP])
                    .args(extra_args)
                    .stdout(log.try_clone()?);
            }
            Role::Up(nodes) => {
                cmd.args(["up", "--nodes", &nodes.to_string(), "--name", &name, "--data-dir"])
                    .arg(&dir)
                    .stdout(File::create(&up_out)?);
            }
        }
        let is_up = matches!(role, Role::Up(_));
        let spawned = cmd
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let child = child.insert(spawned);
        let deadline = Instant::now() + Duration::from_secs(30);
        // The server writes the kubeconfig once it accepts connections; `up` says when its nodes are Ready.
        let ready = || if is_up { read_log(&up_out).contains("kubesvc is up") } else { kubeconfig.exists() };
        while !ready() {
            if let Some(status) = child.try_wait().ok().flatten() {
                bail!("kubesvc exited with {status} before it was ready:\n{}", read_log(&log_path));
            }
            if Instant::now() > deadline {
                bail!("kubesvc was not ready within 30s:\n{}", read_log(&log_path));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        *last_boot = started.elapsed();
        Ok(())
    }

    /// How long the last (re)start took, from spawning the process to the kubeconfig.
    pub fn boot_time(&self) -> Duration {
        match &self.server {
            Server::Process { last_boot, .. } => *last_boot,
            Server::InProcess { .. } => Duration::ZERO,
        }
    }

    /// The server process's log so far (an in-process server logs with the test's output).
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// Whether `kubesvc server` runs as a process (else in this one).
    pub fn is_process(&self) -> bool {
        matches!(self.server, Server::Process { .. })
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.server {
            Server::Process { child, .. } => child.as_ref().map(Child::id),
            Server::InProcess { .. } => None,
        }
    }

    /// The store of an in-process cluster, to look at what the API server wrote.
    #[track_caller]
    pub fn store(&self) -> Arc<dyn kubesvc_store::Store> {
        match &self.server {
            Server::InProcess { store } => store.clone(),
            Server::Process { .. } => panic!("a process's store is its database file: read it once it stopped"),
        }
    }

    /// Stops the server process with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        let log_path = self.log_path();
        let (_, _, slot, _) = self.process();
        let Some(child) = slot.as_mut() else {
            return Ok(());
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)?;
        // Longer than the server gives its own roles to stop.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                *slot = None;
                if !status.success() {
                    bail!("kubesvc exited with {status} on SIGTERM:\n{}", read_log(&log_path));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                *slot = None;
                bail!("kubesvc did not stop within 30s of SIGTERM:\n{}", read_log(&log_path));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server process with SIGKILL, as a crash would.
    pub fn kill(&mut self) -> Result<()> {
        let (_, _, slot, _) = self.process();
        if let Some(child) = slot.as_mut() {
            child.kill()?;
            child.wait()?;
            *slot = None;
        }
        Ok(())
    }

    /// Starts the server process again on the same data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.boot()
    }

    /// Starts a server process that was stopped or killed.
    pub fn start_again(&mut self) -> Result<()> {
        let (_, _, child, _) = self.process();
        assert!(child.is_none(), "the server is still running");
        self.boot()
    }

    /// Runs kubectl against the cluster with its own discovery cache.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.kubectl_with(args, stdin, &[])
    }

    /// Runs kubectl with `stdin` and extra environment variables (e.g. KUBE_EDITOR).
    pub fn kubectl_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
        let mut cmd = self.kubectl_command(args);
        cmd.envs(env.iter().copied());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "kubectl could not run ({e}): the kubectl tests need kubectl on PATH (1.32 ships with these machines)"
            )
        });
        if let Some(input) = stdin {
            use std::io::Write as _;
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).expect("writing kubectl's stdin");
        }
        Run::from(child.wait_with_output().expect("waiting for kubectl"))
    }

    /// A kubectl command set up for the cluster, to spawn and manage yourself (e.g. `get -w`).
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("kubectl-cache"))
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs a command (python, curl, ...) with KUBECONFIG set (in the cluster's namespace, if it has one).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// A kube client for the cluster; call it inside [`Cluster::rt`].
    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig).await
    }

    /// A kubeconfig for user `cn` in group `group`, with a client certificate from the cluster CA.
    pub fn kubeconfig_as(&self, cn: &str, group: &str) -> Result<PathBuf> {
        let ca = kubesvc_apiserver::pki::Ca::load(self.dir.path())?;
        let cert = ca.issue_client(cn, group)?;
        let path = self.dir.path().join(format!("kubeconfig-{}", cn.replace(':', "-")));
        Ok(ca.write_kubeconfig(&path, &self.server_url()?, cn, &cert)?)
    }

    /// A kube client as user `cn` in group `group` (see [`Cluster::kubeconfig_as`]).
    pub async fn client_as(&self, cn: &str, group: &str) -> Result<kube::Client> {
        client_for(&self.kubeconfig_as(cn, group)?).await
    }

    /// The API server's URL, as the admin kubeconfig names it.
    pub fn server_url(&self) -> Result<String> {
        kube::config::Kubeconfig::read_from(&self.kubeconfig)?
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .context("the kubeconfig names no server")
    }

    /// The port the API server serves on (6443 for a process; any for an in-process server).
    pub fn api_port(&self) -> Result<u16> {
        let url = self.server_url()?;
        let port = url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok());
        port.with_context(|| format!("no port in {url}"))
    }

    /// The name of the test's network namespace; a `kubesvc up` cluster's name too.
    #[track_caller]
    pub fn netns_name(&self) -> &str {
        match &self.server {
            Server::Process { _net, .. } => &_net.name,
            Server::InProcess { .. } => panic!("an in-process cluster has no namespace"),
        }
    }

    /// The network namespace of node `i` (from 1) of a `kubesvc up` cluster.
    pub fn node_netns(&self, i: u8) -> String {
        format!("{}-node-{i}", self.netns_name())
    }

    /// `program` run inside node `i`'s network namespace.
    pub fn in_node(&self, i: u8, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.node_netns(i), program]);
        cmd
    }

    /// `program` run as pod `namespace/name`'s containers run: in its network namespace and
    /// in its node's pod cgroup (where the node's proxy balances connections at the socket).
    pub fn in_pod(&self, namespace: &str, name: &str, program: &str) -> Result<Command> {
        self.pod_command(namespace, name, program, true)
    }

    /// `program` in pod `namespace/name`'s network namespace only, outside the pod cgroup
    /// (so its connections take the nftables path alone).
    pub fn in_pod_netns(&self, namespace: &str, name: &str, program: &str) -> Result<Command> {
        self.pod_command(namespace, name, program, false)
    }

    fn pod_command(&self, namespace: &str, name: &str, program: &str, cgroup: bool) -> Result<Command> {
        let got =
            self.kubectl(&["get", "pod", "-n", namespace, name, "-o", "jsonpath={.metadata.uid} {.spec.nodeName}"]);
        let (uid, node) = got.stdout.split_once(' ').unwrap_or((got.stdout.as_str(), ""));
        if !got.success || uid.is_empty() {
            bail!("no pod {namespace}/{name}: {}", got.stderr);
        }
        let netns = format!("kubesvc-pod-{uid}");
        let procs = kubesvc_host::socklb::cgroup2_mount()
            .map(|m| m.join(format!("kubesvc/{}-{node}/cgroup.procs", self.netns_name())))
            .filter(|p| cgroup && p.exists());
        let mut cmd = Command::new("sh");
        match procs {
            // Joined before `ip netns exec`, whose fresh /sys hides the cgroup mount.
            Some(procs) => cmd.args(["-c", r#"echo $$ > "$0" && exec ip netns exec "$@""#]).arg(procs),
            None => cmd.args(["-c", r#"exec ip netns exec "$@""#, "sh"]),
        };
        cmd.args([netns.as_str(), program]);
        Ok(cmd)
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pki/token")).unwrap_or_default().trim().to_string()
    }
}

/// An error and its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    Ok(kubesvc_runtime::client::from_kubeconfig(Some(kubeconfig)).await?)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let log = self.log_path();
        if let Server::Process { child, .. } = &mut self.server {
            if std::thread::panicking() {
                eprintln!("---- kubesvc server log ----\n{}", read_log(&log));
            }
            if let Some(mut child) = child.take() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let deadline = Instant::now() + Duration::from_secs(10);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // What a `kubesvc up` that failed to stop left: its nodes' and pods' namespaces, by name.
        if let Server::Process { role: Role::Up(nodes), _net, .. } = &self.server {
            let mut names: Vec<String> = (1..=*nodes).map(|i| format!("{}-node-{i}", _net.name)).collect();
            for node in std::fs::read_dir(self.dir.path().join("nodes")).into_iter().flatten().flatten() {
                let pods = node.path().join("state/pods");
                for pod in std::fs::read_dir(pods).into_iter().flatten().flatten() {
                    names.push(format!("kubesvc-pod-{}", pod.file_name().to_string_lossy()));
                }
            }
            for name in names {
                if Path::new("/run/netns").join(&name).exists() {
                    let _ = Command::new("ip").args(["netns", "delete", &name]).status();
                }
            }
        }
    }
}
