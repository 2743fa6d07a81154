//! The container shim: `kubesvc shim <spec>` is what a container's process
//! runs under. It joins the pod's network namespace, makes private mount and
//! UTS namespaces (the pod's /etc/hosts, /etc/resolv.conf, /etc/hostname and
//! volumes bound over the node's files, the pod's hostname), joins the pod's
//! cgroups, then starts the command and stays as its parent: it writes the
//! command's output to the container log in the CRI format (`kubectl logs`
//! reads it), forwards SIGTERM, and records how the command ended.
//!
//! Everything here runs in the shim process, so the agent never forks with
//! namespaces half set up.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A bind mount in the container's mount namespace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything the shim needs to start one container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimSpec {
    /// The pod's network namespace (`None`: the node's, for hostNetwork pods).
    pub netns: Option<PathBuf>,
    /// The pod's hostname (`None`: the node's).
    pub hostname: Option<String>,
    pub mounts: Vec<BindMount>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `cgroup.procs` files the shim (and so the command) joins.
    pub cgroups: Vec<PathBuf>,
    /// The CRI-format log file.
    pub log: PathBuf,
    /// Where the result is written when the command ends.
    pub result: PathBuf,
    /// Die with the agent (off when the agent leaves pods running across a restart).
    pub die_with_agent: bool,
}

/// How a container ended, as the shim saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShimResult {
    /// The exit code Kubernetes reports (128 + signal for a signal; 128 when it never started).
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub started_at: String,
    pub finished_at: String,
    /// Why the command could not start, if it did not.
    pub start_error: Option<String>,
    /// The command's pid, once started.
    pub pid: Option<u32>,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// One log line in the CRI format: `<RFC 3339 nano> <stream> <F|P> <text>`.
pub fn cri_line(stream: &str, text: &[u8], partial: bool) -> Vec<u8> {
    let mut line = format!("{} {stream} {} ", now(), if partial { "P" } else { "F" }).into_bytes();
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

fn setup(spec: &ShimSpec) -> Result<(), String> {
    if spec.die_with_agent {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl: {e}"))?;
    }
    if let Some(ns) = &spec.netns {
        let f = File::open(ns).map_err(|e| format!("opening {}: {e}", ns.display()))?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining the pod's network: {e}"))?;
    }
    // Cgroups first: the pod's own /sys below no longer shows the node's.
    let me = std::process::id().to_string();
    for procs in &spec.cgroups {
        std::fs::write(procs, &me).map_err(|e| format!("joining {}: {e}", procs.display()))?;
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(|e| format!("unshare: {e}"))?;
    // Nothing mounted here reaches the node's mount namespace, but what the
    // node unmounts (a gone pod's network namespace) leaves here too, so no
    // container keeps another pod's namespace alive.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .map_err(|e| format!("making mounts slaves of the node's: {e}"))?;
    if spec.netns.is_some() {
        // sysfs shows the network namespace of whoever mounts it: the pod's, from here.
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("sysfs"), "/sys", Some("sysfs"), flags, None::<&str>)
            .map_err(|e| format!("mounting the pod's /sys: {e}"))?;
    }
    for m in &spec.mounts {
        mount(Some(&m.source), &m.target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| format!("mounting {} on {}: {e}", m.source.display(), m.target.display()))?;
        if m.read_only {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, &m.target, None::<&str>, flags, None::<&str>)
                .map_err(|e| format!("making {} read-only: {e}", m.target.display()))?;
        }
    }
    if let Some(h) = &spec.hostname {
        nix::unistd::sethostname(h).map_err(|e| format!("sethostname: {e}"))?;
    }
    Ok(())
}

/// Go's exec error for a command not found, as container runtimes report it.
fn start_error(argv0: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("exec: {argv0:?}: executable file not found in $PATH"),
        std::io::ErrorKind::PermissionDenied => format!("exec: {argv0:?}: permission denied"),
        _ => format!("exec: {argv0:?}: {e}"),
    }
}

fn write_result(path: &Path, r: &ShimResult) {
    if let Ok(text) = serde_json::to_vec(r) {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

/// Copies one stream into the log, a CRI line per line of output.
fn pump(stream: impl std::io::Read, name: &'static str, log: Arc<Mutex<File>>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let partial = buf.last() != Some(&b'\n');
                if !partial {
                    buf.pop();
                }
                let line = cri_line(name, &buf, partial);
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(&line);
                }
            }
        }
    }
}

/// Runs the container described by the spec file at `path`; returns the shim's exit code.
pub fn run(path: &Path) -> i32 {
    let spec: ShimSpec = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubesvc shim: reading {}: {e}", path.display());
            return 125;
        }
    };
    let started_at = now();
    let failed = |why: String| {
        write_result(
            &spec.result,
            &ShimResult {
                exit_code: 128,
                signal: None,
                started_at: started_at.clone(),
                finished_at: now(),
                start_error: Some(why),
                pid: None,
            },
        );
        128
    };
    // Signals are taken by one thread and forwarded; block them before any thread starts.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        return failed(format!("blocking signals: {e}"));
    }
    if let Err(e) = setup(&spec) {
        return failed(e);
    }
    let log = match std::fs::OpenOptions::new().create(true).append(true).open(&spec.log) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => return failed(format!("opening the log {}: {e}", spec.log.display())),
    };
    let Some(argv0) = spec.argv.first() else { return failed("the container has no command".into()) };
    let mut cmd = Command::new(argv0);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a kill reaches everything it started.
        .process_group(0);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    if let Some(gid) = spec.gid {
        cmd.gid(gid);
    }
    if let Some(uid) = spec.uid {
        cmd.uid(uid);
    }
    let die_with_shim = spec.die_with_agent;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (sigprocmask, signal, prctl). It is needed because a
    // child inherits the signal mask and ignored signals: the shim blocks the
    // signals it forwards and Rust ignores SIGPIPE, and a container must start
    // with neither, as it would under any container runtime.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            use nix::sys::signal::{SigHandler, SigmaskHow, signal, sigprocmask};
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            for sig in Signal::iterator() {
                if !matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
                    let _ = signal(sig, SigHandler::SigDfl);
                }
            }
            if die_with_shim {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(start_error(argv0, &e)),
    };
    let pid = child.id();
    write_result(
        &spec.result.with_extension("running"),
        &ShimResult {
            exit_code: 0,
            signal: None,
            started_at: started_at.clone(),
            finished_at: String::new(),
            start_error: None,
            pid: Some(pid),
        },
    );
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        let log = log.clone();
        pumps.push(std::thread::spawn(move || pump(out, "stdout", log)));
    }
    if let Some(err) = child.stderr.take() {
        let log = log.clone();
        pumps.push(std::thread::spawn(move || pump(err, "stderr", log)));
    }
    std::thread::spawn(move || {
        while let Ok(sig) = signals.wait() {
            // To the whole group the command leads.
            let _ = kill(Pid::from_raw(-(pid as i32)), sig);
        }
    });
    let status = child.wait();
    for p in pumps {
        let _ = p.join();
    }
    let (exit_code, signal) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => (c, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (255, None),
        },
        Err(_) => (255, None),
    };
    write_result(
        &spec.result,
        &ShimResult { exit_code, signal, started_at, finished_at: now(), start_error: None, pid: Some(pid) },
    );
    let _ = std::fs::remove_file(spec.result.with_extension("running"));
    exit_code
}

/// `kubesvc shim --exec PID -- ARGV`: runs `argv` inside the container whose
/// command is `pid` (its network, UTS and mount namespaces, its working
/// directory, environment and user), as `kubectl exec` and exec probes do.
/// Replaces this process, so the caller sees the command's own stdio and exit
/// status; returns only if that fails (126: could not enter, 127: not found).
pub fn exec_in(pid: u32, argv: &[String], tty: bool) -> i32 {
    if tty && let Err(e) = controlling_terminal() {
        eprintln!("cannot set up the terminal: {e}");
        return 126;
    }
    match enter(pid, argv) {
        Ok(never) => match never {},
        Err((code, message)) => {
            eprintln!("{message}");
            code
        }
    }
}

/// A new session whose controlling terminal is the one on stdin (opening a
/// terminal as a session leader without one makes it so), on 0, 1 and 2.
fn controlling_terminal() -> nix::Result<()> {
    use nix::fcntl::{OFlag, open};
    nix::unistd::setsid()?;
    let name = nix::unistd::ttyname(std::io::stdin())?;
    let fd = open(&name, OFlag::O_RDWR, nix::sys::stat::Mode::empty())?;
    nix::unistd::dup2_stdin(&fd)?;
    nix::unistd::dup2_stdout(&fd)?;
    nix::unistd::dup2_stderr(&fd)?;
    Ok(())
}

fn enter(pid: u32, argv: &[String]) -> Result<std::convert::Infallible, (i32, String)> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let cannot = |what: &str, e: &dyn std::fmt::Display| (126, format!("cannot enter the container ({what}): {e}"));
    let Some(argv0) = argv.first() else { return Err((126, "no command given".into())) };
    // Everything read from /proc before the mount namespace changes under us.
    let env: Vec<(OsString, OsString)> = std::fs::read(proc.join("environ"))
        .map_err(|e| cannot("environment", &e))?
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, v)| (OsString::from(k), OsString::from(v)))
        })
        .collect();
    let cwd = std::fs::read_link(proc.join("cwd")).unwrap_or_else(|_| PathBuf::from("/"));
    let status = std::fs::read_to_string(proc.join("status")).map_err(|e| cannot("status", &e))?;
    let id = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
    };
    let (uid, gid) = (id("Uid:"), id("Gid:"));
    let mut namespaces = Vec::new();
    for (name, flag) in
        [("net", CloneFlags::CLONE_NEWNET), ("uts", CloneFlags::CLONE_NEWUTS), ("mnt", CloneFlags::CLONE_NEWNS)]
    {
        let f = File::open(proc.join("ns").join(name)).map_err(|e| cannot(name, &e))?;
        namespaces.push((f, flag, name));
    }
    for (f, flag, name) in &namespaces {
        setns(f.as_fd(), *flag).map_err(|e| cannot(name, &e))?;
    }
    let _ = std::env::set_current_dir(&cwd);
    let mut cmd = Command::new(argv0);
    cmd.args(&argv[1..]).env_clear().envs(env);
    if let Some(g) = gid {
        cmd.gid(g);
    }
    if let Some(u) = uid {
        cmd.uid(u);
    }
    let e = cmd.exec();
    let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
    Err((code, start_error(argv0, &e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_cri() {
        let line = String::from_utf8(cri_line("stdout", b"hello", false)).unwrap();
        let (ts, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, "stdout F hello\n");
        assert!(ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000000000Z".len(), "{ts}");
        assert!(String::from_utf8(cri_line("stderr", b"par", true)).unwrap().ends_with(" stderr P par\n"));
        assert_eq!(
            start_error("nope", &std::io::Error::from(std::io::ErrorKind::NotFound)),
            "exec: \"nope\": executable file not found in $PATH"
        );
    }
}
