//! Rendering: a service port of the model → what IPVS mode programs for it:
//! virtual servers with their real servers, addresses for kube-ipvs0, and
//! ipset entries for the mode's iptables rules. Pure: the same service and
//! configuration always give the same rules.
//!
//! As upstream: a virtual server for the cluster IP (its real servers
//! follow internalTrafficPolicy), and one for each external IP,
//! load-balancer IP and node IP × node port (these follow
//! externalTrafficPolicy). Session affinity is persistence with the
//! affinity's timeout; every real server has weight 1.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::ipset::{Set, entry};
use super::netlink::{Destination, Protocol, Scheduler, ServiceKey, VirtualService};
use crate::model::{self, Endpoint, Service, SessionAffinity};

/// What rendering depends on besides the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderConfig {
    pub scheduler: Scheduler,
    /// The node's addresses that take node ports (never bound to
    /// kube-ipvs0: they are on the node's own links).
    pub node_ips: Vec<IpAddr>,
}

/// A virtual server and its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServer {
    pub service: VirtualService,
    pub destinations: BTreeSet<Destination>,
}

/// Everything one service port contributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRules {
    pub virtual_servers: Vec<VirtualServer>,
    /// Addresses to bind on kube-ipvs0.
    pub bound: Vec<IpAddr>,
    pub entries: Vec<(Set, String)>,
}

/// The rules of `service`.
pub fn render(service: &Service, config: &RenderConfig) -> ServiceRules {
    let port = &service.port;
    let protocol = protocol(port.protocol);
    let name = port.protocol.as_str();
    let selection = service.select_endpoints();
    let destinations = |endpoints: &[&Endpoint]| -> BTreeSet<Destination> {
        endpoints
            .iter()
            .map(|e| Destination {
                addr: e.ip,
                port: e.port,
                weight: 1,
            })
            .collect()
    };
    let internal = destinations(if port.internal_policy_local() {
        &selection.local
    } else {
        &selection.cluster
    });
    let external_local = port.external_policy_local();
    let external = destinations(if external_local {
        &selection.local
    } else {
        &selection.cluster
    });
    let persistence_timeout = match port.session_affinity {
        SessionAffinity::None => None,
        SessionAffinity::ClientIp { timeout } => {
            Some(u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX).max(1))
        }
    };
    let virtual_server =
        |addr: IpAddr, port: u16, destinations: &BTreeSet<Destination>| VirtualServer {
            service: VirtualService {
                key: ServiceKey {
                    protocol,
                    addr,
                    port,
                },
                scheduler: config.scheduler.clone(),
                persistence_timeout,
            },
            destinations: destinations.clone(),
        };
    let on_node = |ip: &IpAddr| config.node_ips.contains(ip);

    let mut rules = ServiceRules::default();
    let bind = |rules: &mut ServiceRules, ip: IpAddr| {
        if !on_node(&ip) {
            rules.bound.push(ip);
            rules.entries.push((Set::IpvsIps, entry::ip(ip)));
        }
    };

    // Hairpin: a local endpoint reaching itself through the service is
    // masqueraded, or its reply would skip IPVS.
    for endpoint in selection.reachable.iter().filter(|e| e.local) {
        rules.entries.push((
            Set::LoopBack,
            entry::ip_port_ip(endpoint.ip, name, endpoint.port, endpoint.ip),
        ));
    }

    rules
        .virtual_servers
        .push(virtual_server(port.cluster_ip, port.port, &internal));
    bind(&mut rules, port.cluster_ip);
    rules.entries.push((
        Set::ClusterIp,
        entry::ip_port(port.cluster_ip, name, port.port),
    ));

    for &ip in &port.external_ips {
        rules
            .virtual_servers
            .push(virtual_server(ip, port.port, &external));
        bind(&mut rules, ip);
        let set = if external_local {
            Set::ExternalIpLocal
        } else {
            Set::ExternalIp
        };
        rules
            .entries
            .push((set, entry::ip_port(ip, name, port.port)));
    }

    for &ip in &port.load_balancer_ips {
        rules
            .virtual_servers
            .push(virtual_server(ip, port.port, &external));
        bind(&mut rules, ip);
        let lb = entry::ip_port(ip, name, port.port);
        rules.entries.push((Set::LoadBalancer, lb.clone()));
        if external_local {
            rules.entries.push((Set::LoadBalancerLocal, lb.clone()));
        }
        if !port.load_balancer_source_ranges.is_empty() {
            rules.entries.push((Set::LoadBalancerFirewall, lb));
            for &range in &port.load_balancer_source_ranges {
                rules.entries.push((
                    Set::LoadBalancerSourceCidr,
                    entry::ip_port_net(ip, name, port.port, range),
                ));
            }
            // The node reaches its own load-balancer IPs from that IP.
            let from_node = config.node_ips.iter().any(|n| {
                port.load_balancer_source_ranges
                    .iter()
                    .any(|r| r.contains(n))
            });
            if from_node {
                rules.entries.push((
                    Set::LoadBalancerSourceIp,
                    entry::ip_port_ip(ip, name, port.port, ip),
                ));
            }
        }
    }

    if let Some(node_port) = port.node_port {
        for &ip in &config.node_ips {
            rules
                .virtual_servers
                .push(virtual_server(ip, node_port, &external));
        }
        let (all, local) = match port.protocol {
            model::Protocol::Tcp => (Set::NodePortTcp, Set::NodePortLocalTcp),
            model::Protocol::Udp => (Set::NodePortUdp, Set::NodePortLocalUdp),
            model::Protocol::Sctp => (Set::NodePortSctp, Set::NodePortLocalSctp),
        };
        let entries: Vec<String> = match port.protocol {
            model::Protocol::Sctp => config
                .node_ips
                .iter()
                .map(|&ip| entry::ip_port(ip, name, node_port))
                .collect(),
            _ => vec![entry::port(node_port)],
        };
        for e in entries {
            if external_local {
                rules.entries.push((local, e.clone()));
            }
            rules.entries.push((all, e));
        }
    }

    if let Some(health) = port.health_check_node_port {
        rules
            .entries
            .push((Set::HealthCheckNodePort, entry::port(health)));
    }
    rules
}

fn protocol(protocol: model::Protocol) -> Protocol {
    match protocol {
        model::Protocol::Tcp => Protocol::Tcp,
        model::Protocol::Udp => Protocol::Udp,
        model::Protocol::Sctp => Protocol::Sctp,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{ServicePort, ServicePortName, TrafficPolicy};

    /// Round robin, node IP 192.168.56.10.
    pub(crate) fn config() -> RenderConfig {
        RenderConfig {
            scheduler: Scheduler::RoundRobin,
            node_ips: vec!["192.168.56.10".parse().unwrap()],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn endpoint(addr: &str, local: bool) -> Endpoint {
        let mut e = Endpoint::ready(ip(addr), 8080);
        e.local = local;
        e
    }

    fn web(endpoints: Vec<Endpoint>) -> (ServicePort, Vec<Endpoint>) {
        let port = ServicePort::cluster_ip(
            ServicePortName::new("default", "web", "http"),
            model::Protocol::Tcp,
            ip("10.96.0.10"),
            80,
        );
        (port, endpoints)
    }

    fn servers(rules: &ServiceRules) -> Vec<String> {
        rules
            .virtual_servers
            .iter()
            .map(|vs| {
                let dests: Vec<String> = vs
                    .destinations
                    .iter()
                    .map(|d| format!("{}:{}", d.addr, d.port))
                    .collect();
                format!("{} -> {}", vs.service.key, dests.join(" "))
            })
            .collect()
    }

    fn entries(rules: &ServiceRules) -> Vec<String> {
        rules
            .entries
            .iter()
            .map(|(set, e)| format!("{} {e}", set.name(super::super::ipset::Family::V4)))
            .collect()
    }

    #[test]
    fn a_cluster_ip_is_one_bound_virtual_server_over_the_ready_endpoints() {
        let mut not_ready = endpoint("10.244.2.9", false);
        not_ready.ready = false;
        let (port, eps) = web(vec![
            endpoint("10.244.1.5", false),
            endpoint("10.244.2.6", true),
            not_ready,
        ]);
        let rules = render(&Service::new(port, eps), &config());
        assert_eq!(
            servers(&rules),
            ["TCP 10.96.0.10:80 -> 10.244.1.5:8080 10.244.2.6:8080"]
        );
        assert_eq!(rules.bound, [ip("10.96.0.10")]);
        assert_eq!(
            entries(&rules),
            [
                "KUBE-LOOP-BACK 10.244.2.6,tcp:8080,10.244.2.6",
                "KUBE-IPVS-IPS 10.96.0.10",
                "KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
            ]
        );
        let vs = &rules.virtual_servers[0];
        assert_eq!(vs.service.scheduler, Scheduler::RoundRobin);
        assert_eq!(vs.service.persistence_timeout, None);
        assert!(vs.destinations.iter().all(|d| d.weight == 1));
    }

    #[test]
    fn node_ports_and_load_balancer_ips_add_virtual_servers_and_set_entries() {
        let (mut port, eps) = web(vec![endpoint("10.244.1.5", false)]);
        port.node_port = Some(30080);
        port.load_balancer_ips = vec![ip("192.168.56.200")];
        port.external_ips = vec![ip("192.168.56.10")];
        port.session_affinity = SessionAffinity::ClientIp {
            timeout: Duration::from_secs(10800),
        };
        let rules = render(&Service::new(port, eps), &config());
        assert_eq!(
            servers(&rules),
            [
                "TCP 10.96.0.10:80 -> 10.244.1.5:8080",
                "TCP 192.168.56.10:80 -> 10.244.1.5:8080",
                "TCP 192.168.56.200:80 -> 10.244.1.5:8080",
                "TCP 192.168.56.10:30080 -> 10.244.1.5:8080",
            ]
        );
        // The external IP is the node's own: not bound to kube-ipvs0.
        assert_eq!(rules.bound, [ip("10.96.0.10"), ip("192.168.56.200")]);
        assert_eq!(
            entries(&rules),
            [
                "KUBE-IPVS-IPS 10.96.0.10",
                "KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
                "KUBE-EXTERNAL-IP 192.168.56.10,tcp:80",
                "KUBE-IPVS-IPS 192.168.56.200",
                "KUBE-LOAD-BALANCER 192.168.56.200,tcp:80",
                "KUBE-NODE-PORT-TCP 30080",
            ]
        );
        assert!(
            rules
                .virtual_servers
                .iter()
                .all(|vs| vs.service.persistence_timeout == Some(10800))
        );
    }

    #[test]
    fn external_traffic_policy_local_uses_local_endpoints_and_keeps_client_addresses() {
        let (mut port, eps) = web(vec![
            endpoint("10.244.1.5", false),
            endpoint("10.244.0.7", true),
        ]);
        port.node_port = Some(30080);
        port.load_balancer_ips = vec![ip("192.168.56.200")];
        port.external_traffic_policy = TrafficPolicy::Local;
        port.health_check_node_port = Some(32000);
        let rules = render(&Service::new(port, eps), &config());
        assert_eq!(
            servers(&rules),
            [
                "TCP 10.96.0.10:80 -> 10.244.0.7:8080 10.244.1.5:8080",
                "TCP 192.168.56.200:80 -> 10.244.0.7:8080",
                "TCP 192.168.56.10:30080 -> 10.244.0.7:8080",
            ]
        );
        let entries = entries(&rules);
        for expected in [
            "KUBE-LOAD-BALANCER-LOCAL 192.168.56.200,tcp:80",
            "KUBE-NODE-PORT-LOCAL-TCP 30080",
            "KUBE-NODE-PORT-TCP 30080",
            "KUBE-HEALTH-CHECK-NODE-PORT 32000",
        ] {
            assert!(
                entries.iter().any(|e| e == expected),
                "{expected}: {entries:?}"
            );
        }
    }

    #[test]
    fn a_service_without_endpoints_keeps_its_virtual_server_so_connections_are_refused() {
        let (port, eps) = web(Vec::new());
        let rules = render(&Service::new(port, eps), &config());
        assert_eq!(servers(&rules), ["TCP 10.96.0.10:80 -> "]);
    }

    #[test]
    fn load_balancer_source_ranges_fill_the_firewall_sets() {
        let (mut port, eps) = web(vec![endpoint("10.244.1.5", false)]);
        port.load_balancer_ips = vec![ip("192.168.56.200")];
        port.load_balancer_source_ranges = vec![
            "203.0.113.0/24".parse().unwrap(),
            "192.168.56.0/24".parse().unwrap(),
        ];
        let entries = entries(&render(&Service::new(port, eps), &config()));
        for expected in [
            "KUBE-LOAD-BALANCER-FW 192.168.56.200,tcp:80",
            "KUBE-LOAD-BALANCER-SOURCE-CIDR 192.168.56.200,tcp:80,203.0.113.0/24",
            "KUBE-LOAD-BALANCER-SOURCE-CIDR 192.168.56.200,tcp:80,192.168.56.0/24",
            "KUBE-LOAD-BALANCER-SOURCE-IP 192.168.56.200,tcp:80,192.168.56.200",
        ] {
            assert!(
                entries.iter().any(|e| e == expected),
                "{expected}: {entries:?}"
            );
        }
    }

    #[test]
    fn sctp_node_ports_are_matched_by_node_address() {
        let (mut port, eps) = web(vec![endpoint("10.244.1.5", false)]);
        port.protocol = model::Protocol::Sctp;
        port.node_port = Some(30099);
        let entries = entries(&render(&Service::new(port, eps), &config()));
        assert!(entries.contains(&"KUBE-NODE-PORT-SCTP-HASH 192.168.56.10,sctp:30099".to_string()));
    }
}
