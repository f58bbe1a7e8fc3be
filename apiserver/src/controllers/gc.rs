//! The garbage collector: cascading deletion through ownerReferences.
//!
//! - **Background** (the default): once all of an object's owners are gone,
//!   the object is deleted; owners that are gone are dropped from objects
//!   that still have others.
//! - **Foreground**: an owner the apiserver keeps with the
//!   `foregroundDeletion` finalizer has its dependents deleted; when none
//!   is left the finalizer is removed and the apiserver deletes the owner.
//! - **Orphan**: an owner with the `orphan` finalizer has itself removed
//!   from its dependents' ownerReferences, then the finalizer removed.
//!
//! Level-triggered: every change to a watched kind (and a periodic tick)
//! schedules a sweep over the caches. An owner missing from the cache is
//! looked up live before anything is deleted, so a lagging cache never
//! deletes a dependent of an owner that exists.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{Lookup, Store};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Notify;

use super::informer::Informer;
use crate::resources;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
/// Sweeps are at least this far apart (changes come in bursts).
const MIN_INTERVAL: Duration = Duration::from_millis(200);
const PERIOD: Duration = Duration::from_secs(30);

/// One watched kind: how to reach it and what its cache holds.
pub struct Source {
    resource: ApiResource,
    namespaced: bool,
    metas: Box<dyn Fn() -> Vec<ObjectMeta> + Send + Sync>,
    changes: BoxStream<'static, ()>,
}

impl Source {
    pub fn of<K>(informer: &Informer<K>) -> Source
    where
        K: Resource<DynamicType = ()> + Lookup<DynamicType = ()>,
        K: Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let store: Store<K> = informer.store();
        let resource = ApiResource::erase::<K>(&());
        let namespaced =
            resources::by_kind(&resource.api_version, &resource.kind).is_none_or(|r| r.namespaced);
        Source {
            resource,
            namespaced,
            metas: Box::new(move || store.state().iter().map(|o| o.meta().clone()).collect()),
            changes: informer.subscribe().map(|_| ()).boxed(),
        }
    }
}

/// An object in the caches.
struct Item {
    kind: usize,
    meta: ObjectMeta,
}

impl Item {
    fn uid(&self) -> &str {
        self.meta.uid.as_deref().unwrap_or_default()
    }

    fn is_deleting(&self) -> bool {
        self.meta.deletion_timestamp.is_some()
    }

    fn has_finalizer(&self, name: &str) -> bool {
        self.meta.finalizers.iter().flatten().any(|f| f == name)
    }
}

pub struct GarbageCollector {
    client: Client,
    kinds: Vec<(ApiResource, bool)>,
    metas: Vec<Box<dyn Fn() -> Vec<ObjectMeta> + Send + Sync>>,
}

/// Runs the collector until dropped.
pub async fn run(client: Client, sources: Vec<Source>) -> Result<()> {
    let wake = Arc::new(Notify::new());
    let mut kinds = Vec::new();
    let mut metas = Vec::new();
    let mut changes = Vec::new();
    for source in sources {
        kinds.push((source.resource, source.namespaced));
        metas.push(source.metas);
        changes.push(source.changes);
    }
    let gc = GarbageCollector {
        client,
        kinds,
        metas,
    };
    let waker = wake.clone();
    let forward = async move {
        let mut all = stream::select_all(changes);
        while all.next().await.is_some() {
            waker.notify_one();
        }
    };
    let sweeps = async {
        loop {
            if let Err(e) = gc.sweep().await {
                tracing::warn!("garbage collection: {e:#}");
            }
            tokio::time::sleep(MIN_INTERVAL).await;
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(PERIOD) => {}
            }
        }
    };
    tokio::select! {
        () = forward => {}
        () = sweeps => {}
    }
    Ok(())
}

impl GarbageCollector {
    async fn sweep(&self) -> Result<()> {
        let items: Vec<Item> = self
            .metas
            .iter()
            .enumerate()
            .flat_map(|(kind, metas)| metas().into_iter().map(move |meta| Item { kind, meta }))
            .collect();
        let by_uid: HashMap<&str, &Item> = items.iter().map(|i| (i.uid(), i)).collect();
        let mut dependents: HashMap<&str, Vec<&Item>> = HashMap::new();
        for item in &items {
            for owner in item.meta.owner_references.iter().flatten() {
                dependents.entry(owner.uid.as_str()).or_default().push(item);
            }
        }
        let mut absent_checked: HashMap<String, bool> = HashMap::new();
        for item in &items {
            let refs = item.meta.owner_references.as_deref().unwrap_or(&[]);
            if refs.is_empty() || item.is_deleting() {
                continue;
            }
            let mut gone = HashSet::new();
            for owner in refs {
                if !by_uid.contains_key(owner.uid.as_str())
                    && self.owner_is_gone(item, owner, &mut absent_checked).await
                {
                    gone.insert(owner.uid.clone());
                }
            }
            let foreground = refs.iter().any(|o| {
                by_uid
                    .get(o.uid.as_str())
                    .is_some_and(|owner| owner.is_deleting() && owner.has_finalizer(FOREGROUND))
            });
            let all_going = refs.iter().all(|o| {
                gone.contains(&o.uid)
                    || by_uid
                        .get(o.uid.as_str())
                        .is_some_and(|owner| owner.is_deleting() && owner.has_finalizer(FOREGROUND))
            });
            if gone.len() == refs.len() || (foreground && all_going) {
                let cascade = if foreground && dependents.contains_key(item.uid()) {
                    DeleteParams::foreground()
                } else {
                    DeleteParams::background()
                };
                self.delete(item, cascade).await;
            } else if !gone.is_empty() {
                let kept: Vec<&OwnerReference> =
                    refs.iter().filter(|o| !gone.contains(&o.uid)).collect();
                self.patch(item, json!({"metadata": {"ownerReferences": kept}}))
                    .await;
            }
        }
        for item in items.iter().filter(|i| i.is_deleting()) {
            let deps = dependents.get(item.uid()).map(Vec::as_slice).unwrap_or(&[]);
            if item.has_finalizer(ORPHAN) {
                for dep in deps {
                    let kept: Vec<&OwnerReference> = dep
                        .meta
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|o| o.uid != item.uid())
                        .collect();
                    self.patch(dep, json!({"metadata": {"ownerReferences": kept}}))
                        .await;
                }
                self.remove_finalizer(item, ORPHAN).await;
            } else if item.has_finalizer(FOREGROUND) && deps.is_empty() {
                self.remove_finalizer(item, FOREGROUND).await;
            }
        }
        Ok(())
    }

    /// Whether `owner` (missing from the caches) is really gone: a live read
    /// finds nothing by that name, or another object (another uid).
    async fn owner_is_gone(
        &self,
        item: &Item,
        owner: &OwnerReference,
        checked: &mut HashMap<String, bool>,
    ) -> bool {
        if let Some(&gone) = checked.get(&owner.uid) {
            return gone;
        }
        let gone = match self.owner_api(item, owner) {
            Some(api) => match api.get_opt(&owner.name).await {
                Ok(Some(obj)) => obj.metadata.uid.as_deref() != Some(owner.uid.as_str()),
                Ok(None) => true,
                Err(e) => {
                    tracing::debug!(owner = owner.name, "looking up an owner: {e}");
                    false
                }
            },
            // A kind this server does not serve: leave the dependent alone,
            // as upstream does with owners it cannot resolve.
            None => false,
        };
        checked.insert(owner.uid.clone(), gone);
        gone
    }

    fn owner_api(&self, item: &Item, owner: &OwnerReference) -> Option<Api<DynamicObject>> {
        let res = resources::by_kind(&owner.api_version, &owner.kind)?;
        let gvk = GroupVersionKind::gvk(res.group, res.version, res.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, res.plural);
        Some(if res.namespaced {
            Api::namespaced_with(
                self.client.clone(),
                item.meta.namespace.as_deref().unwrap_or_default(),
                &ar,
            )
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }

    fn api(&self, item: &Item) -> Api<DynamicObject> {
        let (ar, namespaced) = &self.kinds[item.kind];
        if *namespaced {
            Api::namespaced_with(
                self.client.clone(),
                item.meta.namespace.as_deref().unwrap_or_default(),
                ar,
            )
        } else {
            Api::all_with(self.client.clone(), ar)
        }
    }

    async fn delete(&self, item: &Item, mut params: DeleteParams) {
        params.preconditions = Some(Preconditions {
            uid: item.meta.uid.clone(),
            resource_version: None,
        });
        let name = item.meta.name.clone().unwrap_or_default();
        match self.api(item).delete(&name, &params).await {
            Ok(_) => tracing::debug!(kind = self.kinds[item.kind].0.kind, name, "collected"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(name, "garbage collecting: {e}"),
        }
    }

    async fn patch(&self, item: &Item, patch: serde_json::Value) {
        let name = item.meta.name.clone().unwrap_or_default();
        if let Err(e) = self
            .api(item)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("updating the owners of {name}"))
        {
            tracing::debug!("{e:#}");
        }
    }

    async fn remove_finalizer(&self, item: &Item, finalizer: &str) {
        let kept: Vec<&String> = item
            .meta
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        self.patch(item, json!({"metadata": {"finalizers": kept, "resourceVersion": item.meta.resource_version}}))
            .await;
    }
}
