//! The pods' cgroup tree, as upstream's QoS container manager makes it at
//! start: `<root>/kubepods` for Guaranteed pods, with `burstable` and
//! `besteffort` below it, in every hierarchy (each v1 controller's, or the
//! one of cgroup v2). A pod's cgroup below them is made by the runtime as
//! its sandbox's parent, and removed by the agent with the pod (as upstream's
//! kubelet does: runc leaves it behind).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const CGROUP_FS: &str = "/sys/fs/cgroup";

/// Creates the QoS cgroups under `cgroup_root` in every hierarchy.
pub fn ensure_qos(cgroup_root: &str) -> Result<()> {
    let relative = cgroup_root.trim_matches('/');
    for hierarchy in hierarchies(Path::new(CGROUP_FS))? {
        let kubepods = hierarchy.join(relative).join("kubepods");
        for dir in [kubepods.join("burstable"), kubepods.join("besteffort")] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Removes the cgroup of the pod `uid` (and any empty cgroup left below
/// it) from every hierarchy.
pub fn remove_pod(cgroup_root: &str, uid: &str) -> Result<()> {
    let relative = cgroup_root.trim_matches('/');
    let name = format!("pod{uid}");
    for hierarchy in hierarchies(Path::new(CGROUP_FS))? {
        let kubepods = hierarchy.join(relative).join("kubepods");
        for qos in ["", "burstable", "besteffort"] {
            let dir = kubepods.join(qos).join(&name);
            if dir.exists() {
                remove_tree(&dir)?;
            }
        }
    }
    Ok(())
}

/// `rmdir` of `dir` and the cgroups below it, deepest first.
fn remove_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the cgroup {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The roots of the mounted hierarchies: `/sys/fs/cgroup` itself on a
/// cgroup v2 host, its controller directories on a v1 or hybrid one.
fn hierarchies(base: &Path) -> Result<Vec<PathBuf>> {
    if base.join("cgroup.controllers").exists() {
        return Ok(vec![base.to_path_buf()]);
    }
    let mut roots = Vec::new();
    for entry in std::fs::read_dir(base).with_context(|| format!("reading {}", base.display()))? {
        let entry = entry?;
        // Symlinks (cpu -> cpu,cpuacct) name a hierarchy twice.
        if entry.file_type()?.is_dir() && entry.path().join("cgroup.procs").exists() {
            roots.push(entry.path());
        }
    }
    Ok(roots)
}
