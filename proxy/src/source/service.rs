//! A Service object → the model's service ports of one IP family.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

use crate::model::{ServicePort, ServicePortName, SessionAffinity, TrafficPolicy};

/// Services carrying this label are handled by another proxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";

/// upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);

/// IPv4 or IPv6: the model holds one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    fn parse(self, text: &str) -> Option<IpAddr> {
        let ip: IpAddr = text.trim().parse().ok()?;
        (IpFamily::of(&ip) == self).then_some(ip)
    }
}

/// The ports of `service` this proxy handles, or none: headless and
/// ExternalName services, services of another proxy, and services without
/// a cluster IP of `family` have none.
pub fn service_ports(service: &Service, family: IpFamily) -> Vec<ServicePort> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let labels = service.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
        || spec.type_.as_deref() == Some("ExternalName")
    {
        return Vec::new();
    }
    let cluster_ips = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter());
    let Some(cluster_ip) = cluster_ips.filter_map(|ip| family.parse(ip)).next() else {
        return Vec::new(); // headless ("None"), unset, or another family
    };

    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let external_ips: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| family.parse(ip))
        .collect();
    let load_balancer_ips: Vec<IpAddr> = if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        ingress
            .iter()
            .copied()
            .flatten()
            // "Proxy" means the load balancer proxies: the node sees its
            // own traffic, not the IP.
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_deref().and_then(|ip| family.parse(ip)))
            .collect()
    } else {
        Vec::new()
    };
    let source_ranges: Vec<IpNet> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|r| r.trim().parse::<IpNet>().ok())
        .filter(|r| family.parse(&r.addr().to_string()).is_some())
        .collect();
    let session_affinity = match spec.session_affinity.as_deref() {
        Some("ClientIP") => SessionAffinity::ClientIp {
            timeout: spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT),
        },
        _ => SessionAffinity::None,
    };
    let policy = |p: Option<&str>| match p {
        Some("Local") => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    };

    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = super::protocol(port.protocol.as_deref())?;
            Some(ServicePort {
                name: ServicePortName::new(namespace, name, port.name.as_deref().unwrap_or("")),
                protocol,
                port: u16::try_from(port.port).ok().filter(|p| *p != 0)?,
                cluster_ip,
                node_port: port
                    .node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                load_balancer_class: spec
                    .load_balancer_class
                    .clone()
                    .filter(|class| !class.is_empty()),
                load_balancer_source_ranges: source_ranges.clone(),
                session_affinity,
                external_traffic_policy: policy(spec.external_traffic_policy.as_deref()),
                internal_traffic_policy: policy(spec.internal_traffic_policy.as_deref()),
                health_check_node_port: spec
                    .health_check_node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn service(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_load_balancer_service_with_everything() {
        let svc = service(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "10.96.0.20",
                "clusterIPs": ["10.96.0.20", "fd00::20"],
                "externalIPs": ["192.168.99.1", "fd00::1", "not-an-ip"],
                "loadBalancerSourceRanges": [" 203.0.113.0/24 ", "bad"],
                "loadBalancerClass": "example.com/lb",
                "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 32000,
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                    {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}
                ]
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "192.168.56.200"}, {"ip": "192.168.56.201", "ipMode": "Proxy"}, {"hostname": "lb.example"}
            ]}}
        }));
        let ports = service_ports(&svc, IpFamily::V4);
        assert_eq!(ports.len(), 2);
        let http = &ports[0];
        assert_eq!(http.name.to_string(), "shop/web:http");
        assert_eq!(http.cluster_ip.to_string(), "10.96.0.20");
        assert_eq!((http.port, http.node_port), (80, Some(30080)));
        assert_eq!(
            http.external_ips,
            ["192.168.99.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            http.load_balancer_ips,
            ["192.168.56.200".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(http.load_balancer_class.as_deref(), Some("example.com/lb"));
        assert_eq!(http.load_balancer_source_ranges.len(), 1);
        assert_eq!(http.external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(http.health_check_node_port, Some(32000));
        assert_eq!(
            http.session_affinity,
            SessionAffinity::ClientIp {
                timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(ports[1].protocol, Protocol::Udp);

        let v6 = service_ports(&svc, IpFamily::V6);
        assert_eq!(v6[0].cluster_ip.to_string(), "fd00::20");
        assert!(v6[0].load_balancer_ips.is_empty());
    }

    #[test]
    fn services_the_proxy_leaves_alone() {
        for spec in [
            serde_json::json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            serde_json::json!({"type": "ExternalName", "externalName": "example.com"}),
            serde_json::json!({"ports": [{"port": 80}]}),
        ] {
            let svc = service(serde_json::json!({"metadata": {"name": "x"}, "spec": spec}));
            assert!(service_ports(&svc, IpFamily::V4).is_empty(), "{svc:?}");
        }
        let other = service(serde_json::json!({
            "metadata": {"name": "x", "labels": {SERVICE_PROXY_NAME_LABEL: "other"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}
        }));
        assert!(service_ports(&other, IpFamily::V4).is_empty());
    }

    #[test]
    fn defaults_for_a_bare_cluster_ip_service() {
        let svc = service(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "x"},
            "spec": {"clusterIP": "10.96.0.1", "sessionAffinity": "ClientIP", "ports": [{"port": 443}]}
        }));
        let ports = service_ports(&svc, IpFamily::V4);
        assert_eq!(ports[0].name.to_string(), "ns/x");
        assert_eq!(ports[0].protocol, Protocol::Tcp);
        assert_eq!(ports[0].node_port, None);
        assert_eq!(
            ports[0].session_affinity,
            SessionAffinity::ClientIp {
                timeout: Duration::from_secs(10800)
            }
        );
    }
}
