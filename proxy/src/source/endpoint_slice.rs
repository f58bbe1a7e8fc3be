//! An EndpointSlice → the endpoints it lists for each of its service's ports.

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::service::IpFamily;
use crate::model::{Endpoint, Protocol};

/// The label naming the service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one slice says about one port of its service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    /// The service port's name ("" for an unnamed port).
    pub name: String,
    pub protocol: Protocol,
    pub endpoints: Vec<Endpoint>,
}

/// The service (`namespace`, `name`) a slice belongs to, if it has one.
pub fn owning_service(slice: &EndpointSlice) -> Option<(String, String)> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let namespace = slice
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    Some((namespace, name.clone()))
}

/// The endpoints of `slice` by port, for a proxy on `node_name`. Slices of
/// another address family (or FQDN slices) list none.
pub fn slice_ports(slice: &EndpointSlice, family: IpFamily, node_name: &str) -> Vec<SlicePort> {
    let wanted = match family {
        IpFamily::V4 => "IPv4",
        IpFamily::V6 => "IPv6",
    };
    if slice.address_type != wanted {
        return Vec::new();
    }
    slice
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = super::protocol(port.protocol.as_deref())?;
            let number = port
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)?;
            let endpoints = slice
                .endpoints
                .iter()
                .flatten()
                .filter_map(|e| {
                    // Only the first address counts, as upstream.
                    let ip = e.addresses.first()?.parse().ok()?;
                    let conditions = e.conditions.as_ref();
                    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                    Some(Endpoint {
                        ip,
                        port: number,
                        local: e.node_name.as_deref() == Some(node_name),
                        ready,
                        serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                        terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                    })
                })
                .collect();
            Some(SlicePort {
                name: port.name.clone().unwrap_or_default(),
                protocol,
                endpoints,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_port_with_conditions_and_locality() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web-abc", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.244.1.5"], "nodeName": "w1", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.6"], "nodeName": "w2",
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.244.2.7"]}
            ]
        }))
        .unwrap();
        assert_eq!(owning_service(&slice), Some(("shop".into(), "web".into())));
        let ports = slice_ports(&slice, IpFamily::V4, "w1");
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (ports[0].name.as_str(), ports[0].protocol),
            ("http", Protocol::Tcp)
        );
        assert_eq!(
            (ports[1].name.as_str(), ports[1].protocol),
            ("dns", Protocol::Udp)
        );
        let eps = &ports[0].endpoints;
        assert_eq!(eps[0].to_string(), "10.244.1.5:8080");
        assert!(eps[0].local && eps[0].ready && eps[0].serving && !eps[0].terminating);
        assert!(!eps[1].local && !eps[1].ready && eps[1].serving && eps[1].terminating);
        // No conditions: ready.
        assert!(eps[2].ready && eps[2].serving && !eps[2].local);

        assert!(slice_ports(&slice, IpFamily::V6, "w1").is_empty());
    }
}
