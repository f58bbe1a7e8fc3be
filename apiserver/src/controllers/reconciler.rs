//! Runs one controller: level-triggered reconciles of the objects of one
//! kind, triggered by informer changes and a periodic resync, through
//! kube-runtime's `applier` (one reconcile at a time per object, retries on
//! error).

use std::convert::Infallible;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{FutureExt, Stream, StreamExt};
use kube::Resource;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use tokio_stream::wrappers::IntervalStream;

use super::informer::{Change, Informer};

/// Why a controller should look at its objects.
pub enum Trigger<K: Lookup> {
    One(ObjectRef<K>),
    /// Every object in the cache.
    All,
}

/// The error a reconcile returns: anything, with context.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] anyhow::Error);

/// Whether `err` is a 409 Conflict from the API (a stale cache: the next
/// change event brings the fresh object).
pub fn is_conflict(err: &anyhow::Error) -> bool {
    api_code(err) == Some(409)
}

/// The HTTP code of an API error, if `err` is one.
pub fn api_code(err: &anyhow::Error) -> Option<u16> {
    err.chain()
        .find_map(|cause| match cause.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        })
}

/// Triggers for the informer's own objects.
pub fn on_changes<K>(informer: &Informer<K>) -> BoxStream<'static, Trigger<K>>
where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    informer
        .subscribe()
        .map(|change| match change {
            Change::Resynced => Trigger::All,
            Change::Applied(obj) | Change::Deleted(obj) => Trigger::One(ObjectRef::from_obj(&*obj)),
        })
        .boxed()
}

/// Triggers for the objects that `map` names when an object of another kind
/// changes (the owner of a pod, the services selecting it, …).
pub fn on_related<K, O, I>(
    informer: &Informer<O>,
    map: impl Fn(&O) -> I + Send + 'static,
) -> BoxStream<'static, Trigger<K>>
where
    K: Lookup + Send + 'static,
    K::DynamicType: Send,
    O: Lookup + Clone + Send + Sync + 'static,
    O::DynamicType: Eq + Hash + Clone,
    I: IntoIterator<Item = ObjectRef<K>>,
    I::IntoIter: Send + 'static,
{
    informer
        .subscribe()
        .flat_map(move |change| match change.object() {
            Some(obj) => stream::iter(map(obj).into_iter().map(Trigger::One)).left_stream(),
            None => stream::iter(Some(Trigger::All)).right_stream(),
        })
        .boxed()
}

/// A trigger for every object each `period` (healing anything a missed event
/// left behind).
pub fn every<K: Lookup + Send + 'static>(period: Duration) -> BoxStream<'static, Trigger<K>> {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    IntervalStream::new(interval)
        .skip(1)
        .map(|_| Trigger::All)
        .boxed()
}

/// Runs the controller `name` until its triggers end: every object in `store`
/// once, then every triggered object still in it, is passed to `reconcile`;
/// errors are logged and retried.
pub async fn run<K, Ctx, F, Fut>(
    name: &'static str,
    store: Store<K>,
    triggers: Vec<BoxStream<'static, Trigger<K>>>,
    ctx: Arc<Ctx>,
    mut reconcile: F,
) where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut,
    Fut: Future<Output = anyhow::Result<Action>> + Send + 'static,
{
    tracing::debug!(controller = name, "started");
    let all_of = store.clone();
    // Everything once at the start: what changed before the triggers were
    // subscribed is looked at too.
    let queue = stream::once(async { Trigger::All })
        .chain(stream::select_all(triggers))
        .flat_map(move |trigger| expand(&all_of, trigger))
        .map(Ok::<_, Infallible>);
    let error_policy = move |obj: Arc<K>, err: &Error, _: Arc<Ctx>| {
        let obj = ObjectRef::from_obj(&*obj);
        if is_conflict(&err.0) {
            tracing::debug!(controller = name, %obj, "conflict, retrying: {err:#}");
            Action::requeue(Duration::from_millis(200))
        } else {
            tracing::warn!(controller = name, %obj, "reconcile failed: {:#}", err.0);
            Action::requeue(Duration::from_secs(2))
        }
    };
    let applied = controller::applier(
        move |obj, ctx| reconcile(obj, ctx).map(|r| r.map_err(Error)).boxed(),
        error_policy,
        ctx,
        store,
        queue,
        controller::Config::default(),
    );
    applied
        .for_each(|result| async move {
            if let Err(controller::Error::ObjectNotFound(_)) | Ok(_) = result {
                return;
            }
            if let Err(e) = result {
                tracing::debug!(controller = name, "{e}");
            }
        })
        .await;
}

fn expand<K>(store: &Store<K>, trigger: Trigger<K>) -> impl Stream<Item = ObjectRef<K>> + use<K>
where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + 'static,
{
    let refs = match trigger {
        Trigger::One(obj) => vec![obj],
        Trigger::All => store
            .state()
            .iter()
            .map(|obj| ObjectRef::from_obj(&**obj))
            .collect(),
    };
    stream::iter(refs)
}
