//! Test support: a kubesvc API server in a network namespace of its own.
//!
//! [`Cluster::start`] creates a fresh network namespace (`ip netns add`) with a
//! bridge holding the node address [`NODE_IP`], moves the calling thread into
//! it, and starts `kubesvc server` there on port 6443, advertising that
//! address. Everything the test then starts from this thread (the tokio
//! runtime [`Cluster::rt`], kubectl, python, the kube client) lives in that
//! namespace too, so no test touches the machine's own network. Dropping the
//! cluster stops the server, removes the namespace and the data directory,
//! by the names and PIDs it created, and returns the thread to where it was.
//!
//! It needs root (for network namespaces), `ip` and, for kubectl tests,
//! `kubectl` on PATH; without them it fails loudly rather than skipping.

pub mod kubelet;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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
        run(Command::new("ip").args(["netns", "add", &name])).context("is iproute2 installed?")?;
        let ns = NetNs { original: File::open("/proc/thread-self/ns/net")?, name };
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

/// A running kubesvc server in its own network namespace.
pub struct Cluster {
    /// A runtime whose threads are in the cluster's network namespace.
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    binary: PathBuf,
    extra_args: Vec<String>,
    server: Option<Child>,
    last_boot: Duration,
    // Dropped last: leaves and removes the namespace.
    _net: NetNs,
}

impl Cluster {
    /// Starts `binary server` with durable storage in a fresh data directory.
    pub fn start(binary: impl AsRef<Path>) -> Result<Cluster> {
        Self::start_with(binary, &[])
    }

    /// As [`Cluster::start`], with extra `kubesvc server` arguments.
    pub fn start_with(binary: impl AsRef<Path>, extra_args: &[&str]) -> Result<Cluster> {
        let net = NetNs::new()?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let dir = tempfile::Builder::new().prefix("kubesvc-test-").tempdir()?;
        let mut c = Cluster {
            rt,
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            binary: binary.as_ref().to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            server: None,
            last_boot: Duration::ZERO,
            _net: net,
        };
        c.boot()?;
        Ok(c)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn boot(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let started = Instant::now();
        let child = Command::new(&self.binary)
            .args(["server", "--data-dir"])
            .arg(self.dir.path())
            .args(["--listen", "0.0.0.0:6443", "--advertise-address", NODE_IP])
            .args(&self.extra_args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // The server writes the kubeconfig once it accepts connections.
        while !self.kubeconfig.exists() {
            if let Some(status) = self.server.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("kubesvc exited with {status} before it was ready:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("kubesvc was not ready within 30s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.last_boot = started.elapsed();
        Ok(())
    }

    /// How long the last (re)start took, from spawning the process to the kubeconfig.
    pub fn boot_time(&self) -> Duration {
        self.last_boot
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("kubesvc exited with {status} on SIGTERM:\n{}", self.log());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("kubesvc did not stop within 20s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.server.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.boot()
    }

    /// Starts a server that was stopped or killed.
    pub fn start_again(&mut self) -> Result<()> {
        assert!(self.server.is_none(), "the server is still running");
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

    /// Runs a command (python, curl, ...) in the cluster's namespace with KUBECONFIG set.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// A kube client for the cluster; call it inside [`Cluster::rt`].
    pub async fn client(&self) -> Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pki/token")).unwrap_or_default().trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- kubesvc server log ----\n{}", self.log());
        }
        if let Some(mut child) = self.server.take() {
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
}
