//! Services: scheme defaults, what the server keeps and wipes on writes,
//! create/update/status validation and warnings, rule for rule with
//! Kubernetes, plus the dual-stack field defaulting its REST layer does
//! before allocating addresses (used by the API server's allocator).

mod defaults;
mod families;
mod validate;
mod view;

use serde_json::{Value, json};

use super::{Rules, str_at};
use crate::validation::{ErrorList, NameRule};

pub use families::{
    ClusterFamilies, init_ip_family_fields, normalize_cluster_ips, patch_allocated_values, unchanged_prefer_dual_stack,
};
pub use validate::{
    validate_cluster_ips_related_fields, validate_external_traffic_policy, validate_service, validate_service_update,
    validate_status_update, warnings,
};
pub use view::{PortView, ServiceView, TargetPort};

pub const TYPE_CLUSTER_IP: &str = "ClusterIP";
pub const TYPE_NODE_PORT: &str = "NodePort";
pub const TYPE_LOAD_BALANCER: &str = "LoadBalancer";
pub const TYPE_EXTERNAL_NAME: &str = "ExternalName";
pub const CLUSTER_IP_NONE: &str = "None";
pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
pub const ANNOTATION_LB_SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

pub struct ServiceRules;

impl Rules for ServiceRules {
    fn name_rule(&self) -> NameRule {
        // RelaxedServiceNameValidation is on (locked) in 1.37: names may start with a digit.
        NameRule::Dns1123Label
    }

    fn has_status(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        defaults::scheme_defaults(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
        defaults::hide_external_name_fields(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        super::keep_status(new, old);
        defaults::drop_type_dependent_fields(new, old);
        defaults::hide_external_name_fields(new);
    }

    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        match old.get("spec") {
            Some(spec) => new["spec"] = spec.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("spec");
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        validate_service(obj, None)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> ErrorList {
        validate_service_update(new, old)
    }

    fn validate_status_update(&self, new: &Value, old: &Value) -> ErrorList {
        validate_status_update(new, old)
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn return_deleted_object(&self) -> bool {
        true
    }

    fn field_labels(&self) -> (&'static [&'static str], bool) {
        (&["spec.clusterIP", "spec.type"], true)
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        match label {
            "spec.clusterIP" => Some(str_at(obj, &["spec", "clusterIP"]).into()),
            "spec.type" => Some(str_at(obj, &["spec", "type"]).into()),
            _ => None,
        }
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        warnings(obj)
    }
}

#[cfg(test)]
pub mod cases;
#[cfg(test)]
mod create_cases;
#[cfg(test)]
mod etp_cases;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_cases;
