//! Kubernetes' well-known label, annotation, taint and finalizer names, in one
//! place for the server's rules and every client role.

/// A node that is not ready (its Ready condition is False).
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// A node whose heartbeats stopped (Ready is Unknown).
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NODE_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_NODE_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_NODE_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NODE_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// The label every namespace carries with its own name.
pub const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// On an EndpointSlice: the Service it belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// On an EndpointSlice: the controller that manages it.
pub const LABEL_ENDPOINTSLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// On Endpoints: the controller that manages it.
pub const LABEL_ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// On Endpoints and slices of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// On Endpoints the mirroring controller leaves alone.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// On a Service: which proxy implements it (kube-proxy skips those naming another).
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";

pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
pub const ANNOTATION_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The finalizer the namespace controller removes once a namespace is empty.
pub const FINALIZER_NAMESPACE: &str = "kubernetes";
/// The garbage collector orphans the object's dependents before it goes.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The garbage collector deletes the object's blocking dependents before it goes.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Where node agents renew their Leases.
pub const NAMESPACE_NODE_LEASE: &str = "kube-node-lease";

/// The Kubernetes version kubesvc implements.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "37";

/// kubesvc's version string in Kubernetes' form (`/version`'s gitVersion, a node's kubeletVersion).
pub fn git_version() -> String {
    format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-kubesvc.{}", env!("CARGO_PKG_VERSION"))
}
