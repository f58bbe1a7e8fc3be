//! The core/v1 Endpoints of a Service (what `kubectl describe svc` and older
//! clients read), pure: one subset per port mapping, ready pods in
//! `addresses`, the rest in `notReadyAddresses`, terminating pods left out
//! unless the service publishes not-ready addresses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::desired::{PodEndpoint, Port};
use super::slices::{HEADLESS_LABEL, is_headless};

/// Marks Endpoints written by this controller (upstream: the mirroring
/// controller must not copy them back into slices).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

pub fn endpoints(svc: &Service, groups: &BTreeMap<Vec<Port>, Vec<PodEndpoint>>) -> Endpoints {
    let publish_not_ready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let subsets: Vec<EndpointSubset> = groups
        .iter()
        .filter_map(|(ports, eps)| {
            let included = eps.iter().filter(|e| publish_not_ready || !e.terminating);
            let (ready, not_ready): (Vec<&PodEndpoint>, Vec<&PodEndpoint>) =
                included.partition(|e| e.ready);
            if ready.is_empty() && not_ready.is_empty() {
                return None;
            }
            let list = |eps: Vec<&PodEndpoint>| {
                let mut addrs: Vec<EndpointAddress> = eps.into_iter().map(address).collect();
                addrs.sort_by(|a, b| a.ip.cmp(&b.ip));
                (!addrs.is_empty()).then_some(addrs)
            };
            Some(EndpointSubset {
                addresses: list(ready),
                not_ready_addresses: list(not_ready),
                ports: (!ports.is_empty()).then(|| ports.iter().map(port).collect()),
            })
        })
        .collect();
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SKIP_MIRROR_LABEL.into(), "true".into());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

fn address(e: &PodEndpoint) -> EndpointAddress {
    EndpointAddress {
        ip: e.ip.clone(),
        node_name: e.node.clone(),
        hostname: e.hostname.clone(),
        target_ref: Some(e.target.clone()),
    }
}

fn port(p: &Port) -> EndpointPort {
    EndpointPort {
        name: (!p.name.is_empty()).then(|| p.name.clone()),
        port: p.port,
        protocol: Some(p.protocol.clone()),
        app_protocol: p.app_protocol.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpoints::desired::groups;
    use crate::controllers::endpoints::desired::tests::{pod, service};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn ready_and_not_ready_addresses() {
        let svc = service(Some(&[("app", "web")]), vec![port_("", 80)]);
        let g = groups(
            &svc,
            &[
                pod("b", Some("10.0.0.2"), true, 8080),
                pod("a", Some("10.0.0.1"), false, 8080),
            ],
        )
        .unwrap();
        let ep = endpoints(&svc, &g);
        assert_eq!(ep.metadata.name.as_deref(), Some("web"));
        assert_eq!(
            ep.metadata.labels.as_ref().unwrap()[SKIP_MIRROR_LABEL],
            "true"
        );
        let subset = &ep.subsets.as_ref().unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
        assert_eq!(
            subset.not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.0.0.1"
        );
        assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(subset.ports.as_ref().unwrap()[0].name, None);
    }

    #[test]
    fn no_pods_no_subsets() {
        let svc = service(Some(&[("app", "web")]), vec![port_("", 80)]);
        assert!(
            endpoints(&svc, &groups(&svc, &[]).unwrap())
                .subsets
                .is_none()
        );
    }

    fn port_(name: &str, p: i32) -> k8s_openapi::api::core::v1::ServicePort {
        crate::controllers::endpoints::desired::tests::port(name, p, IntOrString::Int(8080))
    }
}
