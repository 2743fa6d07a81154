//! Socket load balancing: eBPF programs on a cgroup that send a connection to
//! a virtual address straight to one of its backends when the socket is
//! connected (TCP `connect()`) or a datagram is sent (unconnected UDP
//! `sendmsg()`), so no packet carries the virtual address and nothing needs
//! NAT; replies and `getpeername()` show the virtual address again.
//!
//! Maps: `services` is keyed by (address, port, protocol, slot): slot 0 holds
//! the backend count, slots 1..=n the backends; `revnat` remembers, per socket
//! cookie and backend, which virtual address the socket asked for. Only IPv4
//! (the attach points for IPv6 exist, nothing here programs them yet).
//!
//! Connected UDP is left alone on purpose: its backend would be fixed at
//! `connect()` for the socket's life, so a client would never follow a
//! replaced endpoint; address translation per packet (with conntrack entries
//! to stale backends deleted) does follow it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use nix::errno::Errno;

use crate::bpf::{
    Alu, Asm, AttachType, BpfError, Cond, F_NO_PREALLOC, HELPER_MAP_LOOKUP, HELPER_MAP_UPDATE, HELPER_PRANDOM_U32,
    HELPER_SOCKET_COOKIE, Link, MAP_HASH, MAP_LRU_HASH, Map, Program, R0, R1, R2, R3, R4, R6, R7, R8, R9, R10,
};

/// The protocols balanced at the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp = 6,
    Udp = 17,
}

/// Room for this many (address, port, protocol) entries plus their backends.
const SERVICE_ENTRIES: u32 = 1 << 20;
/// Sockets remembered for reverse translation (the least recently used go first).
const REVNAT_ENTRIES: u32 = 1 << 16;
const LICENSE: &str = "Apache-2.0";

// struct bpf_sock_addr: the fields read and written.
const CTX_USER_IP4: i16 = 4;
const CTX_USER_PORT: i16 = 24;
const CTX_PROTOCOL: i16 = 36;

// The stack: the services key at -16 (address, port, slot << 8 | protocol), the revnat
// key at -32 (cookie, backend address, backend port), the revnat value at -40.
const KEY: i16 = -16;
const REV_KEY: i16 = -32;
const REV_VALUE: i16 = -40;

/// The programs attached to one cgroup and the maps they read.
pub struct SocketLb {
    services: Map,
    _revnat: Map,
    _links: Vec<Link>,
}

impl std::fmt::Debug for SocketLb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketLb").finish_non_exhaustive()
    }
}

fn key(vip: Ipv4Addr, port: u16, proto: Proto, slot: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&vip.octets());
    // As the kernel shows them to the program: the port in network order in a u32.
    k[4..8].copy_from_slice(&u32::from(port.to_be()).to_ne_bytes());
    k[8..].copy_from_slice(&(slot << 8 | proto as u32).to_ne_bytes());
    k
}

fn backend(b: SocketAddrV4) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&b.ip().octets());
    v[4..].copy_from_slice(&u32::from(b.port().to_be()).to_ne_bytes());
    v
}

/// connect4 (TCP) or sendmsg4 (UDP): a virtual address with backends becomes one of
/// them, chosen at random, and the socket's choice is remembered for the way back.
fn forward(proto: Proto, services: &Map, revnat: &Map) -> Vec<u64> {
    let mut a = Asm::default();
    let out = a.label();
    let p = proto as i32;
    a.alu64(Alu::Mov, R6, R1);
    a.load32(R2, R6, CTX_PROTOCOL).jump_imm(Cond::Ne, R2, p, out);
    a.load32(R2, R6, CTX_USER_IP4).store32(R10, KEY, R2);
    a.load32(R2, R6, CTX_USER_PORT).store32(R10, KEY + 4, R2);
    a.store32_imm(R10, KEY + 8, p);
    a.load_map(R1, services).alu64(Alu::Mov, R2, R10).alu64_imm(Alu::Add, R2, i32::from(KEY));
    a.call(HELPER_MAP_LOOKUP).jump_imm(Cond::Eq, R0, 0, out);
    a.load32(R7, R0, 0).jump_imm(Cond::Eq, R7, 0, out);
    // slot = random % count + 1
    a.call(HELPER_PRANDOM_U32).alu32(Alu::Mod, R0, R7).alu32_imm(Alu::Add, R0, 1);
    a.alu32_imm(Alu::Lsh, R0, 8).alu32_imm(Alu::Or, R0, p).store32(R10, KEY + 8, R0);
    a.load_map(R1, services).alu64(Alu::Mov, R2, R10).alu64_imm(Alu::Add, R2, i32::from(KEY));
    a.call(HELPER_MAP_LOOKUP).jump_imm(Cond::Eq, R0, 0, out);
    a.load32(R8, R0, 0).load32(R9, R0, 4);
    // revnat[cookie, backend] = virtual address
    a.alu64(Alu::Mov, R1, R6).call(HELPER_SOCKET_COOKIE).store64(R10, REV_KEY, R0);
    a.store32(R10, REV_KEY + 8, R8).store32(R10, REV_KEY + 12, R9);
    a.load32(R2, R10, KEY).store32(R10, REV_VALUE, R2);
    a.load32(R2, R10, KEY + 4).store32(R10, REV_VALUE + 4, R2);
    a.load_map(R1, revnat).alu64(Alu::Mov, R2, R10).alu64_imm(Alu::Add, R2, i32::from(REV_KEY));
    a.alu64(Alu::Mov, R3, R10).alu64_imm(Alu::Add, R3, i32::from(REV_VALUE)).alu64_imm(Alu::Mov, R4, 0);
    a.call(HELPER_MAP_UPDATE);
    a.store32(R6, CTX_USER_IP4, R8).store32(R6, CTX_USER_PORT, R9);
    a.here(out);
    a.alu64_imm(Alu::Mov, R0, 1).exit();
    a.finish()
}

/// recvmsg4 and getpeername4: a backend this socket was sent to shows as the virtual
/// address it asked for.
fn reverse(revnat: &Map) -> Vec<u64> {
    let mut a = Asm::default();
    let out = a.label();
    a.alu64(Alu::Mov, R6, R1);
    a.alu64(Alu::Mov, R1, R6).call(HELPER_SOCKET_COOKIE).store64(R10, REV_KEY, R0);
    a.load32(R2, R6, CTX_USER_IP4).store32(R10, REV_KEY + 8, R2);
    a.load32(R2, R6, CTX_USER_PORT).store32(R10, REV_KEY + 12, R2);
    a.load_map(R1, revnat).alu64(Alu::Mov, R2, R10).alu64_imm(Alu::Add, R2, i32::from(REV_KEY));
    a.call(HELPER_MAP_LOOKUP).jump_imm(Cond::Eq, R0, 0, out);
    a.load32(R2, R0, 0).store32(R6, CTX_USER_IP4, R2);
    a.load32(R2, R0, 4).store32(R6, CTX_USER_PORT, R2);
    a.here(out);
    a.alu64_imm(Alu::Mov, R0, 1).exit();
    a.finish()
}

impl SocketLb {
    /// Loads the programs and attaches them to the cgroup v2 directory `cgroup` (and so
    /// to everything below it) for as long as this value lives.
    pub fn attach(cgroup: &Path) -> Result<SocketLb, BpfError> {
        let services = Map::create(MAP_HASH, "kubesvc_svc", 12, 8, SERVICE_ENTRIES, F_NO_PREALLOC)?;
        let revnat = Map::create(MAP_LRU_HASH, "kubesvc_revnat", 16, 8, REVNAT_ENTRIES, 0)?;
        let programs = [
            Program::load(
                "kubesvc_conn4",
                &forward(Proto::Tcp, &services, &revnat),
                AttachType::Inet4Connect,
                LICENSE,
            )?,
            Program::load("kubesvc_send4", &forward(Proto::Udp, &services, &revnat), AttachType::Udp4Sendmsg, LICENSE)?,
            Program::load("kubesvc_recv4", &reverse(&revnat), AttachType::Udp4Recvmsg, LICENSE)?,
            Program::load("kubesvc_peer4", &reverse(&revnat), AttachType::Inet4Getpeername, LICENSE)?,
        ];
        let links = programs.iter().map(|p| p.attach(cgroup)).collect::<Result<Vec<_>, _>>()?;
        Ok(SocketLb { services, _revnat: revnat, _links: links })
    }

    /// Sends `vip:port` over `proto` to `backends` (none: left to the packet path), where
    /// it had `previous` backends before. Backends are written before the count grows
    /// and deleted after it shrinks, so a program never picks an empty slot.
    pub fn set(
        &self,
        vip: Ipv4Addr,
        port: u16,
        proto: Proto,
        backends: &[SocketAddrV4],
        previous: usize,
    ) -> Result<(), BpfError> {
        if backends.is_empty() {
            return self.remove(vip, port, proto, previous);
        }
        for (i, b) in backends.iter().enumerate() {
            self.services.update(&key(vip, port, proto, i as u32 + 1), &backend(*b))?;
        }
        let mut count = [0u8; 8];
        count[..4].copy_from_slice(&(backends.len() as u32).to_ne_bytes());
        self.services.update(&key(vip, port, proto, 0), &count)?;
        for slot in backends.len() + 1..=previous {
            self.services.delete(&key(vip, port, proto, slot as u32))?;
        }
        Ok(())
    }

    /// Stops balancing `vip:port` over `proto` (it had `previous` backends).
    pub fn remove(&self, vip: Ipv4Addr, port: u16, proto: Proto, previous: usize) -> Result<(), BpfError> {
        self.services.delete(&key(vip, port, proto, 0))?;
        for slot in 1..=previous {
            self.services.delete(&key(vip, port, proto, slot as u32))?;
        }
        Ok(())
    }
}

/// The cgroup v2 hierarchy's mount point, if this mount namespace shows one
/// (`/sys/fs/cgroup` on unified systems, `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, at, fs) = (f.next()?, f.next()?, f.next()?);
        (fs == "cgroup2").then(|| std::path::PathBuf::from(at))
    })
}

/// Where kubesvc mounts the cgroup v2 hierarchy when it sees none.
pub const CGROUP2_FALLBACK: &str = "/run/kubesvc/cgroup2";

/// The cgroup v2 mount point: the one this mount namespace shows, else the hierarchy
/// mounted at [`CGROUP2_FALLBACK`] (`ip netns exec` mounts a fresh /sys that hides it;
/// the mount stays in that private namespace).
pub fn ensure_cgroup2() -> Result<std::path::PathBuf, Errno> {
    if let Some(at) = cgroup2_mount() {
        return Ok(at);
    }
    std::fs::create_dir_all(CGROUP2_FALLBACK).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    nix::mount::mount(Some("cgroup2"), CGROUP2_FALLBACK, Some("cgroup2"), nix::mount::MsFlags::empty(), None::<&str>)?;
    Ok(CGROUP2_FALLBACK.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_address_port_and_slot_as_the_program_reads_them() {
        let k = key(Ipv4Addr::new(10, 96, 0, 10), 80, Proto::Tcp, 2);
        assert_eq!(&k[..4], &[10, 96, 0, 10]);
        // Port 80 in network order: bytes 0x00 0x50, as sin_port holds it.
        assert_eq!(&k[4..6], &[0, 80]);
        assert_eq!(u32::from_ne_bytes([k[8], k[9], k[10], k[11]]), 2 << 8 | 6);
        let v = backend("10.244.1.5:8080".parse().unwrap());
        assert_eq!(&v[..6], &[10, 244, 1, 5, 0x1f, 0x90]);
    }
}
