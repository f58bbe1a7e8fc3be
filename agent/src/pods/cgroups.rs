//! The pods' cgroup tree, as upstream's QoS container manager makes it at
//! start: `<root>/kubepods` for Guaranteed pods, with `burstable` and
//! `besteffort` below it, in every hierarchy (each v1 controller's, or the
//! one of cgroup v2). Pod cgroups come and go below them.

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
