//! Pod sandboxes: namespaces held by bind mounts (no pause process), the
//! files the pod's containers share, a `/dev/shm` of its own, and the pod
//! network from CNI. On disk under `<root>/sandboxes/<id>/`.

pub mod cni;
mod files;
pub mod namespaces;

use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_cri::v1::{NamespaceMode, PodSandboxConfig};
use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::snapshot::unmount;
use namespaces::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// The network a sandbox was attached to, kept for CNI DEL.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    /// The network list as it was at ADD.
    pub list: serde_json::Value,
    /// ADD's result (null until ADD succeeded).
    pub result: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub config: PodSandboxConfig,
    pub runtime_handler: String,
    pub created_at: i64,
    pub state: SandboxState,
    pub cgroup_parent: String,
    /// Whether the runtime created the cgroup parent (and so removes it).
    pub owns_cgroup_parent: bool,
    pub network: Option<Network>,
    pub ips: Vec<String>,
}

impl Sandbox {
    fn mode(&self, pick: impl Fn(&k8s_cri::v1::NamespaceOption) -> i32) -> NamespaceMode {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .map(|o| NamespaceMode::try_from(pick(o)).unwrap_or(NamespaceMode::Pod))
            .unwrap_or(NamespaceMode::Pod)
    }

    pub fn host_network(&self) -> bool {
        self.mode(|o| o.network) == NamespaceMode::Node
    }

    pub fn host_ipc(&self) -> bool {
        self.mode(|o| o.ipc) == NamespaceMode::Node
    }

    pub fn host_pid(&self) -> bool {
        self.mode(|o| o.pid) == NamespaceMode::Node
    }

    /// The namespaces the sandbox owns: net and IPC unless the node's,
    /// UTS unless the network is the node's (host-network pods keep the
    /// node's hostname, as with containerd).
    pub fn owned_namespaces(&self) -> Vec<Kind> {
        let mut kinds = Vec::new();
        if !self.host_network() {
            kinds.push(Kind::Net);
            kinds.push(Kind::Uts);
        }
        if !self.host_ipc() {
            kinds.push(Kind::Ipc);
        }
        kinds
    }

    pub fn hostname(&self) -> String {
        match &self.config.hostname {
            h if !h.is_empty() => h.clone(),
            _ => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    pub fn sysctls(&self) -> std::collections::HashMap<String, String> {
        self.config
            .linux
            .as_ref()
            .map(|l| l.sysctls.clone())
            .unwrap_or_default()
    }
}

/// The sandbox's directory under the runtime root.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join("sandboxes").join(id)
}

/// Creates what a sandbox holds on the node apart from its network: the
/// directory, shared files, namespaces and `/dev/shm`.
pub fn create(dir: &Path, sandbox: &Sandbox) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    files::write(dir, &sandbox.hostname(), sandbox.config.dns_config.as_ref())?;
    namespaces::create(dir, &sandbox.owned_namespaces(), &sandbox.hostname())?;
    if !sandbox.host_ipc() {
        let shm = shm_dir(dir);
        std::fs::create_dir_all(&shm)?;
        nix::mount::mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )
        .context("mounting the pod's /dev/shm")?;
    }
    Ok(())
}

/// The pod's `/dev/shm` on the node.
pub fn shm_dir(dir: &Path) -> PathBuf {
    dir.join("shm")
}

/// Removes the sandbox's namespaces, `/dev/shm` and directory; safe to
/// repeat, and after a crash half-way through [`create`].
pub fn destroy(dir: &Path) -> anyhow::Result<()> {
    namespaces::remove(dir)?;
    unmount(&shm_dir(dir))?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}
