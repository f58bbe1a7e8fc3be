//! Issue 8, test 3: a worker of the lab is cut off — its Paddock
//! processes killed, as when the machine dies. kubectl (1.20.2 and 1.32)
//! shows it NotReady within the node monitor's grace period, its pod is
//! evicted (the pods tolerate `unreachable` for a few seconds only) and
//! recreated on the other workers, and the LoadBalancer address answers
//! from the new set of pods — taken over by another node when the lost one
//! was announcing it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use paddock_testkit::lab::{KUBECTLS, Lab, LabKubectl, ready_nodes};
use paddock_testkit::timings::Timings;
use paddock_testkit::wait;

use super::*;

/// `--node-monitor-grace-period`'s default, and how often nodes are checked
/// (`--node-monitor-period`). As upstream's node lifecycle controller, the
/// server notices a Lease renewal when it checks, and declares the node lost
/// a grace period after that, when it checks again: a node cut off right
/// after renewing its Lease is NotReady between 40 and 50 s later.
const GRACE: Duration = Duration::from_secs(40);
const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// What a loaded machine adds: writing the condition, kubectl polling.
const SLACK: Duration = Duration::from_secs(5);

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: deploy-nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: deploy-nginx
  template:
    metadata:
      labels:
        app: deploy-nginx
    spec:
      containers:
      - name: nginx
        image: nginx
      tolerations:
      - key: node.kubernetes.io/unreachable
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 5
      - key: node.kubernetes.io/not-ready
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 5
";

/// Kills the Paddock processes of the worker that runs a pod of the
/// deployment (the one announcing the LoadBalancer address, if a worker
/// does); the lab keeps one worker fewer.
pub fn lost_worker(lab: &mut Lab) -> Result<()> {
    let mut timings = Timings::start("a lost worker");
    let (old, lb_ip, lost) = {
        let k = lab.kubectl(KUBECTLS[0])?;
        let out = k.run_with_input(&["apply", "-f", "-"], DEPLOYMENT)?;
        ensure!(
            out.contains("deployment.apps/deploy-nginx created"),
            "{out}"
        );
        let pods = wait_pods_ready(&k, &["-l", "app=deploy-nginx"], 3, POD_READY)?;
        expose_load_balancer(&k, "deploy-nginx")?;
        let lb_ip = wait_external_ip(&k, "deploy-nginx", PROGRAMMED)?;
        wait_served(&lab.client, &format!("http://{lb_ip}/"), PROGRAMMED)?;
        // The worker announcing the address, if a worker does: losing it
        // also tests the takeover.
        let announcer = lab
            .workers()
            .iter()
            .find(|n| {
                n.run("ip", &["-o", "addr", "show", "dev", "eth0"])
                    .is_ok_and(|a| a.contains(&format!("{lb_ip}/")))
            })
            .unwrap_or(&lab.nodes[lab.nodes.len() - 1]);
        (pods, lb_ip, announcer.name.clone())
    };
    let lost_pod = old
        .iter()
        .find(|p| p.node == lost)
        .with_context(|| format!("no pod on {lost}: {old:?}"))?
        .name
        .clone();

    let index = lab
        .nodes
        .iter()
        .position(|n| n.name == lost)
        .context("lost node")?;
    lab.nodes[index].kill()?;
    let killed = Instant::now();

    let k = lab.kubectl(KUBECTLS[1])?;
    wait::until(
        &format!("{lost} to be NotReady"),
        GRACE + 2 * MONITOR_PERIOD + Duration::from_secs(30),
        Duration::from_millis(500),
        || Ok((!ready_nodes(&k.json(&["nodes"])?).contains(&lost)).then_some(())),
    )?;
    let not_ready = timings.since(&format!("{lost} NotReady after its processes died"), killed);
    ensure!(
        not_ready <= GRACE + 2 * MONITOR_PERIOD + SLACK,
        "{lost} took {not_ready:?} to go NotReady (grace period {GRACE:?}, checked every {MONITOR_PERIOD:?})"
    );
    for version in KUBECTLS {
        let k = lab.kubectl(version)?;
        let nodes = k.run(&["get", "nodes"])?;
        let row = nodes.lines().find(|l| l.starts_with(&lost)).unwrap_or("");
        ensure!(
            row.split_whitespace().nth(1) == Some("NotReady"),
            "kubectl {} get nodes:\n{nodes}",
            k.version()
        );
    }

    let survivors: BTreeSet<String> = lab
        .workers()
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| *n != lost)
        .collect();
    let pods = wait_pods_ready(&k, &["-l", "app=deploy-nginx"], 3, POD_READY)?;
    timings.since("3 pods Ready again on the other workers", killed);
    ensure!(
        pods.iter().all(|p| survivors.contains(&p.node))
            && !pods.iter().any(|p| p.name == lost_pod),
        "the pods after losing {lost}: {pods:?}"
    );
    for version in KUBECTLS {
        let k = lab.kubectl(version)?;
        let rows = pods_wide(&k, &["-l", "app=deploy-nginx"])?;
        let running: Vec<_> = rows.iter().filter(|r| r.status == "Running").collect();
        ensure!(
            running.len() == 3 && running.iter().all(|r| survivors.contains(&r.node)),
            "kubectl {} get po -o wide: {rows:?}",
            k.version()
        );
    }

    let url = format!("http://{lb_ip}/");
    let ips: Vec<String> = pods.iter().map(|p| p.ip.clone()).collect();
    wait_endpoints(&k, "deploy-nginx", &ips, PROGRAMMED)?;
    served_by_all(lab, &k, &url, &pods)?;
    timings.since("the EXTERNAL-IP served by the new set of pods", killed);
    Ok(())
}

/// Waits until requests to `url` from the client reach every pod of `pods`
/// and no other.
fn served_by_all(lab: &Lab, k: &LabKubectl, url: &str, pods: &[PodRow]) -> Result<()> {
    let names = distinct(pods.iter().map(|p| p.name.as_str()));
    wait::until(
        &format!("{url} to be served by {names:?}"),
        PROGRAMMED,
        Duration::from_millis(500),
        || {
            let served = tally(&lab.client, url, 30)?;
            Ok((served.keys().cloned().collect::<BTreeSet<_>>() == names).then_some(()))
        },
    )
    .with_context(|| {
        k.run(&["get", "endpoints", "deploy-nginx"])
            .unwrap_or_default()
    })
}
