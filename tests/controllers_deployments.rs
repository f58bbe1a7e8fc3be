//! Deployments, ReplicaSets, the scheduler and the garbage collector against
//! a real `paddock server --disable-agent`, with three fake nodes standing in
//! for agents, driven with stock kubectl.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use paddock_testkit::fake_nodes::{FakeNodes, is_ready, node_of};
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::server::Server;
use paddock_testkit::wait;

const NODES: &[&str] = &["w1", "w2", "w3"];

struct Cluster {
    server: Server,
    nodes: FakeNodes,
}

impl Cluster {
    fn start(auto_ready: bool) -> Result<Cluster> {
        let server = Server::start(Path::new(env!("CARGO_BIN_EXE_paddock")), &[])?;
        let nodes = FakeNodes::start(&server.kubeconfig(), NODES, auto_ready)?;
        Ok(Cluster { server, nodes })
    }

    fn kubectl(&self) -> Kubectl {
        Kubectl::v1_32(&self.server.kubeconfig(), self.server.data_dir())
    }

    fn pods(&self, selector: &str) -> Result<Vec<Pod>> {
        self.nodes.pods(selector)
    }

    fn replicasets(&self, selector: &str) -> Result<Vec<ReplicaSet>> {
        let api: Api<ReplicaSet> = Api::namespaced(self.nodes.client(), "default");
        Ok(self
            .nodes
            .block_on(api.list(&ListParams::default().labels(selector)))?
            .items)
    }

    /// Node name → podCIDR.
    fn pod_cidrs(&self) -> Result<BTreeMap<String, String>> {
        let api: Api<Node> = Api::all(self.nodes.client());
        Ok(self
            .nodes
            .block_on(api.list(&ListParams::default()))?
            .items
            .into_iter()
            .filter_map(|n| Some((n.metadata.name?, n.spec?.pod_cidr?)))
            .collect())
    }

    fn deployment(&self, name: &str) -> Result<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.nodes.client(), "default");
        Ok(self.nodes.block_on(api.get(name))?)
    }

    /// Waits until `selector` has exactly `n` pods, all Running and Ready
    /// and none terminating; returns them.
    fn wait_ready_pods(&self, selector: &str, n: usize) -> Result<Vec<Pod>> {
        wait::until(
            &format!("{n} ready pods {selector}"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let pods = self.pods(selector)?;
                let ready = pods
                    .iter()
                    .filter(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
                    .count();
                Ok((pods.len() == n && ready == n).then_some(pods))
            },
        )
    }

    /// Applies a Deployment and marks its pods ready as they come, until
    /// `replicas` are ready.
    fn deploy_ready(&self, name: &str, replicas: usize, image: &str) -> Result<()> {
        let yaml = deployment_yaml(name, replicas as i32, image);
        self.kubectl()
            .run_with_input(&["apply", "-f", "-"], &yaml)?;
        let selector = format!("app={name}");
        wait::until(
            &format!("{replicas} pods ready"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let pods = self.pods(&selector)?;
                for p in &pods {
                    self.mark_ready(p);
                }
                Ok((pods.iter().filter(|p| is_ready(p)).count() == replicas).then_some(()))
            },
        )
    }

    fn mark_ready(&self, pod: &Pod) {
        self.nodes
            .mark_ready("default", pod.metadata.name.as_deref().unwrap_or_default());
    }

    fn log_on_failure(&self) -> String {
        self.server.log()
    }
}

fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

/// The REVISION column of `kubectl rollout history`.
fn revisions(kubectl: &Kubectl, deploy: &str) -> Result<Vec<String>> {
    let history = kubectl.run(&["rollout", "history", deploy])?;
    Ok(history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .map(String::from)
        .collect())
}

fn deployment_yaml(name: &str, replicas: i32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: {image}
"
    )
}

#[test]
fn deployment_spreads_scales_and_deletes() -> Result<()> {
    let cluster = Cluster::start(true)?;
    let kubectl = cluster.kubectl();
    kubectl.run_with_input(&["apply", "-f", "-"], &deployment_yaml("web", 3, "nginx"))?;
    let pods = cluster
        .wait_ready_pods("app=web", 3)
        .map_err(|e| e.context(cluster.log_on_failure()))?;
    let nodes: BTreeSet<String> = pods.iter().map(node_of).collect();
    assert_eq!(nodes.len(), 3, "one pod per node: {nodes:?}");
    wait::until(
        "kubectl to show 3/3",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let out = kubectl.run(&["get", "deployment", "web"])?;
            Ok(out
                .lines()
                .nth(1)
                .is_some_and(|l| l.split_whitespace().nth(1) == Some("3/3"))
                .then_some(()))
        },
    )?;
    let rs = cluster.replicasets("app=web")?;
    assert_eq!(rs.len(), 1);
    let hash = rs[0]
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        rs[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );

    kubectl.run(&["scale", "deployment", "web", "--replicas=5"])?;
    cluster.wait_ready_pods("app=web", 5)?;
    kubectl.run(&["scale", "deployment", "web", "--replicas=1"])?;
    cluster.wait_ready_pods("app=web", 1)?;
    wait::until(
        "status to say 1 replica",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let s = cluster.deployment("web")?.status.unwrap_or_default();
            Ok((s.replicas == Some(1) && s.available_replicas == Some(1)).then_some(()))
        },
    )?;

    let events = kubectl.run(&[
        "get",
        "events",
        "--field-selector",
        "reason=ScalingReplicaSet",
    ])?;
    assert!(events.contains("Scaled up replica set web-"), "{events}");
    let described = kubectl.run(&["describe", "replicaset", &format!("web-{hash}")])?;
    assert!(described.contains("SuccessfulCreate"), "{described}");

    kubectl.run(&["delete", "deployment", "web"])?;
    wait::until(
        "the deployment's replicasets and pods to go",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            Ok(
                (cluster.replicasets("app=web")?.is_empty() && cluster.pods("app=web")?.is_empty())
                    .then_some(()),
            )
        },
    )?;
    Ok(())
}

#[test]
fn rolling_update_keeps_enough_pods_ready() -> Result<()> {
    let cluster = Cluster::start(false)?;
    let kubectl = cluster.kubectl();
    cluster.deploy_ready("roll", 4, "nginx:1.25")?;
    kubectl.run(&["set", "image", "deployment/roll", "web=nginx:1.26"])?;
    let mut lowest = usize::MAX;
    let mut most = 0;
    wait::until(
        "the rollout to finish",
        Duration::from_secs(90),
        Duration::from_millis(150),
        || {
            let pods = cluster.pods("app=roll")?;
            let live: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = live.iter().filter(|p| is_ready(p)).count();
            lowest = lowest.min(ready);
            most = most.max(live.len());
            // The test stands in for readiness probes: one new pod at a time.
            if let Some(p) = live
                .iter()
                .find(|p| image_of(p) == "nginx:1.26" && !is_ready(p) && !node_of(p).is_empty())
            {
                cluster.mark_ready(p);
            }
            let s = cluster.deployment("roll")?.status.unwrap_or_default();
            let done = s.updated_replicas == Some(4)
                && s.replicas == Some(4)
                && s.available_replicas == Some(4)
                && live.len() == 4
                && live.iter().all(|p| image_of(p) == "nginx:1.26");
            Ok(done.then_some(()))
        },
    )
    .map_err(|e| e.context(cluster.log_on_failure()))?;
    assert!(
        lowest >= 3,
        "ready pods dropped to {lowest}, below replicas - maxUnavailable = 3"
    );
    assert!(
        most <= 5,
        "{most} pods at once, above replicas + maxSurge = 5"
    );
    let out = kubectl.run(&["rollout", "status", "deployment/roll", "--timeout=30s"])?;
    assert!(out.contains("successfully rolled out"), "{out}");
    Ok(())
}

#[test]
fn rollout_commands_with_kubectl_1_32_and_1_20() -> Result<()> {
    let cluster = Cluster::start(true)?;
    let data = cluster.server.data_dir();
    let kubeconfig = cluster.server.kubeconfig();
    for kubectl in [
        Kubectl::v1_32(&kubeconfig, data),
        Kubectl::v1_20(&kubeconfig, data)?,
    ] {
        let name = format!("app{}", kubectl.version.replace('.', ""));
        let deploy = format!("deployment/{name}");
        kubectl.run_with_input(
            &["apply", "-f", "-"],
            &deployment_yaml(&name, 1, "nginx:1.25"),
        )?;
        let status = kubectl.run(&["rollout", "status", &deploy, "--timeout=60s"])?;
        assert!(
            status.contains("successfully rolled out"),
            "{} {status}",
            kubectl.version
        );

        kubectl.run(&["set", "image", &deploy, "web=nginx:1.26"])?;
        kubectl.run(&["rollout", "status", &deploy, "--timeout=60s"])?;
        assert_eq!(
            revisions(&kubectl, &deploy)?,
            ["1", "2"],
            "{}",
            kubectl.version
        );

        kubectl.run(&["rollout", "undo", &deploy])?;
        kubectl.run(&["rollout", "status", &deploy, "--timeout=60s"])?;
        let image = kubectl.run(&[
            "get",
            &deploy,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])?;
        assert_eq!(image, "nginx:1.25", "{}", kubectl.version);
        assert_eq!(
            revisions(&kubectl, &deploy)?,
            ["2", "3"],
            "{}",
            kubectl.version
        );

        kubectl.run(&["rollout", "restart", &deploy])?;
        kubectl.run(&["rollout", "status", &deploy, "--timeout=60s"])?;
        let revision = kubectl.run(&[
            "get",
            &deploy,
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ])?;
        assert_eq!(revision, "4", "{}", kubectl.version);
        let pods = cluster.wait_ready_pods(&format!("app={name}"), 1)?;
        assert!(
            pods[0]
                .metadata
                .annotations
                .iter()
                .flatten()
                .any(|(k, _)| k == "kubectl.kubernetes.io/restartedAt")
        );
    }
    Ok(())
}

#[test]
fn server_restart_mid_rollout_finishes_without_duplicates() -> Result<()> {
    let mut cluster = Cluster::start(false)?;
    let kubectl = cluster.kubectl();
    cluster.deploy_ready("steady", 3, "nginx:1.25")?;
    kubectl.run(&["set", "image", "deployment/steady", "web=nginx:1.26"])?;
    // Let the rollout start: one new pod ready, then the server dies.
    wait::until(
        "a new pod ready",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let pods = cluster.pods("app=steady")?;
            let new: Vec<&Pod> = pods
                .iter()
                .filter(|p| image_of(p) == "nginx:1.26")
                .collect();
            for p in &new {
                cluster.mark_ready(p);
            }
            Ok(new.iter().any(|p| is_ready(p)).then_some(()))
        },
    )?;
    let cidrs = cluster.pod_cidrs()?;
    assert_eq!(cidrs.len(), NODES.len(), "{cidrs:?}");
    cluster.server.kill9()?;
    cluster.server.restart()?;
    let mut most = 0;
    wait::until(
        "the rollout to finish after the restart",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let pods = match cluster.pods("app=steady") {
                Ok(pods) => pods,
                Err(_) => return Ok(None),
            };
            let live: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            most = most.max(live.len());
            for p in live.iter().filter(|p| image_of(p) == "nginx:1.26") {
                cluster.mark_ready(p);
            }
            Ok((live.len() == 3
                && live
                    .iter()
                    .all(|p| image_of(p) == "nginx:1.26" && is_ready(p)))
            .then_some(()))
        },
    )
    .map_err(|e| e.context(cluster.log_on_failure()))?;
    assert!(
        most <= 4,
        "{most} pods at once, above replicas + maxSurge = 4"
    );
    let rss = cluster.replicasets("app=steady")?;
    assert_eq!(rss.len(), 2, "one ReplicaSet per template");
    let sizes: BTreeSet<i32> = rss.iter().map(|rs| rs.spec.replicas.unwrap_or(0)).collect();
    assert_eq!(sizes, BTreeSet::from([0, 3]));
    assert_eq!(cluster.pod_cidrs()?, cidrs, "podCIDRs survive the restart");
    wait::until(
        "3 pods in all",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || Ok((cluster.pods("app=steady")?.len() == 3).then_some(())),
    )?;
    Ok(())
}

#[test]
fn cascading_deletion_orphan_and_foreground() -> Result<()> {
    let cluster = Cluster::start(true)?;
    let kubectl = cluster.kubectl();
    kubectl.run_with_input(&["apply", "-f", "-"], &deployment_yaml("keep", 2, "nginx"))?;
    cluster.wait_ready_pods("app=keep", 2)?;
    kubectl.run(&["delete", "deployment", "keep", "--cascade=orphan"])?;
    wait::until(
        "the replicaset to be orphaned",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let rss = cluster.replicasets("app=keep")?;
            Ok((rss.len() == 1
                && rss[0]
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty()))
            .then_some(()))
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(cluster.pods("app=keep")?.len(), 2, "orphaned pods stay");

    kubectl.run_with_input(&["apply", "-f", "-"], &deployment_yaml("fg", 2, "nginx"))?;
    cluster.wait_ready_pods("app=fg", 2)?;
    kubectl.run(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=60s",
    ])?;
    if !cluster.replicasets("app=fg")?.is_empty() || !cluster.pods("app=fg")?.is_empty() {
        bail!("foreground deletion returned before the dependents were gone");
    }
    Ok(())
}

#[test]
fn recreate_waits_min_ready_seconds_and_reports_a_missed_deadline() -> Result<()> {
    let cluster = Cluster::start(false)?;
    let kubectl = cluster.kubectl();
    let yaml = |image: &str| {
        format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: rec}}
spec:
  replicas: 2
  minReadySeconds: 2
  progressDeadlineSeconds: 3
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: rec}}}}
  template:
    metadata: {{labels: {{app: rec}}}}
    spec:
      containers: [{{name: web, image: {image}}}]
"
        )
    };
    kubectl.run_with_input(&["apply", "-f", "-"], &yaml("nginx:1.25"))?;
    let pods = wait::until(
        "two running pods",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let pods = cluster.pods("app=rec")?;
            let running = pods
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            Ok((running == 2).then_some(pods))
        },
    )
    .map_err(|e| e.context(cluster.log_on_failure()))?;
    let marked = std::time::Instant::now();
    for p in &pods {
        cluster.mark_ready(p);
    }
    let mut ready_seen = false;
    wait::until(
        "two available replicas",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let s = cluster.deployment("rec")?.status.unwrap_or_default();
            ready_seen |= s.ready_replicas == Some(2) && s.available_replicas.unwrap_or(0) < 2;
            Ok((s.available_replicas == Some(2)).then_some(()))
        },
    )?;
    assert!(
        marked.elapsed() >= Duration::from_millis(1500),
        "available before minReadySeconds: {:?}",
        marked.elapsed()
    );
    assert!(
        ready_seen,
        "never saw ready pods that were not yet available"
    );

    // Recreate: the old pods are gone before any new one exists.
    kubectl.run(&["set", "image", "deployment/rec", "web=nginx:1.26"])?;
    let mut overlap = Vec::new();
    wait::until(
        "two new pods",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let pods = cluster.pods("app=rec")?;
            let images: BTreeSet<String> = pods.iter().map(image_of).collect();
            if images.len() > 1 {
                overlap.push(
                    pods.iter()
                        .map(|p| (image_of(p), node_of(p)))
                        .collect::<Vec<_>>(),
                );
            }
            Ok(
                (pods.len() == 2 && images == BTreeSet::from(["nginx:1.26".to_string()]))
                    .then_some(()),
            )
        },
    )?;
    assert!(overlap.is_empty(), "old and new pods at once: {overlap:?}");

    // The new pods never become ready: the deadline passes.
    wait::until(
        "ProgressDeadlineExceeded",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let d = cluster.deployment("rec")?;
            let timed_out = d
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| {
                    c.type_.as_deref() == Some("Progressing")
                        && c.status.as_deref() == Some("False")
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                });
            Ok(timed_out.then_some(()))
        },
    )
    .map_err(|e| e.context(cluster.log_on_failure()))?;
    let status = kubectl.output(&["rollout", "status", "deployment/rec", "--timeout=20s"])?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(!status.status.success(), "{said}");
    assert!(said.contains("exceeded its progress deadline"), "{said}");
    Ok(())
}

#[test]
fn a_replicaset_adopts_matching_orphans_and_releases_relabelled_pods() -> Result<()> {
    let cluster = Cluster::start(true)?;
    let kubectl = cluster.kubectl();
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stray, labels: {app: adopt}}\nspec:\n  containers: [{name: c, image: nginx}]\n",
    )?;
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: adopter}
spec:
  replicas: 2
  selector: {matchLabels: {app: adopt}}
  template:
    metadata: {labels: {app: adopt}}
    spec:
      containers: [{name: c, image: nginx}]
",
    )?;
    let owner_of = |pod: &Pod| {
        pod.metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.name.clone())
    };
    wait::until(
        "the stray pod adopted beside one new pod",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let pods = cluster.pods("app=adopt")?;
            let stray = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some("stray"));
            Ok((pods.len() == 2
                && pods
                    .iter()
                    .all(|p| owner_of(p).as_deref() == Some("adopter"))
                && stray.is_some())
            .then_some(()))
        },
    )
    .map_err(|e| e.context(cluster.log_on_failure()))?;

    // Relabelled out of the selector: released, and replaced.
    kubectl.run(&["label", "pod", "stray", "app=gone", "--overwrite"])?;
    wait::until(
        "the stray pod released and replaced",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let stray = cluster.pods("app=gone")?;
            let kept = cluster.pods("app=adopt")?;
            Ok((stray.len() == 1
                && owner_of(&stray[0]).is_none()
                && kept.len() == 2
                && kept
                    .iter()
                    .all(|p| owner_of(p).as_deref() == Some("adopter")))
            .then_some(()))
        },
    )?;
    Ok(())
}
