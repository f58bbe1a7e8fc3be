//! The original Vagrant lab in network namespaces of this machine, for the
//! end-to-end tests and for `make lab-up`:
//!
//! ```text
//!            client 192.168.56.1: the user's laptop (kubectl, curl), and
//!              │    docker-registry :5000, the docker.io mirror
//!           bridge br-lab
//!     ┌────────┴──────┬───────────────┬───────────────┐
//!   m-k8s .10       w1-k8s .11      w2-k8s .12      w3-k8s .13
//!   paddock server  paddock agent   paddock agent   paddock agent
//!                   (and containerd with RUNTIME=containerd)
//! ```
//!
//! As on real machines, each node runs one Paddock process: the master
//! `paddock server` (API, store, controllers, and its own agent, runtime and
//! proxy; tainted NoSchedule as kubeadm tainted the original master), a
//! worker `paddock agent` (with its runtime and proxy). A lab without
//! workers is the single-node path: `paddock server` alone, untainted.
//!
//! Every node has its own directory (data dir, CNI config, runtime socket,
//! pod logs), cgroup root and network namespace (its iptables, routes and
//! pod bridge). Stock kubectl runs in the client namespace with a
//! kubeconfig naming `https://192.168.56.10:6443`, as on a laptop.
//!
//! Dropping the lab tears all of it down, also when a test panicked;
//! [`sweep`] tears down what a killed run left behind, and every new lab
//! sweeps first.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use paddock_testkit::lab::{Lab, Options, KubectlVersion};
//! let lab = Lab::start(env!("CARGO_BIN_EXE_paddock").as_ref(), Options::default())?;
//! let kubectl = lab.kubectl(KubectlVersion::V1_20)?;
//! kubectl.run(&["run", "nginx", "--image=nginx"])?;
//! # Ok(()) }
//! ```

mod cleanup;
mod node;

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use self::cleanup::{base_dir, sweep, teardown};
pub use self::node::{Daemon, Node};
pub use crate::cluster::Runtime;
use crate::kubectl::Kubectl;
use crate::netns::NetNs;
use crate::registry::Registry;
use crate::service_lab::in_netns;
use crate::{unique_name, wait};

/// The user's laptop on the lab's network, and the registry's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 1);
pub const PREFIX: u8 = 24;
pub const MASTER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 10);
pub const API_PORT: u16 = 6443;
/// The docker.io and registry.k8s.io mirror every node pulls from.
pub const REGISTRY: &str = "192.168.56.1:5000";
/// The LoadBalancer addresses the server hands out.
pub const LB_POOL: &str = "192.168.56.200-192.168.56.250";
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
const BRIDGE: &str = "br-lab";
/// The taint kubeadm put on the original lab's master: pods go to workers.
pub const MASTER_TAINT: &str = "node-role.kubernetes.io/master:NoSchedule";

/// How long a node may take to join and be Ready on a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The lab's shape.
#[derive(Clone, Debug)]
pub struct Options {
    /// Workers `w1-k8s` … `wN-k8s` beside the master `m-k8s`.
    pub workers: usize,
    /// More flags for `paddock server`.
    pub server_args: Vec<String>,
    /// What runs the workers' containers (the master's are Paddock's).
    pub runtime: Runtime,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: 3,
            server_args: Vec::new(),
            runtime: Runtime::Paddock,
        }
    }
}

impl Options {
    /// The default lab, with the workers' runtime from `RUNTIME`
    /// (`paddock`, the default, or `containerd`).
    pub fn from_env() -> Result<Options> {
        let runtime = match std::env::var("RUNTIME").as_deref() {
            Err(_) | Ok("" | "paddock") => Runtime::Paddock,
            Ok("containerd") => Runtime::Containerd,
            Ok(other) => bail!("RUNTIME={other}: use paddock or containerd"),
        };
        Ok(Options {
            runtime,
            ..Options::default()
        })
    }
}

/// The kubectl versions every end-to-end test drives the lab with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubectlVersion {
    /// The original lab's client (Debian's kubernetes-client).
    V1_20,
    /// The kubectl on PATH.
    V1_32,
}

pub const KUBECTLS: [KubectlVersion; 2] = [KubectlVersion::V1_20, KubectlVersion::V1_32];

pub struct Lab {
    id: String,
    dir: PathBuf,
    binary: PathBuf,
    options: Options,
    pub client: NetNs,
    registry: Registry,
    /// `m-k8s` first, then the workers.
    pub nodes: Vec<Node>,
}

impl Lab {
    /// The lab with the master and every worker running and Ready, the
    /// master tainted as kubeadm taints it.
    pub fn start(binary: &Path, options: Options) -> Result<Lab> {
        let mut lab = Lab::prepare(binary, options)?;
        lab.start_all()?;
        Ok(lab)
    }

    /// Starts the master, then the workers, and waits until all are Ready.
    pub fn start_all(&mut self) -> Result<Duration> {
        self.start_master()?;
        for index in 1..self.nodes.len() {
            self.start_worker(index)?;
        }
        self.wait_ready(&self.node_names(), READY_TIMEOUT)
    }

    /// The network, the registry and the nodes' namespaces and
    /// directories; nothing of Paddock runs yet.
    pub fn prepare(binary: &Path, options: Options) -> Result<Lab> {
        sweep(false);
        Lab::prepare_as(&unique_name("lab"), binary, options)
    }

    /// As `prepare`, with a chosen id (`make lab-up` uses `paddock-lab`).
    pub fn prepare_as(id: &str, binary: &Path, options: Options) -> Result<Lab> {
        let dir = cleanup::claim(id)?;
        Lab::build(id, dir, binary, options).inspect_err(|_| teardown(id))
    }

    fn build(id: &str, dir: PathBuf, binary: &Path, options: Options) -> Result<Lab> {
        let client = NetNs::create(&format!("{id}-client"))?;
        client.bridge(BRIDGE, &format!("{CLIENT_IP}/{PREFIX}"))?;
        let registry = Registry::start_at(&client, REGISTRY)?;
        if let Some(registry_dir) = registry.storage().parent() {
            cleanup::record_extra(&dir, registry_dir)?;
        }
        std::fs::write(
            dir.join("registries.yaml"),
            format!(
                "mirrors:\n  docker.io:\n    endpoint: [\"http://{REGISTRY}\"]\n  \
                 registry.k8s.io:\n    endpoint: [\"http://{REGISTRY}\"]\n"
            ),
        )?;
        let nodes = (0..=options.workers)
            .map(|index| {
                let runtime = match index {
                    0 => Runtime::Paddock,
                    _ => options.runtime,
                };
                let name = node_name(index);
                Node::create(id, &dir, &client, (&name, node_ip(index)), runtime)
            })
            .collect::<Result<Vec<Node>>>()?;
        Ok(Lab {
            id: id.to_string(),
            dir,
            binary: binary.to_path_buf(),
            options,
            client,
            registry,
            nodes,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name} in the lab"))
    }

    pub fn master(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn workers(&self) -> &[Node] {
        &self.nodes[1..]
    }

    /// The admin kubeconfig as the user's laptop uses it: the server
    /// writes one for `127.0.0.1`; this one names the master's address.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    /// The join token, copied from the master as a user copies it.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("token")
    }

    fn registries_yaml(&self) -> PathBuf {
        self.dir.join("registries.yaml")
    }

    fn server_url() -> String {
        format!("https://{MASTER_IP}:{API_PORT}")
    }

    /// The master: `paddock server`, its node registered and labelled with
    /// its roles, as kubeadm labelled the original master.
    pub fn start_master(&mut self) -> Result<()> {
        self.start_server()?;
        let master = self.master().name.clone();
        let kubectl = self.kubectl(KubectlVersion::V1_32)?;
        wait::until(
            "the master to register",
            READY_TIMEOUT,
            Duration::from_millis(500),
            || {
                Ok(kubectl
                    .output(&["get", "node", &master])?
                    .status
                    .success()
                    .then_some(()))
            },
        )
        .with_context(|| self.logs())?;
        for role in ["master", "control-plane"] {
            kubectl.run(&[
                "label",
                "node",
                &master,
                &format!("node-role.kubernetes.io/{role}="),
                "--overwrite",
            ])?;
        }
        Ok(())
    }

    /// `paddock server` on the master, with its node's agent; returns once
    /// the API serves, with the client's kubeconfig and the token copied
    /// out.
    pub fn start_server(&mut self) -> Result<()> {
        let master = &self.nodes[0];
        let server_kubeconfig = master.dir().join("kubeconfig.yaml");
        let _ = std::fs::remove_file(&server_kubeconfig);
        let mut args: Vec<OsString> = vec!["server".into()];
        args.extend(master.node_flags(&self.registries_yaml()));
        if !self.workers().is_empty() {
            args.extend(["--node-taint".into(), MASTER_TAINT.into()]);
        }
        args.extend(
            [
                (
                    "--write-kubeconfig",
                    server_kubeconfig.clone().into_os_string(),
                ),
                ("--advertise-address", MASTER_IP.to_string().into()),
                ("--https-listen-port", API_PORT.to_string().into()),
                ("--cluster-cidr", CLUSTER_CIDR.into()),
                ("--lb-pool", LB_POOL.into()),
            ]
            .into_iter()
            .flat_map(|(flag, value)| [flag.into(), value]),
        );
        args.extend(self.options.server_args.iter().map(OsString::from));
        let binary = self.binary.clone();
        self.nodes[0].start_runtime()?;
        self.nodes[0].spawn(Daemon::Server, &binary, &args)?;

        let token = self.master().data_dir().join("server/token");
        wait::until(
            "the server to write its kubeconfig and token",
            READY_TIMEOUT,
            Duration::from_millis(100),
            || {
                self.nodes[0].check_running()?;
                Ok((server_kubeconfig.exists() && token.exists()).then_some(()))
            },
        )?;
        let kubeconfig = std::fs::read_to_string(&server_kubeconfig)?
            .replace(&format!("https://127.0.0.1:{API_PORT}"), &Lab::server_url());
        std::fs::write(self.kubeconfig(), kubeconfig)?;
        std::fs::copy(&token, self.token_file())?;
        let kubectl = Kubectl::v1_32(&self.kubeconfig(), &self.dir.join("kube-cache"));
        let (client, master) = (&self.client, &mut self.nodes[0]);
        let ready = wait::until(
            "the API to be ready",
            READY_TIMEOUT,
            Duration::from_millis(200),
            || {
                master.check_running()?;
                let out = in_netns(client, || kubectl.output(&["get", "--raw", "/readyz"]))?;
                Ok((out.status.success() && out.stdout == b"ok").then_some(()))
            },
        );
        ready.with_context(|| self.logs())
    }

    /// A worker's `paddock agent` (with containerd if it is the node's
    /// runtime), joining the master with the token. Returns at once: the
    /// agent waits for the master if it is not up.
    pub fn start_worker(&mut self, index: usize) -> Result<()> {
        if index == 0 || index >= self.nodes.len() {
            bail!("no worker {index} in the lab");
        }
        if !self.token_file().exists() {
            bail!("no join token yet: start the master once first");
        }
        let node = &self.nodes[index];
        let mut agent: Vec<OsString> = vec![
            "agent".into(),
            "--server".into(),
            Lab::server_url().into(),
            "--token-file".into(),
            self.token_file().into(),
            "--kube-proxy-arg".into(),
            format!("cluster-cidr={CLUSTER_CIDR}").into(),
        ];
        agent.extend(node.node_flags(&self.registries_yaml()));
        let binary = self.binary.clone();
        let node = &mut self.nodes[index];
        node.start_runtime()?;
        node.spawn(Daemon::Agent, &binary, &agent)
    }

    /// Waits until every node in `names` is Ready, failing early if a
    /// Paddock process of the lab exits.
    pub fn wait_ready(&mut self, names: &[String], timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let kubectl = Kubectl::v1_32(&self.kubeconfig(), &self.dir.join("kube-cache"));
        let client = &self.client;
        let nodes = &mut self.nodes;
        let result = wait::until(
            &format!("nodes {names:?} to be Ready"),
            timeout,
            Duration::from_millis(500),
            || {
                for node in nodes.iter_mut() {
                    node.check_running()?;
                }
                let listed = in_netns(client, || kubectl.run(&["get", "nodes", "-o", "json"]))?;
                let listed: Value = serde_json::from_str(&listed)?;
                let ready = ready_nodes(&listed);
                Ok(names.iter().all(|n| ready.contains(n)).then_some(()))
            },
        );
        result.with_context(|| self.logs())?;
        Ok(started.elapsed())
    }

    /// Stock kubectl on the user's laptop.
    pub fn kubectl(&self, version: KubectlVersion) -> Result<LabKubectl<'_>> {
        let cache = self.dir.join("kube-cache");
        let kubectl = match version {
            KubectlVersion::V1_20 => Kubectl::v1_20(&self.kubeconfig(), &cache)?,
            KubectlVersion::V1_32 => Kubectl::v1_32(&self.kubeconfig(), &cache),
        };
        Ok(LabKubectl {
            kubectl,
            client: &self.client,
        })
    }

    /// A GET of `url` from the user's laptop.
    pub fn get_from_client(&self, url: &str) -> Result<Reply> {
        get(&self.client, url)
    }

    /// Pushes `image` (`library/nginx:latest`) to the lab's registry
    /// again as `tag` (`library/nginx:1.27`), as a user publishing a new
    /// version would.
    pub fn push_tag(&self, image: &str, tag: &str) -> Result<()> {
        crate::netns::run(self.client.command("skopeo").args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{REGISTRY}/{image}"),
            &format!("docker://{REGISTRY}/{tag}"),
        ]))?;
        Ok(())
    }

    /// The last lines of every log of the lab, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(Node::logs).collect()
    }

    /// Copies every node's logs to `to/<node>/`, to read after a failure
    /// once the lab is gone.
    pub fn save_logs(&self, to: &Path) -> Result<()> {
        for node in &self.nodes {
            let dir = to.join(&node.name);
            std::fs::create_dir_all(&dir)?;
            for daemon in Daemon::ALL {
                let log = node.dir().join(format!("{}.log", daemon.name()));
                if log.exists() {
                    std::fs::copy(&log, dir.join(format!("{}.log", daemon.name())))
                        .with_context(|| format!("copying {}", log.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Leaves the lab running (`make lab-up`); `make lab-down` removes it.
    pub fn detach(self) -> Result<()> {
        cleanup::detach(&self.dir)?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        teardown(&self.id);
    }
}

fn node_name(index: usize) -> String {
    match index {
        0 => "m-k8s".to_string(),
        n => format!("w{n}-k8s"),
    }
}

fn node_ip(index: usize) -> Ipv4Addr {
    let [a, b, c, d] = MASTER_IP.octets();
    Ipv4Addr::new(a, b, c, d + index as u8)
}

/// The names of the Ready nodes in a `kubectl get nodes -o json` list.
pub fn ready_nodes(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|node| condition_true(node, "Ready"))
        .filter_map(|node| node["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Whether the object's `status.conditions` has `type` with status True.
pub fn condition_true(object: &Value, type_: &str) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// Stock kubectl run inside the lab's client namespace.
pub struct LabKubectl<'a> {
    kubectl: Kubectl,
    client: &'a NetNs,
}

impl LabKubectl<'_> {
    pub fn version(&self) -> &'static str {
        self.kubectl.version
    }

    /// kubectl's stdout; fails with its stderr on a non-zero exit.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        in_netns(self.client, || self.kubectl.run(args))
    }

    /// kubectl, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        in_netns(self.client, || self.kubectl.output(args))
    }

    /// kubectl with `stdin` as its input (`apply -f -`).
    pub fn run_with_input(&self, args: &[&str], stdin: &str) -> Result<String> {
        in_netns(self.client, || self.kubectl.run_with_input(args, stdin))
    }

    /// `kubectl get <args> -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        let text = self.run(&all)?;
        serde_json::from_str(&text).with_context(|| format!("kubectl {all:?} printed {text}"))
    }
}

/// What a GET answered: the status and the pod that served it (the test
/// nginx image names its host, the pod, in `X-Served-By`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub served_by: String,
}

/// One GET of `url` with curl from inside `ns`, on a new connection.
pub fn get(ns: &NetNs, url: &str) -> Result<Reply> {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "3", "-o", "/dev/null", "-w"])
        .arg("%{http_code} %header{x-served-by}")
        .arg(url)
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!(
            "curl {url} from {}: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, served_by) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    Ok(Reply {
        status: status
            .parse()
            .with_context(|| format!("curl printed {text:?}"))?,
        served_by: served_by.to_string(),
    })
}
