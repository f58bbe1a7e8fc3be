//! Fake nodes for control-plane tests, standing in for agents: Node objects
//! whose Leases are renewed, and a stand-in kubelet that reports the pods
//! bound to them Running with an IP from the node's podCIDR — Ready at once,
//! or only when the test says so — and removes pods being deleted, as a
//! kubelet does once their containers are gone. A node can be "killed":
//! its Lease and pods are then left alone, like a machine that went away.
//!
//! Runs on its own thread and tokio runtime, so synchronous tests can use it
//! next to blocking kubectl calls.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const TICK: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    /// Node name → alive.
    nodes: BTreeMap<String, bool>,
    auto_ready: bool,
    /// `namespace/name` of pods the test marked ready.
    ready: BTreeSet<String>,
    /// IPs handed out per node.
    next_ip: BTreeMap<String, u8>,
}

pub struct FakeNodes {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    kubelet: Option<JoinHandle<()>>,
}

/// A kube client from an admin kubeconfig file.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

impl FakeNodes {
    /// Registers `names` (Ready, 4 CPUs, 8 GiB, 110 pods, an InternalIP
    /// `192.168.56.11+i`) and starts their stand-in kubelet; pods become
    /// Ready as soon as they run if `auto_ready`.
    pub fn start(kubeconfig: &Path, names: &[&str], auto_ready: bool) -> Result<FakeNodes> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let client = runtime.block_on(client(kubeconfig))?;
        let state = Arc::new(Mutex::new(State {
            auto_ready,
            ..State::default()
        }));
        let fake = FakeNodes {
            runtime,
            client,
            state,
            stop: Arc::new(AtomicBool::new(false)),
            kubelet: None,
        };
        for (i, name) in names.iter().enumerate() {
            fake.add(name, i)?;
        }
        let mut fake = fake;
        let (client, state, stop) = (fake.client.clone(), fake.state.clone(), fake.stop.clone());
        let handle = fake.runtime.handle().clone();
        fake.kubelet = Some(std::thread::spawn(move || {
            handle.block_on(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = tick(&client, &state).await {
                        eprintln!("fake kubelet: {e:#}");
                    }
                    tokio::time::sleep(TICK).await;
                }
            })
        }));
        Ok(fake)
    }

    fn add(&self, name: &str, index: usize) -> Result<()> {
        let ip = Ipv4Addr::new(192, 168, 56, 11 + index as u8);
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}],
                "conditions": [ready_condition()],
            }
        }))?;
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now())},
        }))?;
        self.runtime
            .block_on(async {
                let nodes: Api<Node> = Api::all(self.client.clone());
                let created = nodes.create(&PostParams::default(), &node).await?;
                // Status is the agent's to write, through the status subresource.
                let status = json!({"status": node.status});
                nodes
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
                leases.create(&PostParams::default(), &lease).await?;
                anyhow::Ok(created)
            })
            .with_context(|| format!("registering fake node {name}"))?;
        self.lock().nodes.insert(name.to_string(), true);
        Ok(())
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Runs `f` (API calls with `client()`) on this runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The pods of namespace `default` matching the label `selector`.
    pub fn pods(&self, selector: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        Ok(self
            .block_on(api.list(&ListParams::default().labels(selector)))?
            .items)
    }

    /// Marks a pod ready (manual readiness).
    pub fn mark_ready(&self, namespace: &str, pod: &str) {
        self.lock().ready.insert(format!("{namespace}/{pod}"));
    }

    pub fn set_auto_ready(&self, auto: bool) {
        self.lock().auto_ready = auto;
    }

    /// The node stops renewing its Lease and its kubelet stops.
    pub fn kill(&self, node: &str) {
        self.lock().nodes.insert(node.to_string(), false);
    }

    /// The node's agent comes back: Lease renewals and pod handling resume.
    pub fn revive(&self, node: &str) {
        self.lock().nodes.insert(node.to_string(), true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(kubelet) = self.kubelet.take() {
            let _ = kubelet.join();
        }
    }
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node the pod is bound to ("" while pending).
pub fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn ready_condition() -> serde_json::Value {
    let now = Timestamp::now().to_string();
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
           "lastHeartbeatTime": now, "lastTransitionTime": now})
}

/// One round of every live node's kubelet.
async fn tick(client: &kube::Client, state: &Mutex<State>) -> Result<()> {
    let alive: Vec<String> = {
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .nodes
            .iter()
            .filter(|(_, alive)| **alive)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    for node in &alive {
        let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
        leases
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for node in &alive {
        // Like a kubelet, post Ready again if someone else said otherwise
        // (the node controller, while the node was unreachable).
        let ready = nodes
            .get(node)
            .await?
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            let patch = json!({"status": {"conditions": [ready_condition()]}});
            nodes
                .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    let pods: Api<Pod> = Api::all(client.clone());
    for pod in pods.list(&ListParams::default()).await? {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !alive.contains(&node) {
            continue;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let in_ns: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = in_ns
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
            continue;
        }
        let status = pod.status.clone().unwrap_or_default();
        let ready_now = is_ready(&pod);
        let wants_ready = {
            let state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.auto_ready || state.ready.contains(&format!("{namespace}/{name}"))
        };
        if status.phase.as_deref() == Some("Running") && ready_now == wants_ready {
            continue;
        }
        let ip = match status.pod_ip.clone() {
            Some(ip) => ip,
            None => next_ip(&nodes, &node, state).await?,
        };
        let now = Timestamp::now().to_string();
        let flag = if wants_ready { "True" } else { "False" };
        let patch = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "192.168.56.1",
            "startTime": status.start_time.map(|t| t.0.to_string()).unwrap_or(now.clone()),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
            ],
        }});
        in_ns
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("reporting pod {namespace}/{name}"))?;
    }
    Ok(())
}

/// The next address of the node's podCIDR (`10.244.N.x`).
async fn next_ip(nodes: &Api<Node>, node: &str, state: &Mutex<State>) -> Result<String> {
    let cidr = nodes
        .get(node)
        .await?
        .spec
        .and_then(|s| s.pod_cidr)
        .context("the node has no podCIDR yet")?;
    let base: Ipv4Addr = cidr
        .split('/')
        .next()
        .and_then(|ip| ip.parse().ok())
        .context("a podCIDR that is not an IPv4 CIDR")?;
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let n = state.next_ip.entry(node.to_string()).or_insert(1);
    *n = n.wrapping_add(1).max(2);
    let [a, b, c, _] = base.octets();
    Ok(Ipv4Addr::new(a, b, c, *n).to_string())
}
