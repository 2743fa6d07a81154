//! The gRPC health protocol (`grpc.health.v1.Health/Check`) over cleartext
//! HTTP/2, both ends: the client kubelet's grpc probes are, with their
//! messages, and a server for `kubesvc tool grpc-health` to run in pods.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};

const PATH: &str = "/grpc.health.v1.Health/Check";

/// The health states, as `grpc.health.v1.HealthCheckResponse.ServingStatus` numbers them.
pub const STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// A gRPC message: uncompressed flag, 4-byte length, then the protobuf bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(message.len() + 5);
    b.push(0);
    b.extend_from_slice(&(message.len() as u32).to_be_bytes());
    b.extend_from_slice(message);
    Bytes::from(b)
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Field 1 of a HealthCheckResponse (its status), other fields skipped.
fn status_field(message: &[u8]) -> Option<u64> {
    let mut at = 0;
    while at < message.len() {
        let key = varint(message, &mut at)?;
        match (key >> 3, key & 7) {
            (1, 0) => return varint(message, &mut at),
            (_, 0) => {
                varint(message, &mut at)?;
            }
            (_, 1) => at = at.checked_add(8)?,
            (_, 2) => {
                let len = usize::try_from(varint(message, &mut at)?).ok()?;
                at = at.checked_add(len)?;
            }
            (_, 5) => at = at.checked_add(4)?,
            _ => return None,
        }
    }
    None
}

/// The gRPC message inside a body (the first one).
fn unframe(body: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(body.get(1..5)?.try_into().ok()?) as usize;
    body.get(5..5 + len)
}

/// One `Check` of `service` at `addr`: Ok(()) when SERVING, else kubelet's message.
pub async fn check(addr: SocketAddr, service: &str, timeout: Duration) -> Result<(), String> {
    let connect_failed = |e: &dyn std::fmt::Display| {
        format!("timeout: failed to connect service {:?} within {timeout:?}: {e}", addr.to_string())
    };
    let call = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| connect_failed(&e))?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| connect_failed(&e))?;
        tokio::spawn(conn);
        let mut request = Vec::new();
        if !service.is_empty() {
            request.push(0x0a);
            let mut len = service.len();
            while len >= 0x80 {
                request.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            request.push(len as u8);
            request.extend_from_slice(service.as_bytes());
        }
        let req = Request::post(format!("http://{addr}{PATH}"))
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header(
                header::USER_AGENT,
                format!("kube-probe/{}.{}", kubesvc_api::wellknown::KUBE_MAJOR, kubesvc_api::wellknown::KUBE_MINOR),
            )
            .body(Full::new(frame(&request)))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| format!("rpc error: {e}"))?;
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map_err(|e| format!("rpc error: {e}"))?;
        let trailers = body.trailers().cloned().unwrap_or_default();
        let grpc_status = trailers
            .get("grpc-status")
            .or_else(|| headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_string();
        let bytes = body.to_bytes();
        match grpc_status.as_str() {
            "0" => {}
            "12" => {
                return Err(
                    "this server does not implement the grpc health protocol (grpc.health.v1.Health)".to_string()
                );
            }
            code => {
                let message = trailers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
                return Err(format!("rpc error: code = {code} desc = {message}"));
            }
        }
        let status = unframe(&bytes).and_then(status_field).unwrap_or(0);
        if status == 1 {
            Ok(())
        } else {
            let name = STATUSES.get(status as usize).copied().unwrap_or("UNKNOWN");
            Err(format!("service unhealthy (responded with {name:?})"))
        }
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout: health rpc did not complete within {timeout:?}")),
    }
}

/// Answers every `Check` with `status` (one of [`STATUSES`]), for ever.
pub async fn serve_health(listener: tokio::net::TcpListener, status: u8) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let known = req.uri().path() == PATH;
                let mut trailers = http::HeaderMap::new();
                let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = Vec::new();
                if known {
                    frames.push(Ok(Frame::data(frame(&[0x08, status]))));
                    trailers.insert("grpc-status", header::HeaderValue::from_static("0"));
                } else {
                    trailers.insert("grpc-status", header::HeaderValue::from_static("12"));
                }
                frames.push(Ok(Frame::trailers(trailers)));
                let mut resp = Response::new(StreamBody::new(futures::stream::iter(frames)));
                resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/grpc"));
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server(status: u8) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(serve_health(l, status));
        addr
    }

    #[tokio::test]
    async fn serving_passes_and_anything_else_says_why() {
        let t = Duration::from_secs(2);
        assert_eq!(check(server(1).await, "", t).await, Ok(()));
        assert_eq!(
            check(server(2).await, "web", t).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}"))
        };
        let err = check(closed, "", t).await.unwrap_err();
        assert!(err.starts_with(&format!("timeout: failed to connect service \"{closed}\" within 2s")), "{err}");
    }
}
