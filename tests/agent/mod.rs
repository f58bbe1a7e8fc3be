//! The agent's acceptance scenarios (issues 5 and 9), run by
//! `agent_pods.rs` on Paddock's runtime and by `agent_containerd.rs` on
//! containerd: a one-node cluster in a network namespace, driven by stock
//! kubectl, asserting what a user sees.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use paddock_testkit::cluster::{Cluster, Runtime};
use paddock_testkit::wait;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_paddock");
pub const START: Duration = Duration::from_secs(90);

pub fn cluster(runtime: Runtime) -> Result<Cluster> {
    Cluster::start(Path::new(BINARY), runtime)
}

/// The PIDs in the cgroup of the pod's container `name`, via the runtime's
/// container id.
fn container_pids(cluster: &Cluster, pod: &Value, name: &str) -> Result<BTreeSet<u32>> {
    let id = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|s| s.iter().find(|c| c["name"] == name))
        .and_then(|c| c["containerID"].as_str())
        .context("no containerID")?;
    let id = id.split_once("://").map_or(id, |(_, id)| id);
    let mut pids = BTreeSet::new();
    // The container's cgroup is named by its id, below the node's cgroup
    // root (in every hierarchy).
    let roots = paddock_testkit::leftovers::cgroup_dirs(cluster.cgroup_root());
    for entry in roots.iter().flat_map(|root| walk(root)) {
        if entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(id))
        {
            let procs = std::fs::read_to_string(entry.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|p| p.trim().parse::<u32>().ok()));
        }
    }
    ensure!(!pids.is_empty(), "no processes found for container {id}");
    Ok(pids)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
            out.extend(walk(&entry.path()));
        }
    }
    out
}

pub fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|s| s.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// `kubectl run nginx`: Running with an IP and the node in `get po -o
/// wide`, serving its page to the node, its access log in `kubectl logs`;
/// the agent killed with -9 and restarted leaves the container (same PIDs)
/// serving; `kubectl delete` is done well within the grace period.
pub fn nginx_runs_serves_logs_and_survives_an_agent_crash(runtime: Runtime) -> Result<()> {
    let mut cluster = cluster(runtime)?;
    cluster.kubectl(&["run", "nginx", "--image=nginx"])?;
    let pod = cluster.wait_ready("nginx", START)?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .context("no podIP")?
        .to_string();

    let wide = cluster.kubectl(&["get", "po", "-o", "wide"])?;
    let header = wide.lines().next().unwrap_or_default();
    assert!(header.contains("IP") && header.contains("NODE"), "{wide}");
    let row = wide
        .lines()
        .find(|l| l.starts_with("nginx "))
        .context("no nginx row")?;
    for expected in ["1/1", "Running", &ip, cluster.node_name()] {
        assert!(row.contains(expected), "{expected:?} missing in {row:?}");
    }

    let page = cluster.curl(&[&format!("http://{ip}/")])?;
    assert!(page.contains("Welcome to nginx!"), "{page}");
    let logs = wait::until(
        "the request in kubectl logs",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let logs = cluster.kubectl(&["logs", "nginx"])?;
            Ok(logs.contains("GET / HTTP/1.1").then_some(logs))
        },
    )?;
    assert!(logs.contains("curl/"), "{logs}");

    let pids = container_pids(&cluster, &pod, "nginx")?;
    cluster.kill_agent()?;
    cluster.start_agent(&[])?;
    // The restarted agent has the pod again once its kubelet API lists it.
    wait::until(
        "the restarted agent to list nginx",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = cluster.kubelet_api("/pods", None)?;
            Ok(String::from_utf8_lossy(&out.stdout)
                .contains("\"nginx\"")
                .then_some(()))
        },
    )
    .with_context(|| cluster.logs())?;
    // A few relists later, nothing was restarted.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let pod = cluster.get("pod", "nginx")?;
        assert_eq!(
            container_status(&pod, "nginx")["restartCount"],
            0,
            "{pod:#}"
        );
        assert_eq!(
            container_pids(&cluster, &pod, "nginx")?,
            pids,
            "the nginx processes changed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let page = cluster.curl(&[&format!("http://{ip}/")])?;
    assert!(page.contains("Welcome to nginx!"), "{page}");

    let started = Instant::now();
    cluster.kubectl(&["delete", "pod", "nginx"])?;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "deleting nginx took {took:?}, its grace period is 30s"
    );
    let left = cluster.kubectl(&["get", "pods", "-o", "name"])?;
    assert!(left.trim().is_empty(), "{left}");
    Ok(())
}

/// How a container's restarts went.
struct Restarts {
    /// Each restartCount, when it was first seen.
    seen: Vec<(i64, Instant)>,
    /// Every waiting reason seen meanwhile.
    reasons: BTreeSet<String>,
}

/// Watches the pod's container until its restartCount reaches `until`.
fn watch_restarts(cluster: &Cluster, pod: &str, until: i64, timeout: Duration) -> Result<Restarts> {
    let mut seen: Vec<(i64, Instant)> = Vec::new();
    let mut reasons = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    loop {
        let p = cluster.get("pod", pod)?;
        let status = container_status(&p, pod);
        if let Some(reason) = status["state"]["waiting"]["reason"].as_str() {
            reasons.insert(reason.to_string());
        }
        let count = status["restartCount"].as_i64().unwrap_or(0);
        if seen.last().is_none_or(|(c, _)| *c != count) {
            seen.push((count, Instant::now()));
        }
        if count >= until {
            return Ok(Restarts { seen, reasons });
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "restarts of {pod} reached only {seen:?} in {timeout:?}; {}",
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const READINESS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: unready
spec:
  containers:
  - name: unready
    image: nginx
    readinessProbe:
      httpGet: {path: /missing, port: 80}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: ready
spec:
  containers:
  - name: ready
    image: nginx
    readinessProbe:
      httpGet: {path: /, port: 80}
      periodSeconds: 1
"#;

/// A pod whose command exits 1 goes CrashLoopBackOff with growing delays,
/// its logs (and the previous run's) readable; a failing readiness probe
/// keeps READY 0/1 while a passing one makes it 1/1.
pub fn crash_loops_back_off_and_readiness_gates_ready(runtime: Runtime) -> Result<()> {
    let cluster = cluster(runtime)?;
    cluster.kubectl(&[
        "run",
        "crash",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo crashing; exit 1",
    ])?;
    cluster.kubectl_apply(READINESS)?;

    let Restarts {
        seen: restarts,
        reasons,
    } = watch_restarts(&cluster, "crash", 3, Duration::from_secs(120))?;
    assert!(
        reasons.contains("CrashLoopBackOff"),
        "waiting reasons seen: {reasons:?}"
    );
    let at = |n: i64| restarts.iter().find(|(c, _)| *c == n).map(|(_, t)| *t);
    let (Some(first), Some(second), Some(third)) = (at(1), at(2), at(3)) else {
        anyhow::bail!("restarts were not seen one by one: {restarts:?}");
    };
    let (d1, d2) = (second - first, third - second);
    assert!(
        d1 >= Duration::from_secs(8),
        "the second restart came after {d1:?}, not the 10s back-off"
    );
    assert!(
        d2 > d1 + Duration::from_secs(5),
        "the back-off did not grow: {d1:?} then {d2:?}"
    );
    let table = cluster.kubectl(&["get", "pod", "crash"])?;
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("Error") || table.contains("Running"),
        "{table}"
    );
    let logs = cluster.kubectl(&["logs", "crash"])?;
    assert_eq!(logs, "crashing\n");
    let previous = cluster.kubectl(&["logs", "crash", "--previous"])?;
    assert_eq!(previous, "crashing\n");
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crash",
    ])?;
    assert!(events.contains("BackOff"), "{events}");

    cluster.wait_ready("ready", START)?;
    let unready = cluster.wait_pod("unready", "running", START, |p| {
        (p["status"]["phase"] == "Running").then(|| p.clone())
    })?;
    // Well past the probe's period, it is still not ready.
    std::thread::sleep(Duration::from_secs(3));
    let row = cluster.kubectl(&["get", "pod", "unready", "--no-headers"])?;
    assert!(row.contains(" 0/1 ") && row.contains("Running"), "{row}");
    let ready_condition = cluster.get("pod", "unready")?["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .context("no Ready condition")?;
    assert_eq!(ready_condition["status"], "False", "{unready:#}");
    assert_eq!(ready_condition["reason"], "ContainersNotReady");
    let row = cluster.kubectl(&["get", "pod", "ready", "--no-headers"])?;
    assert!(row.contains(" 1/1 ") && row.contains("Running"), "{row}");
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=unready",
    ])?;
    assert!(
        events.contains("Readiness probe failed") && events.contains("404"),
        "{events}"
    );
    Ok(())
}

const STUBBORN: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: stubborn
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: stubborn
    image: busybox
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
"#;

/// `kubectl delete pod` of a pod that ignores SIGTERM returns once its
/// grace period is over (and not before), the pod gone.
pub fn delete_stops_within_the_grace_period(runtime: Runtime) -> Result<()> {
    let cluster = cluster(runtime)?;
    cluster.kubectl_apply(STUBBORN)?;
    cluster.wait_ready("stubborn", START)?;
    let started = Instant::now();
    cluster.kubectl(&["delete", "pod", "stubborn"])?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "deleted after {took:?}, before its 3s grace period"
    );
    assert!(
        took < Duration::from_secs(20),
        "deleting took {took:?} for a 3s grace period"
    );
    let out = cluster.kubectl_output(&["get", "pod", "stubborn"])?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{out:?}"
    );
    Ok(())
}

/// `count` pods of busybox sleeping, labelled `wave=<wave>`.
fn sleepers(wave: usize, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper-{wave}-{i}\n  labels: {{wave: \"{wave}\"}}\n\
                 spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: sleeper\n    image: busybox\n    \
                 imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// 200 pods created and deleted, in waves of 50, leave no network
/// namespace, veth, mount, cgroup, IP reservation or pod directory behind.
pub fn two_hundred_pods_leave_nothing_behind(runtime: Runtime) -> Result<()> {
    let cluster = cluster(runtime)?;
    let before = cluster.resources()?;
    for wave in 0..4 {
        cluster.kubectl_apply(&sleepers(wave, 50))?;
        let selector = format!("wave={wave}");
        wait::until(
            "50 pods running",
            Duration::from_secs(300),
            Duration::from_millis(500),
            || {
                let pods: Value = serde_json::from_str(
                    &cluster.kubectl(&["get", "pods", "-l", &selector, "-o", "json"])?,
                )?;
                let running = pods["items"].as_array().map_or(0, |items| {
                    items
                        .iter()
                        .filter(|p| p["status"]["phase"] == "Running")
                        .count()
                });
                Ok((running == 50).then_some(()))
            },
        )
        .with_context(|| cluster.logs())?;
        cluster.kubectl(&["delete", "pods", "-l", &selector, "--timeout=300s"])?;
    }
    let left = cluster.kubectl(&["get", "pods", "-o", "name"])?;
    assert!(left.trim().is_empty(), "{left}");
    let after = wait::until(
        "the node to be back to its start",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let now = cluster.resources()?;
            Ok((now == before).then_some(now))
        },
    );
    assert_eq!(after.ok(), Some(before), "now: {:?}", cluster.resources()?);
    Ok(())
}

/// `kubectl exec` (1.32, WebSocket) through the API server and the agent
/// to the runtime: a command's output, its stderr apart and its exit code,
/// stdin passed on with `-i`, and a clear error for a container the pod
/// does not have; kubectl 1.20 (SPDY) where the runtime speaks it.
pub fn kubectl_exec_runs_commands_in_the_container(runtime: Runtime) -> Result<()> {
    let cluster = cluster(runtime)?;
    cluster.kubectl(&["run", "shell", "--image=busybox", "--", "sleep", "3600"])?;
    cluster.wait_ready("shell", START)?;

    let hostname = cluster
        .kubectl(&["exec", "shell", "--", "hostname"])
        .with_context(|| cluster.logs())?;
    ensure!(hostname == "shell\n", "kubectl exec hostname: {hostname:?}");

    let script = "echo out; echo err >&2; exit 3";
    let out = cluster.kubectl_output(&["exec", "shell", "--", "sh", "-c", script])?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    ensure!(
        out.status.code() == Some(3) && stdout == "out\n" && stderr.starts_with("err\n"),
        "kubectl exec sh -c {script:?}: {out:?}"
    );
    ensure!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    let echoed = cluster.kubectl_with_input(&["exec", "-i", "shell", "--", "cat"], "typed in\n")?;
    ensure!(
        echoed.status.success() && echoed.stdout == b"typed in\n",
        "kubectl exec -i cat: {echoed:?}"
    );

    // kubectl 1.20 speaks SPDY: so does containerd's streaming server,
    // while Paddock's runtime says it wants a WebSocket.
    let kubectl_1_20 = paddock_testkit::kubectl::kubectl_1_20_path();
    let spdy = cluster
        .ns
        .command(&kubectl_1_20.to_string_lossy())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["exec", "shell", "--", "hostname"])
        .output()?;
    match runtime {
        Runtime::Containerd => ensure!(
            spdy.status.success() && spdy.stdout == b"shell\n",
            "kubectl 1.20 exec: {spdy:?}"
        ),
        Runtime::Paddock => ensure!(
            !spdy.status.success()
                && String::from_utf8_lossy(&spdy.stderr).contains("WebSocket only (kubectl 1.30"),
            "kubectl 1.20 exec: {spdy:?}"
        ),
    }

    let wrong = cluster.kubectl_output(&["exec", "shell", "-c", "nope", "--", "true"])?;
    ensure!(
        !wrong.status.success()
            && String::from_utf8_lossy(&wrong.stderr)
                .contains("container nope is not valid for pod shell"),
        "kubectl exec -c nope: {wrong:?}"
    );
    Ok(())
}
