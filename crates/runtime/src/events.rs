//! Events as Kubernetes' components record them (core/v1, what `kubectl
//! describe` lists): one Event per distinct (object, type, reason, message),
//! whose count and lastTimestamp grow when it happens again.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What an earlier identical event became.
struct Seen {
    name: String,
    count: i32,
}

/// What makes two events the same: (object uid, object name, type, reason, message).
type EventKey = (String, String, EventType, String, String);

/// Records events for one component (e.g. `deployment-controller`, or `kubelet` on a host).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: Arc<str>,
    host: Option<Arc<str>>,
    seen: Arc<Mutex<HashMap<EventKey, Seen>>>,
}

/// A reference to `obj` for an event's involvedObject.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(obj.name_any()),
        namespace: obj.namespace(),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        Recorder { client, component: component.into(), host: None, seen: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Events from a component on one host, as kubelet reports them (`source.host`).
    pub fn on_host(mut self, host: &str) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Records an event; failures are logged, never returned (events are best effort).
    pub async fn record(&self, about: &ObjectReference, ty: EventType, reason: &str, message: &str) {
        if let Err(e) = self.try_record(about, ty, reason, message).await {
            tracing::debug!(error = %e, reason, "recording an event failed");
        }
    }

    async fn try_record(
        &self,
        about: &ObjectReference,
        ty: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let ns = about.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let key = (
            about.uid.clone().unwrap_or_default(),
            about.name.clone().unwrap_or_default(),
            ty,
            reason.to_string(),
            message.to_string(),
        );
        let again = self.seen.lock().get(&key).map(|s| (s.name.clone(), s.count + 1));
        if let Some((name, count)) = again {
            let patch = json!({"count": count, "lastTimestamp": now()});
            if api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                if let Some(s) = self.seen.lock().get_mut(&key) {
                    s.count = count;
                }
                return Ok(());
            }
            // Gone (expired or deleted): start a new one.
        }
        let at = now();
        let name = format!("{}.{:x}", about.name.as_deref().unwrap_or("event"), at.0.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns), ..Default::default() },
            involved_object: about.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(ty.as_str().into()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: self.host.as_deref().map(str::to_owned),
            }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.host.as_deref().unwrap_or(&self.component).to_string()),
            first_timestamp: Some(at.clone()),
            last_timestamp: Some(at),
            count: Some(1),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let mut seen = self.seen.lock();
        // A long-running controller sees many distinct events; keep the map bounded.
        if seen.len() > 4096 {
            seen.clear();
        }
        seen.insert(key, Seen { name, count: 1 });
        Ok(())
    }
}
