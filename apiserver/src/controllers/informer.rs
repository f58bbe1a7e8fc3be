//! Shared informers: one watch per kind feeds a reflector cache that every
//! controller reads, and a fan-out of changes that every controller turns into
//! reconcile triggers (upstream's SharedInformerFactory, on kube-runtime's
//! `watcher` and `reflector`).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// How many changes a slow subscriber may fall behind before it is told to
/// re-read the whole cache instead.
const CHANGES_BUFFER: usize = 4096;

/// A change seen by an informer, after its cache holds it.
#[derive(Debug)]
pub enum Change<K> {
    /// Added or modified.
    Applied(Arc<K>),
    Deleted(Arc<K>),
    /// The cache was rebuilt from a fresh list (start, reconnect after an
    /// expired watch) or this subscriber fell behind: anything may have
    /// changed, deletions included.
    Resynced,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(obj) => Change::Applied(obj.clone()),
            Change::Deleted(obj) => Change::Deleted(obj.clone()),
            Change::Resynced => Change::Resynced,
        }
    }
}

impl<K> Change<K> {
    /// The object that changed, unless the whole cache did.
    pub fn object(&self) -> Option<&Arc<K>> {
        match self {
            Change::Applied(obj) | Change::Deleted(obj) => Some(obj),
            Change::Resynced => None,
        }
    }
}

/// A shared watch of one kind: its cache and its changes.
pub struct Informer<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    changes: broadcast::Sender<Change<K>>,
    /// Whether the first list is in the cache. (The store's own readiness
    /// wakes only one of several waiters.)
    listed: watch::Receiver<bool>,
}

impl<K: Lookup + Clone + 'static> Clone for Informer<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            changes: self.changes.clone(),
            listed: self.listed.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()>,
    K: Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api`; the returned future runs the watch (with
    /// kube-runtime's backoff on errors) until dropped.
    pub fn new(
        api: Api<K>,
        config: watcher::Config,
    ) -> (Informer<K>, impl Future<Output = ()> + Send + 'static) {
        let (store, mut writer) = reflector::store();
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let (set_listed, listed) = watch::channel(false);
        let informer = Informer {
            store,
            changes: changes.clone(),
            listed,
        };
        let kind = <K as Resource>::kind(&()).into_owned();
        let run = async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!(kind, error = %e, "watch failed, retrying");
                        continue;
                    }
                };
                writer.apply_watcher_event(&event);
                let change = match event {
                    watcher::Event::Apply(obj) => Change::Applied(Arc::new(obj)),
                    watcher::Event::Delete(obj) => Change::Deleted(Arc::new(obj)),
                    watcher::Event::InitDone => {
                        set_listed.send_replace(true);
                        Change::Resynced
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => continue,
                };
                // No subscribers yet is fine: they read the cache when they start.
                let _ = changes.send(change);
            }
        };
        (informer, run)
    }
}

impl<K: Lookup + Clone + 'static> Informer<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first list is in the cache.
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.listed.clone().wait_for(|listed| *listed).await?;
        Ok(())
    }

    /// The changes from now on; a subscriber that falls behind gets
    /// `Resynced` in place of what it missed.
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + 'static
    where
        K: Send + Sync,
    {
        BroadcastStream::new(self.changes.subscribe()).map(|change| match change {
            Ok(change) => change,
            Err(BroadcastStreamRecvError::Lagged(_)) => Change::Resynced,
        })
    }
}
