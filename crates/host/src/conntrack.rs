//! Conntrack entries over ctnetlink (what `conntrack -L` / `-D` do, without
//! the binary): list one family's UDP flows, delete chosen ones by their
//! original tuple. Blocking; callers run it off their async threads.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, setsockopt, socket,
    sockopt,
};

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack netlink socket: {0}")]
    Socket(#[source] nix::Error),
    #[error("conntrack {what}: {errno}")]
    Kernel { what: &'static str, errno: nix::errno::Errno },
    #[error("conntrack: malformed netlink reply")]
    Malformed,
}

type Result<T> = std::result::Result<T, ConntrackError>;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
// nfnetlink: the conntrack subsystem and its messages.
const CT_GET: u16 = (1 << 8) | 1;
const CT_DELETE: u16 = (1 << 8) | 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
pub const IPPROTO_UDP: u8 = 17;

/// One direction of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A conntrack entry: what the client sent (original) and what replies look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub proto: u8,
    pub orig: Tuple,
    pub reply: Tuple,
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn nested(buf: &mut Vec<u8>, ty: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(buf, ty | NLA_F_NESTED, &inner);
}

fn message(ty: u16, flags: u16, seq: u32, family: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + body.len());
    let len = (16 + 4 + body.len()) as u32;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(body);
    m
}

/// Attributes in `buf`: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((ty, payload))
    })
}

fn parse_tuple(buf: &[u8]) -> Option<(u8, Tuple)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for (ty, p) in attrs(buf) {
        match ty {
            CTA_TUPLE_IP => {
                for (ty, a) in attrs(p) {
                    let ip = match (ty, a.len()) {
                        (CTA_IP_V4_SRC | CTA_IP_V4_DST, 4) => IpAddr::from(<[u8; 4]>::try_from(a).ok()?),
                        (CTA_IP_V6_SRC | CTA_IP_V6_DST, 16) => IpAddr::from(<[u8; 16]>::try_from(a).ok()?),
                        _ => continue,
                    };
                    if ty == CTA_IP_V4_SRC || ty == CTA_IP_V6_SRC {
                        src = Some(ip);
                    } else {
                        dst = Some(ip);
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (ty, a) in attrs(p) {
                    match (ty, a.len()) {
                        (CTA_PROTO_NUM, 1) => proto = Some(a[0]),
                        (CTA_PROTO_SRC_PORT, 2) => sport = Some(u16::from_be_bytes([a[0], a[1]])),
                        (CTA_PROTO_DST_PORT, 2) => dport = Some(u16::from_be_bytes([a[0], a[1]])),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((proto?, Tuple { src: SocketAddr::new(src?, sport?), dst: SocketAddr::new(dst?, dport?) }))
}

fn tuple_attr(buf: &mut Vec<u8>, proto: u8, t: &Tuple) {
    nested(buf, CTA_TUPLE_ORIG, |b| {
        nested(b, CTA_TUPLE_IP, |b| match (t.src.ip(), t.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                attr(b, CTA_IP_V4_SRC, &s.octets());
                attr(b, CTA_IP_V4_DST, &d.octets());
            }
            (s, d) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V6(v) => v.octets(),
                    IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                };
                attr(b, CTA_IP_V6_SRC, &v6(s));
                attr(b, CTA_IP_V6_DST, &v6(d));
            }
        });
        nested(b, CTA_TUPLE_PROTO, |b| {
            attr(b, CTA_PROTO_NUM, &[proto]);
            attr(b, CTA_PROTO_SRC_PORT, &t.src.port().to_be_bytes());
            attr(b, CTA_PROTO_DST_PORT, &t.dst.port().to_be_bytes());
        });
    });
}

/// A ctnetlink socket in the calling thread's network namespace.
pub struct Conntrack {
    fd: OwnedFd,
    seq: u32,
}

impl Conntrack {
    pub fn open() -> Result<Conntrack> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(ConntrackError::Socket)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(ConntrackError::Socket)?;
        // A dump of many flows comes faster than one buffer's worth.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20));
        let timeout = nix::sys::time::TimeVal::new(5, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(ConntrackError::Socket)?;
        Ok(Conntrack { fd, seq: 0 })
    }

    fn request(&mut self, ty: u16, flags: u16, family: u8, body: &[u8]) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let m = message(ty, flags, self.seq, family, body);
        send(self.fd.as_raw_fd(), &m, MsgFlags::empty()).map_err(ConntrackError::Socket)?;
        Ok(self.seq)
    }

    /// Reads replies to `seq`, handing each message's payload (after the nfgenmsg) to `each`,
    /// until the dump's end or the ack.
    fn replies(&mut self, seq: u32, what: &'static str, mut each: impl FnMut(&[u8])) -> Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|errno| ConntrackError::Kernel { what, errno })?;
            let mut rest = &buf[..n];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                let got = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                if len < 16 || len > rest.len() {
                    return Err(ConntrackError::Malformed);
                }
                let payload = &rest[16..len];
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                if got != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = payload.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                        if code == 0 {
                            return Ok(());
                        }
                        return Err(ConntrackError::Kernel { what, errno: nix::errno::Errno::from_raw(-code) });
                    }
                    _ if payload.len() >= 4 => each(&payload[4..]),
                    _ => {}
                }
            }
        }
    }

    /// Every flow of `proto` in one family (`v6`).
    pub fn list(&mut self, v6: bool, proto: u8) -> Result<Vec<Entry>> {
        let family = if v6 { 10 } else { 2 };
        let seq = self.request(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, family, &[])?;
        let mut out = Vec::new();
        self.replies(seq, "listing flows", |payload| {
            let (mut orig, mut reply) = (None, None);
            for (ty, p) in attrs(payload) {
                match ty {
                    CTA_TUPLE_ORIG => orig = parse_tuple(p),
                    CTA_TUPLE_REPLY => reply = parse_tuple(p),
                    _ => {}
                }
            }
            if let (Some((p, orig)), Some((_, reply))) = (orig, reply)
                && p == proto
            {
                out.push(Entry { proto: p, orig, reply });
            }
        })?;
        Ok(out)
    }

    /// Deletes one flow; one already gone is fine.
    pub fn delete(&mut self, e: &Entry) -> Result<()> {
        let mut body = Vec::new();
        tuple_attr(&mut body, e.proto, &e.orig);
        let family = if e.orig.src.is_ipv6() { 10 } else { 2 };
        let seq = self.request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, family, &body)?;
        match self.replies(seq, "deleting a flow", |_| {}) {
            Err(ConntrackError::Kernel { errno: nix::errno::Errno::ENOENT, .. }) => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_encode_as_they_parse() {
        let t = Tuple { src: "10.0.0.1:4000".parse().unwrap(), dst: "10.96.0.10:53".parse().unwrap() };
        let mut b = Vec::new();
        tuple_attr(&mut b, IPPROTO_UDP, &t);
        let (ty, inner) = attrs(&b).next().unwrap();
        assert_eq!(ty, CTA_TUPLE_ORIG);
        assert_eq!(parse_tuple(inner), Some((IPPROTO_UDP, t)));
        let t6 = Tuple { src: "[fd00::1]:4000".parse().unwrap(), dst: "[fd00::53]:53".parse().unwrap() };
        let mut b = Vec::new();
        tuple_attr(&mut b, IPPROTO_UDP, &t6);
        assert_eq!(parse_tuple(attrs(&b).next().unwrap().1), Some((IPPROTO_UDP, t6)));
    }
}
