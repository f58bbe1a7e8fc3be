//! A service port: one `spec.ports[]` entry of a Service with everything that
//! decides how traffic to it is handled.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// `namespace/name:port`, the name kube-proxy gives a service port (the port
/// part is the port's name and is left out, with its colon, when empty).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub port: String,
}

impl ServicePortName {
    pub fn new(namespace: &str, name: &str, port: &str) -> ServicePortName {
        ServicePortName {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port: port.to_string(),
        }
    }
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The lower-case name iptables and conntrack use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SessionAffinity {
    #[default]
    None,
    /// Connections from one client IP go to the same endpoint until it has
    /// been idle for `timeout`.
    ClientIp { timeout: Duration },
}

/// One port of a Service, in one IP family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub protocol: Protocol,
    pub port: u16,
    pub cluster_ip: IpAddr,
    pub node_port: Option<u16>,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` of a LoadBalancer service.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerClass`: another load-balancer implementation's
    /// service, whose IPs that implementation announces.
    pub load_balancer_class: Option<String>,
    /// `spec.loadBalancerSourceRanges`: when non-empty, only these sources may
    /// reach the load-balancer IPs.
    pub load_balancer_source_ranges: Vec<IpNet>,
    pub session_affinity: SessionAffinity,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    /// The node port that answers health checks of an
    /// `externalTrafficPolicy: Local` service.
    pub health_check_node_port: Option<u16>,
}

impl ServicePort {
    /// A ClusterIP service port with defaults for everything else.
    pub fn cluster_ip(name: ServicePortName, protocol: Protocol, ip: IpAddr, port: u16) -> Self {
        ServicePort {
            name,
            protocol,
            port,
            cluster_ip: ip,
            node_port: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_class: None,
            load_balancer_source_ranges: Vec::new(),
            session_affinity: SessionAffinity::None,
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            health_check_node_port: None,
        }
    }

    /// Whether traffic can reach it from outside: a node port, an external IP
    /// or a load-balancer IP.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// External traffic goes to this node's endpoints only.
    pub fn external_policy_local(&self) -> bool {
        self.externally_accessible() && self.external_traffic_policy == TrafficPolicy::Local
    }

    /// Cluster-IP traffic goes to this node's endpoints only.
    pub fn internal_policy_local(&self) -> bool {
        self.internal_traffic_policy == TrafficPolicy::Local
    }

    /// Some traffic to it may go to endpoints on any node. External traffic
    /// always may: under the `Local` policy, traffic from this node and its
    /// pods to an external address short-circuits to all endpoints.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local() || self.externally_accessible()
    }

    /// Some traffic to it goes to this node's endpoints only.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local() || self.external_policy_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_leave_out_an_empty_port_name() {
        assert_eq!(
            ServicePortName::new("ns", "web", "http").to_string(),
            "ns/web:http"
        );
        assert_eq!(ServicePortName::new("ns", "web", "").to_string(), "ns/web");
    }

    #[test]
    fn traffic_policies_decide_which_endpoints_are_used() {
        let mut port = ServicePort::cluster_ip(
            ServicePortName::new("ns", "web", ""),
            Protocol::Tcp,
            "10.96.0.10".parse().unwrap(),
            80,
        );
        assert!(port.uses_cluster_endpoints() && !port.uses_local_endpoints());

        // externalTrafficPolicy only matters when something is external.
        port.external_traffic_policy = TrafficPolicy::Local;
        assert!(!port.external_policy_local());
        port.node_port = Some(30080);
        assert!(port.external_policy_local());
        assert!(port.uses_cluster_endpoints() && port.uses_local_endpoints());

        port.internal_traffic_policy = TrafficPolicy::Local;
        assert!(port.uses_cluster_endpoints() && port.uses_local_endpoints());
        port.node_port = None;
        assert!(!port.uses_cluster_endpoints() && port.uses_local_endpoints());
    }
}
