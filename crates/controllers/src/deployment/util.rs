//! The arithmetic and bookkeeping of Kubernetes' deployment controller, with
//! no I/O: template hashes, new and old ReplicaSets, surge and unavailability,
//! revisions and their annotations, proportional scaling, status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

pub const LABEL_HASH: &str = "pod-template-hash";
pub const ANNOTATION_REVISION: &str = "deployment.kubernetes.io/revision";
pub const ANNOTATION_REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const ANNOTATION_DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
pub const ANNOTATION_MAX: &str = "deployment.kubernetes.io/max-replicas";
pub const ANNOTATION_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
use kubesvc_runtime::wellknown::ANNOTATION_LAST_APPLIED;
/// Annotations never copied between a Deployment and its ReplicaSets.
pub const SKIPPED_ANNOTATIONS: &[&str] = &[
    ANNOTATION_LAST_APPLIED,
    ANNOTATION_REVISION,
    ANNOTATION_REVISION_HISTORY,
    ANNOTATION_DESIRED,
    ANNOTATION_MAX,
    ANNOTATION_ROLLBACK_TO,
];
const MAX_HISTORY_LEN: usize = 2000;

/// The pod-template-hash: FNV-1a (32 bits) of the template, then of the
/// collision count; shown as Kubernetes shows it (decimal digits mapped to
/// its safe alphabet, e.g. `7c5ddbdf54`).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
        feed(&[0, 0, 0, 0]);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string().bytes().map(|d| ALPHANUMS[usize::from(d) % ALPHANUMS.len()] as char).collect()
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(LABEL_HASH);
    }
    t
}

/// Templates equal once the hash label is ignored.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

pub fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec.template.clone().unwrap_or_default()
}

pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

pub fn desired(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

fn status_of(rs: &ReplicaSet) -> k8s_openapi::api::apps::v1::ReplicaSetStatus {
    rs.status.clone().unwrap_or_default()
}

pub fn available(rs: &ReplicaSet) -> i32 {
    status_of(rs).available_replicas.unwrap_or(0)
}

/// By creation time, then name (oldest first).
pub fn by_age(sets: &mut [&ReplicaSet]) {
    sets.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// The new ReplicaSet (the oldest with the Deployment's template) and the old ones.
pub fn split<'a>(d: &Deployment, sets: &'a [&'a ReplicaSet]) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let template = d.spec.template.clone();
    let mut sorted: Vec<&ReplicaSet> = sets.to_vec();
    by_age(&mut sorted);
    let new = sorted.iter().copied().find(|rs| same_template(&rs_template(rs), &template));
    let old = sorted.into_iter().filter(|rs| Some(rs.name_any()) != new.map(|n| n.name_any())).collect();
    (new, old)
}

fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        None => Ok(0),
        Some(IntOrString::Int(n)) => Ok(*n),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| {
                format!("invalid value for IntOrString: invalid type: string is not a percentage: {s:?}")
            })?;
            let scaled = pct * i64::from(total);
            Ok((if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) }) as i32)
        }
    }
}

/// (maxSurge, maxUnavailable) for a RollingUpdate Deployment; both 0 otherwise.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let strategy = d.spec.strategy.as_ref();
    if strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") != "RollingUpdate" {
        return (0, 0);
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let total = desired(d);
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), total, true).unwrap_or(0);
    let mut unavailable = resolve(ru.and_then(|r| r.max_unavailable.as_ref()), total, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    if total == 0 {
        unavailable = 0;
    }
    (surge, unavailable.min(total))
}

pub fn is_recreate(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// How big the new ReplicaSet may be now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> i32 {
    let want = desired(d);
    if is_recreate(d) {
        return want;
    }
    let (surge, _) = surge_and_unavailable(d);
    let new_size = new.map_or(0, spec_replicas);
    let current: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let max_total = want + surge;
    if current >= max_total {
        return new_size;
    }
    new_size + (max_total - current).min(want - new_size)
}

pub fn revision(o: &impl ResourceExt) -> i64 {
    o.annotations().get(ANNOTATION_REVISION).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub fn max_revision(sets: &[&ReplicaSet]) -> i64 {
    sets.iter().map(|rs| revision(*rs)).max().unwrap_or(0)
}

/// The annotations a ReplicaSet should carry for `d` at `new_revision`; `None` if unchanged.
pub fn rs_annotations(
    d: &Deployment,
    rs_annotations: &BTreeMap<String, String>,
    new_revision: i64,
    creating: bool,
) -> Option<BTreeMap<String, String>> {
    let mut out = rs_annotations.clone();
    for (k, v) in d.annotations() {
        if !SKIPPED_ANNOTATIONS.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    let old = out.get(ANNOTATION_REVISION).cloned();
    let old_num: i64 = old.as_deref().map_or(Ok(0), str::parse).unwrap_or(-1);
    if old_num < 0 {
        // A revision that is not a number: leave it alone.
        return (out != *rs_annotations).then_some(out);
    }
    if old_num < new_revision {
        out.insert(ANNOTATION_REVISION.into(), new_revision.to_string());
        if let Some(prev) = old.filter(|o| !o.is_empty()) {
            // Rolled back to: remember the revision it had.
            let history = out.get(ANNOTATION_REVISION_HISTORY).cloned().unwrap_or_default();
            let mut parts: Vec<String> = history.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
            parts.push(prev);
            while parts.join(",").len() > MAX_HISTORY_LEN && parts.len() > 1 {
                parts.remove(0);
            }
            if parts.join(",").len() <= MAX_HISTORY_LEN {
                out.insert(ANNOTATION_REVISION_HISTORY.into(), parts.join(","));
            }
        }
    }
    if creating {
        let (surge, _) = surge_and_unavailable(d);
        out.insert(ANNOTATION_DESIRED.into(), desired(d).to_string());
        out.insert(ANNOTATION_MAX.into(), (desired(d) + surge).to_string());
    }
    (out != *rs_annotations).then_some(out)
}

/// The annotations after a scale by the deployment controller.
pub fn scaled_annotations(d: &Deployment, rs: &ReplicaSet) -> BTreeMap<String, String> {
    let mut a = rs.annotations().clone();
    let (surge, _) = surge_and_unavailable(d);
    a.insert(ANNOTATION_DESIRED.into(), desired(d).to_string());
    a.insert(ANNOTATION_MAX.into(), (desired(d) + surge).to_string());
    a
}

/// Whether an active ReplicaSet was last sized for another replica count (a scaling event).
pub fn is_scaling_event(d: &Deployment, sets: &[&ReplicaSet]) -> bool {
    sets.iter().filter(|rs| spec_replicas(rs) > 0).any(|rs| {
        rs.annotations()
            .get(ANNOTATION_DESIRED)
            .and_then(|v| v.parse::<i32>().ok())
            .is_some_and(|want| want != desired(d))
    })
}

/// Proportional scaling (a paused Deployment, or a replica change mid-rollout):
/// each ReplicaSet's new size.
pub fn proportional(d: &Deployment, new: Option<&ReplicaSet>, old: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let want = desired(d);
    let mut active: Vec<&ReplicaSet> = old.iter().copied().chain(new).filter(|rs| spec_replicas(rs) > 0).collect();
    if active.len() <= 1 {
        let target = match active.first() {
            Some(rs) => *rs,
            None => match new {
                Some(n) => n,
                None => {
                    let mut newest: Vec<&ReplicaSet> = old.to_vec();
                    by_age(&mut newest);
                    match newest.last() {
                        Some(rs) => *rs,
                        None => return Vec::new(),
                    }
                }
            },
        };
        return if spec_replicas(target) != want { vec![(target.name_any(), want)] } else { Default::default() };
    }
    if let Some(n) = new {
        let saturated = spec_replicas(n) == want
            && n.annotations().get(ANNOTATION_DESIRED).and_then(|v| v.parse::<i32>().ok()) == Some(want)
            && available(n) == want;
        if saturated {
            return old.iter().filter(|rs| spec_replicas(rs) > 0).map(|rs| (rs.name_any(), 0)).collect();
        }
    }
    if is_recreate(d) {
        return Vec::new();
    }
    let (surge, _) = surge_and_unavailable(d);
    let allowed = if want > 0 { want + surge } else { 0 };
    let current: i32 = active.iter().map(|rs| spec_replicas(rs)).sum();
    let to_add = allowed - current;
    // Largest first; among equals, newer first when growing and older first when shrinking.
    by_age(&mut active);
    if to_add > 0 {
        active.reverse();
    }
    active.sort_by_key(|rs| std::cmp::Reverse(spec_replicas(rs)));
    let mut sizes: Vec<(String, i32)> = Vec::new();
    let mut added = 0;
    for rs in &active {
        let size = spec_replicas(rs);
        let mut part = 0;
        if to_add != 0 && size != 0 && added != to_add {
            let base = rs
                .annotations()
                .get(ANNOTATION_MAX)
                .and_then(|v| v.parse::<i32>().ok())
                .filter(|m| *m > 0)
                .or_else(|| d.status.as_ref().and_then(|s| s.replicas).filter(|r| *r > 0));
            part = match (want, base) {
                (0, _) => -size,
                (_, None) => 0,
                (_, Some(base)) => {
                    let scaled = f64::from(size) * f64::from(want + surge) / f64::from(base);
                    scaled.round() as i32 - size
                }
            };
            part = if to_add > 0 { part.min(to_add - added) } else { part.max(to_add - added) };
        }
        added += part;
        sizes.push((rs.name_any(), size + part));
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// The counts of a Deployment's status from its ReplicaSets.
pub fn calculate_status(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let sum = |f: &dyn Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| -> i32 {
        all.iter().map(|rs| f(&status_of(rs))).sum()
    };
    let available_replicas = sum(&|s| s.available_replicas.unwrap_or(0));
    let total_spec: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let synced: Vec<&&ReplicaSet> =
        all.iter().filter(|rs| status_of(rs).observed_generation.unwrap_or(0) > 0).collect();
    let terminating = if synced.iter().any(|rs| status_of(rs).terminating_replicas.is_none()) {
        None
    } else {
        Some(synced.iter().map(|rs| status_of(rs).terminating_replicas.unwrap_or(0)).sum())
    };
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(&|s| s.replicas)),
        updated_replicas: Some(new.map_or(0, |n| status_of(n).replicas)),
        ready_replicas: Some(sum(&|s| s.ready_replicas.unwrap_or(0))),
        available_replicas: Some(available_replicas),
        unavailable_replicas: Some((total_spec - available_replicas).max(0)),
        terminating_replicas: terminating,
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
    };
    let (_, max_unavailable) = surge_and_unavailable(d);
    let cond = if available_replicas >= desired(d) - max_unavailable {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    set_condition(&mut status, cond);
    status
}

pub fn condition(ty: &str, status: &str, reason: &str, message: &str) -> DeploymentCondition {
    let now = Time(jiff::Timestamp::now());
    DeploymentCondition {
        type_: Some(ty.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

pub fn get_condition<'a>(s: &'a DeploymentStatus, ty: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some(ty))
}

/// SetDeploymentCondition: the same status and reason changes nothing; a new
/// reason keeps the transition time; the condition moves to the end.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = s.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conditions.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, ty: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_.as_deref() != Some(ty));
    }
}

/// All replicas updated, available and none old left, for the current generation.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = desired(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Compared with the stored status, the rollout moved forward.
pub fn progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
    s.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || s.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || s.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// A status as stored: the API server drops zero counts, so compare without them.
pub fn stored_form(s: &DeploymentStatus) -> DeploymentStatus {
    let mut s = s.clone();
    for f in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
    ] {
        if *f == Some(0) {
            *f = None;
        }
    }
    s
}

pub fn deadline(d: &Deployment) -> Option<i32> {
    d.spec.progress_deadline_seconds.filter(|s| *s != i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": "web"}}}}}))
        .unwrap()
    }

    #[test]
    fn surge_and_unavailability_round_as_kubernetes() {
        assert_eq!(surge_and_unavailable(&deploy(3, json!("25%"), json!("25%"))), (1, 0));
        assert_eq!(surge_and_unavailable(&deploy(4, json!("25%"), json!("25%"))), (1, 1));
        assert_eq!(surge_and_unavailable(&deploy(10, json!("25%"), json!("25%"))), (3, 2));
        assert_eq!(surge_and_unavailable(&deploy(1, json!("25%"), json!("25%"))), (1, 0));
        assert_eq!(surge_and_unavailable(&deploy(2, json!(0), json!("1%"))), (0, 1));
        assert_eq!(surge_and_unavailable(&deploy(0, json!("25%"), json!("25%"))), (0, 0));
    }

    #[test]
    fn hashes_look_like_kubernetes_ones() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}}})).unwrap();
        let h = template_hash(&t, None);
        assert!(h.len() >= 8 && h.chars().all(|c| "456789bcdf".contains(c)), "{h}");
        assert_ne!(h, template_hash(&t, Some(1)));
        assert_eq!(h, template_hash(&t, None));
    }

    #[test]
    fn revisions_and_history() {
        let d = deploy(3, json!("25%"), json!("25%"));
        let a = rs_annotations(&d, &BTreeMap::new(), 1, true).unwrap();
        assert_eq!(a[ANNOTATION_REVISION], "1");
        assert_eq!(a[ANNOTATION_DESIRED], "3");
        assert_eq!(a[ANNOTATION_MAX], "4");
        // Rolled back to: revision 1 becomes 3, with 1 in its history.
        let b = rs_annotations(&d, &a, 3, false).unwrap();
        assert_eq!((b[ANNOTATION_REVISION].as_str(), b[ANNOTATION_REVISION_HISTORY].as_str()), ("3", "1"));
        assert!(rs_annotations(&d, &b, 3, false).is_none());
    }
}
