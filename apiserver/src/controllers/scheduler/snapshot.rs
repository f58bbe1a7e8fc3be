//! The cluster as the scheduler sees it for one cycle: every node with what
//! its pods (bound, or assumed and about to be) already take.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::resources::{Allocatable, Amount, PodDemand};
use crate::controllers::owners;

pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub allocatable: Allocatable,
    pub requested: Amount,
    /// Requested with defaults for unset requests (for scoring).
    pub nonzero: Amount,
    pub pods: i64,
    pub host_ports: Vec<(String, String, i32)>,
    /// Pods per controller (owner uid), for spreading replicas.
    pub by_owner: HashMap<String, u32>,
}

impl NodeInfo {
    pub fn owned_by(&self, owner_uid: &str) -> u32 {
        self.by_owner.get(owner_uid).copied().unwrap_or(0)
    }
}

pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
}

impl Snapshot {
    pub fn new(nodes: impl IntoIterator<Item = Arc<Node>>) -> Snapshot {
        let mut nodes: Vec<NodeInfo> = nodes
            .into_iter()
            .map(|node| NodeInfo {
                name: node.metadata.name.clone().unwrap_or_default(),
                allocatable: Allocatable::of(&node),
                node,
                requested: Amount::default(),
                nonzero: Amount::default(),
                pods: 0,
                host_ports: Vec::new(),
                by_owner: HashMap::new(),
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Snapshot { nodes, by_name }
    }

    /// Accounts `pod` on `node` (ignored if the node is unknown).
    pub fn add_pod(&mut self, node: &str, pod: &Pod, demand: &PodDemand) {
        let Some(&i) = self.by_name.get(node) else {
            return;
        };
        let info = &mut self.nodes[i];
        info.requested.add(demand.requests);
        info.nonzero.add(demand.nonzero);
        info.pods += 1;
        info.host_ports.extend(demand.host_ports.iter().cloned());
        if let Some(owner) = owners::controller_of(&pod.metadata) {
            *info.by_owner.entry(owner.uid.clone()).or_default() += 1;
        }
    }
}
