//! The service proxy (kube-proxy's part): Services and EndpointSlices into a
//! per-node view of every Service port ([`tracker`], [`topology`]), rendered
//! as nftables rules ([`nft`]) and applied in atomic, incremental
//! transactions. The rendering is pure and tested by tracing packets through
//! it ([`trace`]); the runner writes it to the kernel over netlink. Pods'
//! connections to cluster IPs are balanced at the socket ([`socketlb`]) where
//! eBPF can be attached to their cgroup.

pub mod announce;
pub mod conntrack;
pub mod health;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod runner;
pub mod socketlb;
pub mod topology;
pub mod trace;
pub mod tracker;
