//! Tearing a lab down completely — after a test, after a test that
//! panicked, and after a run that was killed before it could clean up.
//!
//! Everything a lab makes is named after its id: its directory
//! `<base>/<id>/` (node state, sockets, overlay and network-namespace
//! mounts), its network namespaces `<id>-*`, its cgroups `/<id>-*` in every
//! hierarchy. A file `owner` in the directory names the process that owns
//! it, or says the lab was left running on purpose (`make lab-up`).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const OWNER: &str = "owner";
const DETACHED: &str = "detached";
/// Extra paths (one a line) the lab made outside its directory.
const EXTRA: &str = "extra-paths";

/// Where labs live, one directory per lab.
pub fn base_dir() -> PathBuf {
    std::env::temp_dir().join("paddock-labs")
}

/// Makes the lab's directory, owned by this process.
pub(super) fn claim(id: &str) -> Result<PathBuf> {
    let dir = base_dir().join(id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let me = std::process::id();
    std::fs::write(dir.join(OWNER), format!("{me} {}\n", start_time(me)?))?;
    Ok(dir)
}

/// Leaves the lab for `make lab-down`: sweeps no longer remove it.
pub(super) fn detach(dir: &Path) -> Result<()> {
    std::fs::write(dir.join(OWNER), format!("{DETACHED}\n"))?;
    Ok(())
}

/// Records a path outside the lab's directory to remove with it.
pub(super) fn record_extra(dir: &Path, path: &Path) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join(EXTRA))?;
    writeln!(file, "{}", path.display())?;
    Ok(())
}

/// Tears down every lab whose owner is gone (a killed test run). With
/// `detached`, also the labs left running by `make lab-up`. Returns the ids
/// torn down.
pub fn sweep(detached: bool) -> Vec<String> {
    let mut swept = Vec::new();
    for entry in std::fs::read_dir(base_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = entry.file_name().to_string_lossy().into_owned();
        if abandoned(&entry.path(), detached) {
            teardown(&id);
            swept.push(id);
        }
    }
    swept
}

fn abandoned(dir: &Path, detached: bool) -> bool {
    let Ok(owner) = std::fs::read_to_string(dir.join(OWNER)) else {
        // Being made right now, unless it has been like this for long.
        return std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .is_ok_and(|t| older_than(t, Duration::from_secs(600)));
    };
    let owner = owner.trim();
    if owner == DETACHED {
        return detached;
    }
    let mut fields = owner.split_whitespace();
    match (
        fields.next().and_then(|p| p.parse::<u32>().ok()),
        fields.next(),
    ) {
        (Some(pid), Some(started)) => start_time(pid).map_or(true, |now| now != started),
        _ => true,
    }
}

fn older_than(time: SystemTime, age: Duration) -> bool {
    time.elapsed().is_ok_and(|elapsed| elapsed > age)
}

/// A process's start time (field 22 of its stat), which tells it apart from
/// a later process with the same id.
fn start_time(pid: u32) -> Result<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    // Fields from the third on: state is field 3, starttime field 22.
    after_name
        .split_whitespace()
        .nth(22 - 3)
        .map(str::to_string)
        .context("no start time in /proc/PID/stat")
}

/// Removes everything lab `id` made: its processes, cgroups, mounts,
/// network namespaces and files. Idempotent; never fails (what it cannot
/// remove stays for the next sweep).
pub fn teardown(id: &str) {
    let dir = base_dir().join(id);
    let prefix = format!("{id}-");
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    kill_processes(&dir, &namespaces);
    for hierarchy in cgroup_hierarchies() {
        for entry in std::fs::read_dir(&hierarchy)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                remove_cgroup(&entry.path());
            }
        }
    }
    unmount_below(&dir);
    for name in &namespaces {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
    let extra = std::fs::read_to_string(dir.join(EXTRA)).unwrap_or_default();
    for path in extra.lines().filter(|l| !l.is_empty()) {
        let _ = std::fs::remove_dir_all(path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGKILL to every process inside the lab's namespaces or naming its
/// directory on its command line (container monitors, shims), twice, as
/// some fork while dying.
fn kill_processes(dir: &Path, namespaces: &[String]) {
    let inodes: HashSet<u64> = namespaces
        .iter()
        .filter_map(|name| std::fs::metadata(Path::new("/run/netns").join(name)).ok())
        .map(|m| m.ino())
        .collect();
    let needle = format!("{}/", dir.display());
    let me = std::process::id();
    for _ in 0..2 {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            let in_namespace = std::fs::metadata(entry.path().join("ns/net"))
                .is_ok_and(|m| inodes.contains(&m.ino()));
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if in_namespace || String::from_utf8_lossy(&cmdline).contains(&needle) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The roots of the cgroup hierarchies: `/sys/fs/cgroup` itself on a
/// cgroup2 host, each controller's directory (and `unified`) on a hybrid one.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let mut all = vec![root.clone()];
    if !root.join("cgroup.controllers").exists() {
        all.extend(
            std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    all
}

/// Kills every process in the cgroup `dir` and below, and removes them.
fn remove_cgroup(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    for _ in 0..100 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts every mount point at or below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let dir = dir.display().to_string();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape_octal))
        .filter(|point| point == &dir || point.starts_with(&format!("{dir}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if let Ok(code) = u8::from_str_radix(&digits, 8)
                && digits.len() == 3
            {
                out.push(code as char);
                chars.nth(2);
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_octal(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }

    #[test]
    fn this_process_owns_what_it_claims_and_a_dead_owner_does_not() -> Result<()> {
        let id = crate::unique_name("labt");
        let dir = claim(&id)?;
        assert!(!abandoned(&dir, true));
        std::fs::write(dir.join(OWNER), "4194304 1\n")?; // above pid_max
        assert!(abandoned(&dir, false));
        detach(&dir)?;
        assert!(!abandoned(&dir, false));
        assert!(abandoned(&dir, true));
        teardown(&id);
        assert!(!dir.exists());
        Ok(())
    }
}
