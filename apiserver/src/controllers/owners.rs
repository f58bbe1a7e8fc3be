//! ownerReferences: the controller reference that ties a pod to its
//! ReplicaSet and a ReplicaSet to its Deployment.

use std::fmt::Debug;
use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::selector::Labels;

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|o| o.uid == uid)
}

/// A controller reference to `owner` that blocks its foreground deletion
/// until the dependent is gone, as upstream controllers set it.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Upstream's controller-ref manager: of `candidates` (objects in the
/// owner's namespace), the ones `owner` controls after adopting the orphans
/// that `selector` matches and `adoptable` allows, and releasing controlled
/// ones it no longer matches. Adoption and release are merge patches of
/// `ownerReferences`.
pub async fn claim<O, K>(
    api: &Api<K>,
    owner: &O,
    selector: &Labels,
    candidates: Vec<Arc<K>>,
    adoptable: impl Fn(&K) -> bool,
) -> Result<Vec<Arc<K>>>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut owned = Vec::new();
    for obj in candidates {
        let meta = obj.meta();
        let name = meta.name.clone().unwrap_or_default();
        let matches = selector.matches(meta.labels.as_ref());
        let refs = meta.owner_references.clone().unwrap_or_default();
        match controller_of(meta) {
            Some(c) if c.uid == uid && matches => owned.push(obj),
            Some(c) if c.uid == uid => {
                let kept: Vec<_> = refs.into_iter().filter(|o| o.uid != uid).collect();
                set_owner_refs(api, &name, kept)
                    .await
                    .with_context(|| format!("releasing {} {name}", K::kind(&())))?;
            }
            None if matches && adoptable(&obj) => {
                let mut refs = refs;
                refs.push(controller_ref(owner));
                set_owner_refs(api, &name, refs)
                    .await
                    .with_context(|| format!("adopting {} {name}", K::kind(&())))?;
                owned.push(obj);
            }
            _ => {}
        }
    }
    Ok(owned)
}

async fn set_owner_refs<K>(api: &Api<K>, name: &str, refs: Vec<OwnerReference>) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = json!({"metadata": {"ownerReferences": refs}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The owners (of kind `O`) an object change concerns: its controller, or
/// for an orphan every owner in its namespace whose selector matches it (to
/// adopt it).
pub fn owners_to_trigger<O, K>(
    obj: &K,
    owners: &Store<O>,
    selector_of: impl Fn(&O) -> Labels,
) -> Vec<ObjectRef<O>>
where
    O: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + 'static,
    K: Resource<DynamicType = ()>,
{
    let meta = obj.meta();
    let namespace = meta.namespace.clone().unwrap_or_default();
    match controller_of(meta) {
        Some(owner) if owner.kind == <O as Resource>::kind(&()) => {
            vec![ObjectRef::new(&owner.name).within(&namespace)]
        }
        Some(_) => Vec::new(),
        None => owners
            .state()
            .iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(namespace.as_str()))
            .filter(|o| selector_of(o).matches(meta.labels.as_ref()))
            .map(|o| ObjectRef::from_obj(&**o))
            .collect(),
    }
}
