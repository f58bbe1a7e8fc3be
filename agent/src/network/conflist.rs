//! The CNI network list for a node's podCIDR: a `cni0` bridge that is the
//! pods' gateway, host-local addresses from the podCIDR, portmap for
//! hostPorts and loopback. Both runtimes read it from the CNI conf dir.

use std::path::Path;

use ipnet::Ipv4Net;
use serde_json::json;

/// The file the list is written to (the only one the agent writes there).
pub const FILE_NAME: &str = "10-paddock.conflist";
/// The network's name: host-local keeps its reservations under it.
pub const NETWORK: &str = "paddock";

/// The conflist for `pod_cidr`, with host-local's reservations in `ipam_dir`.
pub fn render(pod_cidr: Ipv4Net, ipam_dir: &Path) -> String {
    let list = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": pod_cidr.trunc().to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    });
    format!("{list:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_network_over_the_pod_cidr() {
        let rendered = render(
            "10.244.1.0/24".parse().unwrap(),
            Path::new("/var/lib/paddock/agent/ipam"),
        );
        let list: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(list["name"], "paddock");
        let plugins: Vec<&str> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(plugins, ["bridge", "portmap", "loopback"]);
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/paddock/agent/ipam");
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
    }
}
