//! The Services every cluster has: `default/kubernetes` on the first address
//! of the service range, whose Endpoints and EndpointSlice name this API
//! server and are kept current, and `kube-system/kube-dns` on the tenth, for
//! the cluster DNS. Both are created when missing, every ten seconds, as the
//! kube-apiserver's controller (and kubeadm, for kube-dns) do.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kubesvc_api::meta;
use kubesvc_api::resources::{self, Resource};
use kubesvc_api::status::StatusError;
use kubesvc_api::wellknown::LABEL_SERVICE_NAME;
use serde_json::{Value, json};

use super::ranges::IpRange;
use crate::State;
use crate::registry::{FieldValidation, WriteOptions};

/// How often the built-ins are checked by default (Kubernetes' endpoint reconciler interval).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What the built-ins need to know about this server.
#[derive(Clone, Debug)]
pub struct Builtins {
    /// The primary service range.
    pub range: IpRange,
    /// The address clients reach this server at, if it has one they can use.
    pub advertise: Option<IpAddr>,
    /// The port this server serves HTTPS on.
    pub port: u16,
    /// How often they are checked.
    pub interval: Duration,
}

fn resource(group: &str, version: &str, plural: &str) -> &'static Resource {
    resources::find(group, version, plural).expect("a served resource")
}

const WRITE: WriteOptions = WriteOptions { dry_run: false, field_validation: FieldValidation::Ignore };

impl Builtins {
    pub fn kubernetes_service(&self) -> Option<Value> {
        let ip = self.range.indexed(1)?.to_string();
        Some(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": self.port}]}
        }))
    }

    /// kube-dns as kubeadm creates it; none when the range has no tenth address.
    pub fn kube_dns_service(&self) -> Option<Value> {
        let ip = self.range.indexed(10).filter(|ip| self.range.offset(ip).is_some())?.to_string();
        Some(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
            "spec": {"clusterIP": ip, "selector": {"k8s-app": "kube-dns"},
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                          {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                          {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}
        }))
    }

    fn endpoints(&self, ip: IpAddr) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": ip.to_string()}],
                         "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]}]
        })
    }

    fn endpoint_slice(&self, ip: IpAddr) -> Value {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {LABEL_SERVICE_NAME: "kubernetes"}},
            "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]
        })
    }
}

async fn create_if_missing(state: &State, r: &'static Resource, obj: Value) -> Result<(), StatusError> {
    let (ns, name) = (meta::namespace(&obj).to_string(), meta::name(&obj).to_string());
    if state.registry.get(r, &ns, &name).await.is_ok() {
        return Ok(());
    }
    match state.registry.create(r, &ns, obj, WRITE).await {
        Ok(_) => {
            tracing::info!(namespace = ns, name, kind = r.kind, "created built-in object");
            Ok(())
        }
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `want` unless the stored object already has the same labels and `fields`.
async fn ensure(state: &State, r: &'static Resource, want: Value, fields: &[&str]) -> Result<(), StatusError> {
    let (ns, name) = (meta::namespace(&want).to_string(), meta::name(&want).to_string());
    let Ok(current) = state.registry.get(r, &ns, &name).await else {
        return create_if_missing(state, r, want).await;
    };
    let have = current.value();
    let same = meta::labels(&have) == meta::labels(&want) && fields.iter().all(|f| have.get(*f) == want.get(*f));
    if same {
        return Ok(());
    }
    // A slice whose address type changed is replaced, as Kubernetes does.
    if have.get("addressType").is_some() && have.get("addressType") != want.get("addressType") {
        let opts = crate::registry::DeleteOptions::default();
        let _ = state.registry.delete(r, &ns, &name, &opts).await;
        return create_if_missing(state, r, want).await;
    }
    let mut body = want;
    meta::set(&mut body, "resourceVersion", meta::resource_version(&have));
    state.registry.update(r, &ns, &name, body, None, WRITE).await.map(|_| ())
}

/// One pass; what fails (an address a user took first, say) is logged and retried next time.
async fn reconcile(state: &State, b: &Builtins) {
    let services = resource("", "v1", "services");
    let mut results = Vec::new();
    for svc in [b.kubernetes_service(), b.kube_dns_service()].into_iter().flatten() {
        let what = format!("service {}/{}", meta::namespace(&svc), meta::name(&svc));
        results.push((what, create_if_missing(state, services, svc).await));
    }
    if let Some(ip) = b.advertise {
        let r = ensure(state, resource("", "v1", "endpoints"), b.endpoints(ip), &["subsets"]).await;
        results.push(("endpoints default/kubernetes".into(), r));
        let slices = resource("discovery.k8s.io", "v1", "endpointslices");
        let r = ensure(state, slices, b.endpoint_slice(ip), &["addressType", "endpoints", "ports"]).await;
        results.push(("endpointslice default/kubernetes".into(), r));
    }
    for (what, r) in results {
        if let Err(e) = r {
            tracing::warn!(object = what, error = %e.message, "keeping a built-in object failed; will retry");
        }
    }
}

/// Creates the built-ins now, then keeps them until shutdown.
pub async fn start(state: Arc<State>, b: Builtins) {
    if b.advertise.is_none() {
        tracing::warn!("no advertise address: the kubernetes Service gets no endpoints (pass --advertise-address)");
    }
    reconcile(&state, &b).await;
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(b.interval) => {}
                _ = shutdown.changed() => return,
            }
            reconcile(&state, &b).await;
        }
    });
}
