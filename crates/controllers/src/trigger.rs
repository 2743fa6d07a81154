//! `endpoints.kubernetes.io/last-change-trigger-time`: when the change an
//! endpoints write reflects happened, so proxies can report how long it took
//! to program (Kubernetes' trigger-time tracker).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::podindex::ServiceKey;
use kubesvc_runtime::pod;

/// When each Service's pods last changed, for `last-change-trigger-time`.
#[derive(Default)]
pub struct TriggerTimes {
    service: HashMap<ServiceKey, jiff::Timestamp>,
    pods: HashMap<ServiceKey, HashMap<String, jiff::Timestamp>>,
}

impl TriggerTimes {
    /// The earliest change not yet reported: the Service's creation on first sight,
    /// else the earliest pod readiness change newer than the last one seen.
    pub fn observe(&mut self, key: &ServiceKey, svc: &Service, pods: &[Arc<Pod>]) -> Option<Time> {
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        // Rebuilt from the current pods each time: pods that went are forgotten.
        let seen_pods = self.pods.remove(key).unwrap_or_default();
        let mut now_pods = HashMap::with_capacity(pods.len());
        let first = !self.service.contains_key(key);
        let mut earliest: Option<jiff::Timestamp> = None;
        let mut consider = |t: jiff::Timestamp| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        if let Some(c) = created {
            if self.service.get(key).is_none_or(|s| c > *s) {
                consider(c);
            }
            self.service.insert(key.clone(), c);
        }
        for p in pods {
            if let Some(t) = pod::ready_since(p).map(|t| t.0) {
                let name = p.name_any();
                if seen_pods.get(&name).is_none_or(|s| t > *s) {
                    consider(t);
                }
                now_pods.insert(name, t);
            }
        }
        self.pods.insert(key.clone(), now_pods);
        if first {
            return created.map(Time);
        }
        earliest.map(Time)
    }

    pub fn forget(&mut self, key: &ServiceKey) {
        self.service.remove(key);
        self.pods.remove(key);
    }
}
