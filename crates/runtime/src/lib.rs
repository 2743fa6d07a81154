//! The client runtime under every role that talks to the API (controllers,
//! node agent, proxy, DNS), over kube clients only, so each works against
//! kubesvc and any Kubernetes alike.
//!
//! Layout, in the order changes flow:
//! - [`informer`] watches one resource into a store and hands each change
//!   ([`Change`]) to handlers;
//! - handlers put keys on a [`queue::WorkQueue`]; [`workers`] run a sync per
//!   key, retrying failures with back-off;
//! - syncs read objects through [`pod`] and [`selector`] helpers and report
//!   through [`events`]; [`wellknown`] names Kubernetes' labels and taints;
//! - [`client`] makes the kube client from a kubeconfig.

pub mod client;
pub mod events;
pub mod informer;
pub mod pod;
pub mod queue;
pub mod selector;
pub mod workers;

pub use informer::{Change, Informer};
pub use kubesvc_api::wellknown;
pub use queue::WorkQueue;
pub use workers::run_workers;

use kube::ResourceExt;

/// An object's namespace and name, the key work queues carry.
pub type ObjectKey = (String, String);

/// The key of `obj` (an empty namespace for cluster-scoped kinds).
pub fn key_of<K: ResourceExt>(obj: &K) -> ObjectKey {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}
