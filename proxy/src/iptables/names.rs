//! Chain names, as upstream kube-proxy makes them so that tools and people
//! used to its rules find their way: a prefix and the first 16 characters of
//! the base32 of a sha256 over the service port name and protocol (and, for
//! an endpoint's chain, the endpoint).

use sha2::{Digest, Sha256};

use crate::model::{Endpoint, ServicePort};

pub const SERVICES: &str = "KUBE-SERVICES";
pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const NODE_PORTS: &str = "KUBE-NODEPORTS";
pub const POSTROUTING: &str = "KUBE-POSTROUTING";
pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const FORWARD: &str = "KUBE-FORWARD";
pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const CANARY: &str = "KUBE-PROXY-CANARY";

const CLUSTER_POLICY_PREFIX: &str = "KUBE-SVC-";
const LOCAL_POLICY_PREFIX: &str = "KUBE-SVL-";
const EXTERNAL_PREFIX: &str = "KUBE-EXT-";
const FIREWALL_PREFIX: &str = "KUBE-FW-";
const ENDPOINT_PREFIX: &str = "KUBE-SEP-";

/// Whether `chain` is one of the per-service or per-endpoint chains this
/// proxy creates (and so may delete when nothing uses it any more).
pub fn is_service_chain(chain: &str) -> bool {
    [
        CLUSTER_POLICY_PREFIX,
        LOCAL_POLICY_PREFIX,
        EXTERNAL_PREFIX,
        FIREWALL_PREFIX,
        ENDPOINT_PREFIX,
    ]
    .iter()
    .any(|prefix| chain.starts_with(prefix))
}

/// The chains of one service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceChains {
    /// `KUBE-SVC-*`: spreads `Cluster`-policy traffic over all endpoints.
    pub cluster_policy: String,
    /// `KUBE-SVL-*`: spreads `Local`-policy traffic over this node's endpoints.
    pub local_policy: String,
    /// `KUBE-EXT-*`: entry for node-port, external-IP and load-balancer traffic.
    pub external: String,
    /// `KUBE-FW-*`: load-balancer source ranges.
    pub firewall: String,
}

impl ServiceChains {
    pub fn new(port: &ServicePort) -> ServiceChains {
        let hash = hash16(&[&port.name.to_string(), port.protocol.as_str()]);
        ServiceChains {
            cluster_policy: format!("{CLUSTER_POLICY_PREFIX}{hash}"),
            local_policy: format!("{LOCAL_POLICY_PREFIX}{hash}"),
            external: format!("{EXTERNAL_PREFIX}{hash}"),
            firewall: format!("{FIREWALL_PREFIX}{hash}"),
        }
    }
}

/// `KUBE-SEP-*`: the chain that DNATs to one endpoint of a service port.
pub fn endpoint_chain(port: &ServicePort, endpoint: &Endpoint) -> String {
    let hash = hash16(&[
        &port.name.to_string(),
        port.protocol.as_str(),
        &endpoint.to_string(),
    ]);
    format!("{ENDPOINT_PREFIX}{hash}")
}

fn hash16(parts: &[&str]) -> String {
    let mut sha = Sha256::new();
    for part in parts {
        sha.update(part.as_bytes());
    }
    let digest = sha.finalize();
    // 10 bytes are exactly 16 base32 characters.
    data_encoding::BASE32.encode(&digest[..10])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ServicePortName};

    fn port(ns: &str, name: &str, port_name: &str, protocol: Protocol) -> ServicePort {
        ServicePort::cluster_ip(
            ServicePortName::new(ns, name, port_name),
            protocol,
            "172.30.0.41".parse().unwrap(),
            80,
        )
    }

    // Names from upstream kube-proxy's rule dumps, so that ours match theirs.
    #[test]
    fn service_chains_match_upstream() {
        let chains = ServiceChains::new(&port("ns1", "svc1", "p80", Protocol::Tcp));
        assert_eq!(chains.cluster_policy, "KUBE-SVC-XPGD46QRK7WJZT7O");
        let chains = ServiceChains::new(&port("ns2", "svc2", "p80", Protocol::Tcp));
        assert_eq!(chains.external, "KUBE-EXT-GNZBNJ2PO5MGZ6GT");
        assert_eq!(chains.local_policy, "KUBE-SVL-GNZBNJ2PO5MGZ6GT");
    }

    #[test]
    fn endpoint_chains_match_upstream() {
        let p = port("ns1", "svc1", "p80", Protocol::Tcp);
        let ep = Endpoint::ready("10.180.0.1".parse().unwrap(), 80);
        assert_eq!(endpoint_chain(&p, &ep), "KUBE-SEP-SXIVWICOYRO3J4NJ");
    }

    #[test]
    fn recognises_only_per_service_chains() {
        assert!(is_service_chain("KUBE-SEP-SXIVWICOYRO3J4NJ"));
        assert!(is_service_chain("KUBE-FW-NUKIZ6OKUXPJNT4C"));
        assert!(!is_service_chain(SERVICES));
        assert!(!is_service_chain("KUBE-MARK-MASQ"));
        assert!(!is_service_chain("DOCKER"));
    }
}
