//! EndpointSlices for a Service, pure: the desired slices (one per port
//! mapping and address family, at most 100 endpoints each; a placeholder
//! slice when there are none, as upstream), matched against the existing
//! ones so that unchanged slices are left alone and changed ones updated in
//! place rather than replaced.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::desired::{PodEndpoint, Port};
use crate::controllers::owners;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
const MAX_ENDPOINTS: usize = 100;

/// The writes that bring a service's slices to the desired state.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

/// Whether `slice` is one of ours for the service `name`.
pub fn is_managed_for(slice: &EndpointSlice, name: &str) -> bool {
    let labels = slice.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(SERVICE_NAME_LABEL) == Some(name) && label(MANAGED_BY_LABEL) == Some(MANAGED_BY)
}

pub fn plan(
    svc: &Service,
    groups: &BTreeMap<Vec<Port>, Vec<PodEndpoint>>,
    existing: &[Arc<EndpointSlice>],
) -> Plan {
    let labels = slice_labels(svc);
    let mut wanted: Vec<(String, Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
    for (ports, endpoints) in groups {
        let ports: Vec<EndpointPort> = ports.iter().map(slice_port).collect();
        for family in ["IPv4", "IPv6"] {
            let of_family: Vec<Endpoint> = endpoints
                .iter()
                .filter(|e| e.is_ipv6() == (family == "IPv6"))
                .map(slice_endpoint)
                .collect();
            for chunk in of_family.chunks(MAX_ENDPOINTS) {
                wanted.push((family.to_string(), ports.clone(), chunk.to_vec()));
            }
        }
    }
    if wanted.is_empty() {
        wanted.push(("IPv4".to_string(), Vec::new(), Vec::new()));
    }
    let mut unused: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    let mut plan = Plan::default();
    for (family, ports, endpoints) in wanted {
        let reusable = unused
            .iter()
            .position(|s| s.address_type == family && s.ports.clone().unwrap_or_default() == ports);
        let ports = (!ports.is_empty()).then_some(ports);
        match reusable.map(|i| unused.remove(i)) {
            Some(slice) => {
                let same = slice.endpoints.clone().unwrap_or_default() == endpoints
                    && slice.metadata.labels.as_ref() == Some(&labels)
                    && owners::controller_of(&slice.metadata).map(|o| &o.uid)
                        == svc.metadata.uid.as_ref();
                if !same {
                    let mut updated = (**slice).clone();
                    updated.endpoints = Some(endpoints);
                    updated.metadata.labels = Some(labels.clone());
                    updated.metadata.owner_references = Some(vec![owners::controller_ref(svc)]);
                    plan.update.push(updated);
                }
            }
            None => plan.create.push(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!(
                        "{}-",
                        svc.metadata.name.as_deref().unwrap_or_default()
                    )),
                    namespace: svc.metadata.namespace.clone(),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owners::controller_ref(svc)]),
                    ..ObjectMeta::default()
                },
                address_type: family,
                endpoints: Some(endpoints),
                ports,
            }),
        }
    }
    plan.delete = unused
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    plan
}

/// The service's labels plus ours.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn slice_port(p: &Port) -> EndpointPort {
    EndpointPort {
        name: Some(p.name.clone()),
        port: Some(p.port),
        protocol: Some(p.protocol.clone()),
        app_protocol: p.app_protocol.clone(),
    }
}

fn slice_endpoint(e: &PodEndpoint) -> Endpoint {
    Endpoint {
        addresses: vec![e.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(e.ready),
            serving: Some(e.serving),
            terminating: Some(e.terminating),
        }),
        node_name: e.node.clone(),
        hostname: e.hostname.clone(),
        target_ref: Some(e.target.clone()),
        ..Endpoint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpoints::desired::{groups, tests::*};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn web() -> Service {
        service(
            Some(&[("app", "web")]),
            vec![port("http", 80, IntOrString::Int(8080))],
        )
    }

    #[test]
    fn creates_a_labelled_owned_slice() {
        let svc = web();
        let g = groups(&svc, &[pod("a", Some("10.0.0.1"), true, 8080)]).unwrap();
        let plan = plan(&svc, &g, &[]);
        assert_eq!(plan.create.len(), 1);
        let slice = &plan.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels["team"], "a");
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));
        let ep = &slice.endpoints.as_ref().unwrap()[0];
        assert_eq!(ep.addresses, ["10.0.0.1"]);
        assert_eq!(ep.node_name.as_deref(), Some("n1"));
        assert_eq!(ep.conditions.as_ref().unwrap().ready, Some(true));
        assert_eq!(
            slice.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Service"
        );
    }

    #[test]
    fn unchanged_slices_are_left_alone_and_changed_ones_updated() {
        let svc = web();
        let g = groups(&svc, &[pod("a", Some("10.0.0.1"), true, 8080)]).unwrap();
        let mut existing = plan(&svc, &g, &[]).create.remove(0);
        existing.metadata.name = Some("web-abcde".into());
        let existing = [Arc::new(existing)];
        let again = plan(&svc, &g, &existing);
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());

        let g = groups(&svc, &[pod("a", Some("10.0.0.1"), false, 8080)]).unwrap();
        let changed = plan(&svc, &g, &existing);
        assert_eq!(changed.update.len(), 1);
        assert_eq!(
            changed.update[0].metadata.name.as_deref(),
            Some("web-abcde")
        );
    }

    #[test]
    fn no_endpoints_keeps_one_placeholder_and_drops_the_rest() {
        let svc = web();
        let g = groups(&svc, &[pod("a", Some("10.0.0.1"), true, 8080)]).unwrap();
        let mut a = plan(&svc, &g, &[]).create.remove(0);
        a.metadata.name = Some("web-1".into());
        let empty = groups(&svc, &[]).unwrap();
        let p = plan(&svc, &empty, &[Arc::new(a)]);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.as_ref().unwrap().is_empty());
        assert_eq!(p.delete, ["web-1"]);
    }

    #[test]
    fn large_services_split_into_slices_of_100() {
        let svc = web();
        let pods: Vec<_> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    Some(&format!("10.0.{}.{}", i / 200, i % 200)),
                    true,
                    8080,
                )
            })
            .collect();
        let g = groups(&svc, &pods).unwrap();
        let sizes: Vec<usize> = plan(&svc, &g, &[])
            .create
            .iter()
            .map(|s| s.endpoints.as_ref().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }
}
