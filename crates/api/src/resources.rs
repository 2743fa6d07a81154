//! The resources kubesvc serves: names as discovery and URLs spell them,
//! scope, schema, per-kind rules and printer.

use crate::kinds::{
    ConfigMapRules, DeploymentRules, EndpointSliceRules, EndpointsRules, EventRules, LeaseRules, NamespaceRules,
    NodeRules, PodRules, ReplicaSetRules, Rules, SecretRules, ServiceRules,
};
use crate::printers::Printer;
use crate::schema::{self, Def};
use crate::status::{GroupKind, GroupResource};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: get, update, patch.
    Status,
    /// `/scale` (autoscaling/v1 Scale): get, update, patch.
    Scale,
    /// `pods/binding`: create.
    Binding,
    /// `namespaces/finalize`: update.
    Finalize,
    /// `pods/log`: get, from the pod's node agent.
    Log,
    /// `pods/exec`, `pods/attach`, `pods/portforward`: streams to the node agent.
    Exec,
    Attach,
    PortForward,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "status" => Subresource::Status,
            "scale" => Subresource::Scale,
            "binding" => Subresource::Binding,
            "finalize" => Subresource::Finalize,
            "log" => Subresource::Log,
            "exec" => Subresource::Exec,
            "attach" => Subresource::Attach,
            "portforward" => Subresource::PortForward,
            _ => return None,
        })
    }
}

pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL path segment: `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// The OpenAPI definition of the kind.
    pub def: &'static str,
    pub subresources: &'static [Subresource],
    pub rules: &'static dyn Rules,
    pub printer: Printer,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resource({})", self.gr())
    }
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    pub fn gr(&self) -> GroupResource<'static> {
        GroupResource { group: self.group, resource: self.plural }
    }

    pub fn gk(&self) -> GroupKind<'static> {
        GroupKind { group: self.group, kind: self.kind }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn schema(&self) -> &'static Def {
        schema::def(self.def).expect("every served kind is in the schema table")
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage key prefix of this resource, e.g. `/registry/deployments.apps/`.
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.gr())
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{}/{}", self.key_prefix(), namespace, name)
        } else {
            format!("{}{}", self.key_prefix(), name)
        }
    }
}

const STANDARD: &[Subresource] = &[];
const STATUS: &[Subresource] = &[Subresource::Status];

static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        categories: &[],
        namespaced: false,
        def: "io.k8s.api.core.v1.Namespace",
        subresources: &[Subresource::Status, Subresource::Finalize],
        rules: &NamespaceRules,
        printer: Printer::Namespace,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        categories: &[],
        namespaced: false,
        def: "io.k8s.api.core.v1.Node",
        subresources: STATUS,
        rules: &NodeRules,
        printer: Printer::Node,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        categories: &["all"],
        namespaced: true,
        def: "io.k8s.api.core.v1.Pod",
        subresources: &[
            Subresource::Status,
            Subresource::Binding,
            Subresource::Log,
            Subresource::Exec,
            Subresource::Attach,
            Subresource::PortForward,
        ],
        rules: &PodRules,
        printer: Printer::Pod,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        categories: &["all"],
        namespaced: true,
        def: "io.k8s.api.core.v1.Service",
        subresources: STATUS,
        rules: &ServiceRules,
        printer: Printer::Service,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        categories: &[],
        namespaced: true,
        def: "io.k8s.api.core.v1.ConfigMap",
        subresources: STANDARD,
        rules: &ConfigMapRules,
        printer: Printer::ConfigMap,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        categories: &[],
        namespaced: true,
        def: "io.k8s.api.core.v1.Secret",
        subresources: STANDARD,
        rules: &SecretRules,
        printer: Printer::Secret,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        categories: &[],
        namespaced: true,
        def: "io.k8s.api.core.v1.Endpoints",
        subresources: STANDARD,
        rules: &EndpointsRules,
        printer: Printer::Endpoints,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        categories: &[],
        namespaced: true,
        def: "io.k8s.api.core.v1.Event",
        subresources: STANDARD,
        rules: &EventRules,
        printer: Printer::Event,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        categories: &["all"],
        namespaced: true,
        def: "io.k8s.api.apps.v1.Deployment",
        subresources: &[Subresource::Status, Subresource::Scale],
        rules: &DeploymentRules,
        printer: Printer::Deployment,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        categories: &["all"],
        namespaced: true,
        def: "io.k8s.api.apps.v1.ReplicaSet",
        subresources: &[Subresource::Status, Subresource::Scale],
        rules: &ReplicaSetRules,
        printer: Printer::ReplicaSet,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        short_names: &[],
        categories: &[],
        namespaced: true,
        def: "io.k8s.api.discovery.v1.EndpointSlice",
        subresources: STANDARD,
        rules: &EndpointSliceRules,
        printer: Printer::EndpointSlice,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        categories: &[],
        namespaced: true,
        def: "io.k8s.api.coordination.v1.Lease",
        subresources: STANDARD,
        rules: &LeaseRules,
        printer: Printer::Lease,
    },
];

/// Every served resource, in discovery order.
pub fn all() -> &'static [Resource] {
    RESOURCES
}

/// The group versions served, core first: ("", "v1"), ("apps", "v1"), ...
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The position of a served resource in [`all`], for per-resource tables.
pub fn index(r: &Resource) -> usize {
    // Every &Resource comes from the one static slice: the address gives the index.
    (r as *const Resource as usize - RESOURCES.as_ptr() as usize) / std::mem::size_of::<Resource>()
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind in an `apiVersion`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry() {
        for r in all() {
            assert_eq!(r.schema().short_name(), r.kind, "{r:?} schema");
        }
        assert_eq!(find("apps", "v1", "deployments").unwrap().gr().to_string(), "deployments.apps");
        assert_eq!(by_kind("v1", "Service").unwrap().plural, "services");
        assert_eq!(find("", "v1", "pods").unwrap().key("default", "x"), "/registry/pods/default/x");
        assert_eq!(find("", "v1", "nodes").unwrap().key("", "n1"), "/registry/nodes/n1");
        assert_eq!(group_versions()[0], ("", "v1"));
        for (i, r) in all().iter().enumerate() {
            assert_eq!(index(r), i);
        }
    }
}
