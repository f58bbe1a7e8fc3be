//! Pod cgroups: the parent directory under which a pod's containers get
//! their cgroups (libcgroups creates those), on cgroup v1 (one tree per
//! controller), v2, or a hybrid host (v1 controllers; libcgroups uses v1).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const ROOT: &str = "/sys/fs/cgroup";

/// Whether this host is pure cgroup v2.
fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The directories `cgroup` (an absolute cgroup path) has or would have.
fn dirs(cgroup: &str) -> Result<Vec<PathBuf>> {
    let relative = cgroup.trim_start_matches('/');
    if unified() {
        return Ok(vec![Path::new(ROOT).join(relative)]);
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(ROOT).context("listing /sys/fs/cgroup")? {
        let entry = entry?;
        let name = entry.file_name();
        // the named systemd tree and the unified tree of a hybrid host get
        // no container cgroups from libcgroups' v1 manager
        if name == "systemd" || name == "unified" || !entry.file_type()?.is_dir() {
            continue;
        }
        dirs.push(entry.path().join(relative));
    }
    Ok(dirs)
}

/// Whether `cgroup` exists (in the memory controller's tree on v1).
pub fn exists(cgroup: &str) -> Result<bool> {
    Ok(dirs(cgroup)?.iter().any(|d| d.exists()))
}

/// Removes `cgroup` (which must hold no process) from every tree.
pub fn remove(cgroup: &str) -> Result<()> {
    for dir in dirs(cgroup)? {
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing cgroup {}", dir.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// How many times the kernel OOM-killed a process in `cgroup`.
pub fn oom_kills(cgroup: &str) -> u64 {
    let relative = cgroup.trim_start_matches('/');
    let v1 = Path::new(ROOT)
        .join("memory")
        .join(relative)
        .join("memory.oom_control");
    let v2 = Path::new(ROOT).join(relative).join("memory.events");
    [v1, v2]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
                .collect::<Vec<u64>>()
        })
        .max()
        .unwrap_or(0)
}
