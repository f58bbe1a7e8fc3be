//! The agent benchmark, both runtimes in one run: a one-node cluster on
//! Paddock's embedded runtime and one on containerd 1.6 + runc (the
//! testkit's, each in its own network namespace), the image cached on
//! both; pods created one at a time through the API, timed from the create
//! to the Ready condition seen on a watch, alternating between the
//! clusters in rounds; then each node's memory with 0 and with all the pods.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use paddock_testkit::cluster::{Cluster, Runtime};
use paddock_testkit::service_lab::in_netns;

use super::runtime::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// Pods created per runtime.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Rounds the pods of each runtime are split into (alternating).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Where to write the Markdown report (also printed).
    #[arg(long, default_value = "target/bench/agent.md")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the agent benchmark runs as root"
    );
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let exe = std::env::current_exe()?;
    let mut nodes = [
        Node::start(&exe, Runtime::Paddock, "Paddock runtime (embedded)")?,
        Node::start(&exe, Runtime::Containerd, "containerd 1.6 + runc")?,
    ];
    for node in &mut nodes {
        // The images cached, the first CNI run and cgroups made.
        node.start_pods(&["warm"])?;
        node.delete_pod("warm")?;
        std::thread::sleep(Duration::from_secs(2));
        node.idle = node.memory()?;
    }
    let per_round = args.pods.div_ceil(args.rounds);
    for round in 0..args.rounds {
        for node in &mut nodes {
            let names: Vec<String> = (round * per_round..((round + 1) * per_round).min(args.pods))
                .map(|i| format!("pod-{i}"))
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let took = node.start_pods(&names)?;
            node.start_ms.extend(took);
        }
    }
    std::thread::sleep(Duration::from_secs(5));
    for node in &mut nodes {
        node.loaded = node.memory()?;
    }
    let report = report(args.pods, &mut nodes);
    super::publish(&report, &args.out)
}

/// One cluster and what was measured on it.
struct Node {
    cluster: Cluster,
    label: &'static str,
    start_ms: Vec<f64>,
    idle: Memory,
    loaded: Memory,
}

/// Resident memory, in MiB.
#[derive(Default, Clone, Copy)]
struct Memory {
    /// The agent's process (with the embedded runtime and proxy, if any).
    agent: f64,
    /// The runtime's other processes (PSS): containerd and its shims, or
    /// Paddock's container monitors (each process naming the node's
    /// directory in its command line or environment).
    runtime: f64,
}

const POD: &str = r#"{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"name": "NAME"},
  "spec": {
    "terminationGracePeriodSeconds": 0,
    "containers": [{"name": "nginx", "image": "nginx", "imagePullPolicy": "IfNotPresent"}]
  }
}"#;

impl Node {
    fn start(exe: &std::path::Path, runtime: Runtime, label: &'static str) -> Result<Node> {
        let cluster = Cluster::start(exe, runtime)
            .with_context(|| format!("starting the {label} cluster"))?;
        Ok(Node {
            cluster,
            label,
            start_ms: Vec::new(),
            idle: Memory::default(),
            loaded: Memory::default(),
        })
    }

    /// Creates the pods one at a time, each once the one before is Ready;
    /// milliseconds from each create to its Ready condition.
    fn start_pods(&self, names: &[&str]) -> Result<Vec<f64>> {
        let kubeconfig = self.cluster.kubeconfig();
        // The API server listens inside the node's namespace: the client
        // runs there, on a thread of its own.
        in_netns(&self.cluster.ns, || -> Result<Vec<f64>> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let pods = pods_api(&kubeconfig).await?;
                    let mut took = Vec::new();
                    for name in names {
                        took.push(start_pod(&pods, name).await?);
                    }
                    Ok(took)
                })
        })
        .with_context(|| format!("on {}:\n{}", self.label, self.cluster.logs()))
    }

    fn delete_pod(&self, name: &str) -> Result<()> {
        self.cluster
            .kubectl(&["delete", "pod", name, "--wait=true"])
            .map(drop)
    }

    /// The agent's RSS, and the rest of the runtime's: every process that
    /// names the node's directory, but the agent and the API server.
    fn memory(&self) -> Result<Memory> {
        let agent = self
            .cluster
            .agent_pid()
            .context("the agent is not running")?;
        let dir = self.cluster.dir().display().to_string();
        let mut memory = Memory {
            agent: rss_mib(agent).context("reading the agent's RSS")?,
            runtime: 0.0,
        };
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let read = |file| {
                let bytes = std::fs::read(entry.path().join(file)).unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            // Paddock's monitors get their request (naming the bundle
            // under the directory) in the environment.
            let (cmdline, environ) = (read("cmdline"), read("environ"));
            let server = cmdline.split('\0').nth(1) == Some("server");
            if pid != agent && !server && (cmdline.contains(&dir) || environ.contains(&dir)) {
                memory.runtime += pss_mib(pid).unwrap_or(0.0);
            }
        }
        Ok(memory)
    }
}

async fn pods_api(kubeconfig: &std::path::Path) -> Result<Api<Pod>> {
    let config = Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(Api::default_namespaced(kube::Client::try_from(config)?))
}

/// Milliseconds from the create of pod `name` to its Ready condition, as a
/// watch opened before the create delivers it.
async fn start_pod(pods: &Api<Pod>, name: &str) -> Result<f64> {
    let pod: Pod = serde_json::from_str(&POD.replace("NAME", name))?;
    let list = pods
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await?;
    let version = list.metadata.resource_version.unwrap_or_default();
    let watch = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(60);
    let mut events = pods.watch(&watch, &version).await?.boxed();
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod).await?;
    while let Some(event) = events.try_next().await? {
        match event {
            WatchEvent::Added(pod) | WatchEvent::Modified(pod) if ready(&pod) => {
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
            WatchEvent::Error(e) => bail!("watching {name}: {e}"),
            _ => {}
        }
    }
    let _ = pods.delete(name, &DeleteParams::default()).await;
    bail!("pod {name} was not Ready within 60 s")
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// VmRSS of `pid`, in MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:").map(|kib| kib / 1024.0)
}

/// The proportional set size of `pid` (shared pages split between their
/// users, so that many processes of one binary add up fairly), in MiB.
fn pss_mib(pid: u32) -> Result<f64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:").map(|kib| kib / 1024.0)
}

/// The `field` of a /proc file that lists sizes in kB.
fn proc_kib(path: &str, field: &str) -> Result<f64> {
    std::fs::read_to_string(path)?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

fn report(pods: usize, nodes: &mut [Node]) -> String {
    for node in nodes.iter_mut() {
        node.start_ms.sort_by(f64::total_cmp);
    }
    let [ours, theirs] = nodes else {
        return String::new();
    };
    let mut out = format!(
        "## Pod create → Ready through the agent ({pods} pods per runtime, one at a time, \
         alternating in rounds)\n\n\
         `paddock server` + `paddock agent` in a network namespace, nginx with \
         imagePullPolicy IfNotPresent (cached), from the POST to the Ready condition on a \
         watch, in ms.\n\n\
         | | {} | {} | ratio |\n|---|---:|---:|---:|\n",
        ours.label, theirs.label
    );
    for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
        let (a, b) = (
            percentile(&ours.start_ms, p),
            percentile(&theirs.start_ms, p),
        );
        out.push_str(&format!("| {label} | {a:.0} | {b:.0} | {:.2}× |\n", a / b));
    }
    out.push_str(&format!(
        "\n## Memory (MiB)\n\n\
         The agent's process (RSS; with Paddock's runtime embedded, and the proxy), and \
         the runtime's other processes (PSS, summed: containerd and its shims, or \
         Paddock's container monitors).\n\n\
         | | {} | {} |\n|---|---:|---:|\n",
        ours.label, theirs.label
    ));
    let rows = [
        (
            "agent, 0 pods".to_string(),
            ours.idle.agent,
            theirs.idle.agent,
        ),
        (
            format!("agent, {pods} pods"),
            ours.loaded.agent,
            theirs.loaded.agent,
        ),
        (
            "runtime processes, 0 pods".to_string(),
            ours.idle.runtime,
            theirs.idle.runtime,
        ),
        (
            format!("runtime processes, {pods} pods"),
            ours.loaded.runtime,
            theirs.loaded.runtime,
        ),
    ];
    for (label, a, b) in rows {
        out.push_str(&format!("| {label} | {a:.1} | {b:.1} |\n"));
    }
    out
}
