//! Node lifecycle: a node whose agent stops renewing its Lease (and posting
//! status) for `--node-monitor-grace-period` gets its conditions set to
//! Unknown and the `node.kubernetes.io/unreachable` taints (a node reporting
//! Ready=False gets `not-ready` ones); its pods are marked not ready (so
//! endpoints drop them) and, once their toleration of the NoExecute taint
//! runs out, evicted so their controllers recreate them elsewhere. When the
//! Lease is renewed again the taints go. Pods bound to a node that no longer
//! exists are deleted.
//!
//! Staleness is judged by when *this controller* saw the Lease or heartbeat
//! change, not by the timestamps in them, so clock skew between machines
//! does not matter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::events::Recorder;
use super::informer::Informer;
use super::pods;
use super::scheduler::{TAINT_NOT_READY, tolerates};

pub const COMPONENT: &str = "node-controller";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a node may go without renewing its Lease.
    pub grace_period: Duration,
    /// How often nodes are checked.
    pub monitor_period: Duration,
}

/// What this controller last saw of a node's liveness signals.
struct Seen {
    signal: (Option<Timestamp>, Option<Timestamp>),
    at: Instant,
}

pub struct NodeLifecycle {
    client: Client,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    recorder: Recorder,
    settings: Settings,
    seen: HashMap<String, Seen>,
}

impl NodeLifecycle {
    pub fn new(
        client: Client,
        nodes: &Informer<Node>,
        leases: &Informer<Lease>,
        pods: &Informer<Pod>,
        recorder: &Recorder,
        settings: Settings,
    ) -> NodeLifecycle {
        NodeLifecycle {
            client,
            nodes: nodes.clone(),
            leases: leases.clone(),
            pods: pods.clone(),
            recorder: recorder.as_component(COMPONENT),
            settings,
            seen: HashMap::new(),
        }
    }

    /// Monitors until dropped.
    pub async fn run(mut self) -> Result<()> {
        self.nodes.ready().await?;
        self.leases.ready().await?;
        self.pods.ready().await?;
        let mut ticks = tokio::time::interval(self.settings.monitor_period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.monitor().await;
        }
    }

    async fn monitor(&mut self) {
        let nodes = self.nodes.store().state();
        self.seen
            .retain(|name, _| nodes.iter().any(|n| &n.name_any() == name));
        let now = Timestamp::now();
        for node in &nodes {
            if let Err(e) = self.check_node(node, now).await {
                tracing::warn!(node = node.name_any(), "node lifecycle: {e:#}");
            }
        }
        if let Err(e) = self.evict(now).await {
            tracing::warn!("taint eviction: {e:#}");
        }
    }

    async fn check_node(&mut self, node: &Node, now: Timestamp) -> Result<()> {
        let name = node.name_any();
        let lease = self
            .leases
            .store()
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let ready = condition(node, "Ready");
        let heartbeat = ready.and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
        let signal = (renewed, heartbeat);
        let seen = self.seen.entry(name.clone()).or_insert(Seen {
            signal,
            at: Instant::now(),
        });
        if seen.signal != signal {
            seen.signal = signal;
            seen.at = Instant::now();
        }
        let stale = seen.at.elapsed() > self.settings.grace_period;
        let ready_status = ready.map(|c| c.status.as_str());
        if stale && ready_status != Some("Unknown") {
            self.mark_unknown(node, now).await?;
            self.mark_pods_not_ready(&name).await;
            self.recorder.normal(
                node,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
            return Ok(());
        }
        let ready_status = if stale { Some("Unknown") } else { ready_status };
        self.sync_taints(node, ready_status, now).await
    }

    /// Sets every condition the agent reports to Unknown.
    async fn mark_unknown(&self, node: &Node, now: Timestamp) -> Result<()> {
        let mut conditions: Vec<NodeCondition> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for type_ in CONDITIONS {
            if !conditions.iter().any(|c| c.type_ == type_) {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    ..NodeCondition::default()
                });
            }
        }
        for c in conditions
            .iter_mut()
            .filter(|c| CONDITIONS.contains(&c.type_.as_str()))
        {
            if c.status != "Unknown" {
                c.last_transition_time = Some(Time(now));
            }
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": {"conditions": conditions}});
        api.patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .context("marking the node's conditions Unknown")?;
        Ok(())
    }

    /// Pods on an unreachable node are not ready any more (upstream's
    /// `MarkPodsNotReady`), so Services stop sending them traffic.
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self
            .pods
            .store()
            .state()
            .iter()
            .filter(|p| pods::node_name(p) == Some(node))
        {
            if !pods::is_ready(pod) {
                continue;
            }
            let mut conditions: Vec<PodCondition> = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
                c.status = "False".into();
                c.last_transition_time = Some(Time(Timestamp::now()));
            }
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({"status": {"conditions": conditions}});
            if let Err(e) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::debug!(pod = pod.name_any(), "marking pod not ready: {e}");
            }
            self.recorder
                .warning(&**pod, "NodeNotReady", "Node is not ready".into());
        }
    }

    /// Keeps the not-ready/unreachable taints in line with the Ready condition.
    async fn sync_taints(&self, node: &Node, ready: Option<&str>, now: Timestamp) -> Result<()> {
        let managed = |t: &Taint| t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY;
        let current: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let key = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            // False, or no Ready condition yet: a node that has not said it is ready.
            _ => Some(TAINT_NOT_READY),
        };
        let mut wanted: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
        if let Some(key) = key {
            for effect in ["NoSchedule", "NoExecute"] {
                let kept = current
                    .iter()
                    .find(|t| t.key == key && t.effect == effect)
                    .cloned();
                wanted.push(kept.unwrap_or_else(|| Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: Some(Time(now)),
                }));
            }
        }
        if wanted == current {
            return Ok(());
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"taints": wanted}});
        api.patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .context("updating the node's taints")?;
        Ok(())
    }

    /// Evicts pods from nodes with NoExecute taints they do not tolerate, or
    /// no longer tolerate (tolerationSeconds since the taint was added); and
    /// deletes pods bound to nodes that are gone.
    async fn evict(&self, now: Timestamp) -> Result<()> {
        let nodes = self.nodes.store();
        for pod in self.pods.store().state() {
            let Some(node_name) = pods::node_name(&pod) else {
                continue;
            };
            if pods::is_terminating(&pod) {
                continue;
            }
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let Some(node) = nodes.get(&ObjectRef::new(node_name)) else {
                if self.node_is_gone(node_name).await {
                    let params = DeleteParams::default().grace_period(0);
                    let _ = api.delete(&pod.name_any(), &params).await;
                }
                continue;
            };
            if !eviction_due(&pod, &node, now) {
                continue;
            }
            let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            self.recorder.normal(
                &*pod,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {namespace}/{name}"),
            );
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e).context(format!("evicting pod {namespace}/{name}")),
            }
        }
        Ok(())
    }

    async fn node_is_gone(&self, name: &str) -> bool {
        let api: Api<Node> = Api::all(self.client.clone());
        matches!(api.get_opt(name).await, Ok(None))
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether `pod` must leave `node` now: a NoExecute taint it does not
/// tolerate, or whose toleration ran out.
pub fn eviction_due(pod: &Pod, node: &Node, now: Timestamp) -> bool {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .any(|taint| {
            if !tolerates(tolerations, taint) {
                return true;
            }
            // The shortest matching tolerationSeconds; none means forever.
            let seconds = tolerations
                .iter()
                .filter(|t| tolerates(std::slice::from_ref(t), taint))
                .map(|t| t.toleration_seconds)
                .min_by_key(|s| s.unwrap_or(i64::MAX));
            match (seconds.flatten(), &taint.time_added) {
                (Some(s), Some(added)) => added.0 + SignedDuration::from_secs(s.max(0)) <= now,
                (Some(s), None) => s <= 0,
                (None, _) => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Toleration};

    fn node_with(taint: Option<(&str, i64)>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: taint.map(|(key, added)| {
                    vec![Taint {
                        key: key.into(),
                        effect: "NoExecute".into(),
                        value: None,
                        time_added: Some(Time(Timestamp::from_second(added).unwrap())),
                    }]
                }),
                ..NodeSpec::default()
            }),
            ..Node::default()
        }
    }

    fn pod_tolerating(seconds: Option<Option<i64>>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: seconds.map(|s| {
                    vec![Toleration {
                        key: Some(TAINT_UNREACHABLE.into()),
                        operator: Some("Exists".into()),
                        effect: Some("NoExecute".into()),
                        toleration_seconds: s,
                        value: None,
                    }]
                }),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn eviction_waits_for_toleration_seconds() {
        let node = node_with(Some((TAINT_UNREACHABLE, 1000)));
        let at = |s| Timestamp::from_second(s).unwrap();
        let pod = pod_tolerating(Some(Some(300)));
        assert!(!eviction_due(&pod, &node, at(1299)));
        assert!(eviction_due(&pod, &node, at(1300)));
    }

    #[test]
    fn untolerated_goes_now_and_forever_stays() {
        let node = node_with(Some((TAINT_UNREACHABLE, 1000)));
        let now = Timestamp::from_second(1001).unwrap();
        assert!(eviction_due(&pod_tolerating(None), &node, now));
        assert!(!eviction_due(&pod_tolerating(Some(None)), &node, now));
        assert!(!eviction_due(&pod_tolerating(None), &node_with(None), now));
    }
}
