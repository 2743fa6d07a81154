//! The proxy's HTTP endpoints: /healthz and /livez (kube-proxy's health
//! port), /metrics, and the health-check node ports of Services with
//! `externalTrafficPolicy: Local`, which answer 200 while this node has
//! endpoints for the Service and 503 otherwise, with kube-proxy's JSON body,
//! so an external load balancer sends traffic only to nodes that can serve it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::model::ServiceName;

fn json(status: StatusCode, body: serde_json::Value, extra: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    h.insert("x-content-type-options", hyper::header::HeaderValue::from_static("nosniff"));
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) =
            (hyper::header::HeaderName::try_from(*k), hyper::header::HeaderValue::try_from(v.as_str()))
        {
            h.insert(k, v);
        }
    }
    r
}

/// Serves HTTP/1.1 on `listener` with `handle` until `stop`.
async fn serve<F>(listener: TcpListener, handle: F, mut stop: watch::Receiver<bool>)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    loop {
        let (conn, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "proxy: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = handle(&req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(conn), svc)
                .await;
        });
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t).map(|t| t.to_string()).unwrap_or_default()
}

/// /healthz and /livez (200 once rules are programmed and while syncs succeed), and /metrics.
pub async fn serve_health(listener: TcpListener, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) {
    let handle = move |req: &Request<Incoming>| match req.uri().path() {
        "/healthz" | "/livez" => {
            let last = *metrics.last_success.lock();
            let healthy = last.is_some() && metrics.healthy();
            let mut body = serde_json::json!({
                "lastUpdated": last.map(rfc3339).unwrap_or_default(),
                "currentTime": rfc3339(std::time::SystemTime::now()),
            });
            if req.uri().path() == "/healthz" {
                body["nodeEligible"] = serde_json::Value::Bool(true);
            }
            json(if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body, &[])
        }
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(metrics.encode())));
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            r
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"404 page not found\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    serve(listener, handle, stop).await;
}

struct Check {
    port: u16,
    local: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
}

/// The health-check node ports, one listener per Service that has one.
pub struct ServiceHealth {
    checks: HashMap<ServiceName, Check>,
}

impl Default for ServiceHealth {
    fn default() -> Self {
        ServiceHealth::new()
    }
}

impl ServiceHealth {
    pub fn new() -> ServiceHealth {
        ServiceHealth { checks: HashMap::new() }
    }

    /// Sets what `name`'s health check reports: its port and this node's endpoint count
    /// (`None`: the Service has none). A port that cannot be bound is returned as an error.
    pub async fn update(&mut self, name: &ServiceName, want: Option<(u16, usize)>) -> Result<(), std::io::Error> {
        match (self.checks.get(name), want) {
            (Some(c), Some((port, n))) if c.port == port => {
                c.local.store(n, Ordering::Relaxed);
                return Ok(());
            }
            (None, None) => return Ok(()),
            _ => {}
        }
        if let Some(old) = self.checks.remove(name) {
            let _ = old.stop.send(true);
        }
        let Some((port, n)) = want else { return Ok(()) };
        let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
        let local = Arc::new(AtomicUsize::new(n));
        let (tx, rx) = watch::channel(false);
        let (l, svc) = (local.clone(), name.clone());
        let handle = move |_: &Request<Incoming>| {
            let n = l.load(Ordering::Relaxed);
            let body = serde_json::json!({
                "service": {"namespace": svc.namespace, "name": svc.name},
                "localEndpoints": n,
                "serviceProxyHealthy": true,
            });
            let status = if n > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json(status, body, &[("x-load-balancing-endpoint-weight", n.to_string())])
        };
        tokio::spawn(serve(listener, handle, rx));
        self.checks.insert(name.clone(), Check { port, local, stop: tx });
        Ok(())
    }
}

impl Drop for ServiceHealth {
    fn drop(&mut self) {
        for c in self.checks.values() {
            let _ = c.stop.send(true);
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone); holds no lock guard across awaits.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
