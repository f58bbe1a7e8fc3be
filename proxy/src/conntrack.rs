//! Stale conntrack entries, deleted after the sync that changed the rules
//! (with the `conntrack` tool).
//!
//! UDP has no connection to close, so a flow NATed to an endpoint that went
//! away would keep going to it until the entry times out; and a flow that
//! started while a service had no endpoints would keep going nowhere.
//!
//! Any protocol: a load-balancer or external IP that this node had no
//! rules for may still have seen packets — a client whose ARP entry still
//! names this node after the address moved or its service was deleted.
//! They were forwarded as they were, and conntrack keeps such a flow
//! un-NATed: a retransmitted SYN, or a client that picks the same source
//! port again, bypasses the new rules until the entry expires (two minutes
//! for a SYN that got no answer) and, once this node holds the address,
//! is refused by the node itself.

use std::collections::HashSet;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::model::{Model, Protocol, Service};

/// Conntrack entries to delete.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaleFlows {
    /// Flows to a service address NATed to an endpoint that is gone.
    ToEndpoint {
        service_ip: IpAddr,
        endpoint_ip: IpAddr,
    },
    /// Flows to a node port NATed to an endpoint that is gone.
    NodePortToEndpoint { node_port: u16, endpoint_ip: IpAddr },
    /// Flows to a service address that had no endpoint.
    ToServiceIp { service_ip: IpAddr },
    /// Flows to a node port that had no endpoint.
    ToNodePort { node_port: u16 },
    /// Flows of `protocol` to a service address that were not NATed (their
    /// replies come from the address itself).
    NotNated {
        service_ip: IpAddr,
        protocol: Protocol,
    },
}

impl StaleFlows {
    fn args(&self) -> Vec<String> {
        let protocol = match self {
            StaleFlows::NotNated { protocol, .. } => *protocol,
            _ => Protocol::Udp,
        };
        let mut args = vec!["-D".to_string(), "-p".into(), protocol.to_string()];
        match self {
            StaleFlows::ToEndpoint {
                service_ip,
                endpoint_ip,
            } => args.extend([
                "--orig-dst".into(),
                service_ip.to_string(),
                "--dst-nat".into(),
                endpoint_ip.to_string(),
            ]),
            StaleFlows::NodePortToEndpoint {
                node_port,
                endpoint_ip,
            } => args.extend([
                "--dport".into(),
                node_port.to_string(),
                "--dst-nat".into(),
                endpoint_ip.to_string(),
            ]),
            StaleFlows::ToServiceIp { service_ip } => {
                args.extend(["--orig-dst".into(), service_ip.to_string()])
            }
            StaleFlows::ToNodePort { node_port } => {
                args.extend(["--dport".into(), node_port.to_string()])
            }
            StaleFlows::NotNated { service_ip, .. } => args.extend([
                "--orig-dst".into(),
                service_ip.to_string(),
                "--reply-src".into(),
                service_ip.to_string(),
            ]),
        }
        args
    }
}

/// The UDP flows the step from `old` to `new` left stale.
pub fn stale_flows(old: &Model, new: &Model) -> Vec<StaleFlows> {
    let mut flows = HashSet::new();
    for before in old.services().filter(|s| s.port.protocol == Protocol::Udp) {
        let after = new.get(&before.port.name);
        let kept: HashSet<IpAddr> = after
            .map(|s| {
                s.select_endpoints()
                    .reachable
                    .iter()
                    .map(|e| e.ip)
                    .collect()
            })
            .unwrap_or_default();
        for endpoint in before.select_endpoints().reachable {
            if kept.contains(&endpoint.ip) {
                continue;
            }
            for service_ip in service_ips(before) {
                flows.insert(StaleFlows::ToEndpoint {
                    service_ip,
                    endpoint_ip: endpoint.ip,
                });
            }
            if let Some(node_port) = before.port.node_port {
                flows.insert(StaleFlows::NodePortToEndpoint {
                    node_port,
                    endpoint_ip: endpoint.ip,
                });
            }
        }
    }
    for after in new.services().filter(|s| s.port.protocol == Protocol::Udp) {
        let had_none = old
            .get(&after.port.name)
            .is_none_or(|s| s.select_endpoints().reachable.is_empty());
        if !had_none || after.select_endpoints().reachable.is_empty() {
            continue;
        }
        for service_ip in service_ips(after) {
            flows.insert(StaleFlows::ToServiceIp { service_ip });
        }
        if let Some(node_port) = after.port.node_port {
            flows.insert(StaleFlows::ToNodePort { node_port });
        }
    }
    let mut flows: Vec<StaleFlows> = flows.into_iter().collect();
    flows.sort();
    flows
}

/// The un-NATed flows to load-balancer and external IPs that the step from
/// `old` to `new` gave rules (not worth looking for on a proxy's first sync:
/// the rules either survived its restart or the node has just started).
pub fn not_nated_flows(old: &Model, new: &Model) -> Vec<StaleFlows> {
    let outside_addresses = |model: &Model| -> HashSet<(IpAddr, Protocol)> {
        model
            .services()
            .flat_map(|s| {
                let port = &s.port;
                port.external_ips
                    .iter()
                    .chain(&port.load_balancer_ips)
                    .map(|ip| (*ip, port.protocol))
            })
            .collect()
    };
    let before = outside_addresses(old);
    let mut flows: Vec<StaleFlows> = outside_addresses(new)
        .difference(&before)
        .map(|&(service_ip, protocol)| StaleFlows::NotNated {
            service_ip,
            protocol,
        })
        .collect();
    flows.sort();
    flows
}

fn service_ips(service: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    let port = &service.port;
    std::iter::once(port.cluster_ip)
        .chain(port.external_ips.iter().copied())
        .chain(port.load_balancer_ips.iter().copied())
}

/// Deletes the entries; none matching is not an error.
pub fn delete(flows: &[StaleFlows]) -> Result<()> {
    for flow in flows {
        let args = flow.args();
        let out = Command::new("conntrack")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .context("running conntrack")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // conntrack exits 1 when no entry matched.
        if !out.status.success() && !stderr.contains("0 flow entries have been deleted") {
            bail!(
                "conntrack {} failed ({}): {}",
                args.join(" "),
                out.status,
                stderr.trim()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, ServicePort, ServicePortName};

    fn dns(endpoints: &[&str]) -> Service {
        let mut port = ServicePort::cluster_ip(
            ServicePortName::new("kube-system", "dns", "dns"),
            Protocol::Udp,
            "10.96.0.10".parse().unwrap(),
            53,
        );
        port.node_port = Some(30053);
        let eps = endpoints
            .iter()
            .map(|ip| Endpoint::ready(ip.parse().unwrap(), 53))
            .collect();
        Service::new(port, eps)
    }

    fn model(services: &[Service]) -> Model {
        services.iter().cloned().collect()
    }

    #[test]
    fn a_gone_endpoint_leaves_its_flows_stale() {
        let old = model(&[dns(&["10.244.1.2", "10.244.1.3"])]);
        let new = model(&[dns(&["10.244.1.2"])]);
        let ep: IpAddr = "10.244.1.3".parse().unwrap();
        assert_eq!(
            stale_flows(&old, &new),
            [
                StaleFlows::ToEndpoint {
                    service_ip: "10.96.0.10".parse().unwrap(),
                    endpoint_ip: ep
                },
                StaleFlows::NodePortToEndpoint {
                    node_port: 30053,
                    endpoint_ip: ep
                },
            ]
        );
        assert_eq!(
            StaleFlows::NodePortToEndpoint {
                node_port: 30053,
                endpoint_ip: ep
            }
            .args(),
            [
                "-D",
                "-p",
                "udp",
                "--dport",
                "30053",
                "--dst-nat",
                "10.244.1.3"
            ]
        );
    }

    #[test]
    fn a_service_getting_its_first_endpoint_clears_blackholed_flows() {
        let old = model(&[dns(&[])]);
        let new = model(&[dns(&["10.244.1.2"])]);
        assert_eq!(
            stale_flows(&old, &new),
            [
                StaleFlows::ToServiceIp {
                    service_ip: "10.96.0.10".parse().unwrap()
                },
                StaleFlows::ToNodePort { node_port: 30053 },
            ]
        );
        assert!(stale_flows(&new, &new).is_empty());
    }

    #[test]
    fn a_new_load_balancer_ip_clears_its_flows_that_were_not_nated() {
        let mut port = ServicePort::cluster_ip(
            ServicePortName::new("default", "web", "http"),
            Protocol::Tcp,
            "10.96.0.20".parse().unwrap(),
            80,
        );
        port.load_balancer_ips = vec!["192.168.56.200".parse().unwrap()];
        let web = Service::new(
            port,
            vec![Endpoint::ready("10.244.1.2".parse().unwrap(), 80)],
        );
        let old = model(&[dns(&["10.244.1.2"])]);
        let new = model(&[dns(&["10.244.1.2"]), web]);
        let flows = not_nated_flows(&old, &new);
        assert_eq!(
            flows,
            [StaleFlows::NotNated {
                service_ip: "192.168.56.200".parse().unwrap(),
                protocol: Protocol::Tcp
            }]
        );
        assert_eq!(
            flows[0].args(),
            [
                "-D",
                "-p",
                "tcp",
                "--orig-dst",
                "192.168.56.200",
                "--reply-src",
                "192.168.56.200"
            ]
        );
        assert!(not_nated_flows(&new, &new).is_empty());
        assert!(not_nated_flows(&new, &old).is_empty());
    }
}
