//! Issue 8's end-to-end scenarios, and what they share: waiting for what a
//! kubectl user waits for, and reading what kubectl prints.

pub mod join_order;
pub mod lost_worker;
pub mod rolling_update;
pub mod walkthrough;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use paddock_testkit::lab::{KUBECTLS, Lab, LabKubectl, Reply, Runtime, condition_true, get};
use paddock_testkit::netns::NetNs;
use paddock_testkit::wait;
use serde_json::Value;

pub const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

/// How long a pod may take from creation to Ready on a loaded 2-core
/// machine (image pulled once per node).
pub const POD_READY: Duration = Duration::from_secs(180);
/// How long a Service may take to answer once its endpoints exist.
pub const PROGRAMMED: Duration = Duration::from_secs(60);

/// A pod as `kubectl get po -o wide` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub name: String,
    pub ready: String,
    pub status: String,
    pub ip: String,
    pub node: String,
}

/// The rows of `kubectl get po -o wide [args]`, read by column name.
pub fn pods_wide(k: &LabKubectl, args: &[&str]) -> Result<Vec<PodRow>> {
    let mut all = vec!["get", "po", "-o", "wide"];
    all.extend_from_slice(args);
    let out = k.run(&all)?;
    let mut lines = out.lines();
    let Some(header) = lines.next() else {
        return Ok(Vec::new());
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("no {name} column in:\n{out}"))
    };
    let (name, ready, status, ip, node) = (
        column("NAME")?,
        column("READY")?,
        column("STATUS")?,
        column("IP")?,
        column("NODE")?,
    );
    lines
        .map(|line| {
            // RESTARTS may read "1 (5s ago)": columns after it shift by two.
            let mut cells: Vec<&str> = line.split_whitespace().collect();
            if let Some(at) = cells.iter().position(|c| c.starts_with('(')) {
                cells.drain(at..at + 2);
            }
            let cell = |i: usize| cells.get(i).map(|s| s.to_string()).unwrap_or_default();
            Ok(PodRow {
                name: cell(name),
                ready: cell(ready),
                status: cell(status),
                ip: cell(ip),
                node: cell(node),
            })
        })
        .collect()
}

/// Waits until exactly `count` pods matching `args` (`-l app=x`,
/// `--field-selector ...`) that are not terminating are Running and Ready;
/// returns them as `get po -o wide` shows them. Pods left Terminating on a
/// lost node are not counted, as a user reading STATUS would not.
pub fn wait_pods_ready(
    k: &LabKubectl,
    args: &[&str],
    count: usize,
    timeout: Duration,
) -> Result<Vec<PodRow>> {
    let mut json_args = vec!["pods"];
    json_args.extend_from_slice(args);
    wait::until(
        &format!("{count} pods {args:?} Running and Ready"),
        timeout,
        Duration::from_millis(500),
        || {
            let live: Vec<Value> = items(&k.json(&json_args)?)
                .into_iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            let ready = live
                .iter()
                .filter(|p| p["status"]["phase"] == "Running" && condition_true(p, "Ready"))
                .count();
            if live.len() != count || ready != count {
                return Ok(None);
            }
            let names: BTreeSet<&str> = live
                .iter()
                .filter_map(|p| p["metadata"]["name"].as_str())
                .collect();
            let rows: Vec<PodRow> = pods_wide(k, args)?
                .into_iter()
                .filter(|row| names.contains(row.name.as_str()))
                .collect();
            Ok((rows.len() == count).then_some(rows))
        },
    )
    .with_context(|| {
        k.run(&["get", "po", "-o", "wide"])
            .unwrap_or_else(|e| e.to_string())
    })
}

/// Waits until no pod matches `args` any more.
pub fn wait_pods_gone(k: &LabKubectl, args: &[&str], timeout: Duration) -> Result<()> {
    let mut json_args = vec!["pods"];
    json_args.extend_from_slice(args);
    wait::until(
        &format!("pods {args:?} to be gone"),
        timeout,
        Duration::from_millis(500),
        || Ok(items(&k.json(&json_args)?).is_empty().then_some(())),
    )
}

/// The `items` of a list.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The ready addresses of a Service's Endpoints (what `kubectl get ep`
/// shows), sorted.
pub fn endpoint_ips(k: &LabKubectl, service: &str) -> Result<Vec<String>> {
    let endpoints = k.json(&["endpoints", service])?;
    let mut ips: Vec<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    Ok(ips)
}

/// Waits until the Service's endpoints are exactly `ips`.
pub fn wait_endpoints(
    k: &LabKubectl,
    service: &str,
    ips: &[String],
    timeout: Duration,
) -> Result<()> {
    let mut want = ips.to_vec();
    want.sort();
    wait::until(
        &format!("the endpoints of {service} to be {want:?}"),
        timeout,
        Duration::from_millis(200),
        || Ok((endpoint_ips(k, service)? == want).then_some(())),
    )
}

/// Waits until a GET of `url` from `ns` answers 200.
pub fn wait_served(ns: &NetNs, url: &str, timeout: Duration) -> Result<Reply> {
    wait::until(
        &format!("{url} to answer from {}", ns.name()),
        timeout,
        Duration::from_millis(100),
        || {
            let reply = get(ns, url)?;
            Ok((reply.status == 200).then_some(reply))
        },
    )
}

/// `count` GETs of `url` from `ns`, each on a new connection: how many
/// each pod served. Every one must succeed.
pub fn tally(ns: &NetNs, url: &str, count: usize) -> Result<BTreeMap<String, usize>> {
    let mut served = BTreeMap::new();
    for _ in 0..count {
        let reply = get(ns, url)?;
        ensure!(reply.status == 200, "{url} answered {}", reply.status);
        *served.entry(reply.served_by).or_insert(0) += 1;
    }
    Ok(served)
}

/// Waits until GETs of `url` from `ns` fail (connection refused, reset or
/// timed out), as after a Service is deleted.
pub fn wait_unserved(ns: &NetNs, url: &str, timeout: Duration) -> Result<()> {
    wait::until(
        &format!("{url} to stop answering from {}", ns.name()),
        timeout,
        Duration::from_millis(200),
        || Ok(get(ns, url).is_err().then_some(())),
    )
}

/// The node port of a Service's first port.
pub fn node_port(k: &LabKubectl, service: &str) -> Result<u16> {
    let svc = k.json(&["svc", service])?;
    svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("service {service} has no nodePort: {svc}"))
}

/// Waits until a LoadBalancer Service has an external IP.
pub fn wait_external_ip(k: &LabKubectl, service: &str, timeout: Duration) -> Result<String> {
    wait::until(
        &format!("service {service} to get an EXTERNAL-IP"),
        timeout,
        Duration::from_millis(200),
        || {
            let svc = k.json(&["svc", service])?;
            Ok(svc["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string))
        },
    )
}

/// `kubectl expose deployment NAME --type=LoadBalancer --port=80`.
pub fn expose_load_balancer(k: &LabKubectl, deployment: &str) -> Result<()> {
    let out = k.run(&[
        "expose",
        "deployment",
        deployment,
        "--type=LoadBalancer",
        "--port=80",
    ])?;
    ensure!(
        out.contains(&format!("service/{deployment} exposed")),
        "{out}"
    );
    Ok(())
}

/// `kubectl delete KIND NAME`, then `kubectl get` says NotFound.
pub fn delete(k: &LabKubectl, kind: &str, name: &str) -> Result<()> {
    let out = k.run(&["delete", kind, name])?;
    ensure!(
        out.contains("deleted"),
        "kubectl delete {kind} {name}: {out}"
    );
    wait::until(
        &format!("{kind} {name} to be gone"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let gone = k.output(&["get", kind, name])?;
            if gone.status.success() {
                return Ok(None);
            }
            let stderr = String::from_utf8_lossy(&gone.stderr);
            if !stderr.contains("NotFound") {
                bail!("kubectl get {kind} {name}: {stderr}");
            }
            Ok(Some(()))
        },
    )
}

/// The distinct values of a column.
pub fn distinct<'a>(values: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    values.into_iter().map(str::to_string).collect()
}

/// Checks that `kubectl get nodes -o wide` shows each node's runtime in
/// its CONTAINER-RUNTIME column (`paddock://0.1.0`, `containerd://1.6.20`).
pub fn check_runtimes(lab: &Lab, k: &LabKubectl) -> Result<()> {
    let table = k.run(&["get", "nodes", "-o", "wide"])?;
    let mut lines = table.lines();
    // The last column; OS-IMAGE before it spans several words.
    ensure!(
        lines
            .next()
            .and_then(|header| header.split_whitespace().last())
            == Some("CONTAINER-RUNTIME"),
        "CONTAINER-RUNTIME is not the last column of:\n{table}"
    );
    let shown: BTreeMap<&str, &str> = lines
        .filter_map(|row| {
            Some((
                row.split_whitespace().next()?,
                row.split_whitespace().last()?,
            ))
        })
        .collect();
    for node in &lab.nodes {
        let want = match node.runtime {
            Runtime::Paddock => "paddock://",
            Runtime::Containerd => "containerd://",
        };
        ensure!(
            shown
                .get(node.name.as_str())
                .is_some_and(|r| r.starts_with(want)),
            "{} should run {want}; kubectl shows:\n{table}",
            node.name
        );
    }
    Ok(())
}

/// Runs `step`, recording how long it took.
pub fn timed<T>(
    timings: &mut paddock_testkit::timings::Timings,
    what: &str,
    step: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    let value = step()?;
    timings.since(what, started);
    Ok(value)
}

/// The nodes pods are scheduled to: the workers, or the master alone when
/// there are none (it is not tainted then).
pub fn pod_nodes(lab: &Lab) -> BTreeSet<String> {
    let nodes = match lab.workers() {
        [] => std::slice::from_ref(lab.master()),
        workers => workers,
    };
    nodes.iter().map(|n| n.name.clone()).collect()
}

/// The outcomes of a lab's scenarios, which run one after the other on the
/// same lab: a failed one is reported with the lab's logs and its objects
/// are removed, and the next one runs on.
#[derive(Default)]
pub struct Scenarios {
    failed: Vec<String>,
}

impl Scenarios {
    /// Records how scenario `name` ended.
    pub fn check(&mut self, lab: &Lab, name: &str, outcome: Result<()>) {
        let Err(error) = outcome else {
            println!("=== {name}: passed");
            return;
        };
        let saved = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-logs")
            .join(lab.id())
            .join(name.replace([' ', ','], "_"));
        let saved = match lab.save_logs(&saved) {
            Ok(()) => format!("the lab's logs are in {}", saved.display()),
            Err(error) => format!("saving the lab's logs: {error:#}"),
        };
        println!("=== {name}: FAILED: {error:#}\n{saved}");
        self.failed
            .push(format!("{name}: {error:#}\n{saved}\n{}", lab.logs()));
        if let Err(error) = remove_walkthrough_objects(lab) {
            self.failed
                .push(format!("cleaning up after {name}: {error:#}"));
        }
    }

    /// Fails with every failed scenario's error.
    pub fn finish(self) -> Result<()> {
        ensure!(
            self.failed.is_empty(),
            "{} scenario(s) failed:\n\n{}",
            self.failed.len(),
            self.failed.join("\n\n")
        );
        Ok(())
    }
}

/// Deletes whatever a failed scenario left of the walkthrough's objects
/// (pod and service `nginx`, deployment and service `deploy-nginx`).
fn remove_walkthrough_objects(lab: &Lab) -> Result<()> {
    let k = lab.kubectl(KUBECTLS[1])?;
    k.run(&[
        "delete",
        "--ignore-not-found",
        "--wait=false",
        "deployment/deploy-nginx",
        "service/deploy-nginx",
        "service/nginx",
        "pod/nginx",
    ])?;
    wait_pods_gone(&k, &["-l", "app=deploy-nginx"], POD_READY)?;
    wait_pods_gone(&k, &["-l", "run=nginx"], POD_READY)
}
