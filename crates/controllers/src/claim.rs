//! ControllerRef adoption and release, as Kubernetes' controller ref manager
//! does them: a controller claims the orphans its selector matches and lets
//! go of what it controls but no longer matches, by patching the dependent's
//! ownerReferences with its uid as a precondition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The controller reference on an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blocking, as controllers set them).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller decides about one candidate dependent.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours and matching.
    Keep,
    /// Ours but no longer matching: let it go.
    Release,
    /// An orphan that matches: take it.
    Adopt,
    /// Not ours to touch.
    Ignore,
}

/// The ref manager's rules for one dependent of `owner_uid` (being deleted or not).
pub fn decide(meta: &ObjectMeta, owner_uid: &str, owner_deleting: bool, matches: bool) -> Claim {
    match controller_of(meta) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Keep,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || meta.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// Adopts `dependent` for `owner` (fails if it changed hands meanwhile).
pub async fn adopt<D, O>(api: &Api<D>, dependent: &D, owner: &O) -> Result<D, kube::Error>
where
    D: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    O: Resource<DynamicType = ()>,
{
    let patch = json!({"metadata": {"ownerReferences": [controller_ref(owner)], "uid": dependent.uid()}});
    api.patch(&dependent.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await
}

/// Removes `owner_uid`'s reference from `dependent`; a dependent gone or changed is fine.
pub async fn release<D>(api: &Api<D>, dependent: &D, owner_uid: &str) -> Result<(), kube::Error>
where
    D: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch =
        json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": dependent.uid()}});
    match api.patch(&dependent.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(controller: Option<&str>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: controller
                .map(|uid| vec![OwnerReference { uid: uid.into(), controller: Some(true), ..Default::default() }]),
            deletion_timestamp: deleting
                .then(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())),
            ..Default::default()
        }
    }

    #[test]
    fn the_ref_managers_rules() {
        assert_eq!(decide(&meta(Some("me"), false), "me", false, true), Claim::Keep);
        assert_eq!(decide(&meta(Some("me"), false), "me", true, true), Claim::Keep);
        assert_eq!(decide(&meta(Some("me"), false), "me", false, false), Claim::Release);
        assert_eq!(decide(&meta(Some("me"), false), "me", true, false), Claim::Ignore);
        assert_eq!(decide(&meta(Some("other"), false), "me", false, true), Claim::Ignore);
        assert_eq!(decide(&meta(None, false), "me", false, true), Claim::Adopt);
        assert_eq!(decide(&meta(None, true), "me", false, true), Claim::Ignore);
        assert_eq!(decide(&meta(None, false), "me", true, true), Claim::Ignore);
        assert_eq!(decide(&meta(None, false), "me", false, false), Claim::Ignore);
    }
}
