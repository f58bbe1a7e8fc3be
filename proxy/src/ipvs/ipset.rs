//! The ipsets of IPVS mode, as upstream names and types them: the iptables
//! rules of the mode match these sets, so their rules stay the same however
//! many services there are. Sets are written with one `ipset restore` per
//! sync: entry changes, or, on a full sync, every set rebuilt aside and
//! swapped in at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// One of the mode's sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Set {
    LoopBack,
    ClusterIp,
    ExternalIp,
    ExternalIpLocal,
    LoadBalancer,
    LoadBalancerFirewall,
    LoadBalancerLocal,
    LoadBalancerSourceIp,
    LoadBalancerSourceCidr,
    NodePortTcp,
    NodePortLocalTcp,
    NodePortUdp,
    NodePortLocalUdp,
    NodePortSctp,
    NodePortLocalSctp,
    HealthCheckNodePort,
    IpvsIps,
}

/// How a set stores its entries (`ipset create NAME TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    HashIp,
    HashIpPort,
    HashIpPortIp,
    HashIpPortNet,
    BitmapPort,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::HashIp => "hash:ip",
            Kind::HashIpPort => "hash:ip,port",
            Kind::HashIpPortIp => "hash:ip,port,ip",
            Kind::HashIpPortNet => "hash:ip,port,net",
            Kind::BitmapPort => "bitmap:port",
        }
    }
}

impl Set {
    pub const ALL: [Set; 17] = [
        Set::LoopBack,
        Set::ClusterIp,
        Set::ExternalIp,
        Set::ExternalIpLocal,
        Set::LoadBalancer,
        Set::LoadBalancerFirewall,
        Set::LoadBalancerLocal,
        Set::LoadBalancerSourceIp,
        Set::LoadBalancerSourceCidr,
        Set::NodePortTcp,
        Set::NodePortLocalTcp,
        Set::NodePortUdp,
        Set::NodePortLocalUdp,
        Set::NodePortSctp,
        Set::NodePortLocalSctp,
        Set::HealthCheckNodePort,
        Set::IpvsIps,
    ];

    /// The IPv4 name; IPv6 sets are `KUBE-6-…` (see [`Set::name`]).
    fn base_name(self) -> &'static str {
        match self {
            Set::LoopBack => "KUBE-LOOP-BACK",
            Set::ClusterIp => "KUBE-CLUSTER-IP",
            Set::ExternalIp => "KUBE-EXTERNAL-IP",
            Set::ExternalIpLocal => "KUBE-EXTERNAL-IP-LOCAL",
            Set::LoadBalancer => "KUBE-LOAD-BALANCER",
            Set::LoadBalancerFirewall => "KUBE-LOAD-BALANCER-FW",
            Set::LoadBalancerLocal => "KUBE-LOAD-BALANCER-LOCAL",
            Set::LoadBalancerSourceIp => "KUBE-LOAD-BALANCER-SOURCE-IP",
            Set::LoadBalancerSourceCidr => "KUBE-LOAD-BALANCER-SOURCE-CIDR",
            Set::NodePortTcp => "KUBE-NODE-PORT-TCP",
            Set::NodePortLocalTcp => "KUBE-NODE-PORT-LOCAL-TCP",
            Set::NodePortUdp => "KUBE-NODE-PORT-UDP",
            Set::NodePortLocalUdp => "KUBE-NODE-PORT-LOCAL-UDP",
            Set::NodePortSctp => "KUBE-NODE-PORT-SCTP-HASH",
            Set::NodePortLocalSctp => "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
            Set::HealthCheckNodePort => "KUBE-HEALTH-CHECK-NODE-PORT",
            Set::IpvsIps => "KUBE-IPVS-IPS",
        }
    }

    /// The set's name in `family`: upstream's, with `KUBE-6-` for IPv6 cut
    /// to ipset's 31 characters.
    pub fn name(self, family: Family) -> String {
        let base = self.base_name();
        match family {
            Family::V4 => base.to_string(),
            Family::V6 => {
                let mut name = base.replacen("KUBE-", "KUBE-6-", 1);
                name.truncate(31);
                name
            }
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Set::LoopBack | Set::LoadBalancerSourceIp => Kind::HashIpPortIp,
            Set::LoadBalancerSourceCidr => Kind::HashIpPortNet,
            Set::NodePortTcp
            | Set::NodePortLocalTcp
            | Set::NodePortUdp
            | Set::NodePortLocalUdp
            | Set::HealthCheckNodePort => Kind::BitmapPort,
            Set::IpvsIps => Kind::HashIp,
            _ => Kind::HashIpPort,
        }
    }

    /// What the set is for, the comment of the iptables rules matching it.
    pub fn comment(self) -> &'static str {
        match self {
            Set::LoopBack => {
                "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"
            }
            Set::ClusterIp => "Kubernetes service cluster ip + port for masquerade purpose",
            Set::ExternalIp => {
                "Kubernetes service external ip + port for masquerade and filter purpose"
            }
            Set::ExternalIpLocal => {
                "Kubernetes service external ip + port with externalTrafficPolicy=local"
            }
            Set::LoadBalancer => "Kubernetes service lb portal",
            Set::LoadBalancerFirewall => {
                "Kubernetes service load balancer ip + port for load balancer with sourceRange"
            }
            Set::LoadBalancerLocal => {
                "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"
            }
            Set::LoadBalancerSourceIp => {
                "Kubernetes service load balancer ip + port + source IP for packet filter purpose"
            }
            Set::LoadBalancerSourceCidr => {
                "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"
            }
            Set::NodePortTcp => "Kubernetes nodeport TCP port for masquerade purpose",
            Set::NodePortLocalTcp => {
                "Kubernetes nodeport TCP port with externalTrafficPolicy=local"
            }
            Set::NodePortUdp => "Kubernetes nodeport UDP port for masquerade purpose",
            Set::NodePortLocalUdp => {
                "Kubernetes nodeport UDP port with externalTrafficPolicy=local"
            }
            Set::NodePortSctp => {
                "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"
            }
            Set::NodePortLocalSctp => {
                "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"
            }
            Set::HealthCheckNodePort => "Kubernetes health check node port",
            Set::IpvsIps => "IPVS virtual server IP",
        }
    }
}

/// The IP family of a proxier's sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn ipset_name(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }
}

/// Entry text as `ipset add` takes it.
pub mod entry {
    use std::net::IpAddr;

    use ipnet::IpNet;

    /// `hash:ip,port`: `10.96.0.10,tcp:80`.
    pub fn ip_port(ip: IpAddr, protocol: &str, port: u16) -> String {
        format!("{ip},{protocol}:{port}")
    }

    /// `hash:ip,port,ip`: `10.244.1.5,tcp:8080,10.244.1.5`.
    pub fn ip_port_ip(ip: IpAddr, protocol: &str, port: u16, ip2: IpAddr) -> String {
        format!("{ip},{protocol}:{port},{ip2}")
    }

    /// `hash:ip,port,net`: `192.0.2.7,tcp:80,203.0.113.0/24`.
    pub fn ip_port_net(ip: IpAddr, protocol: &str, port: u16, net: IpNet) -> String {
        format!("{ip},{protocol}:{port},{net}")
    }

    /// `bitmap:port`: `30080`.
    pub fn port(port: u16) -> String {
        port.to_string()
    }

    /// `hash:ip`: `10.96.0.10`.
    pub fn ip(ip: IpAddr) -> String {
        ip.to_string()
    }
}

/// Entries per set.
pub type Entries = BTreeMap<Set, BTreeSet<String>>;

/// `ipset restore` input that creates every set and fills it with
/// `entries`, atomically for each set: filled under a temporary name, then
/// swapped with the live one.
pub fn rebuild_script(family: Family, entries: &Entries) -> String {
    let mut script = String::new();
    for set in Set::ALL {
        let name = set.name(family);
        let temporary = format!("{}-NEW", &name[..name.len().min(27)]);
        create_line(&mut script, &name, set.kind(), family);
        create_line(&mut script, &temporary, set.kind(), family);
        let _ = writeln!(script, "flush {temporary}");
        for entry in entries.get(&set).into_iter().flatten() {
            let _ = writeln!(script, "add {temporary} {entry}");
        }
        let _ = writeln!(script, "swap {temporary} {name}");
        let _ = writeln!(script, "destroy {temporary}");
    }
    script
}

/// `ipset restore` input that adds and deletes entries.
pub fn update_script(family: Family, added: &Entries, deleted: &Entries) -> String {
    let mut script = String::new();
    for (verb, entries) in [("del", deleted), ("add", added)] {
        for (set, entries) in entries {
            let name = set.name(family);
            for entry in entries {
                let _ = writeln!(script, "{verb} {name} {entry}");
            }
        }
    }
    script
}

fn create_line(script: &mut String, name: &str, kind: Kind, family: Family) {
    let _ = match kind {
        Kind::BitmapPort => writeln!(script, "create {name} {} range 0-65535", kind.name()),
        _ => writeln!(
            script,
            "create {name} {} family {} hashsize 1024 maxelem 262144",
            kind.name(),
            family.ipset_name()
        ),
    };
}

/// Runs `ipset -exist restore` with `script`: creating a set that exists,
/// adding an entry that is there or deleting one that is not are no errors.
pub fn restore(script: &str) -> Result<()> {
    if script.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("ipset")
        .args(["-exist", "restore"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ipset (is the ipset package installed?)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .context("writing to ipset restore")?;
    }
    let out = child
        .wait_with_output()
        .context("waiting for ipset restore")?;
    if !out.status.success() {
        bail!(
            "ipset restore failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sets_are_prefixed_and_fit_ipsets_name_limit() {
        assert_eq!(Set::ClusterIp.name(Family::V4), "KUBE-CLUSTER-IP");
        assert_eq!(Set::ClusterIp.name(Family::V6), "KUBE-6-CLUSTER-IP");
        let long = Set::LoadBalancerSourceCidr.name(Family::V6);
        assert_eq!(long, "KUBE-6-LOAD-BALANCER-SOURCE-CID");
        assert!(Set::ALL.iter().all(|s| s.name(Family::V6).len() <= 31));
    }

    #[test]
    fn a_rebuild_fills_a_twin_and_swaps_it_in() {
        let entries = Entries::from([(
            Set::ClusterIp,
            BTreeSet::from([entry::ip_port("10.96.0.10".parse().unwrap(), "tcp", 80)]),
        )]);
        let script = rebuild_script(Family::V4, &entries);
        let cluster: Vec<&str> = script
            .lines()
            .filter(|l| l.contains("KUBE-CLUSTER-IP"))
            .collect();
        assert_eq!(
            cluster,
            [
                "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 262144",
                "create KUBE-CLUSTER-IP-NEW hash:ip,port family inet hashsize 1024 maxelem 262144",
                "flush KUBE-CLUSTER-IP-NEW",
                "add KUBE-CLUSTER-IP-NEW 10.96.0.10,tcp:80",
                "swap KUBE-CLUSTER-IP-NEW KUBE-CLUSTER-IP",
                "destroy KUBE-CLUSTER-IP-NEW",
            ]
        );
        assert!(script.contains("create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\n"));
        assert_eq!(script.matches("swap ").count(), Set::ALL.len());
    }

    #[test]
    fn temporary_names_of_the_longest_sets_stay_within_the_limit() {
        let script = rebuild_script(Family::V6, &Entries::new());
        for line in script.lines() {
            let name = line
                .split_whitespace()
                .find(|w| w.starts_with("KUBE-"))
                .unwrap();
            assert!(name.len() <= 31, "{line}");
        }
    }

    #[test]
    fn an_update_deletes_before_it_adds() {
        let added = Entries::from([(Set::NodePortTcp, BTreeSet::from([entry::port(30080)]))]);
        let deleted = Entries::from([(Set::NodePortTcp, BTreeSet::from([entry::port(30081)]))]);
        assert_eq!(
            update_script(Family::V4, &added, &deleted),
            "del KUBE-NODE-PORT-TCP 30081\nadd KUBE-NODE-PORT-TCP 30080\n"
        );
    }
}
