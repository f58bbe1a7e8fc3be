//! Picking a node: filter every node, score the feasible ones (least
//! requested resources, and spreading the pods of one controller over the
//! nodes), take the best. Pure: a snapshot in, a node index or the reason
//! why none out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::filter;
use super::resources::PodDemand;
use super::snapshot::{NodeInfo, Snapshot};
use crate::controllers::owners;

const MAX_SCORE: i64 = 100;
/// Spreading replicas weighs twice the resource score (upstream's
/// PodTopologySpread weight 2, NodeResourcesFit weight 1).
const SPREAD_WEIGHT: i64 = 2;

/// The index in `snapshot.nodes` of the node for `pod`, or the
/// FailedScheduling message.
pub fn pick(snapshot: &Snapshot, pod: &Pod, demand: &PodDemand) -> Result<usize, String> {
    if snapshot.nodes.is_empty() {
        return Err("no nodes available to schedule pods".to_string());
    }
    let mut feasible = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in snapshot.nodes.iter().enumerate() {
        match filter::fits(pod, demand, node) {
            Ok(()) => feasible.push(i),
            Err(unfit) => {
                for u in unfit {
                    *reasons.entry(u.to_string()).or_default() += 1;
                }
            }
        }
    }
    if feasible.is_empty() {
        let mut parts: Vec<String> = reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        return Err(format!(
            "0/{} nodes are available: {}.",
            snapshot.nodes.len(),
            parts.join(", ")
        ));
    }
    let owner = owners::controller_of(&pod.metadata).map(|o| o.uid.as_str());
    let most_siblings = owner
        .map(|uid| {
            feasible
                .iter()
                .map(|&i| snapshot.nodes[i].owned_by(uid))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let best = feasible
        .iter()
        .copied()
        .max_by_key(|&i| {
            let node = &snapshot.nodes[i];
            let spread = match owner {
                Some(uid) => spread_score(node.owned_by(uid), most_siblings),
                None => MAX_SCORE,
            };
            let score = least_requested(node, demand) + SPREAD_WEIGHT * spread;
            // Ties go to the emptier node, then to the first by name.
            (score, -node.pods, std::cmp::Reverse(i))
        })
        .expect("feasible is not empty");
    Ok(best)
}

/// Upstream's LeastAllocated: the free share of cpu and memory after placing
/// the pod, 0..=100, averaged.
pub fn least_requested(node: &NodeInfo, demand: &PodDemand) -> i64 {
    let free = |requested: i64, wanted: i64, allocatable: i64| {
        if allocatable <= 0 {
            return 0;
        }
        let left = allocatable - requested.saturating_add(wanted);
        (left.max(0) as i128 * MAX_SCORE as i128 / allocatable as i128) as i64
    };
    let alloc = node.allocatable.amount;
    let cpu = free(node.nonzero.cpu, demand.nonzero.cpu, alloc.cpu);
    let memory = free(node.nonzero.memory, demand.nonzero.memory, alloc.memory);
    (cpu + memory) / 2
}

/// Fewer pods of the same controller scores higher, 0..=100.
pub fn spread_score(siblings: u32, most: u32) -> i64 {
    if most == 0 {
        return MAX_SCORE;
    }
    i64::from(most - siblings) * MAX_SCORE / i64::from(most)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::scheduler::resources::tests::container;
    use k8s_openapi::api::core::v1::{
        Node, NodeCondition, NodeSpec, NodeStatus, PodSpec, Taint, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use std::sync::Arc;

    fn node(name: &str, cpu: &str, memory: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity(memory.into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    fn pod(name: &str, owner: Option<&str>, cpu: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "rs".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![container(cpu, None)],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn snapshot(nodes: Vec<Node>) -> Snapshot {
        Snapshot::new(nodes.into_iter().map(Arc::new))
    }

    fn place(s: &mut Snapshot, p: &Pod) -> Result<String, String> {
        let demand = PodDemand::of(p);
        let i = pick(s, p, &demand)?;
        let name = s.nodes[i].name.clone();
        s.add_pod(&name, p, &demand);
        Ok(name)
    }

    #[test]
    fn replicas_spread_one_per_node() {
        let mut s = snapshot(vec![
            node("w1", "2", "4Gi"),
            node("w2", "2", "4Gi"),
            node("w3", "2", "4Gi"),
        ]);
        let mut placed: Vec<String> = (0..3)
            .map(|i| place(&mut s, &pod(&format!("p{i}"), Some("rs-1"), None)).unwrap())
            .collect();
        placed.sort();
        assert_eq!(placed, ["w1", "w2", "w3"]);
    }

    #[test]
    fn spreading_beats_a_slightly_emptier_node() {
        let mut s = snapshot(vec![node("w1", "4", "8Gi"), node("w2", "4", "8Gi")]);
        place(&mut s, &pod("other", None, Some("1"))).unwrap();
        let first = place(&mut s, &pod("a", Some("rs"), None)).unwrap();
        let second = place(&mut s, &pod("b", Some("rs"), None)).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn least_requested_prefers_the_emptier_node() {
        let mut s = snapshot(vec![node("big", "8", "16Gi"), node("small", "1", "1Gi")]);
        assert_eq!(place(&mut s, &pod("p", None, None)).unwrap(), "big");
    }

    #[test]
    fn insufficient_cpu_says_so() {
        let mut s = snapshot(vec![node("w1", "1", "1Gi"), node("w2", "1", "1Gi")]);
        let err = place(&mut s, &pod("p", None, Some("1500m"))).unwrap_err();
        assert_eq!(err, "0/2 nodes are available: 2 Insufficient cpu.");
    }

    #[test]
    fn cordoned_tainted_and_unready_nodes_are_skipped() {
        let mut cordoned = node("a", "1", "1Gi");
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let mut tainted = node("b", "1", "1Gi");
        tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        let mut unready = node("c", "1", "1Gi");
        unready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "Unknown".into();
        let mut s = snapshot(vec![cordoned, tainted.clone(), unready]);
        let err = place(&mut s, &pod("p", None, None)).unwrap_err();
        assert_eq!(
            err,
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, \
             1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
             1 node(s) were unschedulable."
        );
        let mut tolerant = pod("q", None, None);
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("db".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        }]);
        assert_eq!(place(&mut s, &tolerant).unwrap(), "b");
    }

    #[test]
    fn node_selector_and_host_ports() {
        let mut s = snapshot(vec![node("w1", "1", "1Gi"), node("w2", "1", "1Gi")]);
        let mut p = pod("p", None, None);
        p.spec.as_mut().unwrap().node_selector =
            Some([("kubernetes.io/hostname".to_string(), "w2".to_string())].into());
        assert_eq!(place(&mut s, &p).unwrap(), "w2");

        let with_port = |name: &str| {
            let mut p = pod(name, None, None);
            p.spec.as_mut().unwrap().containers[0].ports =
                Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                    container_port: 80,
                    host_port: Some(80),
                    ..Default::default()
                }]);
            p
        };
        let a = place(&mut s, &with_port("a")).unwrap();
        let b = place(&mut s, &with_port("b")).unwrap();
        assert_ne!(a, b);
        let err = place(&mut s, &with_port("c")).unwrap_err();
        assert!(err.contains("2 node(s) didn't have free ports"), "{err}");
    }

    #[test]
    fn no_nodes() {
        let s = snapshot(vec![]);
        let p = pod("p", None, None);
        assert_eq!(
            pick(&s, &p, &PodDemand::of(&p)).unwrap_err(),
            "no nodes available to schedule pods"
        );
    }
}
