//! Running the pods bound to this node: one worker per pod sets up its
//! network and files, starts its containers under the shim, restarts them as
//! the restart policy says (with kubelet's back-off), reports the pod's
//! status as kubelet does, and on deletion stops them (SIGTERM, the grace
//! period, SIGKILL), removes what the pod had and lets the API delete it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use kubesvc_runtime::Informer;
use kubesvc_runtime::events::{EventType, Recorder, reference};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::env::{self, Sources};
use crate::files::{self, ClusterDns, ResolvConf};
use crate::network::{PodNetwork, Sandbox};
use crate::probe;
use crate::shim::{BindMount, ShimResult, ShimSpec};
use crate::{Config, Error};

/// kubelet's crash-loop back-off: 10 s doubling to 5 minutes, reset after 10 minutes up.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

fn now_time() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Go's duration text for the back-off values kubelet shows (10s, 1m20s, 5m0s).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 { format!("{s}s") } else { format!("{}m{}s", s / 60, s % 60) }
}

/// What the agent shares with every pod worker.
pub struct Shared {
    pub client: Client,
    pub config: Config,
    pub network: Arc<PodNetwork>,
    pub services: Arc<Informer<Service>>,
    pub recorder: Recorder,
    pub host_resolv: ResolvConf,
}

/// One container's life as the worker tracks it.
#[derive(Default)]
struct ContainerState {
    restarts: i32,
    /// The shim running it now.
    running: Option<Running>,
    /// How it last ended.
    last: Option<ShimResult>,
    /// The run before `last`, for `lastState`.
    previous: Option<ShimResult>,
    /// Why it waits, when it does: (reason, message).
    waiting: Option<(String, String)>,
    /// The next restart's delay (none before the first crash).
    backoff: Option<Duration>,
    /// The delay being waited now, which CrashLoopBackOff shows.
    waiting_for: Duration,
    /// When it may start again.
    not_before: Option<Instant>,
    started_once: bool,
}

/// What a container's state counts as for the pod's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Running,
    Waiting,
    Succeeded,
    Failed,
}

struct Running {
    /// The shim's pid.
    pid: u32,
    started_at: String,
    since: Instant,
    result_path: PathBuf,
    /// The shim's exit code once it ended.
    exit: watch::Receiver<Option<i32>>,
    probes: probe::Probes,
    /// Being stopped for a failed probe: SIGKILL at this instant.
    kill_at: Option<Instant>,
    /// Started by an earlier agent: `pid` is the command's, and the exit is read from the shim's record.
    adopted: bool,
}

impl Running {
    fn ended(&self) -> Option<i32> {
        *self.exit.borrow()
    }
}

/// Sends `sig` to a container: to the shim, which forwards it to the command's group.
fn signal_shim(run: &Running, sig: Signal) {
    // An adopted container's shim is not ours to find: its command's group is signalled.
    let target = if run.adopted { -(run.pid as i32) } else { run.pid as i32 };
    let _ = kill(Pid::from_raw(target), sig);
}

/// The command's process group, from the shim's record of it, killed outright.
fn kill_group(result_path: &std::path::Path) {
    let running: Option<ShimResult> =
        std::fs::read(result_path.with_extension("running")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(pid) = running.and_then(|r| r.pid) {
        let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
    }
}

struct Lookups {
    config_maps: HashMap<String, ConfigMap>,
    secrets: HashMap<String, Secret>,
}

impl Sources for Lookups {
    fn config_map(&self, _namespace: &str, name: &str) -> Option<ConfigMap> {
        self.config_maps.get(name).cloned()
    }
    fn secret(&self, _namespace: &str, name: &str) -> Option<Secret> {
        self.secrets.get(name).cloned()
    }
}

/// The ConfigMaps and Secrets a container's environment names, fetched from the API.
async fn lookups(client: &Client, ns: &str, c: &Container) -> Lookups {
    let mut cm_names = Vec::new();
    let mut secret_names = Vec::new();
    for f in c.env_from.iter().flatten() {
        cm_names.extend(f.config_map_ref.as_ref().map(|r| r.name.clone()));
        secret_names.extend(f.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for v in c.env.iter().flatten() {
        if let Some(from) = &v.value_from {
            cm_names.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            secret_names.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = Lookups { config_maps: HashMap::new(), secrets: HashMap::new() };
    for n in cm_names {
        if let Ok(Some(cm)) = cms.get_opt(&n).await {
            out.config_maps.insert(n, cm);
        }
    }
    for n in secret_names {
        if let Ok(Some(s)) = secrets.get_opt(&n).await {
            out.secrets.insert(n, s);
        }
    }
    out
}

pub struct Worker {
    shared: Arc<Shared>,
    pod: watch::Receiver<Arc<Pod>>,
    containers: BTreeMap<String, ContainerState>,
    sandbox: Option<Sandbox>,
    pod_dir: PathBuf,
    started: String,
    last_status: Option<Value>,
    /// Whether containers an earlier agent left running were looked for.
    looked_for_survivors: bool,
    exited: Arc<Notify>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, pod: watch::Receiver<Arc<Pod>>) -> Worker {
        let uid = pod.borrow().uid().unwrap_or_default();
        // A pod an earlier agent started keeps its start time.
        let started = pod.borrow().status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0.to_string());
        let pod_dir = shared.config.state_dir.join("pods").join(&uid);
        Worker {
            shared,
            pod,
            containers: BTreeMap::new(),
            sandbox: None,
            pod_dir,
            started: started.unwrap_or_else(now_time),
            last_status: None,
            looked_for_survivors: false,
            exited: Arc::new(Notify::new()),
        }
    }

    fn pod(&self) -> Arc<Pod> {
        self.pod.borrow().clone()
    }

    async fn event(&self, pod: &Pod, container: Option<&str>, ty: EventType, reason: &str, message: &str) {
        let mut about = reference(pod);
        let init = |c: &str| pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten()).any(|i| i.name == c);
        about.field_path = container
            .map(|c| if init(c) { format!("spec.initContainers{{{c}}}") } else { format!("spec.containers{{{c}}}") });
        // As kubelet's broadcaster: recorded on the side, never holding up the pod.
        let (recorder, reason, message) = (self.shared.recorder.clone(), reason.to_string(), message.to_string());
        tokio::spawn(async move { recorder.record(&about, ty, &reason, &message).await });
    }

    /// Runs the pod until it is deleted and gone (or the agent stops).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let pod = self.pod();
            if pod.metadata.deletion_timestamp.is_some() {
                self.terminate(&pod).await;
                return;
            }
            if let Err(e) = self.sync(&pod).await {
                tracing::warn!(pod = %pod.name_any(), error = %e, "syncing the pod failed; will retry");
            }
            let wake = self.next_wake();
            let exited = self.exited.clone();
            enum Woke {
                Changed,
                Gone,
                Stop,
                Other,
            }
            let woke = tokio::select! {
                changed = self.pod.changed() => if changed.is_err() { Woke::Gone } else { Woke::Changed },
                _ = exited.notified() => Woke::Other,
                _ = tokio::time::sleep(wake) => Woke::Other,
                _ = stop.wait_for(|s| *s) => Woke::Stop,
            };
            match woke {
                Woke::Changed | Woke::Other => {}
                // The pod left this node's informer: it was deleted outright.
                Woke::Gone => {
                    let pod = self.pod();
                    self.terminate(&pod).await;
                    return;
                }
                // Nothing the agent started outlives it, unless asked to stay for the next agent.
                Woke::Stop => {
                    if !self.shared.config.keep_pods_on_exit {
                        self.stop_all(Duration::from_secs(2)).await;
                        let uid = self.pod().uid().unwrap_or_default();
                        if let Err(e) = self.shared.network.teardown(&uid).await {
                            tracing::warn!(error = %e, "removing a pod's network at shutdown failed");
                        }
                    }
                    return;
                }
            }
        }
    }

    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let kills = self.containers.values().filter_map(|c| c.running.as_ref().and_then(|r| r.kill_at));
        let soonest = self
            .containers
            .values()
            .filter_map(|c| c.not_before)
            .chain(kills)
            .map(|t| t.saturating_duration_since(now))
            .min();
        soonest.unwrap_or(Duration::from_secs(10)).max(Duration::from_millis(20))
    }

    /// One pass: the sandbox, the containers, the status.
    async fn sync(&mut self, pod: &Pod) -> Result<(), Error> {
        let uid = pod.uid().unwrap_or_default();
        if self.sandbox.is_none() {
            let began = Instant::now();
            let sandbox = self.shared.network.setup(&uid).await?;
            tracing::debug!(pod = %pod.name_any(), took = ?began.elapsed(), "the pod's network is set up");
            self.write_files(pod, &sandbox.ips)?;
            self.sandbox = Some(sandbox);
        }
        if !self.looked_for_survivors {
            self.looked_for_survivors = true;
            self.adopt(pod);
        }
        self.reap().await;
        self.probe_results(pod).await;
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always").to_string();
        // Init containers run one at a time, in order, each to success (a
        // failed one restarts with back-off, unless the policy is Never).
        for c in spec.init_containers.iter().flatten() {
            let state = self.containers.entry(c.name.clone()).or_default();
            if state.running.is_some() {
                return self.report(pod).await;
            }
            match &state.last {
                Some(r) if r.exit_code == 0 => continue,
                Some(_) if policy == "Never" => return self.report(pod).await,
                _ => {}
            }
            if state.not_before.is_none_or(|t| t <= Instant::now()) {
                self.start(pod, c).await;
            }
            return self.report(pod).await;
        }
        for c in &spec.containers {
            let state = self.containers.entry(c.name.clone()).or_default();
            if state.running.is_some() {
                continue;
            }
            let should_run = match &state.last {
                None => true,
                Some(r) => match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => r.exit_code != 0,
                    _ => true,
                },
            };
            if !should_run {
                continue;
            }
            if let Some(t) = state.not_before
                && t > Instant::now()
            {
                continue;
            }
            self.start(pod, c).await;
        }
        self.report(pod).await
    }

    fn write_files(&self, pod: &Pod, ips: &[IpAddr]) -> Result<(), Error> {
        std::fs::create_dir_all(&self.pod_dir).map_err(|e| Error::Io(self.pod_dir.clone(), e))?;
        let cfg = &self.shared.config;
        let dns = ClusterDns { servers: cfg.cluster_dns.clone(), domain: cfg.cluster_domain.clone() };
        let write = |name: &str, text: String| {
            let p = self.pod_dir.join(name);
            std::fs::write(&p, text).map_err(|e| Error::Io(p, e))
        };
        write("etc-hosts", files::hosts_file(pod, ips, &cfg.cluster_domain))?;
        write("resolv.conf", files::resolv_conf(pod, &dns, &self.shared.host_resolv).render())?;
        write("hostname", format!("{}\n", files::uts_hostname(pod, &cfg.cluster_domain)))?;
        Ok(())
    }

    /// Takes over the containers an earlier agent left running (it was asked
    /// to keep pods across a restart): the latest run of each container whose
    /// shim recorded a start and no end, and whose command is alive.
    fn adopt(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let all = spec.init_containers.iter().flatten().chain(spec.containers.iter());
        let pod_ip = self.sandbox.as_ref().and_then(|s| s.ips.first().copied()).unwrap_or(self.shared.config.node_ip);
        for c in all {
            let dir = self.pod_dir.join(&c.name);
            let runs = crate::logs::runs(&dir);
            let read = |n: u32, ext: &str| -> Option<ShimResult> {
                serde_json::from_slice(&std::fs::read(dir.join(format!("{n}.{ext}"))).ok()?).ok()
            };
            let Some(&n) = runs.last() else { continue };
            let state = self.containers.entry(c.name.clone()).or_default();
            // Earlier runs count as restarts, and the newest ended one is the last state.
            state.restarts = n as i32;
            state.started_once = true;
            state.last = runs.iter().rev().find_map(|r| read(*r, "result"));
            let (Some(running), None) = (read(n, "running"), read(n, "result")) else { continue };
            let Some(pid) = running.pid.filter(|p| kill(Pid::from_raw(*p as i32), None).is_ok()) else { continue };
            let result_path = dir.join(format!("{n}.result"));
            let (tx, exit) = watch::channel(None);
            let (watched, exited) = (result_path.clone(), self.exited.clone());
            // Not our child: its end is the shim's record (or the command gone without one).
            tokio::spawn(async move {
                loop {
                    if let Ok(bytes) = std::fs::read(&watched) {
                        let code = serde_json::from_slice::<ShimResult>(&bytes).map_or(137, |r| r.exit_code);
                        tx.send_replace(Some(code));
                        break;
                    }
                    if kill(Pid::from_raw(pid as i32), None).is_err() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if !watched.exists() {
                            tx.send_replace(Some(137));
                            break;
                        }
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                exited.notify_one();
            });
            let target = probe::Target {
                pod_ip,
                running: result_path.with_extension("running"),
                shim: self.shared.config.shim.clone(),
            };
            state.running = Some(Running {
                pid,
                started_at: trim(&running.started_at),
                since: Instant::now(),
                result_path,
                exit,
                probes: probe::start(c, target, self.exited.clone()),
                kill_at: None,
                adopted: true,
            });
            tracing::info!(pod = %pod.name_any(), container = %c.name, pid, "adopted a running container");
        }
    }

    /// Failed probes become events; a container whose liveness or startup
    /// probe failed for good is stopped (SIGTERM, the grace period, SIGKILL)
    /// and then restarts as its restart policy says.
    async fn probe_results(&mut self, pod: &Pod) {
        let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(1) as u64;
        let mut events = Vec::new();
        for (name, state) in self.containers.iter_mut() {
            let Some(run) = state.running.as_mut() else { continue };
            while let Ok((kind, message)) = run.probes.failures.try_recv() {
                events.push((
                    name.clone(),
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {message}", kind.word()),
                ));
            }
            let failed = run.probes.verdict.borrow().failed.clone();
            match (failed, run.kill_at) {
                (Some((kind, _)), None) => {
                    let word = kind.word().to_lowercase();
                    events.push((
                        name.clone(),
                        EventType::Normal,
                        "Killing",
                        format!("Container {name} failed {word} probe, will be restarted"),
                    ));
                    signal_shim(run, Signal::SIGTERM);
                    run.kill_at = Some(Instant::now() + Duration::from_secs(grace));
                }
                (Some(_), Some(at)) if Instant::now() >= at => {
                    kill_group(&run.result_path);
                    let _ = kill(Pid::from_raw(run.pid as i32), Signal::SIGKILL);
                }
                _ => {}
            }
        }
        for (name, ty, reason, message) in events {
            self.event(pod, Some(&name), ty, reason, &message).await;
        }
    }

    /// Collects containers whose shim ended.
    async fn reap(&mut self) {
        for state in self.containers.values_mut() {
            let Some(run) = state.running.as_ref() else { continue };
            let Some(code) = run.ended() else { continue };
            let recorded: Option<ShimResult> =
                std::fs::read(&run.result_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let result = recorded.unwrap_or_else(|| ShimResult {
                exit_code: code,
                signal: None,
                started_at: run.started_at.clone(),
                finished_at: now_time(),
                start_error: None,
                pid: None,
            });
            // Ten minutes up and the back-off starts over, as kubelet's does.
            if run.since.elapsed() > 2 * BACKOFF_MAX {
                state.backoff = None;
            }
            state.previous = state.last.take();
            state.last = Some(result);
            state.running = None;
            // The first crash restarts at once; then 10 s, doubling to 5 minutes.
            state.waiting_for = state.backoff.unwrap_or(Duration::ZERO);
            state.not_before = Some(Instant::now() + state.waiting_for);
            state.backoff = Some(state.backoff.map_or(BACKOFF_BASE, |b| (b * 2).min(BACKOFF_MAX)));
        }
    }

    async fn start(&mut self, pod: &Pod, c: &Container) {
        let ns = pod.namespace().unwrap_or_default();
        let name = c.name.clone();
        if c.command.as_ref().is_none_or(|cmd| cmd.is_empty()) {
            let message = format!(
                "kubesvc runs commands from the node's filesystem and cannot run images yet: container {name:?} needs a command"
            );
            let first = self.containers.get(&name).is_none_or(|s| s.waiting.is_none());
            if let Some(s) = self.containers.get_mut(&name) {
                s.waiting = Some(("ImageNotSupported".into(), message.clone()));
                s.not_before = Some(Instant::now() + Duration::from_secs(3600));
            }
            if first {
                self.event(pod, Some(&name), EventType::Warning, "Failed", &format!("Error: {message}")).await;
            }
            return;
        }
        let cfg = &self.shared.config;
        // Every Service from the informer's cache, by reference: no copy per container start.
        let service_vars = {
            let services = self.shared.services.store().state();
            let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
            env::service_env(services.iter().map(|s| &**s), &ns, links)
        };
        let lookups = lookups(&self.shared.client, &ns, c).await;
        let env = match env::container_env(pod, c, &service_vars, &[cfg.node_ip], &lookups) {
            Ok(e) => e,
            Err(e) => {
                let message = e.to_string();
                if let Some(s) = self.containers.get_mut(&name) {
                    let repeat = s.waiting.as_ref().is_some_and(|(_, m)| *m == message);
                    s.waiting = Some(("CreateContainerConfigError".into(), message.clone()));
                    s.not_before = Some(Instant::now() + Duration::from_secs(2));
                    if repeat {
                        return;
                    }
                }
                self.event(pod, Some(&name), EventType::Warning, "Failed", &format!("Error: {message}")).await;
                return;
            }
        };
        let argv = env::argv(c, &env);
        // What a container runtime adds beneath the pod's own variables: the
        // image's PATH (Docker's default, with no image) and HOSTNAME.
        let mut env = env;
        for (k, v) in [
            ("HOSTNAME", files::uts_hostname(pod, &cfg.cluster_domain)),
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
        ] {
            if !env.iter().any(|(n, _)| n == k) {
                env.insert(0, (k.to_string(), v));
            }
        }
        // This run's index: 0 first, then one past the runs so far (the files of each run kept apart).
        let restarts = self.containers.get(&name).map_or(0, |s| if s.started_once { s.restarts + 1 } else { 0 });
        let dir = self.pod_dir.join(&name);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(error = %e, "creating a container directory failed");
            return;
        }
        let sandbox = self.sandbox.clone();
        let security = c.security_context.as_ref();
        let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let uid = security.and_then(|s| s.run_as_user).or(pod_security.and_then(|s| s.run_as_user));
        let gid = security.and_then(|s| s.run_as_group).or(pod_security.and_then(|s| s.run_as_group));
        let spec = ShimSpec {
            netns: sandbox.as_ref().map(Sandbox::netns_path),
            hostname: Some(files::uts_hostname(pod, &cfg.cluster_domain)),
            mounts: vec![
                BindMount { source: self.pod_dir.join("etc-hosts"), target: "/etc/hosts".into(), read_only: false },
                BindMount {
                    source: self.pod_dir.join("resolv.conf"),
                    target: "/etc/resolv.conf".into(),
                    read_only: false,
                },
                BindMount { source: self.pod_dir.join("hostname"), target: "/etc/hostname".into(), read_only: false },
            ],
            argv,
            env,
            working_dir: c.working_dir.as_ref().map(PathBuf::from),
            uid: uid.and_then(|u| u32::try_from(u).ok()),
            gid: gid.and_then(|g| u32::try_from(g).ok()),
            cgroups: cfg.pod_cgroup.iter().map(|c| c.join("cgroup.procs")).collect(),
            log: dir.join(format!("{restarts}.log")),
            result: dir.join(format!("{restarts}.result")),
            die_with_agent: !cfg.keep_pods_on_exit,
        };
        let spec_path = dir.join(format!("{restarts}.spec.json"));
        let written = serde_json::to_vec(&spec)
            .map_err(|e| e.to_string())
            .and_then(|b| std::fs::write(&spec_path, b).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "writing a container spec failed");
            return;
        }
        let _ = std::fs::remove_file(&spec.result);
        let child = tokio::process::Command::new(&cfg.shim).arg("shim").arg(&spec_path).kill_on_drop(false).spawn();
        match child {
            Ok(mut child) => {
                let started_at = now_time();
                let pid = child.id().unwrap_or_default();
                let (tx, exit) = watch::channel(None);
                let exited = self.exited.clone();
                // Wake the worker when the shim ends.
                tokio::spawn(async move {
                    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(137);
                    tx.send_replace(Some(code));
                    exited.notify_one();
                });
                let state = self.containers.entry(name.clone()).or_default();
                if state.started_once {
                    state.restarts += 1;
                }
                state.started_once = true;
                state.waiting = None;
                let since = Instant::now();
                let target = probe::Target {
                    pod_ip: self.sandbox.as_ref().and_then(|s| s.ips.first().copied()).unwrap_or(cfg.node_ip),
                    running: spec.result.with_extension("running"),
                    shim: cfg.shim.clone(),
                };
                let probes = probe::start(c, target, self.exited.clone());
                state.running = Some(Running {
                    pid,
                    started_at,
                    since,
                    result_path: spec.result.clone(),
                    exit,
                    probes,
                    kill_at: None,
                    adopted: false,
                });
                self.event(pod, Some(&name), EventType::Normal, "Created", &format!("Created container: {name}")).await;
                self.event(pod, Some(&name), EventType::Normal, "Started", &format!("Started container {name}")).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, shim = %cfg.shim.display(), "starting the shim failed");
            }
        }
    }

    /// The pod's status as kubelet computes it; posted when it changed.
    /// One container's status as kubelet reports it, and what it counts as.
    fn container_status(&self, pod: &Pod, c: &Container, policy: &str) -> (Value, Class, bool) {
        let s = self.containers.get(&c.name);
        let restarts = s.map_or(0, |s| s.restarts);
        let mut started = false;
        let (state, class, ready) = match s {
            Some(ContainerState { running: Some(run), .. }) => {
                let verdict = run.probes.verdict.borrow().clone();
                started = verdict.started;
                (json!({"running": {"startedAt": run.started_at}}), Class::Running, verdict.ready)
            }
            Some(st) if st.waiting.is_some() => {
                let (reason, message) = st.waiting.clone().unwrap_or_default();
                (json!({"waiting": {"reason": reason, "message": message}}), Class::Waiting, false)
            }
            Some(st)
                if st.last.is_some()
                    && st.not_before.is_some_and(|t| t > Instant::now())
                    && policy != "Never"
                    && !(policy == "OnFailure" && st.last.as_ref().is_some_and(|r| r.exit_code == 0)) =>
            {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    go_duration(st.waiting_for),
                    c.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default(),
                    pod.uid().unwrap_or_default()
                );
                // Waiting with a last termination: kubelet counts it as stopped, by how it ended.
                let class =
                    if st.last.as_ref().is_some_and(|r| r.exit_code == 0) { Class::Succeeded } else { Class::Failed };
                (json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}}), class, false)
            }
            Some(ContainerState { last: Some(r), .. }) => {
                let class = if r.exit_code == 0 { Class::Succeeded } else { Class::Failed };
                (terminated(r), class, false)
            }
            _ => (json!({"waiting": {"reason": "ContainerCreating"}}), Class::Waiting, false),
        };
        let mut st = json!({"name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
            "state": state, "ready": ready, "restartCount": restarts, "started": started});
        if let Some(last) = s.and_then(|s| if s.running.is_some() { s.last.as_ref() } else { s.previous.as_ref() }) {
            st["lastState"] = terminated(last);
        }
        (st, class, ready)
    }

    /// The pod's status as kubelet computes it; posted when it changed.
    async fn report(&mut self, pod: &Pod) -> Result<(), Error> {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        // Init containers: each done (exit 0) before the next; ready once done.
        let mut init_statuses = Vec::new();
        let mut incomplete = Vec::new();
        let mut init_failed = false;
        for c in spec.init_containers.iter().flatten() {
            let (mut st, class, _) =
                self.container_status(pod, c, if policy == "Never" { "Never" } else { "OnFailure" });
            let done = class == Class::Succeeded;
            st["ready"] = json!(done);
            st["started"] = json!(class == Class::Running);
            if !done {
                incomplete.push(c.name.clone());
            }
            init_failed |= class == Class::Failed && policy == "Never";
            init_statuses.push(st);
        }
        let initialized = incomplete.is_empty();
        let mut statuses = Vec::new();
        let (mut running, mut waiting, mut succeeded, mut failed) = (0, 0, 0, 0);
        let mut unready = Vec::new();
        for c in &spec.containers {
            let (mut st, class, ready) = self.container_status(pod, c, policy);
            if !initialized && class == Class::Waiting && !self.containers.contains_key(&c.name) {
                st["state"] = json!({"waiting": {"reason": "PodInitializing"}});
            }
            match class {
                Class::Running => running += 1,
                Class::Waiting => waiting += 1,
                Class::Succeeded => succeeded += 1,
                Class::Failed => failed += 1,
            }
            if !ready {
                unready.push(c.name.clone());
            }
            statuses.push(st);
        }
        statuses.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let total = spec.containers.len();
        // kubelet's getPhase: waiting before running, then how the stopped ones ended.
        let phase = if init_failed {
            "Failed"
        } else if !initialized || waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if total > 0 && succeeded == total {
            match policy {
                "Always" => "Running",
                _ => "Succeeded",
            }
        } else if failed > 0 {
            match policy {
                "Never" => "Failed",
                _ => "Running",
            }
        } else {
            "Pending"
        };
        let all_ready = unready.is_empty() && total > 0;
        let ready_cond = |ty: &str| {
            if all_ready {
                json!({"type": ty, "status": "True"})
            } else {
                json!({"type": ty, "status": "False", "reason": "ContainersNotReady",
                    "message": format!("containers with unready status: [{}]", unready.join(" "))})
            }
        };
        let initialized_cond = if initialized {
            json!({"type": "Initialized", "status": "True"})
        } else {
            json!({"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                "message": format!("containers with incomplete status: [{}]", incomplete.join(" "))})
        };
        let ips: Vec<Value> =
            self.sandbox.iter().flat_map(|s| s.ips.iter()).map(|ip| json!({"ip": ip.to_string()})).collect();
        let host = self.shared.config.node_ip.to_string();
        let status = json!({
            "phase": phase,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": if self.sandbox.is_some() { "True" } else { "False" }},
                initialized_cond,
                ready_cond("Ready"),
                ready_cond("ContainersReady"),
                {"type": "PodScheduled", "status": "True"},
            ],
            "hostIP": host, "hostIPs": [{"ip": host}],
            "podIP": ips.first().and_then(|i| i["ip"].as_str()),
            "podIPs": ips,
            "startTime": self.started,
            "containerStatuses": statuses,
        });
        let mut status = status;
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        if self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        let patch = json!({"status": with_transition_times(&status, pod)});
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &pod.namespace().unwrap_or_default());
        api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await?;
        self.last_status = Some(status);
        Ok(())
    }

    /// Runs the preStop hooks of the running containers side by side, each
    /// for at most `grace`; a failed one is an event, and stopping goes on.
    async fn pre_stop(&self, pod: &Pod, grace: Duration) {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = self.sandbox.as_ref().and_then(|s| s.ips.first().copied()).unwrap_or(self.shared.config.node_ip);
        let mut hooks = Vec::new();
        for c in &spec.containers {
            let (Some(run), Some(hook)) = (
                self.containers.get(&c.name).and_then(|s| s.running.as_ref()),
                c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()),
            ) else {
                continue;
            };
            let target = probe::Target {
                pod_ip,
                running: run.result_path.with_extension("running"),
                shim: self.shared.config.shim.clone(),
            };
            let ports: Vec<(String, i32)> =
                c.ports.iter().flatten().filter_map(|p| p.name.clone().map(|n| (n, p.container_port))).collect();
            let name = c.name.clone();
            hooks.push(async move {
                let outcome = match &hook.sleep {
                    Some(s) => {
                        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(grace)).await;
                        probe::Outcome::Success
                    }
                    None => {
                        let as_probe = k8s_openapi::api::core::v1::Probe {
                            exec: hook.exec.clone(),
                            http_get: hook.http_get.clone(),
                            tcp_socket: hook.tcp_socket.clone(),
                            ..Default::default()
                        };
                        probe::run(&as_probe, &target, &ports, grace).await
                    }
                };
                (name, outcome)
            });
        }
        for (name, outcome) in futures::future::join_all(hooks).await {
            if let probe::Outcome::Failure(why) = outcome {
                let message = format!("PreStopHook failed: {why}");
                self.event(pod, Some(&name), EventType::Warning, "FailedPreStopHook", &message).await;
            }
        }
    }

    /// Stops every container: SIGTERM, `grace`, SIGKILL.
    async fn stop_all(&mut self, grace: Duration) {
        for state in self.containers.values() {
            if let Some(run) = &state.running {
                signal_shim(run, Signal::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        for state in self.containers.values_mut() {
            let Some(run) = state.running.as_mut() else { continue };
            let ended =
                tokio::time::timeout_at(deadline, run.exit.wait_for(|c| c.is_some())).await.is_ok_and(|r| r.is_ok());
            if !ended {
                kill_group(&run.result_path);
                let _ = kill(Pid::from_raw(run.pid as i32), Signal::SIGKILL);
                let _ = run.exit.wait_for(|c| c.is_some()).await;
            }
        }
        self.reap().await;
    }

    /// Graceful deletion: the pod's grace period, then everything it had goes,
    /// then the API is told to let it go (grace 0, with its uid as precondition).
    async fn terminate(&mut self, pod: &Pod) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(1);
        let names: Vec<String> =
            self.containers.iter().filter(|(_, s)| s.running.is_some()).map(|(n, _)| n.clone()).collect();
        for n in &names {
            self.event(pod, Some(n), EventType::Normal, "Killing", &format!("Stopping container {n}")).await;
        }
        // preStop hooks first, within the grace period; SIGTERM gets what is left (at least 2 s, as kubelet).
        let grace = Duration::from_secs(grace as u64);
        let began = Instant::now();
        self.pre_stop(pod, grace).await;
        self.stop_all(grace.saturating_sub(began.elapsed()).max(Duration::from_secs(2))).await;
        let uid = pod.uid().unwrap_or_default();
        if let Err(e) = self.shared.network.teardown(&uid).await {
            tracing::warn!(pod = %pod.name_any(), error = %e, "removing the pod's network failed");
        }
        let _ = std::fs::remove_dir_all(&self.pod_dir);
        if pod.metadata.deletion_timestamp.is_some() {
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &pod.namespace().unwrap_or_default());
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                ..Default::default()
            };
            match api.delete(&pod.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "finishing the pod's deletion failed"),
            }
        }
    }
}

/// A container's terminated state, as containerd reports it.
fn terminated(r: &ShimResult) -> Value {
    let reason = match (&r.start_error, r.exit_code) {
        (Some(_), _) => "StartError",
        (None, 0) => "Completed",
        _ => "Error",
    };
    let mut t = json!({"exitCode": r.exit_code, "reason": reason, "startedAt": trim(&r.started_at), "finishedAt": trim(&r.finished_at)});
    if let Some(m) = &r.start_error {
        t["message"] = json!(m);
    }
    if let Some(s) = r.signal {
        t["signal"] = json!(s);
    }
    json!({ "terminated": t })
}

/// RFC 3339 at second precision, as the API stores times.
fn trim(ts: &str) -> String {
    match ts.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => ts.to_string(),
    }
}

/// Conditions keep their lastTransitionTime unless their status changed.
fn with_transition_times(status: &Value, pod: &Pod) -> Value {
    let mut s = status.clone();
    let old = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if let Some(list) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in list {
            let ty = c["type"].as_str().unwrap_or_default().to_string();
            let st = c["status"].as_str().unwrap_or_default().to_string();
            let kept =
                old.iter().find(|o| o.type_ == ty && o.status == st).and_then(|o| o.last_transition_time.clone());
            c["lastTransitionTime"] = match kept {
                Some(t) => json!(t),
                None => json!(now_time()),
            };
            c["lastProbeTime"] = Value::Null;
        }
    }
    s
}
