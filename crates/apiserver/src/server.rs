//! Accepting connections: TLS (with optional client certificates), then
//! HTTP/2 or HTTP/1.1, until shutdown drains them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::State;
use crate::auth::{self, Identity};
use crate::handlers;

/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // Many watches share one connection (kubectl, controllers, the benchmark's watchers).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(10_000)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, state, builder) = (acceptor.clone(), state.clone(), builder.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    // The verifier accepted any certificate presented: it is signed by the cluster CA.
                    // One without a common name names no user, as in Kubernetes.
                    let user = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|leaf| auth::user_from_certificate(leaf));
                    let identity = user.map_or(Identity::Anonymous, Identity::Certificate);
                    let svc = service_fn(move |req| {
                        let (state, identity) = (state.clone(), identity.clone());
                        async move { Ok::<_, Infallible>(handlers::handle(state, req, identity).await) }
                    });
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("closing connections that did not finish in time"),
    }
}
