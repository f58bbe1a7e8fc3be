//! Load-balancer IPs on the network, kube-vip style: for each IPv4
//! load-balancer IP of a service, the Ready node holding the IP's Lease puts
//! the IP on its LAN interface and sends gratuitous ARP, so that clients on
//! the LAN reach it (every node has the IP's service rules). When the
//! holder stops renewing (it died, or it is not Ready), another node takes
//! over within the lease duration plus one retry period.
//!
//! Stopping the proxy leaves the address and the lease alone: a restart
//! renews both without a gap, and a node that is gone for good loses the
//! lease when it expires.

pub mod arp;
pub mod lease;
pub mod link;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::sync::watch;

use lease::Elector;
pub use lease::{LEASE_NAMESPACE, lease_name};
use link::Link;

/// How long a lease lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(8);
/// How often leases are renewed and contended for.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Gratuitous ARPs sent after taking an address, one per retry period.
const ANNOUNCEMENTS: u32 = 3;

/// An address this node announces.
struct Held {
    renewed: Instant,
    announcements_left: u32,
}

pub struct Announcer {
    elector: Elector,
    nodes: Api<Node>,
    node_name: String,
    node_ip: IpAddr,
    link: Option<Link>,
    held: HashMap<Ipv4Addr, Held>,
}

impl Announcer {
    pub fn new(client: kube::Client, node_name: &str, node_ip: IpAddr) -> Announcer {
        Announcer {
            elector: Elector::new(client.clone(), node_name, LEASE_DURATION),
            nodes: Api::all(client),
            node_name: node_name.to_string(),
            node_ip,
            link: None,
            held: HashMap::new(),
        }
    }

    /// Announces the IPs `wanted` holds until its sender is dropped.
    pub async fn run(mut self, mut wanted: watch::Receiver<BTreeSet<Ipv4Addr>>) {
        loop {
            let want = wanted.borrow_and_update().clone();
            if let Err(e) = self.round(&want).await {
                tracing::warn!("announcing load-balancer IPs: {e:#}");
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_PERIOD) => {}
                changed = wanted.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn round(&mut self, want: &BTreeSet<Ipv4Addr>) -> Result<()> {
        if want.is_empty() && self.held.is_empty() {
            return Ok(());
        }
        if self.link.is_none() {
            self.link = Some(Link::holding(self.node_ip).await?);
        }
        let Some(link) = &self.link else {
            return Ok(());
        };
        let eligible = self.node_ready().await;
        let present = link.host_addresses().await?;
        for &ip in want {
            let holds = match self.elector.contend(ip, eligible).await {
                Ok(holds) => holds,
                Err(e) => {
                    tracing::warn!(%ip, "lease: {e:#}");
                    // Keep announcing until the lease would have run out.
                    self.held
                        .get(&ip)
                        .is_some_and(|h| h.renewed.elapsed() < LEASE_DURATION)
                }
            };
            if holds {
                if !self.held.contains_key(&ip) {
                    link.add(ip).await?;
                    tracing::info!(%ip, "announcing load-balancer IP");
                }
                let held = self.held.entry(ip).or_insert(Held {
                    renewed: Instant::now(),
                    announcements_left: ANNOUNCEMENTS,
                });
                held.renewed = Instant::now();
                if held.announcements_left > 0 {
                    held.announcements_left -= 1;
                    arp::announce(link.index, link.mac, ip)?;
                }
            } else if self.held.remove(&ip).is_some() || present.contains(&ip) {
                link.remove(ip).await?;
                tracing::info!(%ip, "no longer announcing load-balancer IP");
            }
        }
        let gone: Vec<Ipv4Addr> = self
            .held
            .keys()
            .filter(|ip| !want.contains(ip))
            .copied()
            .collect();
        for ip in gone {
            self.held.remove(&ip);
            link.remove(ip).await?;
            self.elector.release(ip).await?;
            tracing::info!(%ip, "load-balancer IP gone");
        }
        Ok(())
    }

    /// Whether this node may announce: its Node is Ready (a proxy without a
    /// Node object, run on its own, may).
    async fn node_ready(&self) -> bool {
        match self.nodes.get_opt(&self.node_name).await {
            Ok(Some(node)) => node
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            Ok(None) => true,
            Err(e) => {
                tracing::warn!("reading node {}: {e}", self.node_name);
                false
            }
        }
    }
}

/// The IPv4 load-balancer IPs this node may announce: those of services
/// any node can serve, and those of `externalTrafficPolicy: Local`
/// services only where they have an endpoint on this node (anywhere else
/// their traffic is dropped), as MetalLB's L2 mode does. Services of
/// another `loadBalancerClass` are announced by their implementation.
pub fn load_balancer_ips(model: &crate::model::Model) -> BTreeSet<Ipv4Addr> {
    model
        .services()
        .filter(|s| s.port.load_balancer_class.is_none())
        .filter(|s| !s.port.external_policy_local() || !s.select_endpoints().local.is_empty())
        .flat_map(|s| s.port.load_balancer_ips.iter())
        .filter_map(|ip| match ip {
            IpAddr::V4(ip) => Some(*ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Endpoint, Model, Protocol, Service, ServicePort, ServicePortName, TrafficPolicy,
    };

    fn load_balancer(name: &str, ip: &str, policy: TrafficPolicy, local: bool) -> Service {
        let mut port = ServicePort::cluster_ip(
            ServicePortName::new("default", name, "http"),
            Protocol::Tcp,
            "10.96.0.9".parse().unwrap(),
            80,
        );
        port.node_port = Some(30080);
        port.load_balancer_ips = vec![ip.parse().unwrap()];
        port.external_traffic_policy = policy;
        let mut endpoint = Endpoint::ready("10.244.1.11".parse().unwrap(), 80);
        endpoint.local = local;
        Service::new(port, vec![endpoint])
    }

    #[test]
    fn local_policy_ips_are_announced_only_where_an_endpoint_runs() {
        let model: Model = [
            load_balancer(
                "everywhere",
                "192.168.56.200",
                TrafficPolicy::Cluster,
                false,
            ),
            load_balancer("here", "192.168.56.201", TrafficPolicy::Local, true),
            load_balancer("elsewhere", "192.168.56.202", TrafficPolicy::Local, false),
        ]
        .into_iter()
        .collect();
        let ips: Vec<String> = load_balancer_ips(&model)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(ips, ["192.168.56.200", "192.168.56.201"]);
    }

    #[test]
    fn another_class_announces_its_own_ips() {
        let mut theirs = load_balancer("theirs", "192.168.56.203", TrafficPolicy::Cluster, false);
        let mut port = (*theirs.port).clone();
        port.load_balancer_class = Some("example.com/lb".into());
        theirs = Service::new(port, theirs.endpoints.to_vec());
        let ours = load_balancer("ours", "192.168.56.200", TrafficPolicy::Cluster, false);
        let model: Model = [theirs, ours].into_iter().collect();
        let ips: Vec<String> = load_balancer_ips(&model)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(ips, ["192.168.56.200"]);
    }
}
