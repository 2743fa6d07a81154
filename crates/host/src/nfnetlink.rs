//! nfnetlink: a NETLINK_NETFILTER socket and the messages it carries, for
//! writing nf_tables transactions straight to the kernel (what `nft -f`
//! sends, without the dumps of the kernel's rules `nft` makes before each
//! transaction).
//!
//! A [`Msg`] is one netlink message (nlmsghdr, nfgenmsg, attributes);
//! [`Socket::batch`] sends a list of them as one nfnetlink batch, which the
//! kernel applies atomically: all of it or none.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, setsockopt, socket,
    sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

/// nfnetlink's subsystem for nf_tables (`NFNL_SUBSYS_NFTABLES`).
pub const NFNL_SUBSYS_NFTABLES: u8 = 10;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
/// An attribute holding attributes.
pub const NLA_F_NESTED: u16 = 0x8000;

const NLMSG_ERROR: u16 = 2;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_HDRLEN: usize = 16;
const AF_UNSPEC: u8 = 0;

/// How long a batch waits for the kernel's answer (it answers before `send` returns; this is a safety net).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Room for the kernel's errors (each echoes the message it refuses).
const RCVBUF: usize = 8 << 20;
/// One reply datagram: an error echoes its message, which nf_tables keeps well under this.
const RECV_CHUNK: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("message {index} has an attribute over 64 KiB")]
    TooLarge { index: usize },
    /// The kernel refused message `index` (counted from 0, batch markers not counted) and
    /// so the whole batch; `errors` counts every message it refused (later ones often fail
    /// because of the first).
    #[error("the kernel refused message {index} of the batch: {errno}{}", more(*errors))]
    Refused { index: usize, errno: Errno, errors: usize },
    #[error("the kernel refused the batch: {0}")]
    BatchRefused(Errno),
    #[error("the kernel refused the batch; its errors overflowed the receive buffer")]
    Lost,
    #[error("no answer from the kernel within {0:?}")]
    Timeout(Duration),
    #[error("the thread opening a socket in another namespace panicked")]
    Thread,
}

fn more(errors: usize) -> String {
    if errors > 1 { format!(" (and {} more messages refused)", errors - 1) } else { String::new() }
}

impl BatchError {
    /// The kernel's error number, when it refused something.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            BatchError::Sys { source, .. } => Some(*source),
            BatchError::Refused { errno, .. } | BatchError::BatchRefused(errno) => Some(*errno),
            _ => None,
        }
    }

    /// The index of the (first) message the kernel refused.
    pub fn index(&self) -> Option<usize> {
        match self {
            BatchError::Refused { index, .. } | BatchError::TooLarge { index } => Some(*index),
            _ => None,
        }
    }
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> BatchError {
    move |source| BatchError::Sys { what, source }
}

/// One netlink message: nlmsghdr, nfgenmsg and attributes (numbers big-endian, as
/// nfnetlink takes them; everything 4-byte aligned). Length and sequence number are
/// filled in when it is sent.
#[derive(Clone, Debug)]
pub struct Msg {
    buf: Vec<u8>,
    oversize: bool,
}

impl Msg {
    /// A message of netlink type `ty` (subsystem << 8 | message) for `family`.
    pub fn new(ty: u16, flags: u16, family: u8) -> Msg {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        buf.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
        Msg { buf, oversize: false }
    }

    /// An nf_tables message (`NFT_MSG_*`).
    pub fn nftables(msg: u8, flags: u16, family: u8) -> Msg {
        Msg::new(u16::from(NFNL_SUBSYS_NFTABLES) << 8 | u16::from(msg), flags, family)
    }

    fn header(&mut self, ty: u16, len: usize) {
        let len = 4 + len;
        if len > usize::from(u16::MAX) {
            self.oversize = true;
        }
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn bytes(&mut self, ty: u16, v: &[u8]) -> &mut Msg {
        self.header(ty, v.len());
        self.buf.extend_from_slice(v);
        self.pad();
        self
    }

    pub fn u8(&mut self, ty: u16, v: u8) -> &mut Msg {
        self.bytes(ty, &[v])
    }

    pub fn u16(&mut self, ty: u16, v: u16) -> &mut Msg {
        self.bytes(ty, &v.to_be_bytes())
    }

    pub fn u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.bytes(ty, &v.to_be_bytes())
    }

    pub fn u64(&mut self, ty: u16, v: u64) -> &mut Msg {
        self.bytes(ty, &v.to_be_bytes())
    }

    /// A string, NUL-terminated as the kernel's NLA_STRING attributes are sent.
    pub fn str(&mut self, ty: u16, s: &str) -> &mut Msg {
        self.header(ty, s.len() + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
        self
    }

    /// An attribute holding what `f` adds (flagged NLA_F_NESTED).
    pub fn nested(&mut self, ty: u16, f: impl FnOnce(&mut Msg)) -> &mut Msg {
        let start = self.buf.len();
        self.header(ty | NLA_F_NESTED, 0);
        f(self);
        let len = self.buf.len() - start;
        if len > usize::from(u16::MAX) {
            self.oversize = true;
        }
        self.buf[start..start + 2].copy_from_slice(&(len as u16).to_ne_bytes());
        self
    }

    /// The message so far (its length field not yet filled in).
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
}

fn marker(ty: u16) -> Msg {
    let mut m = Msg::new(ty, NLM_F_REQUEST, AF_UNSPEC);
    // res_id: the subsystem the batch is for, in network byte order.
    m.buf[NLMSG_HDRLEN + 2..NLMSG_HDRLEN + 4].copy_from_slice(&u16::from(NFNL_SUBSYS_NFTABLES).to_be_bytes());
    m
}

/// `msgs` as one nfnetlink batch: between BATCH_BEGIN (sequence `begin`) and BATCH_END,
/// numbered on from `begin`, lengths filled in, NLM_F_ACK on the last message only (the
/// kernel reports errors for every message regardless; an ack for each would flood the
/// receive buffer on big batches).
pub fn batch_bytes(msgs: &[Msg], begin: u32) -> Result<Vec<u8>, BatchError> {
    let begin_msg = marker(NFNL_MSG_BATCH_BEGIN);
    let end_msg = marker(NFNL_MSG_BATCH_END);
    let total: usize = msgs.iter().map(|m| m.buf.len()).sum::<usize>() + 2 * begin_msg.buf.len();
    let mut out = Vec::with_capacity(total);
    let last = msgs.len().wrapping_sub(1);
    let all = std::iter::once(&begin_msg).chain(msgs).chain(std::iter::once(&end_msg));
    for (i, m) in all.enumerate() {
        if m.oversize {
            return Err(BatchError::TooLarge { index: i.saturating_sub(1) });
        }
        let at = out.len();
        out.extend_from_slice(&m.buf);
        let len = u32::try_from(m.buf.len()).map_err(|_| BatchError::TooLarge { index: i.saturating_sub(1) })?;
        out[at..at + 4].copy_from_slice(&len.to_ne_bytes());
        out[at + 8..at + 12].copy_from_slice(&begin.wrapping_add(i as u32).to_ne_bytes());
        if i >= 1 && i - 1 == last {
            let flags = u16::from_ne_bytes([out[at + 6], out[at + 7]]) | NLM_F_ACK;
            out[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
        }
    }
    Ok(out)
}

/// A NETLINK_NETFILTER socket, in the network namespace it was opened in.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    sndbuf: usize,
    rbuf: Vec<u8>,
}

impl Socket {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Socket, BatchError> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(sys("opening a netfilter netlink socket"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(sys("binding the netlink socket"))?;
        setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).map_err(sys("raising the netlink receive buffer"))?;
        let timeout = TimeVal::milliseconds(REPLY_TIMEOUT.as_millis() as i64);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(sys("setting the netlink receive timeout"))?;
        // Sequence numbers only tell this socket's batches apart; start somewhere unlikely to repeat.
        let seq =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        Ok(Socket { fd, seq, sndbuf: 0, rbuf: vec![0; RECV_CHUNK] })
    }

    /// A socket in the network namespace `netns` refers to (a `/proc/PID/ns/net` or
    /// `/run/netns/NAME` file): opened on a thread of its own that enters it, since a
    /// socket stays in the namespace it was created in.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Socket, BatchError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(sys("entering the network namespace"))?;
                Socket::open()
            })
            .join()
            .unwrap_or(Err(BatchError::Thread))
        })
    }

    /// Sends `msgs` as one batch and waits for the kernel's verdict: Ok when it took all of
    /// them, else the first message it refused (it then applied none).
    pub fn batch(&mut self, msgs: &[Msg]) -> Result<(), BatchError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let begin = self.seq.wrapping_add(1);
        let n = msgs.len() as u32;
        self.seq = begin.wrapping_add(n + 1);
        let buf = batch_bytes(msgs, begin)?;
        // Netlink takes a message only if it fits the send buffer; the batch must be one message.
        if buf.len() + 4096 > self.sndbuf {
            let want = (buf.len() + 4096).max(1 << 20);
            setsockopt(&self.fd, sockopt::SndBufForce, &want).map_err(sys("raising the netlink send buffer"))?;
            self.sndbuf = want;
        }
        loop {
            match send(self.fd.as_raw_fd(), &buf, MsgFlags::empty()) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(sys("sending the batch")(e)),
            }
        }
        self.replies(begin, n)
    }

    /// Reads the kernel's answers to the batch sent at `begin` with `n` messages.
    fn replies(&mut self, begin: u32, n: u32) -> Result<(), BatchError> {
        let first = begin.wrapping_add(1);
        let end = first.wrapping_add(n);
        let mut refused: Option<(usize, Errno)> = None;
        let mut errors = 0usize;
        let mut lost = false;
        let mut done = false;
        // After an error the rest is already queued (the kernel answers before send returns):
        // read what is there without waiting.
        let mut draining = false;
        while !done {
            let flags = if draining { MsgFlags::MSG_DONTWAIT } else { MsgFlags::empty() };
            let len = match recv(self.fd.as_raw_fd(), &mut self.rbuf, flags) {
                Ok(len) => len,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) if draining => break,
                Err(Errno::EAGAIN) => return Err(BatchError::Timeout(REPLY_TIMEOUT)),
                // Replies were dropped: only errors ask for room beyond the one ack, so the batch failed.
                Err(Errno::ENOBUFS) => {
                    lost = true;
                    draining = true;
                    continue;
                }
                Err(e) => return Err(sys("reading the kernel's answer")(e)),
            };
            let mut at = 0;
            let data = &self.rbuf[..len];
            while at + NLMSG_HDRLEN <= data.len() {
                let h = &data[at..];
                let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let ty = u16::from_ne_bytes([h[4], h[5]]);
                let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if ty == NLMSG_ERROR && h.len() >= NLMSG_HDRLEN + 4 {
                    let code = i32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
                    let index = seq.wrapping_sub(first);
                    if seq == begin || seq == end {
                        if code != 0 {
                            return Err(BatchError::BatchRefused(Errno::from_raw(-code)));
                        }
                    } else if index < n {
                        if code != 0 {
                            errors += 1;
                            refused.get_or_insert((index as usize, Errno::from_raw(-code)));
                            draining = true;
                        }
                        // Errors come in message order: the last message's answer is the last.
                        if index == n - 1 {
                            done = true;
                        }
                    }
                    // Anything else answers an earlier batch (given up on): ignored.
                }
                if mlen < NLMSG_HDRLEN {
                    break;
                }
                at += (mlen + 3) & !3;
            }
        }
        match refused {
            Some((index, errno)) => Err(BatchError::Refused { index, errno, errors }),
            None if lost => Err(BatchError::Lost),
            None if done => Ok(()),
            None => Err(BatchError::Timeout(REPLY_TIMEOUT)),
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_big_endian_and_nests_carry_their_length() {
        let mut m = Msg::nftables(6, NLM_F_CREATE, 2);
        m.str(1, "ab").u8(2, 7).nested(3, |m| {
            m.u32(1, 0x0102_0304).u64(2, 1);
        });
        let b = m.as_slice();
        assert_eq!(&b[4..6], &(0x0a06u16).to_ne_bytes());
        assert_eq!(&b[16..20], &[2, 0, 0, 0]);
        // "ab\0": length 7, padded to 8.
        assert_eq!(&b[20..28], &[7, 0, 1, 0, b'a', b'b', 0, 0]);
        assert_eq!(&b[28..36], &[5, 0, 2, 0, 7, 0, 0, 0]);
        let nest = &b[36..];
        assert_eq!(u16::from_ne_bytes([nest[0], nest[1]]), 4 + 8 + 12);
        assert_eq!(u16::from_ne_bytes([nest[2], nest[3]]), 3 | NLA_F_NESTED);
        assert_eq!(&nest[8..12], &[1, 2, 3, 4]);
        assert_eq!(&nest[16..24], &[0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn a_batch_is_framed_numbered_and_acks_only_its_last_message() {
        let msgs = vec![Msg::nftables(0, NLM_F_REQUEST, 2), Msg::nftables(0, NLM_F_REQUEST, 2)];
        let b = batch_bytes(&msgs, 100).unwrap();
        let mut at = 0;
        let mut seen = vec![];
        while at < b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(b[at + 4..at + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(b[at + 6..at + 8].try_into().unwrap());
            let seq = u32::from_ne_bytes(b[at + 8..at + 12].try_into().unwrap());
            seen.push((ty, flags, seq));
            if ty == NFNL_MSG_BATCH_BEGIN {
                assert_eq!(&b[at + 16..at + 20], &[0, 0, 0, 10]);
            }
            at += len;
        }
        assert_eq!(seen, vec![(0x10, 1, 100), (0x0a00, 1, 101), (0x0a00, 1 | NLM_F_ACK, 102), (0x11, 1, 103)]);
    }

    #[test]
    fn the_kernel_takes_a_batch_and_names_the_message_it_refuses() {
        // A namespace of this test's own, entered by a thread that ends with it.
        std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) (needs root)");
            let mut s = Socket::open().unwrap();
            let table = |msg: u8, flags: u16, name: &str| {
                let mut m = Msg::nftables(msg, NLM_F_REQUEST | flags, 2);
                m.str(1, name);
                m
            };
            // NFT_MSG_NEWTABLE 0, NFT_MSG_DELTABLE 2.
            s.batch(&[table(0, 0, "a"), table(0, 0, "b")]).unwrap();
            let err = s.batch(&[table(2, 0, "b"), table(2, 0, "missing"), table(0, 0, "c")]).unwrap_err();
            assert!(matches!(err, BatchError::Refused { index: 1, errno: Errno::ENOENT, errors: 1 }), "{err}");
            // Nothing of the refused batch was applied: "b" is still there, so deleting it works.
            s.batch(&[table(2, 0, "b")]).unwrap();
            let err = s.batch(&[table(0, NLM_F_EXCL, "a")]).unwrap_err();
            assert_eq!(err.errno(), Some(Errno::EEXIST));
            // The socket goes on after a refusal.
            s.batch(&[table(2, 0, "a")]).unwrap();
        })
        .join()
        .unwrap();
    }
}
