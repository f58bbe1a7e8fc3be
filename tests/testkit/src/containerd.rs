//! containerd configured for a test node exactly as `make containerd-config`
//! configures a real one: `scripts/containerd-config.sh`, with the node's own
//! paths and a registry mirror.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

/// A node's containerd: its state under `dir`, its CRI socket, the CNI
/// conf dir it reads.
pub struct Config<'a> {
    pub dir: &'a Path,
    pub socket: &'a Path,
    pub cni_conf_dir: &'a Path,
    /// e.g. `http://127.0.0.1:5000`: docker.io and registry.k8s.io pull there.
    pub mirror: &'a str,
}

impl Config<'_> {
    /// Writes `dir/config.toml` (and `dir/certs.d`) and returns its path.
    pub fn write(&self) -> Result<PathBuf> {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containerd-config.sh");
        crate::netns::run(
            Command::new(&script)
                .arg(self.dir)
                .env("CONTAINERD_ROOT", self.dir.join("root"))
                .env("CONTAINERD_STATE", self.dir.join("state"))
                .env("CONTAINERD_SOCKET", self.socket)
                .env("CNI_CONF_DIR", self.cni_conf_dir)
                .env("REGISTRY_MIRROR", self.mirror),
        )?;
        Ok(self.dir.join("config.toml"))
    }
}
