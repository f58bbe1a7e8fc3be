//! Which endpoints each kind of traffic may use on this node, from the
//! service's traffic policies and the endpoints' conditions (upstream's
//! endpoint categorisation, without topology hints).
//!
//! Ready endpoints are used; when none are, endpoints that still serve while
//! terminating are used instead, so that connections are not refused while
//! a service rolls over.

use super::{Endpoint, ServicePort};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct EndpointSelection<'a> {
    /// Endpoints for traffic under the `Cluster` policy (any node).
    pub cluster: Vec<&'a Endpoint>,
    /// Endpoints for traffic under the `Local` policy (this node only).
    pub local: Vec<&'a Endpoint>,
    /// Every endpoint some traffic can reach from this node: `cluster` and
    /// `local` merged, in address order.
    pub reachable: Vec<&'a Endpoint>,
    /// Whether the service has a usable endpoint anywhere in the cluster.
    pub any_usable: bool,
}

impl<'a> EndpointSelection<'a> {
    pub fn new(port: &ServicePort, endpoints: &'a [Endpoint]) -> EndpointSelection<'a> {
        let mut selection = EndpointSelection::default();
        let usable = |e: &&Endpoint| e.ready || e.serving_terminating();
        selection.any_usable = endpoints.iter().any(|e| usable(&e));

        if port.uses_cluster_endpoints() {
            selection.cluster = pick(endpoints, |_| true);
        }
        if port.uses_local_endpoints() {
            selection.local = pick(endpoints, |e| e.local);
        }
        // Both lists keep the endpoints' order: merge them in one pass.
        let mut cluster = selection.cluster.iter().peekable();
        let mut local = selection.local.iter().peekable();
        for endpoint in endpoints {
            let in_cluster = cluster.next_if(|c| std::ptr::eq(**c, endpoint)).is_some();
            let in_local = local.next_if(|l| std::ptr::eq(**l, endpoint)).is_some();
            if in_cluster || in_local {
                selection.reachable.push(endpoint);
            }
        }
        selection
    }
}

/// The ready endpoints among those `wanted`, or, if none is ready, the ones
/// that serve while terminating.
fn pick(endpoints: &[Endpoint], wanted: impl Fn(&Endpoint) -> bool) -> Vec<&Endpoint> {
    let ready: Vec<&Endpoint> = endpoints.iter().filter(|e| wanted(e) && e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .iter()
        .filter(|e| wanted(e) && e.serving_terminating())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ServicePortName, TrafficPolicy};

    fn port() -> ServicePort {
        let mut p = ServicePort::cluster_ip(
            ServicePortName::new("ns", "web", ""),
            Protocol::Tcp,
            "10.96.0.10".parse().unwrap(),
            80,
        );
        p.node_port = Some(30080);
        p
    }

    fn ep(last: u8, local: bool, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint {
            ip: format!("10.244.0.{last}").parse().unwrap(),
            port: 8080,
            local,
            ready,
            serving,
            terminating,
        }
    }

    fn lasts(eps: &[&Endpoint]) -> Vec<String> {
        eps.iter().map(|e| e.ip.to_string()).collect()
    }

    #[test]
    fn cluster_policy_uses_ready_endpoints_only() {
        let eps = [
            ep(1, false, true, true, false),
            ep(2, true, false, false, false),
            ep(3, false, false, true, true),
        ];
        let s = EndpointSelection::new(&port(), &eps);
        assert_eq!(lasts(&s.cluster), ["10.244.0.1"]);
        assert!(s.local.is_empty());
        assert_eq!(lasts(&s.reachable), ["10.244.0.1"]);
        assert!(s.any_usable);
    }

    #[test]
    fn terminating_endpoints_serve_when_nothing_is_ready() {
        let eps = [
            ep(1, false, false, false, true),
            ep(2, false, false, true, true),
        ];
        let s = EndpointSelection::new(&port(), &eps);
        assert_eq!(lasts(&s.cluster), ["10.244.0.2"]);
        assert!(s.any_usable);
    }

    #[test]
    fn no_usable_endpoint_anywhere() {
        let eps = [ep(1, false, false, false, false)];
        let s = EndpointSelection::new(&port(), &eps);
        assert!(s.cluster.is_empty() && s.reachable.is_empty());
        assert!(!s.any_usable);
    }

    #[test]
    fn local_external_policy_merges_local_terminating_endpoints() {
        let mut p = port();
        p.external_traffic_policy = TrafficPolicy::Local;
        let eps = [
            ep(1, false, true, true, false),
            ep(2, true, false, true, true),
        ];
        let s = EndpointSelection::new(&p, &eps);
        assert_eq!(lasts(&s.cluster), ["10.244.0.1"]);
        assert_eq!(lasts(&s.local), ["10.244.0.2"]);
        assert_eq!(lasts(&s.reachable), ["10.244.0.1", "10.244.0.2"]);
    }

    #[test]
    fn local_internal_policy_without_local_endpoints() {
        let mut p = port();
        p.node_port = None;
        p.internal_traffic_policy = TrafficPolicy::Local;
        let eps = [ep(1, false, true, true, false)];
        let s = EndpointSelection::new(&p, &eps);
        assert!(s.cluster.is_empty() && s.local.is_empty() && s.reachable.is_empty());
        assert!(s.any_usable);
    }
}
