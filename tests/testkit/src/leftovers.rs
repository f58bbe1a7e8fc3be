//! Cleaning up after a test node whose state lives under one directory and
//! whose pods' cgroups live under one cgroup root: the processes that name
//! the directory (container monitors, containerd shims outlive their
//! parents), whatever still runs in the cgroups, the mounts under the
//! directory, then the directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Removes everything the node left: best effort, for `Drop`.
pub fn remove(dir: &Path, cgroup_root: &str) {
    let shown = dir.display().to_string();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pid != me && String::from_utf8_lossy(&cmdline).contains(&shown) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
    for cgroup in cgroup_dirs(cgroup_root) {
        remove_cgroups(&cgroup);
    }
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&shown))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Where the cgroup `cgroup_root` lives: once on a cgroup2-only host
/// (`/sys/fs/cgroup` is the unified hierarchy), in every hierarchy on a
/// cgroup v1 or hybrid host.
pub fn cgroup_dirs(cgroup_root: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let relative = cgroup_root.trim_start_matches('/');
    if base.join("cgroup.controllers").exists() {
        return vec![base.join(relative)];
    }
    std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|hierarchy| hierarchy.path().join(relative))
        .collect()
}

/// Kills every process in the cgroups below `dir` (deepest first) and
/// removes them.
fn remove_cgroups(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroups(&entry.path());
        }
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
