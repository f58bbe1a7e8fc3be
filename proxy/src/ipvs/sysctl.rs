//! The kernel settings IPVS mode needs, as upstream sets them:
//! - `net/ipv4/vs/conntrack=1`: IPVS connections get conntrack entries, so
//!   that iptables can masquerade them;
//! - `net/ipv4/vs/expire_nodest_conn=1`: a connection whose real server is
//!   gone is dropped at its next packet instead of hanging;
//! - `net/ipv4/vs/expire_quiescent_template=1`: persistence (session
//!   affinity) stops pinning clients to a real server of weight 0, so a
//!   draining server gets no new connections;
//! - `net/ipv4/vs/conn_reuse_mode=0` on kernels from 4.1 to before 5.9,
//!   whose mode 1 stalls a reused source port for a second
//!   (kubernetes#81775, #93297); later kernels keep their default;
//! - `net/ipv4/ip_forward=1`;
//! - with strict ARP, `net/ipv4/conf/all/arp_ignore=1` and `arp_announce=2`:
//!   the node answers ARP only for addresses of the asking interface, not
//!   for kube-ipvs0's (upstream's `--ipvs-strict-arp`).

use std::path::Path;

use anyhow::{Context, Result};

/// Sets `settings` (from [`settings`]).
pub fn apply(settings: &[(&str, &str)]) -> Result<()> {
    for (name, value) in settings {
        write(name, value)?;
    }
    Ok(())
}

/// The settings for a kernel of `release` (`uname -r`).
pub fn settings(release: &str, strict_arp: bool) -> Vec<(&'static str, &'static str)> {
    let mut settings = vec![
        ("net/ipv4/vs/conntrack", "1"),
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        ("net/ipv4/vs/expire_quiescent_template", "1"),
        ("net/ipv4/ip_forward", "1"),
    ];
    let version = kernel_version(release);
    if ((4, 1)..(5, 9)).contains(&version) {
        settings.push(("net/ipv4/vs/conn_reuse_mode", "0"));
    }
    if strict_arp {
        settings.push(("net/ipv4/conf/all/arp_ignore", "1"));
        settings.push(("net/ipv4/conf/all/arp_announce", "2"));
    }
    settings
}

/// `(major, minor)` of a kernel release such as `6.1.0-28-amd64`.
fn kernel_version(release: &str) -> (u32, u32) {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

fn write(name: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(name);
    let current = std::fs::read_to_string(&path)
        .with_context(|| format!("reading sysctl {name} (is the ip_vs module loaded?)"))?;
    if current.trim() != value {
        std::fs::write(&path, value).with_context(|| format!("setting sysctl {name}={value}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_reuse_is_turned_off_only_where_it_stalls() {
        let has_reuse = |release| {
            settings(release, false)
                .iter()
                .any(|(name, _)| *name == "net/ipv4/vs/conn_reuse_mode")
        };
        assert!(has_reuse("4.19.0-21-amd64"));
        assert!(has_reuse("5.4.0"));
        assert!(!has_reuse("5.9.0"));
        assert!(!has_reuse("6.1.176"));
        assert!(!has_reuse("3.10.0-1160.el7.x86_64"));
    }

    #[test]
    fn graceful_termination_settings_are_always_there() {
        let names: Vec<_> = settings("6.1.0", false)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"net/ipv4/vs/expire_nodest_conn"));
        assert!(names.contains(&"net/ipv4/vs/expire_quiescent_template"));
        assert!(names.contains(&"net/ipv4/vs/conntrack"));
        assert!(!names.contains(&"net/ipv4/conf/all/arp_ignore"));
    }

    #[test]
    fn strict_arp_answers_only_for_the_asking_interface() {
        let strict = settings("6.1.0", true);
        assert!(strict.contains(&("net/ipv4/conf/all/arp_ignore", "1")));
        assert!(strict.contains(&("net/ipv4/conf/all/arp_announce", "2")));
    }
}
