//! `kubectl port-forward` as kubelet serves it: SPDY/3 carried in WebSocket
//! binary messages (`SPDY/3.1+portforward.k8s.io`), or over a plain SPDY/3.1
//! upgrade. For each local
//! connection kubectl opens an error stream and a data stream with the same
//! `requestID` and `port`; once both exist the agent connects to the port on
//! localhost inside the pod's network namespace and copies bytes both ways,
//! or writes kubelet's error on the error stream.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::spdy::{self, Frame};
use crate::ws::{self, Message};

pub const WS_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// `X-Stream-Protocol-Version` of a plain SPDY upgrade.
pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// What the connection's writer sends: SPDY bytes, one WebSocket message each.
type Out = mpsc::UnboundedSender<Vec<u8>>;

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

/// Connects to `port` on localhost inside the namespace at `netns`, as kubelet does (IPv4, then IPv6).
async fn dial(netns: PathBuf, port: u16) -> Result<tokio::net::TcpStream, String> {
    let name = netns.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ns = kubesvc_host::NetNs::open(&name).map_err(|e| e.to_string())?;
    let connect = move || -> Result<std::net::TcpStream, String> {
        let timeout = Duration::from_secs(5);
        let v4 = std::net::TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout);
        let e4 = match v4 {
            Ok(s) => return Ok(s),
            Err(e) => crate::probe::dial_error("tcp4", &SocketAddr::from((Ipv4Addr::LOCALHOST, port)), &e),
        };
        let v6 = std::net::TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), timeout);
        match v6 {
            Ok(s) => Ok(s),
            Err(e) => Err(format!(
                "failed to connect to localhost:{port} inside namespace {:?}, IPv4: {e4} IPv6 {} ",
                netns.display().to_string(),
                crate::probe::dial_error("tcp6", &SocketAddr::from((Ipv6Addr::LOCALHOST, port)), &e)
            )),
        }
    };
    let std_stream = tokio::task::spawn_blocking(move || ns.run(connect))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())??;
    std_stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(std_stream).map_err(|e| e.to_string())
}

/// Forwards one pair: the pod's bytes become data frames; the client's arrive on `from_client`.
async fn forward(
    conn: tokio::net::TcpStream,
    pair: (u32, u32),
    out: Out,
    mut from_client: mpsc::UnboundedReceiver<Option<Vec<u8>>>,
) {
    let (error_stream, data_stream) = pair;
    let (mut r, mut w) = conn.into_split();
    let upstream = async move {
        // None: the client closed its side.
        while let Some(Some(bytes)) = from_client.recv().await {
            if w.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let out2 = out.clone();
    let downstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out2.send(spdy::data(data_stream, false, &buf[..n])).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = out2.send(spdy::data(data_stream, true, &[]));
    };
    tokio::join!(upstream, downstream);
    let _ = out.send(spdy::data(error_stream, true, &[]));
}

/// Serves one port-forward connection over WebSocket (SPDY in binary
/// messages, kubectl 1.31+) for the pod `pod` (`name_namespace`, uid `uid`)
/// whose network namespace is `netns`.
pub async fn serve<IO>(io: IO, netns: PathBuf, pod: String, uid: String)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let (out, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    let (pongs, mut pong_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (bytes_in, inbound) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        let mut w = ws::Writer::new(w);
        loop {
            let sent = tokio::select! {
                bytes = outgoing.recv() => match bytes {
                    Some(b) => w.send(ws::BINARY, &b).await,
                    None => break,
                },
                Some(p) = pong_rx.recv() => w.send(ws::PONG, &p).await,
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = w.close().await;
    });
    let reader = tokio::spawn(async move {
        let mut reader = ws::Reader::new(r);
        while let Ok(Some(m)) = reader.next().await {
            match m {
                Message::Binary(b) => {
                    if bytes_in.send(b).await.is_err() {
                        return;
                    }
                }
                Message::Ping(p) => {
                    let _ = pongs.send(p);
                }
                Message::Close => return,
                Message::Text(_) => {}
            }
        }
    });
    session(inbound, out, netns, pod, uid).await;
    reader.abort();
    let _ = writer.await;
}

/// The same over a plain SPDY/3.1 upgrade (`X-Stream-Protocol-Version:
/// portforward.k8s.io`): what kube-apiserver sends kubelet, and what kubectl
/// falls back to.
pub async fn serve_spdy<IO>(io: IO, netns: PathBuf, pod: String, uid: String)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(io);
    let (out, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    let (bytes_in, inbound) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(b) = outgoing.recv().await {
            if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if bytes_in.send(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    session(inbound, out, netns, pod, uid).await;
    reader.abort();
    let _ = writer.await;
}

/// One SPDY session: `inbound` carries the client's bytes, `out` takes ours.
async fn session(mut inbound: mpsc::Receiver<Vec<u8>>, out: Out, netns: PathBuf, pod: String, uid: String) {
    let mut headers = spdy::Headers::default();
    let mut buf = Vec::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Where a data stream's bytes from the client go.
    let mut upstreams: HashMap<u32, mpsc::UnboundedSender<Option<Vec<u8>>>> = HashMap::new();
    'conn: loop {
        match inbound.recv().await {
            Some(b) => buf.extend(b),
            None => break,
        }
        while let Some(frame) = spdy::parse(&mut buf) {
            match frame {
                Frame::Control { kind: spdy::SYN_STREAM, payload, .. } => {
                    let Ok((id, block)) = spdy::syn_stream(&payload) else { break 'conn };
                    let h = match headers.decode(block) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::debug!(error = %e, "port-forward: unreadable headers");
                            break 'conn;
                        }
                    };
                    match headers.syn_reply(id, &[]) {
                        Ok(reply) => {
                            let _ = out.send(reply);
                        }
                        Err(_) => break 'conn,
                    }
                    let first = |k: &str| h.get(k).and_then(|v| v.first()).cloned().unwrap_or_default();
                    let (kind, port, request) = (first("streamtype"), first("port"), first("requestid"));
                    let port = port.parse::<u16>().unwrap_or(0);
                    let pair = pairs.entry(request.clone()).or_default();
                    pair.port = port;
                    match kind.as_str() {
                        "error" => pair.error = Some(id),
                        "data" => pair.data = Some(id),
                        _ => {
                            let _ = out.send(spdy::rst_stream(id, 1));
                            continue;
                        }
                    }
                    if let (Some(e), Some(d)) = (pair.error, pair.data) {
                        let port = pair.port;
                        pairs.remove(&request);
                        let (tx, rx) = mpsc::unbounded_channel();
                        upstreams.insert(d, tx);
                        let (out, netns, pod, uid) = (out.clone(), netns.clone(), pod.clone(), uid.clone());
                        tokio::spawn(async move {
                            match dial(netns.clone(), port).await {
                                Ok(conn) => forward(conn, (e, d), out, rx).await,
                                Err(why) => {
                                    let message = format!(
                                        "error forwarding port {port} to pod {pod}, uid {uid}: failed to execute portforward in network namespace {:?}: {why}",
                                        netns.display().to_string()
                                    );
                                    let _ = out.send(spdy::data(e, false, message.as_bytes()));
                                    let _ = out.send(spdy::data(e, true, &[]));
                                    let _ = out.send(spdy::data(d, true, &[]));
                                }
                            }
                        });
                    }
                }
                Frame::Control { kind: spdy::PING, payload, .. } => {
                    if let Ok(id) = spdy::first_word(&payload) {
                        let _ = out.send(spdy::ping(id));
                    }
                }
                Frame::Control { kind: spdy::RST_STREAM, payload, .. } => {
                    if let Ok(id) = spdy::first_word(&payload) {
                        upstreams.remove(&(id & 0x7fff_ffff));
                    }
                }
                Frame::Control { kind: spdy::GOAWAY, .. } => break 'conn,
                Frame::Control { .. } => {}
                Frame::Data { stream, flags, data } => {
                    if let Some(tx) = upstreams.get(&stream) {
                        if !data.is_empty() {
                            let _ = tx.send(Some(data));
                        }
                        if flags & spdy::FLAG_FIN != 0 {
                            let _ = tx.send(None);
                            upstreams.remove(&stream);
                        }
                    }
                }
            }
        }
    }
    drop(upstreams);
}
