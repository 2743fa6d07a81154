//! The pod subresources a node agent serves (`log`, `exec`, `attach`,
//! `portforward`), as kube-apiserver proxies them to kubelet: the pod's node
//! is found, the agent is reached over HTTPS at the node's InternalIP and
//! kubelet port (its serving certificate checked against the cluster CA, the
//! API server's kubelet-client certificate presented), and the request goes
//! on to it. Logs stream back; an upgrade (WebSocket) becomes one byte pipe
//! between the client and the agent, whose protocols the agent speaks.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kubesvc_api::resources::{self, Subresource};
use kubesvc_api::status::StatusError;
use serde_json::Value;

use crate::State;
use crate::web::{Body, Query};

/// kubelet's port when the Node does not say (`status.daemonEndpoints`).
const KUBELET_PORT: u16 = 10250;

fn resource(plural: &str) -> Result<&'static resources::Resource, StatusError> {
    resources::find("", "v1", plural).ok_or_else(|| StatusError::internal(format!("no {plural} resource")))
}

/// The container a request is about: the one named, or the pod's only one.
fn container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, StatusError> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let (containers, init) = (names("containers"), names("initContainers"));
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(StatusError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message =
                format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !init.is_empty() {
                message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            Err(StatusError::bad_request(message))
        }
    }
}

/// The agent's address for node `name`.
async fn node_address(state: &State, name: &str) -> Result<SocketAddr, StatusError> {
    let node = state.registry.get(resource("nodes")?, "", name).await?.value();
    let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let pick = |ty: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == ty)
            .and_then(|a| a["address"].as_str())
            .and_then(|a| a.parse::<IpAddr>().ok())
    };
    let ip = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .ok_or_else(|| StatusError::bad_request(format!("node {name} has no address to reach its agent at")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(KUBELET_PORT);
    Ok(SocketAddr::new(ip, port))
}

/// Serves `pods/{name}/{log,exec,attach,portforward}`.
pub async fn serve(
    state: &Arc<State>,
    namespace: &str,
    name: &str,
    sub: Subresource,
    req: Request<Incoming>,
) -> Result<Response<Body>, StatusError> {
    let q = Query::parse(req.uri().query());
    let pod = state.registry.get(resource("pods")?, namespace, name).await?.value();
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
    let path = match sub {
        Subresource::PortForward => format!("/portForward/{namespace}/{name}"),
        _ => {
            let c = container(&pod, name, q.get("container"))?;
            let verb = match sub {
                Subresource::Log => "containerLogs",
                Subresource::Exec => "exec",
                _ => "attach",
            };
            format!("/{verb}/{namespace}/{name}/{c}")
        }
    };
    if node.is_empty() {
        // An unscheduled pod has no logs yet, and nothing to exec into.
        if sub == Subresource::Log {
            return Ok(Response::new(Empty::new().boxed()));
        }
        return Err(StatusError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let addr = node_address(state, &node).await?;
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    forward(state, addr, &path_and_query, req).await
}

fn unreachable(addr: SocketAddr, e: impl std::fmt::Display) -> StatusError {
    StatusError::new(502, "InternalError", format!("error dialing backend: dial tcp {addr}: {e}"))
}

async fn forward(
    state: &Arc<State>,
    addr: SocketAddr,
    path_and_query: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, StatusError> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(addr, "i/o timeout"))?
        .map_err(|e| unreachable(addr, e))?;
    let connector = tokio_rustls::TlsConnector::from(state.node_tls.clone());
    let tls = connector
        .connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| unreachable(addr, format!("TLS: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(addr, e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut out = Request::builder().method(req.method().clone()).uri(path_and_query);
    for (k, v) in req.headers() {
        // The agent trusts the API server's certificate, not the client's credentials.
        if k != header::AUTHORIZATION && k != header::HOST {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| StatusError::internal(format!("building the request to the agent: {e}")))?;
    let upgrading = req.headers().contains_key(header::UPGRADE);
    let resp = sender.send_request(out).await.map_err(|e| unreachable(addr, e))?;
    let (parts, body) = resp.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS && upgrading {
        let agent_side = hyper::upgrade::on(Response::from_parts(parts.clone(), body));
        let client_side = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let (Ok(agent), Ok(client)) = (agent_side.await, client_side.await) else { return };
            let (mut agent, mut client) = (TokioIo::new(agent), TokioIo::new(client));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        });
        let mut reply = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in &parts.headers {
            reply = reply.header(k, v);
        }
        return reply.body(Empty::new().boxed()).map_err(|e| StatusError::internal(e.to_string()));
    }
    // Logs (and errors) stream back as they come.
    let frames = futures::stream::unfold(body, |mut b| async move {
        match b.frame().await {
            Some(Ok(f)) => Some((Ok::<_, Infallible>(f), b)),
            _ => None,
        }
    });
    let mut reply = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        reply = reply.header(k, v);
    }
    reply.body(BoxBody::new(StreamBody::new(frames))).map_err(|e| StatusError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_named_or_the_only_one() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(container(&one, "p", None).ok(), Some("web".into()));
        assert_eq!(container(&one, "p", Some("")).ok(), Some("web".into()));
        assert_eq!(
            container(&one, "p", Some("db")).map_err(|e| e.message),
            Err("container db is not valid for pod p".into())
        );
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(
            container(&two, "p", None).map_err(|e| e.message),
            Err(
                "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
                    .into()
            )
        );
        assert_eq!(container(&two, "p", Some("i")).ok(), Some("i".into()));
    }
}
