//! The node agent (kubesvc's kubelet): it registers its Node, renews its
//! Lease, and runs the pods bound to it as processes, each pod in network,
//! UTS and mount namespaces of its own with an address from the node's pod
//! CIDR. It talks to the API only through kube clients, so it joins a
//! kubesvc cluster and a real one alike.
//!
//! Layout: [`files`] and [`env`](mod@env) compute what a pod sees (hosts,
//! resolv.conf, hostname, environment) exactly as kubelet does; [`shim`] is
//! the process each container runs under (namespaces, mounts, cgroups, the
//! CRI log, the exit record).

pub mod env;
pub mod files;
pub mod shim;
