//! Node IPAM: every Node gets a `spec.podCIDR` (a /24 by default) from
//! `--cluster-cidr`. The allocation is the Node objects themselves — what
//! the nodes in the cache hold is taken — so it survives restarts, and a
//! deleted Node's range is free again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

use super::events::Recorder;
use super::informer::Informer;
use super::reconciler;

pub const COMPONENT: &str = "node-ipam-controller";

pub struct Context {
    client: Client,
    nodes: Store<Node>,
    cluster_cidr: Ipv4Net,
    node_prefix: u8,
    recorder: Recorder,
    /// Ranges handed out whose Node the cache does not show with them yet.
    in_flight: Mutex<HashMap<String, Ipv4Net>>,
}

pub async fn run(
    client: Client,
    nodes: &Informer<Node>,
    cluster_cidr: Ipv4Net,
    node_prefix: u8,
    recorder: &Recorder,
    resync: Duration,
) -> Result<()> {
    nodes.ready().await?;
    let ctx = Arc::new(Context {
        client,
        nodes: nodes.store(),
        cluster_cidr,
        node_prefix,
        recorder: recorder.as_component(COMPONENT),
        in_flight: Mutex::default(),
    });
    let triggers = vec![reconciler::on_changes(nodes), reconciler::every(resync)];
    reconciler::run("node-ipam", nodes.store(), triggers, ctx, reconcile).await;
    Ok(())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action> {
    let name = node.name_any();
    if pod_cidr(&node).is_some() {
        return Ok(Action::await_change());
    }
    // One allocation at a time, so two nodes never get the same range.
    let mut in_flight = ctx.in_flight.lock().await;
    let nodes = ctx.nodes.state();
    in_flight.retain(|n, _| {
        nodes
            .iter()
            .any(|node| &node.name_any() == n && pod_cidr(node).is_none())
    });
    let mut taken: BTreeSet<Ipv4Net> = nodes.iter().filter_map(|n| pod_cidr(n)).collect();
    taken.extend(
        in_flight
            .iter()
            .filter(|(n, _)| **n != name)
            .map(|(_, c)| *c),
    );
    let cidr = match in_flight.get(&name) {
        Some(cidr) => *cidr,
        None => match first_free(ctx.cluster_cidr, ctx.node_prefix, &taken) {
            Some(cidr) => cidr,
            None => {
                ctx.recorder.warning(
                    &*node,
                    "CIDRNotAvailable",
                    format!("Node {name} status is now: CIDRNotAvailable"),
                );
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
        },
    };
    in_flight.insert(name.clone(), cidr);
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("assigning podCIDR {cidr} to node {name}"))?;
    ctx.recorder.normal(
        &*node,
        "CIDRAssignmentSucceeded",
        format!("Assigned podCIDR {cidr}"),
    );
    Ok(Action::await_change())
}

fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()
}

/// The first `/prefix` of `cluster` that overlaps nothing in `taken`.
pub fn first_free(cluster: Ipv4Net, prefix: u8, taken: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
    cluster
        .subnets(prefix)
        .ok()?
        .find(|candidate| !taken.iter().any(|t| overlaps(t, candidate)))
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_first_free_24() {
        let cluster: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let mut taken = BTreeSet::new();
        let a = first_free(cluster, 24, &taken).unwrap();
        assert_eq!(a.to_string(), "10.244.0.0/24");
        taken.insert(a);
        taken.insert("10.244.1.0/24".parse().unwrap());
        assert_eq!(
            first_free(cluster, 24, &taken).unwrap().to_string(),
            "10.244.2.0/24"
        );
        // A released range is handed out again.
        taken.remove(&a);
        assert_eq!(
            first_free(cluster, 24, &taken).unwrap().to_string(),
            "10.244.0.0/24"
        );
    }

    #[test]
    fn exhaustion() {
        let cluster: Ipv4Net = "10.244.0.0/23".parse().unwrap();
        let taken: BTreeSet<Ipv4Net> = ["10.244.0.0/24", "10.244.1.0/24"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(first_free(cluster, 24, &taken), None);
    }
}
