//! The agent's HTTPS server, kubelet's API for what the API server proxies:
//! `/containerLogs/{ns}/{pod}/{container}`, `/exec/...`, `/attach/...`,
//! `/portForward/{ns}/{pod}` and `/healthz`. Only clients with a certificate
//! from the cluster CA (the API server's) are served.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kubesvc_runtime::Informer;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::exec::{self, ExecOptions};
use crate::{Error, logs, portforward, ws};

/// kubelet's port, which the Node's `daemonEndpoints` reports.
pub const PORT: u16 = 10250;

/// The serving certificate and key, and the CA whose clients are served (PEM files).
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

type Body = BoxBody<Bytes, Infallible>;

pub struct Context {
    pub pods: Arc<Informer<Pod>>,
    pub state_dir: PathBuf,
    pub shim: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Io(path.to_path_buf(), e))
}

fn tls_config(tls: &Tls) -> Result<Arc<rustls::ServerConfig>, Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Other(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read(&tls.cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| bad("reading the serving certificate", &e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &read(&tls.key)?[..])
        .map_err(|e| bad("reading the serving key", &e))?
        .ok_or_else(|| Error::Other(format!("{} holds no private key", tls.key.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut &read(&tls.client_ca)?[..]) {
        roots.add(ca.map_err(|e| bad("reading the client CA", &e))?).map_err(|e| bad("the client CA", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad("the client verifier", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| bad("the serving certificate", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves on `addr` until `stop`.
pub async fn serve(
    addr: SocketAddr,
    tls: &Tls,
    ctx: Arc<Context>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(tls)?);
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Io(PathBuf::from(addr.to_string()), e))?;
    tracing::info!(%addr, "serving logs, exec and port-forward for the API server");
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
            let Ok(Ok(tls)) = accepted else { return };
            // The CA also signs every node's and user's certificate: only the API server's
            // own identity (system:masters, not a node) reaches pods through here.
            let subject =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| kubesvc_api::x509::subject(c));
            let allowed = subject.is_some_and(|(cn, orgs)| {
                cn.is_some_and(|cn| !cn.is_empty())
                    && orgs.iter().any(|o| o == "system:masters")
                    && !orgs.iter().any(|o| o == "system:nodes")
            });
            if !allowed {
                tracing::debug!("refused a client that is not the API server");
                return;
            }
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(ctx, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// A Status the API server passes on to kubectl.
fn status(code: StatusCode, message: &str) -> Response<Body> {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        _ => "InternalError",
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

/// A container's latest run: its index, and whether it runs now.
fn latest_run(dir: &Path) -> Option<(u32, bool)> {
    let n = *logs::runs(dir).last()?;
    Some((n, !dir.join(format!("{n}.result")).exists()))
}

/// The pid of the command of a container's run `n`, from the shim's record.
fn command_pid(dir: &Path, n: u32) -> Option<u32> {
    let r: crate::shim::ShimResult =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{n}.running"))).ok()?).ok()?;
    r.pid
}

/// Why a container has no log yet, as kubelet says it.
fn waiting_reason(pod: &Pod, container: &str) -> String {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .unwrap_or_else(|| "ContainerCreating".into())
}

async fn handle(ctx: Arc<Context>, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts == ["healthz"] {
        return Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
    }
    let (verb, ns, name, container) = match parts.as_slice() {
        [verb, ns, name] => (*verb, *ns, *name, None),
        [verb, ns, name, c] => (*verb, *ns, *name, Some(*c)),
        _ => return status(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let Some(pod) = ctx.pods.store().get(&ObjectRef::new(name).within(ns)) else {
        return status(StatusCode::NOT_FOUND, &format!("pod {ns}/{name} not found on this node"));
    };
    let uid = pod.uid().unwrap_or_default();
    let pod_dir = ctx.state_dir.join("pods").join(&uid);
    // Only the pod's own containers name directories under its own.
    if let Some(c) = container {
        let spec = pod.spec.as_ref();
        let known = spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .any(|k| k.name == c);
        if !known {
            return status(StatusCode::BAD_REQUEST, &format!("container {c} is not valid for pod {name}"));
        }
    }
    let query = req.uri().query().map(str::to_string);
    match (verb, container) {
        ("containerLogs", Some(c)) => {
            let opts = match logs::Options::parse(query.as_deref()) {
                Ok(o) => o,
                Err(m) => return status(StatusCode::BAD_REQUEST, &m),
            };
            let dir = pod_dir.join(c);
            let runs = logs::runs(&dir);
            let run = if opts.previous {
                match runs.len() {
                    n if n >= 2 => runs[n - 2],
                    _ => {
                        return status(
                            StatusCode::BAD_REQUEST,
                            &format!("previous terminated container {c:?} in pod {name:?} not found"),
                        );
                    }
                }
            } else {
                match runs.last() {
                    Some(n) => *n,
                    None => {
                        let why = waiting_reason(&pod, c);
                        return status(
                            StatusCode::BAD_REQUEST,
                            &format!("container {c:?} in pod {name:?} is waiting to start: {why}"),
                        );
                    }
                }
            };
            let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            tokio::spawn(logs::stream(dir, run, opts, tx));
            let frames = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(Bytes::from(b))), rx))
            });
            let mut r = Response::new(BoxBody::new(StreamBody::new(frames)));
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
            r
        }
        ("exec" | "attach", Some(c)) => {
            let dir = pod_dir.join(c);
            let running = latest_run(&dir).filter(|(_, running)| *running).map(|(n, _)| n);
            // kubelet's answer for a container that is not running.
            let not_found = || status(StatusCode::INTERNAL_SERVER_ERROR, &format!("container not found ({c:?})"));
            let Some(run) = running else { return not_found() };
            let opts = ExecOptions::parse(query.as_deref());
            let protocol = match upgrade(&req, &[exec::V5, exec::V4]) {
                Ok(p) => p,
                Err(m) => return status(StatusCode::BAD_REQUEST, &m),
            };
            if verb == "exec" {
                let Some(pid) = command_pid(&dir, run) else { return not_found() };
                if opts.command.is_empty() {
                    return status(StatusCode::BAD_REQUEST, "you must specify at least 1 command");
                }
                let shim = ctx.shim.clone();
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(io) = on.await {
                        exec::exec(TokioIo::new(io), protocol, shim, pid, opts).await;
                    }
                });
            } else {
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(io) = on.await {
                        exec::attach(TokioIo::new(io), dir, run, opts).await;
                    }
                });
            }
            switching(&req, protocol)
        }
        ("portForward", None) => {
            // WebSocket (kubectl 1.31+) or a plain SPDY/3.1 upgrade (older kubectl, kube-apiserver).
            let spdy = is_spdy(&req);
            let protocol = if spdy {
                let offered =
                    req.headers().get("x-stream-protocol-version").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !offered.split(',').any(|p| p.trim() == portforward::SPDY_PROTOCOL) {
                    let message = format!("unable to upgrade: no supported protocol in {offered:?}");
                    return status(StatusCode::FORBIDDEN, &message);
                }
                portforward::SPDY_PROTOCOL
            } else {
                match upgrade(&req, &[portforward::WS_PROTOCOL]) {
                    Ok(p) => p,
                    Err(m) => return status(StatusCode::BAD_REQUEST, &m),
                }
            };
            let netns = crate::network::Sandbox::netns_path_of(&uid);
            let on = hyper::upgrade::on(&mut req);
            let pod_name = format!("{name}_{ns}");
            tokio::spawn(async move {
                let Ok(io) = on.await else { return };
                let io = TokioIo::new(io);
                if spdy {
                    portforward::serve_spdy(io, netns, pod_name, uid).await;
                } else {
                    portforward::serve(io, netns, pod_name, uid).await;
                }
            });
            if !spdy {
                return switching(&req, protocol);
            }
            let mut r = Response::new(Full::new(Bytes::new()).boxed());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
            h.insert(header::UPGRADE, header::HeaderValue::from_static("SPDY/3.1"));
            h.insert("x-stream-protocol-version", header::HeaderValue::from_static(protocol));
            r
        }
        _ => status(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// A plain SPDY/3.1 upgrade (kubectl before 1.31, or kube-apiserver to kubelet).
fn is_spdy(req: &Request<Incoming>) -> bool {
    req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
}

/// The WebSocket protocol to speak, or why not.
fn upgrade(req: &Request<Incoming>, ours: &[&'static str]) -> Result<&'static str, String> {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_ws || !req.headers().contains_key(header::SEC_WEBSOCKET_KEY) {
        return Err("kubesvc's agent streams over WebSocket only (upgrade: websocket)".into());
    }
    let offered = req.headers().get(header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
    ws::choose_protocol(offered, ours)
        .ok_or_else(|| format!("none of the offered protocols ({}) is one of {ours:?}", offered.unwrap_or("none")))
}

fn switching(req: &Request<Incoming>, protocol: &'static str) -> Response<Body> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    if let Ok(v) = header::HeaderValue::from_str(&ws::accept_key(key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, header::HeaderValue::from_static(protocol));
    r
}
