//! Host plumbing for the node agent and `kubesvc up`, with no Kubernetes
//! knowledge: named network namespaces (as `ip netns` keeps them, so `ip netns
//! exec` works on them too), veth pairs, addresses, routes and sysctls, over
//! netlink (rtnetlink) and nix — no external binaries.
//!
//! Layout: [`addresses`] lists the host's own; [`netns`] creates, enters and removes namespaces; [`netlink`]
//! programs links, addresses and routes in one namespace; [`nfnetlink`] writes
//! nf_tables transactions to the kernel; [`socklb`] balances sockets at
//! `connect()` with eBPF programs ([`bpf`]) on a cgroup; [`memory`] hands
//! freed memory back; [`sysctl`] sets
//! per-namespace kernel parameters.
//!
//! Everything here changes the namespace it is pointed at. Callers own what
//! they create and remove it by name.

pub mod addresses;
pub mod bpf;
pub mod conntrack;
pub mod memory;
pub mod netlink;
pub mod netns;
pub mod nfnetlink;
pub mod socklb;
pub mod sysctl;

pub use netlink::{Netlink, Route};
pub use netns::NetNs;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("netlink: {what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("no link named {0:?}")]
    NoSuchLink(String),
    #[error("network namespace {0:?} does not exist")]
    NoSuchNamespace(String),
    #[error("a thread for namespace work could not run: {0}")]
    Thread(String),
    #[error("invalid route {0}")]
    InvalidRoute(String),
}

impl Error {
    /// The kernel said the thing already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::EEXIST)
    }

    /// The kernel said there is no such thing (ENOENT, ESRCH, ENODEV).
    pub fn is_not_found(&self) -> bool {
        use nix::errno::Errno;
        matches!(self, Error::NoSuchLink(_) | Error::NoSuchNamespace(_))
            || matches!(self.errno(), Some(Errno::ENOENT | Errno::ESRCH | Errno::ENODEV))
    }

    fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            Error::Sys { source, .. } => Some(*source),
            Error::Netlink { source: rtnetlink::Error::NetlinkError(m), .. } => {
                m.code.map(|c| nix::errno::Errno::from_raw(-c.get()))
            }
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}
