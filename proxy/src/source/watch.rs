//! Watches on Services and EndpointSlices (kube-rs watchers) that feed the
//! tracker and wake the sync loop when something the proxy uses changed.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::Tracker;

/// A kind the tracker follows.
pub trait Tracked: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    fn apply(tracker: &mut Tracker, object: &Self) -> bool;
    fn delete(tracker: &mut Tracker, object: &Self) -> bool;
    fn reset(tracker: &mut Tracker, all: &[Self]);
}

impl Tracked for Service {
    fn apply(tracker: &mut Tracker, object: &Self) -> bool {
        tracker.apply_service(object)
    }
    fn delete(tracker: &mut Tracker, object: &Self) -> bool {
        tracker.delete_service(object)
    }
    fn reset(tracker: &mut Tracker, all: &[Self]) {
        tracker.reset_services(all)
    }
}

impl Tracked for EndpointSlice {
    fn apply(tracker: &mut Tracker, object: &Self) -> bool {
        tracker.apply_slice(object)
    }
    fn delete(tracker: &mut Tracker, object: &Self) -> bool {
        tracker.delete_slice(object)
    }
    fn reset(tracker: &mut Tracker, all: &[Self]) {
        tracker.reset_slices(all)
    }
}

/// Follows every object of kind `K` in all namespaces until the stream
/// ends (it does not: errors are retried with backoff).
pub async fn follow<K>(client: Client, tracker: Arc<Mutex<Tracker>>, changed: Arc<Notify>)
where
    K: Tracked,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Vec<K> = Vec::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = %K::kind(&Default::default()), "watch failed, retrying: {e}");
                continue;
            }
        };
        let mut tracker = tracker.lock().unwrap_or_else(PoisonError::into_inner);
        let woke = match event {
            Event::Init => {
                listing.clear();
                false
            }
            Event::InitApply(object) => {
                listing.push(object);
                false
            }
            Event::InitDone => {
                K::reset(&mut tracker, &listing);
                listing.clear();
                true
            }
            Event::Apply(object) => K::apply(&mut tracker, &object),
            Event::Delete(object) => K::delete(&mut tracker, &object),
        };
        drop(tracker);
        if woke {
            changed.notify_one();
        }
    }
}
