//! A Paddock cluster of one node inside a network namespace, for the
//! agent's end-to-end tests: the node (`192.168.56.10`) runs `paddock
//! server` and `paddock agent` — Paddock's embedded runtime, or Debian's
//! containerd 1.6 + runc — with the test registry on its loopback serving
//! the images as docker.io and registry.k8s.io mirrors. Stock kubectl
//! drives it from inside the namespace.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use paddock_testkit::cluster::{Cluster, Runtime};
//! let cluster = Cluster::start(env!("CARGO_BIN_EXE_paddock").as_ref(), Runtime::Paddock)?;
//! cluster.kubectl(&["run", "nginx", "--image=nginx"])?;
//! # Ok(()) }
//! ```
//!
//! Dropping the cluster stops its processes, kills what still runs in its
//! cgroups, unmounts what lies under its directory and removes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::netns::NetNs;
use crate::process::Guard;
use crate::registry::Registry;
use crate::{unique_name, wait};

/// The node's address.
pub const NODE_IP: &str = "192.168.56.10";
/// The API server's port on it.
pub const API_PORT: u16 = 6443;

/// What runs the node's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `paddock agent`'s embedded runtime.
    Paddock,
    /// Debian's containerd with runc, configured by `make containerd-config`.
    Containerd,
}

pub struct Cluster {
    pub ns: NetNs,
    _registry: Registry,
    dir: PathBuf,
    binary: PathBuf,
    runtime: Runtime,
    cgroup_root: String,
    node_name: String,
    agent_data: PathBuf,
    server: Option<Guard>,
    agent: Option<Guard>,
    containerd: Option<Guard>,
}

/// What a leak would grow on the node.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Resources {
    /// Network namespaces mounted under the node's directory.
    pub netns: usize,
    /// Other mounts under the node's directory.
    pub mounts: usize,
    /// veth interfaces in the node's namespace.
    pub veths: usize,
    /// Cgroups below the node's cgroup root.
    pub cgroups: usize,
    /// host-local IP reservations.
    pub ips: usize,
    /// The agent's per-pod directories and pod log directories.
    pub pod_dirs: usize,
}

const REGISTRIES_YAML: &str = "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n  registry.k8s.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n";

impl Cluster {
    /// A server and an agent on `runtime`, with the node Ready.
    pub fn start(binary: &Path, runtime: Runtime) -> Result<Cluster> {
        let mut cluster = Cluster::prepare(binary, runtime)?;
        cluster.start_server()?;
        cluster.start_agent(&[])?;
        cluster.wait_node_ready(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// `paddock server` without `--disable-agent`: the node's agent runs in
    /// the server's process, with the node Ready.
    pub fn start_single(binary: &Path, runtime: Runtime) -> Result<Cluster> {
        let mut cluster = Cluster::prepare(binary, runtime)?;
        cluster.agent_data = cluster.dir.join("server-data");
        cluster.serve(true)?;
        cluster.wait_node_ready(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// The namespace, registry and directories, nothing running yet.
    pub fn prepare(binary: &Path, runtime: Runtime) -> Result<Cluster> {
        let name = unique_name("pdkag");
        let ns = NetNs::create(&name)?;
        ns.ip(&["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"])?;
        let registry = Registry::start(&ns)?;
        let dir = std::env::temp_dir().join(format!("paddock-{name}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("registries.yaml"), REGISTRIES_YAML)?;
        let cluster = Cluster {
            ns,
            _registry: registry,
            dir: dir.clone(),
            binary: binary.to_path_buf(),
            runtime,
            cgroup_root: format!("/{name}"),
            node_name: "node1".into(),
            agent_data: dir.join("agent-data"),
            server: None,
            agent: None,
            containerd: None,
        };
        if runtime == Runtime::Containerd {
            cluster.write_containerd_config()?;
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The cgroup under which the node's pods get theirs.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// The agent's data directory.
    pub fn agent_data(&self) -> PathBuf {
        self.agent_data.clone()
    }

    pub fn server_tls(&self, file: &str) -> PathBuf {
        self.dir.join("server-data/server/tls").join(file)
    }

    /// The join token the server wrote.
    pub fn token(&self) -> Result<String> {
        let path = self.dir.join("server-data/server/token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }

    fn log_file(&self, name: &str) -> Result<std::fs::File> {
        Ok(std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?)
    }

    /// Every log of the node so far (for failure messages).
    pub fn logs(&self) -> String {
        ["server", "agent", "containerd"]
            .iter()
            .map(|n| {
                let text =
                    std::fs::read_to_string(self.dir.join(format!("{n}.log"))).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {n} (last lines) ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// `paddock server --disable-agent` on the node; returns once it serves.
    pub fn start_server(&mut self) -> Result<()> {
        self.serve(false)
    }

    /// `paddock server`, with this node's agent in it or not; returns once
    /// it serves.
    fn serve(&mut self, with_agent: bool) -> Result<()> {
        if self.server.is_some() {
            bail!("the server is running");
        }
        let mut cmd = self.ns.command(&self.binary.display().to_string());
        cmd.arg("server");
        if with_agent {
            self.node_flags(&mut cmd)?;
        } else {
            cmd.arg("--disable-agent");
        }
        cmd.arg("--data-dir")
            .arg(self.dir.join("server-data"))
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(["--advertise-address", NODE_IP, "--node-ip", NODE_IP])
            .args(["--https-listen-port", &API_PORT.to_string()])
            .env("RUST_LOG", "info,paddock_agent=debug")
            .stdin(Stdio::null())
            .stdout(self.log_file("server")?)
            .stderr(self.log_file("server")?);
        self.server = Some(Guard::spawn("paddock server", cmd)?);
        wait::until(
            "the server to serve",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                if let Some(server) = self.server.as_mut()
                    && !server.is_running()
                {
                    bail!("the server exited:\n{}", self.logs());
                }
                Ok((self.kubeconfig().exists()
                    && self.kubectl(&["get", "--raw", "/readyz"]).is_ok())
                .then_some(()))
            },
        )
    }

    pub fn stop_server(&mut self) -> Result<()> {
        match self.server.take() {
            Some(server) => server.stop(Duration::from_secs(10)),
            None => Ok(()),
        }
    }

    /// `paddock agent` joining the server, with `extra` flags.
    pub fn start_agent(&mut self, extra: &[&str]) -> Result<()> {
        let guard = Guard::spawn("paddock agent", self.agent_command(extra)?)?;
        self.agent = Some(guard);
        Ok(())
    }

    /// The agent's command line, on this cluster's runtime.
    pub fn agent_command(&mut self, extra: &[&str]) -> Result<Command> {
        if self.agent.is_some() {
            bail!("the agent is running");
        }
        let mut cmd = self.ns.command(&self.binary.display().to_string());
        cmd.arg("agent")
            .args(["--server", &format!("https://{NODE_IP}:{API_PORT}")])
            .args(["--node-ip", NODE_IP]);
        if !extra.contains(&"--token") {
            cmd.arg("--token-file")
                .arg(self.dir.join("server-data/server/token"));
        }
        cmd.arg("--data-dir").arg(self.agent_data());
        self.node_flags(&mut cmd)?;
        cmd.args(extra)
            .env("RUST_LOG", "info,paddock_agent=debug")
            .stdin(Stdio::null())
            .stdout(self.log_file("agent")?)
            .stderr(self.log_file("agent")?);
        Ok(cmd)
    }

    /// The node's flags (`paddock agent`'s, `paddock server`'s for its
    /// agent), on this cluster's runtime.
    fn node_flags(&mut self, cmd: &mut Command) -> Result<()> {
        cmd.args(["--node-name", &self.node_name])
            .arg("--cni-conf-dir")
            .arg(self.dir.join("net.d"))
            .arg("--pod-log-dir")
            .arg(self.dir.join("pod-logs"))
            .args(["--cgroup-root", &self.cgroup_root])
            .arg("--private-registry")
            .arg(self.dir.join("registries.yaml"));
        match self.runtime {
            Runtime::Paddock => {
                cmd.arg("--runtime-socket").arg(format!(
                    "unix://{}",
                    self.dir.join("runtime.sock").display()
                ));
            }
            Runtime::Containerd => {
                if self.containerd.is_none() {
                    self.start_containerd()?;
                }
                cmd.arg("--container-runtime-endpoint").arg(format!(
                    "unix://{}",
                    self.dir.join("containerd.sock").display()
                ));
            }
        }
        Ok(())
    }

    /// `kill -9` of the agent (its pods live on).
    pub fn kill_agent(&mut self) -> Result<()> {
        match self.agent.take() {
            Some(agent) => agent.kill9(),
            None => Ok(()),
        }
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Guard::pid)
    }

    fn start_containerd(&mut self) -> Result<()> {
        let mut cmd = self.ns.command("containerd");
        cmd.arg("--config")
            .arg(self.dir.join("containerd/config.toml"))
            .stdin(Stdio::null())
            .stdout(self.log_file("containerd")?)
            .stderr(self.log_file("containerd")?);
        self.containerd = Some(Guard::spawn("containerd", cmd)?);
        Ok(())
    }

    /// The config `make containerd-config` writes, for this node's paths.
    fn write_containerd_config(&self) -> Result<()> {
        crate::containerd::Config {
            dir: &self.dir.join("containerd"),
            socket: &self.dir.join("containerd.sock"),
            cni_conf_dir: &self.dir.join("net.d"),
            mirror: "http://127.0.0.1:5000",
        }
        .write()?;
        Ok(())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    /// kubectl (1.32) inside the node's namespace, whatever its exit status.
    pub fn kubectl_output(&self, args: &[&str]) -> Result<Output> {
        self.ns
            .command("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running kubectl {args:?}"))
    }

    /// kubectl's stdout; fails with its stderr on a non-zero exit.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl_output(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// kubectl with `stdin` (for `apply -f -`).
    pub fn kubectl_apply(&self, manifest: &str) -> Result<String> {
        let out = self.kubectl_with_input(&["apply", "-f", "-"], manifest)?;
        if !out.status.success() {
            bail!(
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// kubectl (1.32) reading `input` on its stdin, whatever its exit status.
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Result<Output> {
        use std::io::Write;
        let mut child = self
            .ns
            .command("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(input.as_bytes())?;
        child
            .wait_with_output()
            .with_context(|| format!("running kubectl {args:?}"))
    }

    /// The object as JSON (`kubectl get KIND NAME -o json`).
    pub fn get(&self, kind: &str, name: &str) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.kubectl(&["get", kind, name, "-o", "json"])?,
        )?)
    }

    /// Polls pod `name` until `check` returns `Some`.
    pub fn wait_pod<T>(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> Result<T> {
        wait::until(
            &format!("pod {name} to be {what}"),
            timeout,
            Duration::from_millis(200),
            || {
                let pod = self.get("pod", name)?;
                Ok(check(&pod))
            },
        )
        .with_context(|| {
            let pod = self
                .kubectl(&["get", "pod", name, "-o", "yaml"])
                .unwrap_or_default();
            format!("the pod:\n{pod}\n{}", self.logs())
        })
    }

    /// Waits until pod `name` is Running with all its containers ready.
    pub fn wait_ready(&self, name: &str, timeout: Duration) -> Result<Value> {
        self.wait_pod(name, "ready", timeout, |pod| {
            let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            ready.then(|| pod.clone())
        })
    }

    pub fn wait_node_ready(&self, timeout: Duration) -> Result<()> {
        wait::until(
            "the node to be Ready",
            timeout,
            Duration::from_millis(200),
            || {
                if let Some(agent) = self.agent.as_ref()
                    && !alive(agent.pid())
                {
                    bail!("the agent exited");
                }
                let Ok(node) = self.get("node", &self.node_name) else {
                    return Ok(None);
                };
                let ready = node["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                Ok(ready.then_some(()))
            },
        )
        .with_context(|| self.logs())
    }

    /// `curl` inside the node's namespace; the body on success.
    pub fn curl(&self, args: &[&str]) -> Result<String> {
        let out = crate::netns::run(
            self.ns
                .command("curl")
                .args(["-sS", "--max-time", "5"])
                .args(args),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `curl` of the kubelet API with the API server's kubelet client
    /// certificate (or, with `identity`, another client certificate).
    pub fn kubelet_api(&self, path: &str, identity: Option<(&Path, &Path)>) -> Result<Output> {
        let (cert, key) = match identity {
            Some(pair) => (pair.0.to_path_buf(), pair.1.to_path_buf()),
            None => (
                self.server_tls("client-kube-apiserver-kubelet.crt"),
                self.server_tls("client-kube-apiserver-kubelet.key"),
            ),
        };
        self.ns
            .command("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.server_tls("ca.crt"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://{NODE_IP}:10250{path}"))
            .output()
            .context("running curl")
    }

    /// Counts what a leak would grow; compare before and after.
    pub fn resources(&self) -> Result<Resources> {
        let dir = self.dir.display().to_string();
        let mut netns = 0;
        let mut mounts = 0;
        for line in std::fs::read_to_string("/proc/self/mountinfo")?.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(point), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
            else {
                continue;
            };
            if !point.starts_with(&dir) {
                continue;
            }
            if fields.get(dash + 1) == Some(&"nsfs") {
                netns += 1;
            } else {
                mounts += 1;
            }
        }
        let veths = String::from_utf8(self.ns.ip(&["-o", "link", "show", "type", "veth"])?.stdout)?
            .lines()
            .count();
        let cgroups = crate::leftovers::cgroup_dirs(&self.cgroup_root)
            .iter()
            .map(|root| subdirectories(root))
            .sum();
        let ips = entries(&self.agent_data().join("agent/ipam/paddock"))
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .count();
        let pod_dirs = entries(&self.agent_data().join("agent/pods")).count()
            + entries(&self.dir.join("pod-logs")).count();
        Ok(Resources {
            netns,
            mounts,
            veths,
            cgroups,
            ips,
            pod_dirs,
        })
    }
}

/// Whether process `pid` runs (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

/// The names in `dir` (none if it does not exist).
fn entries(dir: &Path) -> impl Iterator<Item = String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// Directories below `dir`, at any depth.
fn subdirectories(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| 1 + subdirectories(&e.path()))
        .sum()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop(self.agent.take());
        drop(self.server.take());
        drop(self.containerd.take());
        crate::leftovers::remove(&self.dir, &self.cgroup_root);
    }
}
