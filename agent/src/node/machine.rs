//! What the node is: CPUs, memory, disk, identity, kernel and OS, and how
//! much of its memory, disk and PIDs is left (the pressure conditions).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Memory kept back from pods, as upstream's default hard eviction
/// threshold `memory.available<100Mi`.
pub const MEMORY_RESERVE: u64 = 100 << 20;
/// `nodefs.available<10%`.
pub const DISK_RESERVE_PERCENT: u64 = 10;
/// PIDs: pressure below this share of `pid_max` left.
pub const PID_RESERVE_PERCENT: u64 = 10;

/// The machine, as read once at start.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
}

impl Machine {
    /// Reads the machine; `data_dir` is where disk is measured.
    pub fn read(data_dir: &Path) -> Result<Machine> {
        let meminfo = read("/proc/meminfo")?;
        let machine_id = read("/etc/machine-id").unwrap_or_default();
        Ok(Machine {
            cpus: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            memory_bytes: meminfo_bytes(&meminfo, "MemTotal")
                .context("no MemTotal in /proc/meminfo")?,
            disk_bytes: disk(data_dir)?.0,
            system_uuid: read("/sys/class/dmi/id/product_uuid")
                .unwrap_or_else(|_| machine_id.clone()),
            machine_id,
            boot_id: read("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            kernel_version: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image: os_image(&read("/etc/os-release").unwrap_or_default()),
        })
    }

    /// capacity: cpu, memory, ephemeral-storage, hugepages, pods.
    pub fn capacity(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        resources(self.cpus, self.memory_bytes, self.disk_bytes, max_pods)
    }

    /// allocatable: capacity less the eviction reserves.
    pub fn allocatable(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        resources(
            self.cpus,
            self.memory_bytes.saturating_sub(MEMORY_RESERVE),
            self.disk_bytes - self.disk_bytes * DISK_RESERVE_PERCENT / 100,
            max_pods,
        )
    }
}

fn resources(cpus: usize, memory: u64, disk: u64, pods: u32) -> BTreeMap<String, Quantity> {
    [
        ("cpu", cpus.to_string()),
        ("memory", format!("{}Ki", memory / 1024)),
        ("ephemeral-storage", format!("{}Ki", disk / 1024)),
        ("hugepages-1Gi", "0".to_string()),
        ("hugepages-2Mi", "0".to_string()),
        ("pods", pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect()
}

/// How much is left right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pids: bool,
}

impl Pressure {
    pub fn measure(data_dir: &Path) -> Pressure {
        let memory = read("/proc/meminfo")
            .ok()
            .and_then(|m| meminfo_bytes(&m, "MemAvailable"))
            .is_some_and(|available| available < MEMORY_RESERVE);
        let disk = disk(data_dir)
            .is_ok_and(|(total, available)| available * 100 < total * DISK_RESERVE_PERCENT);
        let pids = read("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|m| m.parse::<u64>().ok())
            .is_some_and(|max| {
                let used = std::fs::read_dir("/proc")
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                            .count() as u64
                    })
                    .unwrap_or(0);
                (max - used.min(max)) * 100 < max * PID_RESERVE_PERCENT
            });
        Pressure { memory, disk, pids }
    }
}

fn read(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_string())
}

/// `key` of /proc/meminfo in bytes.
fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// (total, available) bytes of the filesystem holding `dir`.
fn disk(dir: &Path) -> Result<(u64, u64)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fs =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    let block = fs.fragment_size() as u64;
    Ok((
        fs.blocks() as u64 * block,
        fs.blocks_available() as u64 * block,
    ))
}

/// PRETTY_NAME of /etc/os-release.
fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_values_are_bytes() {
        let meminfo =
            "MemTotal:       24569856 kB\nMemFree:         1000 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(24569856 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(2048 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "Mem"), None);
    }

    #[test]
    fn os_image_is_the_pretty_name() {
        let release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_image(release), "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn allocatable_keeps_the_eviction_reserves_back() {
        let machine = Machine {
            cpus: 2,
            memory_bytes: 1 << 30,
            disk_bytes: 100 << 30,
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            kernel_version: String::new(),
            os_image: String::new(),
        };
        let capacity = machine.capacity(110);
        let allocatable = machine.allocatable(110);
        assert_eq!(capacity["memory"].0, "1048576Ki");
        assert_eq!(allocatable["memory"].0, "946176Ki");
        assert_eq!(allocatable["ephemeral-storage"].0, "94371840Ki");
        assert_eq!(allocatable["pods"].0, "110");
        assert_eq!(capacity["cpu"].0, "2");
    }
}
