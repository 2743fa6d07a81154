//! The server side of WebSocket (RFC 6455), as much as kubectl's streams
//! need: the handshake, masked client frames (fragmented or not), pings and
//! close, and unmasked frames back.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest message accepted from a client.
const MAX_MESSAGE: usize = 16 << 20;

pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{key}{GUID}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The first protocol of `ours` (in our order of preference) that the client offers.
pub fn choose_protocol(offered: Option<&str>, ours: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = offered.unwrap_or_default().split(',').map(str::trim).collect();
    ours.iter().copied().find(|p| offered.contains(p))
}

/// A whole message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Binary(Vec<u8>),
    Text(Vec<u8>),
    Ping(Vec<u8>),
    Close,
}

pub struct Reader<R> {
    r: R,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(r: R) -> Self {
        Reader { r }
    }

    /// The next message; `None` when the connection ended without a close.
    pub async fn next(&mut self) -> std::io::Result<Option<Message>> {
        let mut message: Vec<u8> = Vec::new();
        let mut kind = 0u8;
        loop {
            let mut head = [0u8; 2];
            match self.r.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => u64::from(self.r.read_u16().await?),
                127 => self.r.read_u64().await?,
                n => u64::from(n),
            };
            if len as usize > MAX_MESSAGE || message.len() + len as usize > MAX_MESSAGE {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message too large"));
            }
            let mut mask = [0u8; 4];
            if masked {
                self.r.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; len as usize];
            self.r.read_exact(&mut payload).await?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                CLOSE => return Ok(Some(Message::Close)),
                PING => return Ok(Some(Message::Ping(payload))),
                PONG => continue,
                0 => message.extend_from_slice(&payload),
                op => {
                    kind = op;
                    message = payload;
                }
            }
            if fin {
                return Ok(Some(if kind == TEXT { Message::Text(message) } else { Message::Binary(message) }));
            }
        }
    }
}

pub struct Writer<W> {
    w: W,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(w: W) -> Self {
        Writer { w }
    }

    /// One whole frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 10);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= 0xffff => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        self.w.write_all(&frame).await?;
        self.w.flush().await
    }

    /// A normal close (1000).
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.send(CLOSE, &1000u16.to_be_bytes()).await?;
        self.w.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_key_is_rfc_6455s() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            choose_protocol(Some("v4.channel.k8s.io, v5.channel.k8s.io"), &["v5.channel.k8s.io", "v4.channel.k8s.io"]),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose_protocol(Some("base64.channel.k8s.io"), &["v5.channel.k8s.io"]), None);
    }

    #[tokio::test]
    async fn masked_and_fragmented_frames_make_one_message() {
        let mask = [1u8, 2, 3, 4];
        let masked = |data: &[u8]| -> Vec<u8> { data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect() };
        let mut bytes = vec![BINARY, 0x80 | 3];
        bytes.extend_from_slice(&mask);
        bytes.extend(masked(b"abc"));
        bytes.extend([0x80, 0x80 | 2]);
        bytes.extend_from_slice(&mask);
        bytes.extend(masked(b"de"));
        bytes.extend([0x80 | CLOSE, 0]);
        let mut r = Reader::new(&bytes[..]);
        assert_eq!(r.next().await.ok().flatten(), Some(Message::Binary(b"abcde".to_vec())));
        assert_eq!(r.next().await.ok().flatten(), Some(Message::Close));
        assert_eq!(r.next().await.ok().flatten(), None);
    }
}
