//! The scheduler: binds every pending pod (no `nodeName`, our scheduler
//! name) to a node through the `binding` subresource.
//!
//! Each cycle takes a snapshot of the nodes and of what the bound pods — and
//! the pods bound in flight ("assumed", as upstream calls them) — use, then
//! places the pending pods one after the other in priority and age order.
//! Binds run concurrently; a failed bind forgets its assumption and the pod
//! is retried. A pod that fits nowhere gets `PodScheduled=False`,
//! `Unschedulable` and a FailedScheduling event, and is retried (as
//! upstream's unschedulable queue does) when something may have made room —
//! a node changed, a bound pod went away, a bind failed —, when the pod
//! itself changed, and once a minute; not on every other pod's update,
//! which would cost a pass over all of them each time. Updates of bound pods
//! (their status, mostly) wake no cycle at all.

mod filter;
mod resources;
mod score;
mod snapshot;

pub use filter::{TAINT_NOT_READY, TAINT_UNSCHEDULABLE, tolerates};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use self::resources::PodDemand;
use self::snapshot::Snapshot;
use super::events::Recorder;
use super::informer::{Change, Informer};
use super::pods;

pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Binds in flight at once.
pub const BINDS_IN_FLIGHT: usize = 32;
/// Pending pods are looked at again at least this often.
const RETRY: Duration = Duration::from_secs(5);
/// Cycles start at most this often: changes that come together (a burst of
/// creates, a watch's backlog) are taken together.
const COALESCE: Duration = Duration::from_millis(20);
/// A pod that fit nowhere is tried again at least this often, even if
/// nothing seems to have made room (upstream waits 5 minutes).
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);
/// The first wait after a failed bind; it doubles up to `RETRY`.
const BACKOFF: Duration = Duration::from_millis(250);

type PodKey = (String, String);

#[derive(Default)]
struct State {
    /// Pods being bound: key → (uid, node).
    assumed: HashMap<PodKey, (String, String)>,
    /// Pods whose bind failed: not before this, and the next wait.
    backoff: HashMap<PodKey, (Instant, Duration)>,
    /// Pods that fit nowhere when last tried.
    unschedulable: HashMap<PodKey, Unschedulable>,
    /// Counts the changes that may have made room for a pod that fit nowhere.
    room: u64,
}

/// A pod that fit nowhere: why, and what it was tried against.
struct Unschedulable {
    /// The message written to its PodScheduled condition.
    message: String,
    /// `State::room` then.
    room: u64,
    /// Its resourceVersion then.
    version: Option<String>,
    at: Instant,
}

impl Unschedulable {
    /// Whether trying again could give another answer.
    fn worth_retrying(&self, pod: &Pod, room: u64, now: Instant) -> bool {
        self.room != room
            || self.version != pod.metadata.resource_version
            || now.duration_since(self.at) >= UNSCHEDULABLE_RETRY
    }
}

pub struct Scheduler {
    client: Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    recorder: Recorder,
    state: Mutex<State>,
    binds: Arc<Semaphore>,
    wake: Notify,
}

impl Scheduler {
    pub fn new(
        client: Client,
        pods: Informer<Pod>,
        nodes: Informer<Node>,
        recorder: &Recorder,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            client,
            pods,
            nodes,
            recorder: recorder.as_component(SCHEDULER_NAME),
            state: Mutex::default(),
            binds: Arc::new(Semaphore::new(BINDS_IN_FLIGHT)),
            wake: Notify::new(),
        })
    }

    /// Schedules until dropped.
    pub async fn run(self: Arc<Self>) -> Result<()> {
        self.pods.ready().await?;
        self.nodes.ready().await?;
        let mut changes = futures::stream::select(
            self.pods.subscribe().map(|change| wake_for(&change)),
            self.nodes.subscribe().map(|_| Wake::Room),
        );
        let waker = self.clone();
        let wake_on_changes = async move {
            while let Some(wake) = changes.next().await {
                match wake {
                    Wake::No => continue,
                    Wake::Room => waker.made_room(),
                    Wake::Pending => {}
                }
                waker.wake.notify_one();
            }
        };
        let cycles = async {
            loop {
                self.clone().cycle();
                // The changes of the next moments make one cycle.
                tokio::time::sleep(COALESCE).await;
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        };
        tokio::select! {
            () = wake_on_changes => {}
            () = cycles => {}
        }
        Ok(())
    }

    fn made_room(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.room += 1;
    }

    /// One pass over the pending pods.
    fn cycle(self: Arc<Self>) {
        let all_pods = self.pods.store().state();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Pods that take room on a node: bound, or being bound by us.
        let mut placed: Vec<(&Arc<Pod>, String)> = Vec::new();
        let mut pending = Vec::new();
        let mut live = HashSet::new();
        for pod in &all_pods {
            if let Some(node) = pods::node_name(pod) {
                if !state.assumed.is_empty() {
                    state.assumed.remove(&key(pod));
                }
                if !pods::is_terminal(pod) {
                    placed.push((pod, node.to_string()));
                }
                continue;
            }
            if !is_ours(pod) || pods::is_terminating(pod) || pods::is_terminal(pod) {
                continue;
            }
            let key = key(pod);
            match state.assumed.get(&key) {
                Some((uid, node)) if Some(uid) == pod.metadata.uid.as_ref() => {
                    placed.push((pod, node.clone()));
                }
                _ => pending.push(pod.clone()),
            }
            live.insert(key);
        }
        state.assumed.retain(|k, _| live.contains(k));
        state.unschedulable.retain(|k, _| live.contains(k));
        state.backoff.retain(|k, _| live.contains(k));
        let now = Instant::now();
        pending.retain(|pod| {
            let key = key(pod);
            state
                .backoff
                .get(&key)
                .is_none_or(|(until, _)| *until <= now)
                && state
                    .unschedulable
                    .get(&key)
                    .is_none_or(|u| u.worth_retrying(pod, state.room, now))
        });
        if pending.is_empty() {
            return;
        }
        let mut snapshot = Snapshot::new(self.nodes.store().state());
        for (pod, node) in placed {
            snapshot.add_pod(&node, pod, &PodDemand::of(pod));
        }
        pending.sort_by_key(|pod| {
            let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (std::cmp::Reverse(priority), created)
        });
        for pod in pending {
            let key = key(&pod);
            let demand = PodDemand::of(&pod);
            match score::pick(&snapshot, &pod, &demand) {
                Ok(i) => {
                    state.unschedulable.remove(&key);
                    let node = snapshot.nodes[i].name.clone();
                    snapshot.add_pod(&node, &pod, &demand);
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    state.assumed.insert(key, (uid, node.clone()));
                    tokio::spawn(self.clone().bind(pod, node));
                }
                Err(message) => {
                    let written = state
                        .unschedulable
                        .get(&key)
                        .is_some_and(|u| u.message == message);
                    if !written {
                        tokio::spawn(
                            self.clone()
                                .mark_unschedulable(pod.clone(), message.clone()),
                        );
                    }
                    let tried = Unschedulable {
                        message,
                        room: state.room,
                        version: pod.metadata.resource_version.clone(),
                        at: now,
                    };
                    state.unschedulable.insert(key, tried);
                }
            }
        }
    }

    async fn bind(self: Arc<Self>, pod: Arc<Pod>, node: String) {
        let Ok(_permit) = self.binds.clone().acquire_owned().await else {
            return;
        };
        let (namespace, name) = key(&pod);
        match bind(&self.client, &pod, &node).await {
            Ok(()) => self.recorder.normal(
                &*pod,
                "Scheduled",
                format!("Successfully assigned {namespace}/{name} to {node}"),
            ),
            Err(e) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), node, "binding failed: {}", brief(&e));
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let key = (namespace, name);
                state.assumed.remove(&key);
                // The room it held is free again.
                state.room += 1;
                let wait = state
                    .backoff
                    .get(&key)
                    .map_or(BACKOFF, |(_, last)| (*last * 2).min(RETRY));
                state.backoff.insert(key, (Instant::now() + wait, wait));
            }
        }
    }

    async fn mark_unschedulable(self: Arc<Self>, pod: Arc<Pod>, message: String) {
        self.recorder
            .warning(&*pod, "FailedScheduling", message.clone());
        if let Err(e) = set_unschedulable(&self.client, &pod, &message).await {
            tracing::debug!("marking pod unschedulable: {e:#}");
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.unschedulable.remove(&key(&pod));
        }
    }
}

/// An API error as its code and message, anything else with its context.
fn brief(err: &anyhow::Error) -> String {
    match err.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) => format!("{} {}: {}", s.code, s.reason, s.message),
        _ => format!("{err:#}"),
    }
}

fn key(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// What a change asks of the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// Nothing: a bound pod's update, a pending pod's deletion.
    No,
    /// A cycle: a pending pod appeared or changed.
    Pending,
    /// A cycle that retries the pods that fit nowhere: a bound pod deleted
    /// or finished (or anything, after a resync) may have made room.
    Room,
}

fn wake_for(change: &Change<Pod>) -> Wake {
    match change {
        Change::Applied(pod) => match pods::node_name(pod) {
            None => Wake::Pending,
            Some(_) if pods::is_terminal(pod) => Wake::Room,
            Some(_) => Wake::No,
        },
        Change::Deleted(pod) if pods::node_name(pod).is_some() => Wake::Room,
        Change::Deleted(_) => Wake::No,
        Change::Resynced => Wake::Room,
    }
}

fn is_ours(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let name = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or("");
    let gated = spec
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty());
    (name.is_empty() || name == SCHEDULER_NAME) && !gated
}

/// Binds `pod` to `node` through the pod's `binding` subresource.
pub async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<()> {
    let (namespace, name) = key(pod);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        &name,
        &PostParams::default(),
        &binding,
    )
    .await
    .with_context(|| format!("binding {namespace}/{name} to {node}"))?;
    Ok(())
}

/// Writes `PodScheduled=False, Unschedulable` with `message`, keeping the
/// pod's other conditions.
async fn set_unschedulable(client: &Client, pod: &Pod, message: &str) -> Result<()> {
    let (namespace, name) = key(pod);
    let mut conditions: Vec<PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.retain(|c| c.type_ != "PodScheduled");
    conditions.push(PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..PodCondition::default()
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let patch = json!({"status": {"conditions": conditions}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("setting PodScheduled=False on {namespace}/{name}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: Option<&str>, phase: &str, version: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "default", "resourceVersion": version},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
                "status": {"phase": phase},
            }))
            .expect("a valid pod"),
        )
    }

    #[test]
    fn pending_pods_wake_a_cycle_bound_pods_going_away_make_room_running_ones_nothing() {
        let pending = pod(None, "Pending", "1");
        let running = pod(Some("w1"), "Running", "1");
        let finished = pod(Some("w1"), "Succeeded", "1");
        assert_eq!(wake_for(&Change::Applied(pending.clone())), Wake::Pending);
        assert_eq!(wake_for(&Change::Applied(running.clone())), Wake::No);
        assert_eq!(wake_for(&Change::Deleted(pending)), Wake::No);
        assert_eq!(wake_for(&Change::Applied(finished)), Wake::Room);
        assert_eq!(wake_for(&Change::Deleted(running)), Wake::Room);
        assert_eq!(wake_for(&Change::Resynced), Wake::Room);
    }

    #[test]
    fn a_pod_that_fit_nowhere_waits_for_room_its_own_change_or_a_minute() {
        let at = Instant::now();
        let tried = Unschedulable {
            message: "no nodes available to schedule pods".into(),
            room: 3,
            version: Some("7".into()),
            at,
        };
        let same = pod(None, "Pending", "7");
        assert!(!tried.worth_retrying(&same, 3, at + Duration::from_secs(59)));
        assert!(tried.worth_retrying(&same, 4, at));
        assert!(tried.worth_retrying(&pod(None, "Pending", "8"), 3, at));
        assert!(tried.worth_retrying(&same, 3, at + UNSCHEDULABLE_RETRY));
    }
}
