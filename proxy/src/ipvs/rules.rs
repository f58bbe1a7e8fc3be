//! The iptables rules of IPVS mode, upstream's: IPVS balances, and these
//! rules only mark what needs masquerading (off-cluster clients of cluster
//! IPs, node ports, load-balancer IPs, hairpin), accept what IPVS forwards,
//! and reject new connections to ports of kube-ipvs0's addresses that no
//! service listens on. They match the mode's ipsets, so they do not depend
//! on the services: one text per configuration, written on full syncs.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::ipset::{Family, Set};

/// What the rules depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    pub family: Family,
    /// The pods' CIDR: traffic from elsewhere to a cluster IP is
    /// masqueraded.
    pub cluster_cidr: Option<IpNet>,
    /// Masquerade all traffic to cluster IPs.
    pub masquerade_all: bool,
    /// The mark bit that asks KUBE-POSTROUTING to masquerade.
    pub masquerade_mark: u32,
}

pub const SERVICES: &str = "KUBE-SERVICES";
pub const POSTROUTING: &str = "KUBE-POSTROUTING";
pub const NODE_PORT: &str = "KUBE-NODE-PORT";
pub const LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const FORWARD: &str = "KUBE-FORWARD";
pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const SOURCE_RANGES_FIREWALL: &str = "KUBE-SOURCE-RANGES-FIREWALL";
pub const IPVS_FILTER: &str = "KUBE-IPVS-FILTER";
pub const IPVS_OUT_FILTER: &str = "KUBE-IPVS-OUT-FILTER";

const NAT_CHAINS: [&str; 5] = [SERVICES, POSTROUTING, NODE_PORT, LOAD_BALANCER, MARK_MASQ];
const FILTER_CHAINS: [&str; 6] = [
    FORWARD,
    NODE_PORT,
    PROXY_FIREWALL,
    SOURCE_RANGES_FIREWALL,
    IPVS_FILTER,
    IPVS_OUT_FILTER,
];

/// A rule in a built-in chain that sends packets into one of ours. Such
/// rules live among other programs' rules: they are inserted when missing,
/// never rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jump {
    pub table: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub comment: &'static str,
}

impl Jump {
    /// The line `iptables-save` prints for this rule.
    pub fn saved_line(&self) -> String {
        format!(
            "-A {} -m comment --comment \"{}\" -j {}",
            self.from, self.comment, self.to
        )
    }
}

pub const JUMPS: [Jump; 9] = [
    Jump {
        table: "nat",
        from: "OUTPUT",
        to: SERVICES,
        comment: "kubernetes service portals",
    },
    Jump {
        table: "nat",
        from: "PREROUTING",
        to: SERVICES,
        comment: "kubernetes service portals",
    },
    Jump {
        table: "nat",
        from: "POSTROUTING",
        to: POSTROUTING,
        comment: "kubernetes postrouting rules",
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: FORWARD,
        comment: "kubernetes forwarding rules",
    },
    Jump {
        table: "filter",
        from: "INPUT",
        to: NODE_PORT,
        comment: "kubernetes health check rules",
    },
    Jump {
        table: "filter",
        from: "INPUT",
        to: PROXY_FIREWALL,
        comment: "kube-proxy firewall rules",
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: PROXY_FIREWALL,
        comment: "kube-proxy firewall rules",
    },
    Jump {
        table: "filter",
        from: "INPUT",
        to: IPVS_FILTER,
        comment: "kubernetes ipvs access filter",
    },
    Jump {
        table: "filter",
        from: "OUTPUT",
        to: IPVS_OUT_FILTER,
        comment: "kubernetes ipvs access filter",
    },
];

/// The jumps `saved` (`iptables-save` of the nat and filter tables) lacks.
pub fn missing_jumps(saved: &str) -> Vec<Jump> {
    let mut table = "";
    let mut present = Vec::new();
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = if name == "nat" {
                "nat"
            } else if name == "filter" {
                "filter"
            } else {
                ""
            };
        } else if line.starts_with("-A ") {
            present.push((table, line));
        }
    }
    JUMPS
        .into_iter()
        .filter(|jump| !present.contains(&(jump.table, jump.saved_line().as_str())))
        .collect()
}

/// `iptables-restore --noflush` input that rewrites all of the mode's
/// chains and inserts `missing` jumps.
pub fn restore_input(config: &RulesConfig, missing: &[Jump]) -> String {
    let mut out = String::new();
    table(&mut out, "nat", &NAT_CHAINS, missing, |out| {
        nat_rules(out, config)
    });
    table(&mut out, "filter", &FILTER_CHAINS, missing, |out| {
        filter_rules(out, config)
    });
    out
}

fn table(
    out: &mut String,
    name: &str,
    chains: &[&str],
    missing: &[Jump],
    rules: impl FnOnce(&mut String),
) {
    let _ = writeln!(out, "*{name}");
    for chain in chains {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for jump in missing.iter().filter(|j| j.table == name) {
        let _ = writeln!(
            out,
            "-I {} 1 -m comment --comment \"{}\" -j {}",
            jump.from, jump.comment, jump.to
        );
    }
    rules(out);
    out.push_str("COMMIT\n");
}

/// `-m comment --comment "<set's comment>" -m set --match-set <set> <dirs>`.
fn match_set(config: &RulesConfig, set: Set, directions: &str) -> String {
    format!(
        "-m comment --comment \"{}\" -m set --match-set {} {directions}",
        set.comment(),
        set.name(config.family)
    )
}

fn nat_rules(out: &mut String, config: &RulesConfig) {
    let mark = format!("{:#x}", config.masquerade_mark);
    let loopback = match config.family {
        Family::V4 => "127.0.0.0/8",
        Family::V6 => "::1/128",
    };
    let mut rule = |chain: &str, spec: String| {
        let _ = writeln!(out, "-A {chain} {spec}");
    };
    // Connections to localhost never reach a service.
    rule(SERVICES, format!("-s {loopback} -j RETURN"));
    rule(
        POSTROUTING,
        format!(
            "{} -j MASQUERADE",
            match_set(config, Set::LoopBack, "dst,dst,src")
        ),
    );
    rule(
        SERVICES,
        format!(
            "{} -j {LOAD_BALANCER}",
            match_set(config, Set::LoadBalancer, "dst,dst")
        ),
    );
    rule(
        LOAD_BALANCER,
        format!(
            "{} -j RETURN",
            match_set(config, Set::LoadBalancerLocal, "dst,dst")
        ),
    );
    for (protocol, local, all, directions) in [
        ("tcp", Set::NodePortLocalTcp, Set::NodePortTcp, "dst"),
        ("udp", Set::NodePortLocalUdp, Set::NodePortUdp, "dst"),
        ("sctp", Set::NodePortLocalSctp, Set::NodePortSctp, "dst,dst"),
    ] {
        // externalTrafficPolicy Local keeps the client's address.
        rule(
            NODE_PORT,
            format!(
                "-p {protocol} {} -j RETURN",
                match_set(config, local, directions)
            ),
        );
        rule(
            NODE_PORT,
            format!(
                "-p {protocol} {} -j {MARK_MASQ}",
                match_set(config, all, directions)
            ),
        );
    }
    let cluster_ip = if config.masquerade_all {
        format!(
            "{} -j {MARK_MASQ}",
            match_set(config, Set::ClusterIp, "dst,dst")
        )
    } else if let Some(cidr) = config.cluster_cidr {
        // Off-cluster clients of a cluster IP: the reply must come back here.
        format!(
            "{} ! -s {cidr} -j {MARK_MASQ}",
            match_set(config, Set::ClusterIp, "dst,dst")
        )
    } else {
        // The node's own connections to a cluster IP leave from the VIP,
        // bound on kube-ipvs0: masquerade them.
        format!(
            "{} -j {MARK_MASQ}",
            match_set(config, Set::ClusterIp, "src,dst")
        )
    };
    rule(SERVICES, cluster_ip);
    rule(
        SERVICES,
        format!(
            "{} -j {MARK_MASQ}",
            match_set(config, Set::ExternalIp, "dst,dst")
        ),
    );
    for set in [Set::ExternalIp, Set::ExternalIpLocal] {
        // External IPs are reached from off-node, or are local addresses.
        rule(
            SERVICES,
            format!(
                "{} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT",
                match_set(config, set, "dst,dst")
            ),
        );
        rule(
            SERVICES,
            format!(
                "{} -m addrtype --dst-type LOCAL -j ACCEPT",
                match_set(config, set, "dst,dst")
            ),
        );
    }
    rule(
        SERVICES,
        format!("-m addrtype --dst-type LOCAL -j {NODE_PORT}"),
    );
    rule(LOAD_BALANCER, format!("-j {MARK_MASQ}"));
    // What IPVS balances is accepted, whatever later rules would say.
    for set in [Set::ClusterIp, Set::LoadBalancer] {
        rule(
            SERVICES,
            format!(
                "-m set --match-set {} dst,dst -j ACCEPT",
                set.name(config.family)
            ),
        );
    }
    rule(
        POSTROUTING,
        format!("-m mark ! --mark {mark}/{mark} -j RETURN"),
    );
    // Clear the mark, so a packet that goes round again is not masqueraded
    // twice.
    rule(POSTROUTING, format!("-j MARK --xor-mark {mark}"));
    rule(
        POSTROUTING,
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE \
         --random-fully"
            .to_string(),
    );
    rule(MARK_MASQ, format!("-j MARK --or-mark {mark}"));
}

fn filter_rules(out: &mut String, config: &RulesConfig) {
    let mark = format!("{:#x}", config.masquerade_mark);
    let name = |set: Set| set.name(config.family);
    let mut rule = |chain: &str, spec: String| {
        let _ = writeln!(out, "-A {chain} {spec}");
    };
    rule(
        PROXY_FIREWALL,
        format!(
            "{} -j {SOURCE_RANGES_FIREWALL}",
            match_set(config, Set::LoadBalancerFirewall, "dst,dst")
        ),
    );
    for set in [Set::LoadBalancerSourceCidr, Set::LoadBalancerSourceIp] {
        rule(
            SOURCE_RANGES_FIREWALL,
            format!("{} -j RETURN", match_set(config, set, "dst,dst,src")),
        );
    }
    rule(SOURCE_RANGES_FIREWALL, "-j DROP".to_string());
    rule(
        FORWARD,
        format!(
            "-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j \
             ACCEPT"
        ),
    );
    rule(
        FORWARD,
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate \
         RELATED,ESTABLISHED -j ACCEPT"
            .to_string(),
    );
    rule(
        NODE_PORT,
        format!(
            "{} -j ACCEPT",
            match_set(config, Set::HealthCheckNodePort, "dst")
        ),
    );
    // Only service ports of kube-ipvs0's addresses take new connections.
    for (set, directions) in [
        (Set::LoadBalancer, "dst,dst"),
        (Set::ClusterIp, "dst,dst"),
        (Set::ExternalIp, "dst,dst"),
        (Set::ExternalIpLocal, "dst,dst"),
        (Set::HealthCheckNodePort, "dst"),
    ] {
        rule(
            IPVS_FILTER,
            format!("-m set --match-set {} {directions} -j RETURN", name(set)),
        );
    }
    rule(
        IPVS_FILTER,
        format!(
            "-m conntrack --ctstate NEW -m set --match-set {} dst -j REJECT",
            name(Set::IpvsIps)
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RulesConfig {
        RulesConfig {
            family: Family::V4,
            cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
            masquerade_all: false,
            masquerade_mark: 0x4000,
        }
    }

    #[test]
    fn the_rules_are_upstreams() {
        let input = restore_input(&config(), &JUMPS[..1]);
        let expected = r#"*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-SERVICES -m comment --comment "Kubernetes service lb portal" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER
-A KUBE-LOAD-BALANCER -m comment --comment "Kubernetes service load balancer ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-UDP dst -j RETURN
-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p sctp -m comment --comment "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'" -m set --match-set KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN
-A KUBE-NODE-PORT -p sctp -m comment --comment "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'" -m set --match-set KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL
-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source cidr for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source IP for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-IP dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
COMMIT
"#;
        assert_eq!(input, expected);
    }

    #[test]
    fn without_a_cluster_cidr_the_nodes_own_connections_are_masqueraded() {
        let mut config = config();
        config.cluster_cidr = None;
        let input = restore_input(&config, &[]);
        assert!(input.contains("--match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ\n"));
        config.masquerade_all = true;
        let input = restore_input(&config, &[]);
        assert!(input.contains("--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n"));
    }

    #[test]
    fn ipv6_rules_use_ipv6_sets_and_loopback() {
        let mut config = config();
        config.family = Family::V6;
        config.cluster_cidr = Some("fd00:10:244::/56".parse().unwrap());
        let input = restore_input(&config, &[]);
        assert!(input.contains("-A KUBE-SERVICES -s ::1/128 -j RETURN\n"));
        assert!(input.contains("--match-set KUBE-6-CLUSTER-IP dst,dst ! -s fd00:10:244::/56"));
        assert!(!input.contains("set KUBE-CLUSTER-IP "));
    }

    #[test]
    fn only_jumps_missing_from_their_own_table_are_inserted() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n\
            -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
            COMMIT\n*filter\n\
            -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
            COMMIT\n";
        let missing = missing_jumps(saved);
        assert_eq!(missing.len(), JUMPS.len() - 1);
        assert!(
            missing
                .iter()
                .any(|j| j.table == "nat" && j.from == "OUTPUT")
        );
        assert!(
            !missing
                .iter()
                .any(|j| j.table == "nat" && j.from == "PREROUTING")
        );
    }
}
