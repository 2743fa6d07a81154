//! The few eBPF operations kubesvc needs, over the `bpf(2)` system call: hash
//! maps, loading a program (with the verifier's log when it is refused) and
//! attaching it to a cgroup by a link that lasts as long as its descriptor.
//! Programs are assembled here from instructions ([`Asm`]): no compiler, no
//! object files.
//!
//! This is the one module with `unsafe`: `bpf(2)` has no wrapper in nix. Every
//! call passes a zeroed attribute block of the kernel's layout and pointers that
//! outlive the call.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("bpf({what}): {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },
    /// The verifier refused the program; `log` is its account of why.
    #[error("the kernel refused BPF program {name}: {source}\n{log}")]
    Refused { name: String, source: Errno, log: String },
    #[error("opening cgroup {path}: {source}")]
    Cgroup { path: String, source: Errno },
}

impl BpfError {
    pub fn errno(&self) -> Errno {
        match self {
            BpfError::Sys { source, .. } | BpfError::Refused { source, .. } | BpfError::Cgroup { source, .. } => {
                *source
            }
        }
    }
}

const MAP_CREATE: i64 = 0;
const MAP_UPDATE_ELEM: i64 = 2;
const MAP_DELETE_ELEM: i64 = 3;
const PROG_LOAD: i64 = 5;
const LINK_CREATE: i64 = 28;

/// The attribute block: larger than any field used here, zeroed beyond them (the kernel checks).
const ATTR: usize = 128;

fn bpf(cmd: i64, attr: &mut [u8; ATTR], what: &'static str) -> Result<i64, BpfError> {
    // SAFETY: `attr` is a live, writable block of ATTR bytes laid out as `union bpf_attr`
    // for `cmd`; any pointers inside it were taken from buffers the caller keeps alive
    // for the duration of this call.
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR as u32) };
    if r < 0 { Err(BpfError::Sys { what, source: Errno::last() }) } else { Ok(r) }
}

fn put_u32(attr: &mut [u8; ATTR], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; ATTR], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn fd_of(r: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// `BPF_MAP_TYPE_HASH`.
pub const MAP_HASH: u32 = 1;
/// `BPF_MAP_TYPE_LRU_HASH`: the least recently used entries go when it is full.
pub const MAP_LRU_HASH: u32 = 9;
/// Allocate entries as they are added, not all at creation.
pub const F_NO_PREALLOC: u32 = 1;

/// A BPF map: fixed-size keys and values, shared with the programs that name it.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl Map {
    pub fn create(
        kind: u32,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        flags: u32,
    ) -> Result<Map, BpfError> {
        let mut a = [0u8; ATTR];
        put_u32(&mut a, 0, kind);
        put_u32(&mut a, 4, key_size);
        put_u32(&mut a, 8, value_size);
        put_u32(&mut a, 12, max_entries);
        put_u32(&mut a, 16, flags);
        put_name(&mut a, 28, name);
        let fd = fd_of(bpf(MAP_CREATE, &mut a, "creating a map")?);
        Ok(Map { fd, key_size: key_size as usize, value_size: value_size as usize })
    }

    /// Sets `key` to `value` (added or replaced).
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
        assert_eq!((key.len(), value.len()), (self.key_size, self.value_size), "key and value of the map's sizes");
        let mut a = [0u8; ATTR];
        put_u32(&mut a, 0, self.fd.as_raw_fd() as u32);
        put_u64(&mut a, 8, key.as_ptr() as u64);
        put_u64(&mut a, 16, value.as_ptr() as u64);
        bpf(MAP_UPDATE_ELEM, &mut a, "updating a map").map(|_| ())
    }

    /// Deletes `key`; true when it was there.
    pub fn delete(&self, key: &[u8]) -> Result<bool, BpfError> {
        assert_eq!(key.len(), self.key_size, "a key of the map's size");
        let mut a = [0u8; ATTR];
        put_u32(&mut a, 0, self.fd.as_raw_fd() as u32);
        put_u64(&mut a, 8, key.as_ptr() as u64);
        match bpf(MAP_DELETE_ELEM, &mut a, "deleting from a map") {
            Ok(_) => Ok(true),
            Err(BpfError::Sys { source: Errno::ENOENT, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn put_name(a: &mut [u8; ATTR], at: usize, name: &str) {
    // Names are at most 15 bytes plus NUL; letters, digits, '_' and '.' only.
    for (i, b) in name.bytes().filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.').take(15).enumerate() {
        a[at + i] = b;
    }
}

/// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`: runs at connect, sendmsg, recvmsg, getpeername...
pub const PROG_CGROUP_SOCK_ADDR: u32 = 18;

/// Attach points of cgroup socket-address programs (`enum bpf_attach_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachType {
    Inet4Connect = 10,
    Udp4Sendmsg = 14,
    Udp4Recvmsg = 19,
    Inet4Getpeername = 29,
}

/// A loaded program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    attach: AttachType,
}

impl Program {
    /// Loads `insns` as a cgroup socket-address program for `attach`.
    pub fn load(name: &str, insns: &[u64], attach: AttachType, license: &str) -> Result<Program, BpfError> {
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_le_bytes()).collect();
        let license = CString::new(license).unwrap_or_default();
        let attempt = |log: Option<&mut Vec<u8>>| {
            let mut a = [0u8; ATTR];
            put_u32(&mut a, 0, PROG_CGROUP_SOCK_ADDR);
            put_u32(&mut a, 4, insns.len() as u32);
            put_u64(&mut a, 8, bytes.as_ptr() as u64);
            put_u64(&mut a, 16, license.as_ptr() as u64);
            if let Some(log) = log {
                put_u32(&mut a, 24, 1);
                put_u32(&mut a, 28, log.len() as u32);
                put_u64(&mut a, 32, log.as_mut_ptr() as u64);
            }
            put_name(&mut a, 48, name);
            put_u32(&mut a, 68, attach as u32);
            bpf(PROG_LOAD, &mut a, "loading a program")
        };
        match attempt(None) {
            Ok(fd) => Ok(Program { fd: fd_of(fd), attach }),
            Err(BpfError::Sys { source, .. }) if source == Errno::EACCES || source == Errno::EINVAL => {
                // Load again with the verifier's log, for the error.
                let mut log = vec![0u8; 1 << 16];
                let again = attempt(Some(&mut log));
                if let Ok(fd) = again {
                    return Ok(Program { fd: fd_of(fd), attach });
                }
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err(BpfError::Refused {
                    name: name.to_string(),
                    source,
                    log: String::from_utf8_lossy(&log[..end]).trim_end().to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Attaches to the cgroup at `dir` (a cgroup v2 directory) and its descendants, for
    /// as long as the returned link is kept (dropping it detaches).
    pub fn attach(&self, dir: &Path) -> Result<Link, BpfError> {
        let cgroup = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|source| BpfError::Cgroup { path: dir.display().to_string(), source })?;
        let mut a = [0u8; ATTR];
        put_u32(&mut a, 0, self.fd.as_raw_fd() as u32);
        put_u32(&mut a, 4, cgroup.as_raw_fd() as u32);
        put_u32(&mut a, 8, self.attach as u32);
        Ok(Link { _fd: fd_of(bpf(LINK_CREATE, &mut a, "attaching to a cgroup")?) })
    }
}

/// A program attached to a cgroup; detached when dropped.
#[derive(Debug)]
pub struct Link {
    _fd: OwnedFd,
}

/// Registers.
pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R8: u8 = 8;
pub const R9: u8 = 9;
/// The read-only frame pointer (the stack grows down from it).
pub const R10: u8 = 10;

/// Helpers by number (`enum bpf_func_id`).
pub const HELPER_MAP_LOOKUP: i32 = 1;
pub const HELPER_MAP_UPDATE: i32 = 2;
pub const HELPER_PRANDOM_U32: i32 = 7;
pub const HELPER_SOCKET_COOKIE: i32 = 46;

const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const DW: u8 = 0x18;
const MEM: u8 = 0x60;
const X: u8 = 0x08;

/// ALU operations.
#[derive(Clone, Copy)]
pub enum Alu {
    Add = 0x00,
    Or = 0x40,
    Lsh = 0x60,
    Mod = 0x90,
    Mov = 0xb0,
}

/// Conditional jumps.
#[derive(Clone, Copy)]
pub enum Cond {
    Eq = 0x10,
    Ne = 0x50,
}

/// A program being assembled: instructions, with jumps to labels resolved by [`Asm::finish`].
#[derive(Default)]
pub struct Asm {
    insns: Vec<u64>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize)>,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

impl Asm {
    /// A label to jump to, placed later with [`Asm::here`].
    pub fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    pub fn here(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }

    /// `dst = *(u32 *)(src + off)`
    pub fn load32(&mut self, dst: u8, src: u8, off: i16) -> &mut Self {
        self.push(insn(LDX | W | MEM, dst, src, off, 0))
    }

    /// `*(u32 *)(dst + off) = src`
    pub fn store32(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.push(insn(STX | W | MEM, dst, src, off, 0))
    }

    /// `*(u64 *)(dst + off) = src`
    pub fn store64(&mut self, dst: u8, off: i16, src: u8) -> &mut Self {
        self.push(insn(STX | DW | MEM, dst, src, off, 0))
    }

    /// `*(u32 *)(dst + off) = imm`
    pub fn store32_imm(&mut self, dst: u8, off: i16, imm: i32) -> &mut Self {
        self.push(insn(ST | W | MEM, dst, 0, off, imm))
    }

    /// 64-bit `dst op= imm`.
    pub fn alu64_imm(&mut self, op: Alu, dst: u8, imm: i32) -> &mut Self {
        self.push(insn(ALU64 | op as u8, dst, 0, 0, imm))
    }

    /// 64-bit `dst op= src`.
    pub fn alu64(&mut self, op: Alu, dst: u8, src: u8) -> &mut Self {
        self.push(insn(ALU64 | op as u8 | X, dst, src, 0, 0))
    }

    /// 32-bit `dst op= imm` (the upper half zeroed).
    pub fn alu32_imm(&mut self, op: Alu, dst: u8, imm: i32) -> &mut Self {
        self.push(insn(ALU | op as u8, dst, 0, 0, imm))
    }

    /// 32-bit `dst op= src` (the upper half zeroed).
    pub fn alu32(&mut self, op: Alu, dst: u8, src: u8) -> &mut Self {
        self.push(insn(ALU | op as u8 | X, dst, src, 0, 0))
    }

    /// `dst = the map` (a 64-bit immediate naming the map by descriptor; two slots).
    pub fn load_map(&mut self, dst: u8, map: &Map) -> &mut Self {
        // BPF_LD | BPF_DW | BPF_IMM with src BPF_PSEUDO_MAP_FD.
        self.push(insn(0x18, dst, 1, 0, map.raw()));
        self.push(0)
    }

    /// `if dst cond imm goto label`
    pub fn jump_imm(&mut self, cond: Cond, dst: u8, imm: i32, label: usize) -> &mut Self {
        self.fixups.push((self.insns.len(), label));
        self.push(insn(JMP | cond as u8, dst, 0, 0, imm))
    }

    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(insn(JMP | 0x80, 0, 0, 0, helper))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(insn(JMP | 0x90, 0, 0, 0, 0))
    }

    fn push(&mut self, i: u64) -> &mut Self {
        self.insns.push(i);
        self
    }

    /// The instructions, jumps resolved. Panics on a label never placed (a bug here, not input).
    pub fn finish(mut self) -> Vec<u64> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label].expect("every label jumped to is placed");
            let off = (target as i64 - at as i64 - 1) as i16;
            self.insns[at] = (self.insns[at] & !(0xffff << 16)) | u64::from(off as u16) << 16;
        }
        self.insns
    }
}
