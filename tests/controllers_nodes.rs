//! Node lifecycle, node IPAM and unschedulable pods against a real `paddock
//! server --disable-agent` with a short `--node-monitor-grace-period` and
//! `--default-unreachable-toleration-seconds`, and fake nodes one of which
//! dies.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use paddock_testkit::fake_nodes::{FakeNodes, is_ready, node_of};
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::server::Server;
use paddock_testkit::wait;

fn wait_for<T>(what: &str, probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    wait::until(
        what,
        Duration::from_secs(60),
        Duration::from_millis(250),
        probe,
    )
}

fn live_pods(nodes: &FakeNodes, selector: &str) -> Result<Vec<Pod>> {
    Ok(nodes
        .pods(selector)?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx}
";

#[test]
fn a_node_that_stops_renewing_its_lease_loses_its_pods() -> Result<()> {
    let server = Server::start(
        Path::new(env!("CARGO_BIN_EXE_paddock")),
        &[
            "--node-monitor-grace-period",
            "3s",
            "--node-monitor-period",
            "1s",
            "--default-unreachable-toleration-seconds",
            "2",
        ],
    )?;
    let nodes = FakeNodes::start(&server.kubeconfig(), &["w1", "w2", "w3"], true)?;
    let kubectl = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    let node_api: Api<Node> = Api::all(nodes.client());

    let cidrs: BTreeSet<String> = wait_for("every node to get a podCIDR", || {
        let list = nodes.block_on(node_api.list(&ListParams::default()))?.items;
        let cidrs: BTreeSet<String> = list
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        Ok((cidrs.len() == 3).then_some(cidrs))
    })
    .map_err(|e| e.context(server.log()))?;
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.244.") && c.ends_with("/24")),
        "{cidrs:?}"
    );

    kubectl.run_with_input(&["apply", "-f", "-"], WEB)?;
    let pods = wait_for("a ready pod on every node", || {
        let pods = live_pods(&nodes, "app=web")?;
        let spread: BTreeSet<String> = pods.iter().filter(|p| is_ready(p)).map(node_of).collect();
        Ok((spread.len() == 3).then_some(pods))
    })?;
    let tolerations = kubectl.run(&[
        "get",
        "pod",
        pods[0].metadata.name.as_deref().unwrap_or_default(),
        "-o",
        "jsonpath={.spec.tolerations[?(@.key=='node.kubernetes.io/unreachable')].tolerationSeconds}",
    ])?;
    assert_eq!(tolerations.trim(), "2", "the server's default toleration");

    nodes.kill("w1");
    wait_for("w1 to be NotReady and tainted unreachable", || {
        let node = nodes.block_on(node_api.get("w1"))?;
        let unknown = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Ready" && c.status == "Unknown")
            });
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
            });
        Ok((unknown && tainted).then_some(()))
    })
    .map_err(|e| e.context(server.log()))?;
    let shown = kubectl.run(&["get", "nodes"])?;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("w1 ") && l.contains("NotReady")),
        "{shown}"
    );

    wait_for("three ready pods on the other nodes", || {
        let pods = live_pods(&nodes, "app=web")?;
        let on_live = pods
            .iter()
            .filter(|p| is_ready(p) && node_of(p) != "w1")
            .count();
        Ok((pods.len() == 3 && on_live == 3).then_some(()))
    })
    .map_err(|e| e.context(server.log()))?;

    nodes.revive("w1");
    wait_for("w1 to recover", || {
        let node = nodes.block_on(node_api.get("w1"))?;
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key.starts_with("node.kubernetes.io/")));
        Ok((!tainted).then_some(()))
    })?;
    let shown = kubectl.run(&["get", "nodes"])?;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("w1 ") && l.contains(" Ready")),
        "{shown}"
    );
    Ok(())
}

/// The message of pod `name`'s PodScheduled condition, once it has one.
fn unschedulable_message(kubectl: &Kubectl, name: &str) -> Result<Option<String>> {
    let out = kubectl.run(&[
        "get",
        "pod",
        name,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
    ])?;
    Ok((!out.is_empty()).then_some(out))
}

#[test]
fn unschedulable_pods_say_why_and_released_cidrs_are_reused() -> Result<()> {
    let server = Server::start(Path::new(env!("CARGO_BIN_EXE_paddock")), &[])?;
    let nodes = FakeNodes::start(&server.kubeconfig(), &["w1", "w2"], true)?;
    let kubectl = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: picky}\nspec:\n  nodeSelector: {disk: ssd}\n  containers: [{name: c, image: nginx}]\n",
    )?;
    let message = wait_for("PodScheduled=False", || {
        unschedulable_message(&kubectl, "picky")
    })
    .map_err(|e| e.context(server.log()))?;
    assert_eq!(
        message,
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    );
    let described = kubectl.run(&["describe", "pod", "picky"])?;
    assert!(described.contains("FailedScheduling"), "{described}");

    // A node that fits appears: the pod is retried and bound.
    kubectl.run(&["label", "node", "w2", "disk=ssd"])?;
    wait_for("the pod to be bound to w2", || {
        let out = kubectl.run(&["get", "pod", "picky", "-o", "jsonpath={.spec.nodeName}"])?;
        Ok((out == "w2").then_some(()))
    })?;

    let node_api: Api<Node> = Api::all(nodes.client());
    let cidr_of = |name: &str| -> Result<Option<String>> {
        Ok(nodes
            .block_on(node_api.get(name))?
            .spec
            .and_then(|s| s.pod_cidr))
    };
    let w1 = wait_for("w1's podCIDR", || cidr_of("w1"))?;
    kubectl.run(&["delete", "node", "w1"])?;
    let nodes = nodes; // keep the other node alive
    let w3 = FakeNodes::start(&server.kubeconfig(), &["w3"], true)?;
    let got = wait_for("w3's podCIDR", || {
        let api: Api<Node> = Api::all(w3.client());
        Ok(w3.block_on(api.get("w3"))?.spec.and_then(|s| s.pod_cidr))
    })?;
    assert_eq!(got, w1, "the released range is handed out again");
    drop(nodes);
    Ok(())
}

const HALF_A_NODE: &str = "apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  containers:
  - {name: c, image: nginx, resources: {requests: {cpu: '3'}}}
";

#[test]
fn a_pod_waiting_for_room_is_bound_when_a_pod_on_the_full_node_goes() -> Result<()> {
    let server = Server::start(Path::new(env!("CARGO_BIN_EXE_paddock")), &[])?;
    let _nodes = FakeNodes::start(&server.kubeconfig(), &["w1"], true)?;
    let kubectl = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    let node_of =
        |name: &str| kubectl.run(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"]);
    kubectl.run_with_input(&["apply", "-f", "-"], &HALF_A_NODE.replace("NAME", "first"))?;
    wait_for("first to be bound", || {
        Ok((node_of("first")? == "w1").then_some(()))
    })
    .map_err(|e| e.context(server.log()))?;
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        &HALF_A_NODE.replace("NAME", "second"),
    )?;
    let message = wait_for("second to be unschedulable", || {
        unschedulable_message(&kubectl, "second")
    })?;
    assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
    // Another pod's change makes no room.
    kubectl.run(&["label", "pod", "first", "touched=yes"])?;
    assert_eq!(node_of("second")?, "");

    // The deletion itself wakes it, well before the once-a-minute retry.
    kubectl.run(&["delete", "pod", "first", "--wait=false"])?;
    wait::until(
        "second to be bound once first is gone",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || Ok((node_of("second")? == "w1").then_some(())),
    )
    .map_err(|e| e.context(server.log()))?;
    Ok(())
}
