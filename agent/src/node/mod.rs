//! The node: registration of the Node object, its status (addresses,
//! capacity, conditions, runtime and kubelet versions, images) posted on
//! change and every minute, and the Lease renewed every 10 s.

mod conditions;
mod lease;
pub mod machine;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo, ObjectReference, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cri::Cri;
use crate::events::{Kind, Recorder};
use machine::{Machine, Pressure};

pub use lease::renew_forever as run_lease;

/// The kubelet version nodes report (the API server's minor).
pub const KUBELET_VERSION: &str = concat!("v1.32.0+paddock-", env!("CARGO_PKG_VERSION"));

/// Images listed in the node status, as upstream's `nodeStatusMaxImages`.
const MAX_IMAGES: usize = 50;

/// What the node reports about itself.
pub struct Reporter {
    pub client: kube::Client,
    pub cri: Cri,
    pub name: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    /// Set when the Node is created (an existing Node keeps its own).
    pub taints: Vec<Taint>,
    pub max_pods: u32,
    pub kubelet_port: u16,
    pub data_dir: std::path::PathBuf,
    pub machine: Machine,
    /// `<runtime name>://<version>`, from CRI Version.
    pub runtime_version: String,
    pub events: Recorder,
    pub check_period: Duration,
    pub report_period: Duration,
}

impl Reporter {
    /// Creates the Node, or takes over the one with this name; returns its uid.
    pub async fn register(&self) -> Result<String> {
        let api: Api<Node> = Api::all(self.client.clone());
        let status = self.status(&[]).await;
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels()),
                annotations: Some(BTreeMap::from([
                    ("node.alpha.kubernetes.io/ttl".into(), "0".into()),
                    (
                        "volumes.kubernetes.io/controller-managed-attach-detach".into(),
                        "true".into(),
                    ),
                ])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..Default::default()
            }),
            status: Some(status.clone()),
        };
        let registered = match api.create(&PostParams::default(), &node).await {
            Ok(node) => {
                tracing::info!(node = self.name, "registered the node");
                node
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = json!({"metadata": {"labels": self.labels()}});
                let node = api
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .context("updating the existing Node")?;
                tracing::info!(node = self.name, "the node was registered before");
                node
            }
            Err(e) => return Err(e).context("registering the Node"),
        };
        self.events.record(
            self.reference(registered.metadata.uid.as_deref()),
            Kind::Normal,
            "Starting",
            "Starting kubelet.".into(),
        );
        registered
            .metadata
            .uid
            .context("the registered Node has no uid")
    }

    /// Posts the status on change (checked every `check_period`, every
    /// second while not Ready) and at least every `report_period`.
    pub async fn run(self) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut posted: Option<(NodeStatus, Instant)> = None;
        loop {
            let previous = posted
                .as_ref()
                .and_then(|(s, _)| s.conditions.clone())
                .unwrap_or_default();
            let status = self.status(&previous).await;
            let conditions = status.conditions.clone().unwrap_or_default();
            let due = match &posted {
                None => true,
                Some((last, at)) => {
                    conditions::changed(last.conditions.as_deref().unwrap_or(&[]), &conditions)
                        || last.images != status.images
                        || at.elapsed() >= self.report_period
                }
            };
            if due {
                match self.post(&api, &status).await {
                    Ok(uid) => {
                        self.record_transitions(&previous, &conditions, uid.as_deref());
                        posted = Some((status, Instant::now()));
                    }
                    Err(e) => tracing::warn!("posting the node status: {e:#}"),
                }
            }
            let ready = conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let wait = if ready {
                self.check_period
            } else {
                Duration::from_secs(1)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Patches the status; registers the node again if it was deleted.
    async fn post(&self, api: &Api<Node>, status: &NodeStatus) -> Result<Option<String>> {
        let patch = json!({"status": status});
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(node) => Ok(node.metadata.uid),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::warn!(node = self.name, "the Node was deleted: registering again");
                self.register().await.map(Some)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn record_transitions(
        &self,
        before: &[NodeCondition],
        after: &[NodeCondition],
        uid: Option<&str>,
    ) {
        for condition in after {
            let was = before.iter().find(|c| c.type_ == condition.type_);
            if was.is_some_and(|w| w.status == condition.status) {
                continue;
            }
            let reason = match (condition.type_.as_str(), condition.status.as_str()) {
                ("Ready", "True") => "NodeReady".to_string(),
                ("Ready", _) => "NodeNotReady".to_string(),
                _ => condition
                    .reason
                    .clone()
                    .unwrap_or_default()
                    .replace("Kubelet", "Node"),
            };
            let message = format!("Node {} status is now: {reason}", self.name);
            self.events
                .record(self.reference(uid), Kind::Normal, &reason, message);
        }
    }

    async fn status(&self, previous: &[NodeCondition]) -> NodeStatus {
        let runtime = self.cri.status().await;
        let problem = conditions::runtime_problem(runtime.as_ref());
        let pressure = Pressure::measure(&self.data_dir);
        let now = Time(Timestamp::now());
        let m = &self.machine;
        NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.name.clone(),
                },
            ]),
            capacity: Some(m.capacity(self.max_pods)),
            allocatable: Some(m.allocatable(self.max_pods)),
            conditions: Some(conditions::conditions(
                pressure,
                problem.as_deref(),
                previous,
                &now,
            )),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(self.kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: arch().into(),
                boot_id: m.boot_id.clone(),
                container_runtime_version: self.runtime_version.clone(),
                kernel_version: m.kernel_version.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: m.machine_id.clone(),
                operating_system: "linux".into(),
                os_image: m.os_image.clone(),
                system_uuid: m.system_uuid.clone(),
                ..Default::default()
            }),
            images: Some(self.images().await),
            ..Default::default()
        }
    }

    /// The runtime's images, biggest first, as upstream lists them.
    async fn images(&self) -> Vec<ContainerImage> {
        let mut images = match self.cri.list_images().await {
            Ok(images) => images,
            Err(e) => {
                tracing::debug!("listing images: {e:#}");
                return Vec::new();
            }
        };
        images.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
        images
            .into_iter()
            .take(MAX_IMAGES)
            .map(|i| ContainerImage {
                names: Some(i.repo_digests.into_iter().chain(i.repo_tags).collect()),
                size_bytes: Some(i.size as i64),
            })
            .collect()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", arch()),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", arch()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        labels.extend(self.labels.clone());
        labels
    }

    fn reference(&self, uid: Option<&str>) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.name.clone()),
            uid: Some(uid.unwrap_or(&self.name).to_string()),
            ..Default::default()
        }
    }
}

/// GOARCH of this machine.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
