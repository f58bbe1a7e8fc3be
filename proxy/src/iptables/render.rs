//! Rendering: a service port of the model → the iptables rules that make it
//! work, in upstream kube-proxy's chain layout. Pure: the same service and
//! configuration always give the same text.
//!
//! Each service port owns its nat chains (`KUBE-SVC/SVL/EXT/FW/SEP-*`) and
//! contributes rules to chains shared by all services (`KUBE-SERVICES`,
//! `KUBE-NODEPORTS`, ...). Keeping the two apart lets the applier rewrite
//! only what a change touched.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use super::names::{self, ServiceChains};
use crate::model::{Endpoint, Service, ServicePort, SessionAffinity};

/// What rendering depends on besides the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderConfig {
    /// This node's IP: load-balancer source ranges that contain it also admit
    /// the node's own requests to the load-balancer IPs.
    pub node_ip: IpAddr,
    /// The pods' CIDR (`--cluster-cidr`): traffic from it counts as "local"
    /// to the cluster. Without it, cluster-IP traffic is masqueraded only with
    /// `masquerade_all`.
    pub cluster_cidr: Option<IpNet>,
    /// Masquerade all traffic to cluster IPs (`--masquerade-all`).
    pub masquerade_all: bool,
    /// The packet mark bit that asks KUBE-POSTROUTING to masquerade.
    pub masquerade_mark: u32,
    /// Drop forwarded packets conntrack considers INVALID (off when the host
    /// sets `nf_conntrack_tcp_be_liberal`).
    pub drop_invalid: bool,
}

impl RenderConfig {
    pub fn new(node_ip: IpAddr) -> RenderConfig {
        RenderConfig {
            node_ip,
            cluster_cidr: None,
            masquerade_all: false,
            masquerade_mark: 0x4000,
            drop_invalid: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Filter,
    Nat,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }
}

/// The chains every service adds rules to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SharedChain {
    NatServices,
    NatNodePorts,
    FilterServices,
    FilterExternalServices,
    FilterNodePorts,
    FilterProxyFirewall,
}

impl SharedChain {
    pub const ALL: [SharedChain; 6] = [
        SharedChain::FilterServices,
        SharedChain::FilterExternalServices,
        SharedChain::FilterNodePorts,
        SharedChain::FilterProxyFirewall,
        SharedChain::NatServices,
        SharedChain::NatNodePorts,
    ];

    pub fn table(self) -> Table {
        match self {
            SharedChain::NatServices | SharedChain::NatNodePorts => Table::Nat,
            _ => Table::Filter,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SharedChain::NatServices | SharedChain::FilterServices => names::SERVICES,
            SharedChain::NatNodePorts | SharedChain::FilterNodePorts => names::NODE_PORTS,
            SharedChain::FilterExternalServices => names::EXTERNAL_SERVICES,
            SharedChain::FilterProxyFirewall => names::PROXY_FIREWALL,
        }
    }

    /// Whether the chain ends with a rule of its own that service rules must
    /// stay in front of (KUBE-SERVICES in nat ends by jumping to
    /// KUBE-NODEPORTS).
    pub fn has_final_rule(self) -> bool {
        self == SharedChain::NatServices
    }
}

/// A nat chain owned by one service port, with its rules as
/// `iptables-restore` lines (`-A NAME ...\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedChain {
    pub name: String,
    pub rules: String,
}

/// A rule a service port adds to a shared chain: the rule specification
/// without `-A CHAIN`, so it can be appended, inserted or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedRule {
    pub chain: SharedChain,
    pub spec: String,
}

/// Everything one service port puts into iptables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRules {
    pub chains: Vec<OwnedChain>,
    pub shared: Vec<SharedRule>,
}

impl ServiceRules {
    pub fn rule_count(&self) -> usize {
        self.shared.len()
            + self
                .chains
                .iter()
                .map(|c| c.rules.lines().count())
                .sum::<usize>()
    }
}

/// Whether per-endpoint rules carry comments. Upstream leaves them out in
/// large clusters (over 1000 endpoints), where they make the rules 40% bigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointComments {
    On,
    Off,
}

/// The rules of one service port.
pub fn service_rules(
    config: &RenderConfig,
    service: &Service,
    comments: EndpointComments,
) -> ServiceRules {
    ServiceRenderer::new(config, &service.port, comments).render(service)
}

struct ServiceRenderer<'a> {
    config: &'a RenderConfig,
    port: &'a ServicePort,
    comments: EndpointComments,
    name: String,
    chains: ServiceChains,
    out: ServiceRules,
}

impl<'a> ServiceRenderer<'a> {
    fn new(config: &'a RenderConfig, port: &'a ServicePort, comments: EndpointComments) -> Self {
        ServiceRenderer {
            config,
            port,
            comments,
            name: port.name.to_string(),
            chains: ServiceChains::new(port),
            out: ServiceRules::default(),
        }
    }

    fn render(mut self, service: &Service) -> ServiceRules {
        let port = self.port;
        let selection = service.select_endpoints();
        let has_endpoints = selection.any_usable;
        let cluster_chain = self.chains.cluster_policy.clone();
        let local_chain = self.chains.local_policy.clone();
        let external_chain = self.chains.external.clone();
        let firewall_chain = self.chains.firewall.clone();

        let (internal_chain, has_internal) = if port.internal_policy_local() {
            (&local_chain, !selection.local.is_empty())
        } else {
            (&cluster_chain, has_endpoints)
        };
        let (external_policy_chain, has_external) = if port.external_policy_local() {
            (&local_chain, !selection.local.is_empty())
        } else {
            (&cluster_chain, has_endpoints)
        };
        let uses_cluster_chain = !selection.cluster.is_empty() && port.uses_cluster_endpoints();
        let uses_local_chain = !selection.local.is_empty() && port.uses_local_endpoints();
        let uses_external_chain = has_endpoints && port.externally_accessible();
        let uses_firewall_chain = has_endpoints
            && !port.load_balancer_ips.is_empty()
            && !port.load_balancer_source_ranges.is_empty();
        let load_balancer_chain = if uses_firewall_chain {
            &firewall_chain
        } else {
            &external_chain
        };

        // What the filter table does with traffic that finds no endpoint.
        let no_endpoints = format!("\"{} has no endpoints\"", self.name);
        let no_local_endpoints = format!("\"{} has no local endpoints\"", self.name);
        let (internal_filter, external_filter) = if !has_endpoints {
            (("REJECT", &no_endpoints), ("REJECT", &no_endpoints))
        } else {
            (("DROP", &no_local_endpoints), ("DROP", &no_local_endpoints))
        };

        let dest = |ip: &IpAddr, port_number: u16| {
            let proto = port.protocol.as_str();
            format!("-m {proto} -p {proto} -d {ip} --dport {port_number}")
        };

        // Cluster IP.
        let cluster_ip = dest(&port.cluster_ip, port.port);
        if has_internal {
            self.capture("cluster IP", &cluster_ip, internal_chain);
        } else {
            self.filter(SharedChain::FilterServices, internal_filter, &cluster_ip);
        }

        // External IPs.
        for ip in &port.external_ips {
            let d = dest(ip, port.port);
            if has_endpoints {
                self.capture("external IP", &d, &external_chain);
            }
            if !has_external {
                self.filter(SharedChain::FilterExternalServices, external_filter, &d);
            }
        }

        // Load-balancer IPs.
        for ip in &port.load_balancer_ips {
            let d = dest(ip, port.port);
            if has_endpoints {
                self.capture("loadbalancer IP", &d, load_balancer_chain);
            }
            if uses_firewall_chain {
                let comment = format!("\"{} traffic not accepted by {firewall_chain}\"", self.name);
                self.filter(SharedChain::FilterProxyFirewall, ("DROP", &comment), &d);
            }
        }
        if !has_external {
            for ip in &port.load_balancer_ips {
                let d = dest(ip, port.port);
                self.filter(SharedChain::FilterExternalServices, external_filter, &d);
            }
        }

        // Node port.
        if let Some(node_port) = port.node_port {
            let proto = port.protocol.as_str();
            if has_endpoints {
                self.shared(
                    SharedChain::NatNodePorts,
                    format!(
                        "-m comment --comment {} -m {proto} -p {proto} --dport {node_port} -j {external_chain}",
                        self.name
                    ),
                );
            }
            if !has_external {
                let d = format!(
                    "-m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {node_port}"
                );
                self.filter(SharedChain::FilterExternalServices, external_filter, &d);
            }
        }

        // Health-check node port (externalTrafficPolicy: Local).
        if let Some(health_port) = port.health_check_node_port {
            self.shared(
                SharedChain::FilterNodePorts,
                format!(
                    "-m comment --comment \"{} health check node port\" -m tcp -p tcp --dport {health_port} -j ACCEPT",
                    self.name
                ),
            );
        }

        // The service's own chains: EXT, FW, SVC, SVL, then one SEP per
        // reachable endpoint.
        if uses_external_chain {
            let mut rules = String::new();
            if !port.external_policy_local() {
                rule(
                    &mut rules,
                    &external_chain,
                    format_args!(
                        "-m comment --comment \"masquerade traffic for {} external destinations\" -j {}",
                        self.name,
                        names::MARK_MASQ
                    ),
                );
            } else {
                if let Some(cidr) = self.config.cluster_cidr {
                    rule(
                        &mut rules,
                        &external_chain,
                        format_args!(
                            "-m comment --comment \"pod traffic for {} external destinations\" -s {cidr} -j {cluster_chain}",
                            self.name
                        ),
                    );
                }
                rule(
                    &mut rules,
                    &external_chain,
                    format_args!(
                        "-m comment --comment \"masquerade LOCAL traffic for {} external destinations\" -m addrtype --src-type LOCAL -j {}",
                        self.name,
                        names::MARK_MASQ
                    ),
                );
                rule(
                    &mut rules,
                    &external_chain,
                    format_args!(
                        "-m comment --comment \"route LOCAL traffic for {} external destinations\" -m addrtype --src-type LOCAL -j {cluster_chain}",
                        self.name
                    ),
                );
            }
            if has_external {
                rule(
                    &mut rules,
                    &external_chain,
                    format_args!("-j {external_policy_chain}"),
                );
            }
            self.owned(&external_chain, rules);
        }

        if uses_firewall_chain {
            let mut rules = String::new();
            let comment = format!("-m comment --comment \"{} loadbalancer IP\"", self.name);
            let mut allow_from_node = false;
            for cidr in &port.load_balancer_source_ranges {
                rule(
                    &mut rules,
                    &firewall_chain,
                    format_args!("{comment} -s {cidr} -j {external_chain}"),
                );
                allow_from_node |= cidr.contains(&self.config.node_ip);
            }
            if allow_from_node {
                for ip in &port.load_balancer_ips {
                    rule(
                        &mut rules,
                        &firewall_chain,
                        format_args!("{comment} -s {ip} -j {external_chain}"),
                    );
                }
            }
            rule(
                &mut rules,
                &firewall_chain,
                format_args!(
                    "-m comment --comment \"other traffic to {} will be dropped by {}\"",
                    self.name,
                    names::PROXY_FIREWALL
                ),
            );
            self.owned(&firewall_chain, rules);
        }

        // Cluster-IP traffic is marked for masquerade in the chain it enters.
        let masquerade = has_internal
            .then(|| self.cluster_ip_masquerade(&cluster_ip))
            .flatten();
        let masquerade_in = |chain: &String| {
            (internal_chain == chain)
                .then_some(masquerade.as_deref())
                .flatten()
        };
        if uses_cluster_chain {
            let masq = masquerade_in(&cluster_chain);
            self.policy_chain(&cluster_chain, masq, &selection.cluster);
        }
        if uses_local_chain {
            let masq = masquerade_in(&local_chain);
            self.policy_chain(&local_chain, masq, &selection.local);
        }

        for endpoint in &selection.reachable {
            self.endpoint_chain(endpoint);
        }
        self.out
    }

    /// The rule that marks cluster-IP traffic for masquerade, if any: all of
    /// it with `masquerade_all`, else what comes from outside the pod CIDR.
    fn cluster_ip_masquerade(&self, cluster_ip: &str) -> Option<String> {
        let matches = format!(
            "-m comment --comment \"{} cluster IP\" {cluster_ip}",
            self.name
        );
        if self.config.masquerade_all {
            Some(format!("{matches} -j {}", names::MARK_MASQ))
        } else {
            self.config
                .cluster_cidr
                .map(|cidr| format!("{matches} ! -s {cidr} -j {}", names::MARK_MASQ))
        }
    }

    /// `KUBE-SVC-*` or `KUBE-SVL-*`: the masquerade mark for cluster-IP
    /// traffic if it enters here, then the jumps to the endpoints.
    fn policy_chain(&mut self, chain: &str, masquerade: Option<&str>, endpoints: &[&Endpoint]) {
        let mut rules = String::new();
        if let Some(masq) = masquerade {
            rule(&mut rules, chain, format_args!("{masq}"));
        }
        self.endpoint_jumps(&mut rules, chain, endpoints);
        self.owned(chain, rules);
    }

    /// Jumps from a policy chain to the endpoints' chains: first the
    /// session-affinity matches, then an even random spread (1/n, 1/(n-1),
    /// ..., 1).
    fn endpoint_jumps(&self, rules: &mut String, chain: &str, endpoints: &[&Endpoint]) {
        if let SessionAffinity::ClientIp { timeout } = self.port.session_affinity {
            for endpoint in endpoints {
                let target = names::endpoint_chain(self.port, endpoint);
                rule(
                    rules,
                    chain,
                    format_args!(
                        "{}-m recent --name {target} --rcheck --seconds {} --reap -j {target}",
                        self.jump_comment(endpoint),
                        timeout.as_secs()
                    ),
                );
            }
        }
        let n = endpoints.len();
        for (i, endpoint) in endpoints.iter().enumerate() {
            let target = names::endpoint_chain(self.port, endpoint);
            let comment = self.jump_comment(endpoint);
            if i + 1 < n {
                rule(
                    rules,
                    chain,
                    format_args!(
                        "{comment}-m statistic --mode random --probability {} -j {target}",
                        probability(n - i)
                    ),
                );
            } else {
                rule(rules, chain, format_args!("{comment}-j {target}"));
            }
        }
    }

    fn jump_comment(&self, endpoint: &Endpoint) -> String {
        match self.comments {
            EndpointComments::On => {
                format!("-m comment --comment \"{} -> {endpoint}\" ", self.name)
            }
            EndpointComments::Off => String::new(),
        }
    }

    /// `KUBE-SEP-*`: masquerade hairpin traffic (a pod reaching itself through
    /// the service), remember the client for session affinity, DNAT.
    fn endpoint_chain(&mut self, endpoint: &Endpoint) {
        let chain = names::endpoint_chain(self.port, endpoint);
        let comment = match self.comments {
            EndpointComments::On => format!("-m comment --comment {} ", self.name),
            EndpointComments::Off => String::new(),
        };
        let affinity = match self.port.session_affinity {
            SessionAffinity::ClientIp { .. } => format!("-m recent --name {chain} --set "),
            SessionAffinity::None => String::new(),
        };
        let proto = self.port.protocol.as_str();
        let mut rules = String::new();
        rule(
            &mut rules,
            &chain,
            format_args!("{comment}-s {} -j {}", endpoint.ip, names::MARK_MASQ),
        );
        rule(
            &mut rules,
            &chain,
            format_args!(
                "{comment}{affinity}-m {proto} -p {proto} -j DNAT --to-destination {endpoint}"
            ),
        );
        self.owned(&chain, rules);
    }

    /// A nat KUBE-SERVICES rule sending traffic for `dest` to `target`.
    fn capture(&mut self, what: &str, dest: &str, target: &str) {
        let spec = format!(
            "-m comment --comment \"{} {what}\" {dest} -j {target}",
            self.name
        );
        self.shared(SharedChain::NatServices, spec);
    }

    /// A filter rule ending traffic for `dest` with `(target, comment)`.
    fn filter(&mut self, chain: SharedChain, (target, comment): (&str, &String), dest: &str) {
        let spec = format!("-m comment --comment {comment} {dest} -j {target}");
        self.shared(chain, spec);
    }

    fn shared(&mut self, chain: SharedChain, spec: String) {
        self.out.shared.push(SharedRule { chain, spec });
    }

    fn owned(&mut self, name: &str, rules: String) {
        self.out.chains.push(OwnedChain {
            name: name.to_string(),
            rules,
        });
    }
}

/// Appends `-A chain spec\n`.
fn rule(out: &mut String, chain: &str, spec: std::fmt::Arguments<'_>) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "-A {chain} {spec}");
}

/// `1/n` with ten decimals, as upstream writes it.
fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// The rules of the chains shared by all services that do not depend on any
/// service: masquerading, forwarding, and the final jump to KUBE-NODEPORTS.
pub fn base_rules(config: &RenderConfig) -> BaseRules {
    let mark = format!("{:#x}", config.masquerade_mark);
    let mut postrouting = String::new();
    rule(
        &mut postrouting,
        names::POSTROUTING,
        format_args!("-m mark ! --mark {mark}/{mark} -j RETURN"),
    );
    rule(
        &mut postrouting,
        names::POSTROUTING,
        format_args!("-j MARK --xor-mark {mark}"),
    );
    rule(
        &mut postrouting,
        names::POSTROUTING,
        format_args!(
            "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
        ),
    );
    let mut mark_masq = String::new();
    rule(
        &mut mark_masq,
        names::MARK_MASQ,
        format_args!("-j MARK --or-mark {mark}"),
    );

    let mut forward = String::new();
    if config.drop_invalid {
        rule(
            &mut forward,
            names::FORWARD,
            format_args!("-m conntrack --ctstate INVALID -j DROP"),
        );
    }
    rule(
        &mut forward,
        names::FORWARD,
        format_args!(
            "-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
        ),
    );
    rule(
        &mut forward,
        names::FORWARD,
        format_args!(
            "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ),
    );
    BaseRules {
        postrouting,
        mark_masq,
        forward,
        final_services_rule: format!(
            "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j {}",
            names::NODE_PORTS
        ),
    }
}

/// Rules that do not depend on services (see [`base_rules`]), as restore
/// lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseRules {
    /// KUBE-POSTROUTING (nat).
    pub postrouting: String,
    /// KUBE-MARK-MASQ (nat).
    pub mark_masq: String,
    /// KUBE-FORWARD (filter).
    pub forward: String,
    /// The last rule of KUBE-SERVICES in nat (a spec, without `-A`).
    pub final_services_rule: String,
}
