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
const START: Duration = Duration::from_secs(90);

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
    // root (in the pids hierarchy, as in every other).
    let root = Path::new("/sys/fs/cgroup/pids").join(cluster.cgroup_root().trim_start_matches('/'));
    for entry in walk(&root) {
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

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
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
