//! Container probes as kubelet runs them: startup first, then liveness and
//! readiness, each every `periodSeconds` after `initialDelaySeconds`, with
//! `timeoutSeconds` and the success and failure thresholds (Kubernetes'
//! defaults: 10 s, 1 s, 1 and 3). httpGet, tcpSocket and grpc connect to the
//! pod's address from the node, as kubelet does; exec runs inside the container.
//! What each probe concluded is published for the pod worker, which turns it
//! into readiness and restarts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

/// What the probes of one container run concluded so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// The readiness probe passes (or there is none and the container started).
    pub ready: bool,
    /// The liveness or startup probe failed for good: (which, last message).
    pub failed: Option<(Kind, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// Where a container's probes go.
#[derive(Clone, Debug)]
pub struct Target {
    pub pod_ip: IpAddr,
    /// The shim's record of the running command (its pid), for exec probes.
    pub running: PathBuf,
    /// The kubesvc binary (`kubesvc shim --exec`).
    pub shim: PathBuf,
}

/// One probe's outcome and, on failure, kubelet's wording of why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// A failing probe's event, passed to the worker.
pub type Report = (Kind, String);

/// The probes of one running container, until dropped.
pub struct Probes {
    pub verdict: watch::Receiver<Verdict>,
    pub failures: tokio::sync::mpsc::UnboundedReceiver<Report>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// A probe's settings with Kubernetes' defaults.
struct Timing {
    delay: Duration,
    period: Duration,
    timeout: Duration,
    success: u32,
    failure: u32,
}

impl Timing {
    fn of(p: &Probe) -> Timing {
        Timing {
            delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Starts the probes of `c`; `wake` is notified whenever the verdict changes
/// or a probe fails.
pub fn start(c: &Container, target: Target, wake: Arc<Notify>) -> Probes {
    let startup = c.startup_probe.clone();
    let liveness = c.liveness_probe.clone();
    let readiness = c.readiness_probe.clone();
    let ports: Vec<(String, i32)> =
        c.ports.iter().flatten().filter_map(|p| p.name.clone().map(|n| (n, p.container_port))).collect();
    let initial = Verdict { started: startup.is_none(), ready: startup.is_none() && readiness.is_none(), failed: None };
    let (tx, verdict) = watch::channel(initial);
    let (report, failures) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let ctx = Ctx { target, ports, tx, report, wake, has_readiness: readiness.is_some() };
        if let Some(p) = startup
            && !ctx.until_started(&p).await
        {
            return;
        }
        let live = liveness.map(|p| ctx.liveness(p));
        let ready = readiness.map(|p| ctx.readiness(p));
        match (live, ready) {
            (Some(l), Some(r)) => {
                tokio::join!(l, r);
            }
            (Some(l), None) => l.await,
            (None, Some(r)) => r.await,
            (None, None) => {}
        }
    });
    Probes { verdict, failures, task }
}

struct Ctx {
    target: Target,
    ports: Vec<(String, i32)>,
    tx: watch::Sender<Verdict>,
    report: tokio::sync::mpsc::UnboundedSender<Report>,
    wake: Arc<Notify>,
    has_readiness: bool,
}

impl Ctx {
    fn update(&self, f: impl FnOnce(&mut Verdict)) {
        let changed = self.tx.send_if_modified(|v| {
            let before = v.clone();
            f(v);
            *v != before
        });
        if changed {
            self.wake.notify_one();
        }
    }

    fn failed(&self, kind: Kind, message: &str) {
        let _ = self.report.send((kind, message.to_string()));
        self.wake.notify_one();
    }

    /// The startup probe until it passes (true) or fails for good (false).
    async fn until_started(&self, p: &Probe) -> bool {
        let t = Timing::of(p);
        tokio::time::sleep(t.delay).await;
        let mut failures = 0;
        loop {
            match run(p, &self.target, &self.ports, t.timeout).await {
                Outcome::Success => {
                    // Ready now only if no readiness probe is to say so.
                    self.update(|v| {
                        v.started = true;
                        v.ready = !self.has_readiness;
                    });
                    return true;
                }
                Outcome::Failure(m) => {
                    failures += 1;
                    self.failed(Kind::Startup, &m);
                    if failures >= t.failure {
                        self.update(|v| v.failed = Some((Kind::Startup, m)));
                        return false;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }

    async fn liveness(&self, p: Probe) {
        let t = Timing::of(&p);
        tokio::time::sleep(t.delay).await;
        let mut failures = 0;
        loop {
            match run(&p, &self.target, &self.ports, t.timeout).await {
                Outcome::Success => failures = 0,
                Outcome::Failure(m) => {
                    failures += 1;
                    self.failed(Kind::Liveness, &m);
                    if failures >= t.failure {
                        self.update(|v| v.failed = Some((Kind::Liveness, m)));
                        return;
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }

    async fn readiness(&self, p: Probe) {
        let t = Timing::of(&p);
        tokio::time::sleep(t.delay).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            match run(&p, &self.target, &self.ports, t.timeout).await {
                Outcome::Success => {
                    successes += 1;
                    failures = 0;
                    if successes >= t.success {
                        self.update(|v| v.ready = true);
                    }
                }
                Outcome::Failure(m) => {
                    failures += 1;
                    successes = 0;
                    self.failed(Kind::Readiness, &m);
                    if failures >= t.failure {
                        self.update(|v| v.ready = false);
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(p: &IntOrString, ports: &[(String, i32)]) -> Result<u16, String> {
    let n = match p {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .ok_or_else(|| format!("couldn't find port: {name} in container"))?,
        },
    };
    u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number: {n}"))
}

/// Go's wording of a failed dial (`net` is tcp, tcp4 or tcp6), as kubelet's messages carry it.
pub(crate) fn dial_error(net: &str, addr: &SocketAddr, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => format!("connect: {}", e.to_string().split(" (os error").next().unwrap_or_default().to_lowercase()),
    };
    format!("dial {net} {addr}: {why}")
}

/// Where an httpGet or tcpSocket handler connects: its host (the pod's address by default) and port.
fn endpoint(
    host: Option<&str>,
    p: &IntOrString,
    target: &Target,
    ports: &[(String, i32)],
) -> Result<SocketAddr, String> {
    let host = host.filter(|h| !h.is_empty()).and_then(|h| h.parse::<IpAddr>().ok()).unwrap_or(target.pod_ip);
    Ok(SocketAddr::new(host, port(p, ports)?))
}

/// Runs one probe once.
pub async fn run(p: &Probe, target: &Target, ports: &[(String, i32)], timeout: Duration) -> Outcome {
    if let Some(h) = &p.http_get {
        let addr = match endpoint(h.host.as_deref(), &h.port, target, ports) {
            Ok(a) => a,
            Err(m) => return Outcome::Failure(m),
        };
        let path = h.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let url = format!("{scheme}://{addr}{path}");
        if scheme != "http" && scheme != "https" {
            return Outcome::Failure(format!("Get {url:?}: unsupported protocol scheme {scheme:?}"));
        }
        let headers: Vec<(String, String)> =
            h.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        return match tokio::time::timeout(timeout, http_get(addr, path, &headers, scheme == "https")).await {
            Err(_) => Outcome::Failure(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
            Ok(Err(HttpError::Dial(e))) => Outcome::Failure(format!("Get {url:?}: {}", dial_error("tcp", &addr, &e))),
            Ok(Err(HttpError::Other(m))) => Outcome::Failure(format!("Get {url:?}: {m}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let addr = match endpoint(t.host.as_deref(), &t.port, target, ports) {
            Ok(a) => a,
            Err(m) => return Outcome::Failure(m),
        };
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
            Ok(Err(e)) => Outcome::Failure(dial_error("tcp", &addr, &e)),
            Ok(Ok(_)) => Outcome::Success,
        };
    }
    if let Some(e) = &p.exec {
        let argv = e.command.clone().unwrap_or_default();
        let running: Option<crate::shim::ShimResult> =
            std::fs::read(&target.running).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let Some(pid) = running.and_then(|r| r.pid) else {
            return Outcome::Failure("the container is not running".into());
        };
        let mut cmd = tokio::process::Command::new(&target.shim);
        cmd.arg("shim").arg("--exec").arg(pid.to_string()).arg("--").args(&argv);
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        return match tokio::time::timeout(timeout, cmd.output()).await {
            Err(_) => Outcome::Failure(format!("command {:?} timed out", argv.join(" "))),
            Ok(Err(e)) => Outcome::Failure(format!("running the probe: {e}")),
            Ok(Ok(out)) if out.status.success() => Outcome::Success,
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                Outcome::Failure(text.trim_end().to_string())
            }
        };
    }
    if let Some(g) = &p.grpc {
        let Some(port) = u16::try_from(g.port).ok().filter(|p| *p > 0) else {
            return Outcome::Failure(format!("invalid port number: {}", g.port));
        };
        let addr = SocketAddr::new(target.pod_ip, port);
        return match crate::grpc::check(addr, g.service.as_deref().unwrap_or_default(), timeout).await {
            Ok(()) => Outcome::Success,
            Err(m) => Outcome::Failure(m),
        };
    }
    Outcome::Failure("the probe names no handler".into())
}

enum HttpError {
    Dial(std::io::Error),
    Other(String),
}

/// Accepts any server certificate: kubelet's HTTPS probes skip verification.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS for HTTPS probes: any certificate, as kubelet (InsecureSkipVerify).
fn probe_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

async fn http_get(addr: SocketAddr, path: &str, headers: &[(String, String)], tls: bool) -> Result<u16, HttpError> {
    let tcp = TcpStream::connect(addr).await.map_err(HttpError::Dial)?;
    if !tls {
        return exchange(tcp, addr, path, headers).await;
    }
    let connector = tokio_rustls::TlsConnector::from(probe_tls().map_err(HttpError::Other)?);
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = connector.connect(name, tcp).await.map_err(|e| HttpError::Other(e.to_string()))?;
    exchange(stream, addr, path, headers).await
}

/// The request with kubelet's headers, and the response's status code.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, HttpError> {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("user-agent") {
        req.push_str(&format!(
            "User-Agent: kube-probe/{}.{}\r\n",
            kubesvc_api::wellknown::KUBE_MAJOR,
            kubesvc_api::wellknown::KUBE_MINOR
        ));
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| HttpError::Other(e.to_string()))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf).await.map_err(|e| HttpError::Other(e.to_string()))?;
        if n == 0 {
            return Err(HttpError::Other("EOF".into()));
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let code = line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    code.ok_or_else(|| {
        HttpError::Other(format!("malformed HTTP response {:?}", line.lines().next().unwrap_or_default()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_by_number_or_name() {
        let ports = vec![("http".to_string(), 8080)];
        assert_eq!(port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(port(&IntOrString::String("http".into()), &ports), Ok(8080));
        assert_eq!(port(&IntOrString::String("8081".into()), &ports), Ok(8081));
        assert_eq!(
            port(&IntOrString::String("web".into()), &ports),
            Err("couldn't find port: web in container".into())
        );
    }

    #[tokio::test]
    async fn https_probes_skip_verification_as_kubelets_do() {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap_or_else(|e| panic!("{e}"));
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert.cert.der().clone()], key))
            .unwrap_or_else(|e| panic!("{e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                    let _ = s.shutdown().await;
                }
            }
        });
        let target = Target { pod_ip: addr.ip(), running: PathBuf::new(), shim: PathBuf::new() };
        let probe: Probe =
            serde_json::from_value(serde_json::json!({"httpGet": {"port": addr.port(), "scheme": "HTTPS"}}))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run(&probe, &target, &[], Duration::from_secs(2)).await, Outcome::Success);
    }

    #[tokio::test]
    async fn http_and_tcp_probes_say_what_kubelet_says() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let mut code = 200;
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
                code = 500;
            }
        });
        let target = Target { pod_ip: addr.ip(), running: PathBuf::new(), shim: PathBuf::new() };
        let probe =
            |json: serde_json::Value| -> Probe { serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}")) };
        let http = probe(serde_json::json!({"httpGet": {"path": "/healthz", "port": addr.port()}}));
        let t = Duration::from_secs(1);
        assert_eq!(run(&http, &target, &[], t).await, Outcome::Success);
        assert_eq!(
            run(&http, &target, &[], t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let tcp = probe(serde_json::json!({"tcpSocket": {"port": addr.port()}}));
        assert_eq!(run(&tcp, &target, &[], t).await, Outcome::Success);
        // A port nothing listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
        };
        let tcp = probe(serde_json::json!({"tcpSocket": {"port": closed}}));
        assert_eq!(
            run(&tcp, &target, &[], t).await,
            Outcome::Failure(format!("dial tcp 127.0.0.1:{closed}: connect: connection refused"))
        );
        let http = probe(serde_json::json!({"httpGet": {"path": "/", "port": closed}}));
        assert_eq!(
            run(&http, &target, &[], t).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{closed}/\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
    }
}
