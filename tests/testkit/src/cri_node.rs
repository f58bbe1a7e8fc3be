//! A node for CRI tests and benchmarks: a network namespace with the test
//! registry on its loopback, a CNI bridge network list, registry mirrors for
//! docker.io and registry.k8s.io, and a CRI runtime serving a socket:
//! `paddock runtime` or Debian's containerd 1.6 with runc, set up alike.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use paddock_testkit::cri_node::{Engine, Node};
//! let mut node = Node::start(Engine::Paddock(env!("CARGO_BIN_EXE_paddock").into())).await?;
//! let image = node.pull("nginx").await?;
//! # Ok(()) }
//! ```
//!
//! Dropping the node kills the runtime, whatever still runs in the node's
//! cgroups, unmounts what lies under its directory and removes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_cri::v1::*;

use crate::cri::Cri;
use crate::netns::NetNs;
use crate::process::Guard;
use crate::registry::Registry;
use crate::unique_name;

/// Which CRI runtime serves the node.
#[derive(Clone, Debug)]
pub enum Engine {
    /// `paddock runtime`, from this binary.
    Paddock(PathBuf),
    /// Debian's containerd (CRI plugin, overlayfs, runc).
    Containerd,
}

/// The network list every node gets (its IPAM directory aside).
fn conflist(ipam_dir: &Path) -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "pods", "plugins": [
  {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
    "ipam": {{"type": "host-local", "dataDir": "{}", "ranges": [[{{"subnet": "10.88.0.0/16"}}]],
             "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}
"#,
        ipam_dir.display()
    )
}

const REGISTRIES_YAML: &str = "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n  registry.k8s.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n";

/// What a leak would grow on a node.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Resources {
    /// Mounts under the node's directory.
    pub mounts: usize,
    /// veth interfaces in the node's namespace.
    pub veths: usize,
    /// Cgroups below the node's cgroup root.
    pub cgroups: usize,
    /// host-local IP reservations.
    pub ipam: usize,
}

pub struct Node {
    pub ns: NetNs,
    registry: Registry,
    dir: PathBuf,
    cgroup_root: String,
    engine: Engine,
    runtime: Option<Guard>,
    pub cri: Cri,
}

impl Node {
    pub async fn start(engine: Engine) -> Result<Node> {
        let name = unique_name("pdkcn");
        let ns = NetNs::create(&name)?;
        let registry = Registry::start(&ns)?;
        let dir = std::env::temp_dir().join(format!("paddock-{name}"));
        std::fs::create_dir_all(dir.join("net.d"))?;
        std::fs::write(
            dir.join("net.d/10-pods.conflist"),
            conflist(&dir.join("ipam")),
        )?;
        std::fs::write(dir.join("registries.yaml"), REGISTRIES_YAML)?;
        let cgroup_root = format!("/{name}");
        let runtime = spawn(&engine, &ns, &dir, &cgroup_root)?;
        let cri = Cri::connect(&dir.join("cri.sock"), Duration::from_secs(30))
            .await
            .with_context(|| format!("runtime log:\n{}", read(&dir.join("runtime.log"))))?;
        Ok(Node {
            ns,
            registry,
            dir,
            cgroup_root,
            engine,
            runtime: Some(runtime),
            cri,
        })
    }

    /// The node's scratch directory (state, socket, logs, IPAM).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's registry, serving the test images on 127.0.0.1:5000.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The runtime's registries.yaml (read when the runtime starts).
    pub fn registries_yaml(&self) -> PathBuf {
        self.dir.join("registries.yaml")
    }

    /// The cgroup under which the node's pods get theirs.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// What the runtime logged so far.
    pub fn log(&self) -> String {
        read(&self.dir.join("runtime.log"))
    }

    /// `kill -9` of the runtime (its containers live on).
    pub fn kill_runtime(&mut self) -> Result<()> {
        if let Some(runtime) = self.runtime.take() {
            runtime.kill9()?;
        }
        Ok(())
    }

    /// Starts the runtime again on the same state.
    pub async fn start_runtime(&mut self) -> Result<()> {
        self.runtime = Some(spawn(&self.engine, &self.ns, &self.dir, &self.cgroup_root)?);
        self.cri = Cri::connect(&self.dir.join("cri.sock"), Duration::from_secs(30)).await?;
        Ok(())
    }

    /// A sandbox config as the kubelet writes it, in the node's cgroup root
    /// and with its log directory under the node's directory.
    pub fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.dir.join("logs").join(name).display().to_string(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod-{name}", self.cgroup_root),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn pull(&mut self, image: &str) -> Result<String> {
        let reply = self
            .cri
            .images
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("pulling {image}; runtime log:\n{}", self.log()))?;
        Ok(reply.into_inner().image_ref)
    }

    pub async fn run_sandbox(&mut self, config: &PodSandboxConfig) -> Result<String> {
        let reply = self
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .with_context(|| format!("RunPodSandbox; runtime log:\n{}", self.log()))?;
        Ok(reply.into_inner().pod_sandbox_id)
    }

    /// CreateContainer + StartContainer.
    pub async fn run_container(
        &mut self,
        sandbox: &str,
        sandbox_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String> {
        let id = self
            .cri
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .with_context(|| format!("CreateContainer; runtime log:\n{}", self.log()))?
            .into_inner()
            .container_id;
        self.cri
            .runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("StartContainer; runtime log:\n{}", self.log()))?;
        Ok(id)
    }

    pub async fn status(&mut self, container: &str) -> Result<ContainerStatus> {
        self.cri
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: container.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no container status")
    }

    /// Polls ContainerStatus every `interval` until the container is in `state`.
    pub async fn wait_state(
        &mut self,
        container: &str,
        state: ContainerState,
        timeout: Duration,
        interval: Duration,
    ) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(container).await?;
            if status.state == state as i32 {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "container {container} is {status:?}, not {state:?}; runtime log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(interval).await;
        }
    }

    pub async fn pod_ip(&mut self, sandbox: &str) -> Result<String> {
        let status = self
            .cri
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no sandbox status")?;
        let ip = status.network.map(|n| n.ip).unwrap_or_default();
        ensure!(!ip.is_empty(), "the pod has no IP");
        Ok(ip)
    }

    /// StopPodSandbox + RemovePodSandbox.
    pub async fn remove_sandbox(&mut self, sandbox: &str) -> Result<()> {
        self.cri
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox.into(),
            })
            .await
            .with_context(|| format!("StopPodSandbox; runtime log:\n{}", self.log()))?;
        self.cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.into(),
            })
            .await
            .with_context(|| format!("RemovePodSandbox; runtime log:\n{}", self.log()))?;
        Ok(())
    }

    /// A TCP connection to `addr` made from inside the node's namespace
    /// (where the runtime's streaming server listens).
    pub async fn connect(&self, addr: std::net::SocketAddr) -> Result<tokio::net::TcpStream> {
        let netns = self.ns.path();
        let stream = std::thread::spawn(move || -> Result<std::net::TcpStream> {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(std::net::TcpStream::connect(addr)?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the connect thread panicked"))??;
        stream.set_nonblocking(true)?;
        Ok(tokio::net::TcpStream::from_std(stream)?)
    }

    /// Counts what a leak would grow; compare before and after.
    pub fn resources(&self) -> Result<Resources> {
        let dir = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&dir)))
            .count();
        let veths = String::from_utf8(self.ns.ip(&["-o", "link", "show", "type", "veth"])?.stdout)?
            .lines()
            .count();
        let mut cgroups = 0;
        for controller in std::fs::read_dir("/sys/fs/cgroup")? {
            let root = controller?
                .path()
                .join(self.cgroup_root.trim_start_matches('/'));
            cgroups += count_dirs(&root).saturating_sub(1);
        }
        let ipam = std::fs::read_dir(self.dir.join("ipam/pods"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .parse::<std::net::IpAddr>()
                            .is_ok()
                    })
                    .count()
            })
            .unwrap_or(0);
        Ok(Resources {
            mounts,
            veths,
            cgroups,
            ipam,
        })
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn count_dirs(dir: &Path) -> usize {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            1 + entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| count_dirs(&e.path()))
                .sum::<usize>()
        }
        Err(_) => 0,
    }
}

fn spawn(engine: &Engine, ns: &NetNs, dir: &Path, cgroup_root: &str) -> Result<Guard> {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("runtime.log"))?;
    let cmd = match engine {
        Engine::Paddock(binary) => {
            let mut cmd = ns.command(&binary.display().to_string());
            cmd.arg("runtime")
                .arg("--listen")
                .arg(format!("unix://{}", dir.join("cri.sock").display()))
                .arg("--root")
                .arg(dir.join("root"))
                .arg("--private-registry")
                .arg(dir.join("registries.yaml"))
                .arg("--cni-conf-dir")
                .arg(dir.join("net.d"))
                .arg("--cgroup-root")
                .arg(cgroup_root)
                .env("RUST_LOG", "info");
            cmd
        }
        Engine::Containerd => {
            let config = crate::containerd::Config {
                dir: &dir.join("containerd"),
                socket: &dir.join("cri.sock"),
                cni_conf_dir: &dir.join("net.d"),
                mirror: "http://127.0.0.1:5000",
            }
            .write()?;
            let mut cmd = ns.command("containerd");
            cmd.arg("--config").arg(config);
            cmd
        }
    };
    let mut cmd = cmd;
    cmd.stdout(log.try_clone()?).stderr(log);
    Guard::spawn("CRI runtime", cmd)
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.runtime.take());
        // containerd's shims outlive it: they name the node's socket.
        let dir = self.dir.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir) && pid != std::process::id() as i32
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        // Whatever still runs in the node's cgroups, then the mounts under
        // its directory, then the directory.
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let root = controller
                .path()
                .join(self.cgroup_root.trim_start_matches('/'));
            kill_and_remove_cgroups(&root);
        }
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill_and_remove_cgroups(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_and_remove_cgroups(&entry.path());
        }
    }
    for pid in read(&dir.join("cgroup.procs")).lines() {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
