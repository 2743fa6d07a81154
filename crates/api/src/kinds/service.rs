//! Services: the basic scheme defaults. Full Service defaulting, validation and
//! address allocation come with their own work (issue 3).

use serde_json::{Value, json};

use super::{Rules, keep_status, str_at};
use crate::meta;
use crate::validation::NameRule;

pub struct ServiceRules;

impl Rules for ServiceRules {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035Label
    }

    fn has_status(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        meta::default_at(obj, &["spec"], "type", "ClusterIP");
        meta::default_at(obj, &["spec"], "sessionAffinity", "None");
        let ty = str_at(obj, &["spec", "type"]).to_string();
        if ty != "ExternalName" {
            meta::default_at(obj, &["spec"], "internalTrafficPolicy", "Cluster");
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            meta::default_at(obj, &["spec"], "externalTrafficPolicy", "Cluster");
        }
        let headless = str_at(obj, &["spec", "clusterIP"]) == "None";
        for p in obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut).into_iter().flatten() {
            meta::default_at(p, &[], "protocol", "TCP");
            if !headless && p.get("targetPort").is_none_or(|t| t == &json!(0) || t == &json!("")) {
                let port = p.get("port").cloned().unwrap_or(json!(0));
                if let Some(m) = p.as_object_mut() {
                    m.insert("targetPort".into(), port);
                }
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
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
}
