//! Keeps the model in step with the Services and EndpointSlices the watches
//! report. Work follows the change: an event rebuilds the model entries of
//! one service only, and events that change nothing the proxy uses (status
//! updates, resourceVersion bumps) change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Service as ApiService;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::endpoint_slice::{SlicePort, owning_service, slice_ports};
use super::service::{IpFamily, service_ports};
use crate::model::{Endpoint, Model, Service, ServicePort, ServicePortName};

/// The annotation on EndpointSlices saying when the change they reflect
/// happened (the pod became ready, say).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

type ServiceKey = (String, String);

pub struct Tracker {
    family: IpFamily,
    node_name: String,
    services: HashMap<ServiceKey, Vec<ServicePort>>,
    slices: HashMap<ServiceKey, BTreeMap<String, Vec<SlicePort>>>,
    model: Model,
    /// The model entries each service has, to replace them together.
    in_model: HashMap<ServiceKey, Vec<ServicePortName>>,
    dirty: HashSet<ServiceKey>,
    /// When the changes not yet synced happened.
    change_times: Vec<SystemTime>,
    services_listed: bool,
    slices_listed: bool,
}

impl Tracker {
    pub fn new(node_name: &str, family: IpFamily) -> Tracker {
        Tracker {
            family,
            node_name: node_name.to_string(),
            services: HashMap::new(),
            slices: HashMap::new(),
            model: Model::new(),
            in_model: HashMap::new(),
            dirty: HashSet::new(),
            change_times: Vec::new(),
            services_listed: false,
            slices_listed: false,
        }
    }

    /// Whether both kinds have been listed once: syncing earlier would
    /// write rules from half the picture (e.g. reject services whose
    /// endpoints are not listed yet).
    pub fn is_ready(&self) -> bool {
        self.services_listed && self.slices_listed
    }

    /// Whether something changed since the last [`Tracker::model`].
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// A Service was added or modified. Returns whether that changed
    /// anything.
    pub fn apply_service(&mut self, service: &ApiService) -> bool {
        let Some(key) = key_of(&service.metadata) else {
            return false;
        };
        let ports = service_ports(service, self.family);
        self.set_service(key, ports)
    }

    pub fn delete_service(&mut self, service: &ApiService) -> bool {
        let Some(key) = key_of(&service.metadata) else {
            return false;
        };
        self.set_service(key, Vec::new())
    }

    /// The complete list after a (re)list: services not in it are gone.
    pub fn reset_services(&mut self, services: &[ApiService]) {
        let mut gone: HashSet<ServiceKey> = self.services.keys().cloned().collect();
        for service in services {
            if let Some(key) = key_of(&service.metadata) {
                gone.remove(&key);
                self.set_service(key, service_ports(service, self.family));
            }
        }
        for key in gone {
            self.set_service(key, Vec::new());
        }
        self.services_listed = true;
    }

    fn set_service(&mut self, key: ServiceKey, ports: Vec<ServicePort>) -> bool {
        let old = self.services.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        if old == ports.as_slice() {
            return false;
        }
        if ports.is_empty() {
            self.services.remove(&key);
        } else {
            self.services.insert(key.clone(), ports);
        }
        self.mark(key, SystemTime::now());
        true
    }

    /// An EndpointSlice was added or modified.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) -> bool {
        let (Some(key), Some(name)) = (owning_service(slice), slice.metadata.name.clone()) else {
            return false;
        };
        let ports = slice_ports(slice, self.family, &self.node_name);
        self.set_slice(key, name, ports, trigger_time(slice))
    }

    pub fn delete_slice(&mut self, slice: &EndpointSlice) -> bool {
        let (Some(key), Some(name)) = (owning_service(slice), slice.metadata.name.clone()) else {
            return false;
        };
        self.set_slice(key, name, Vec::new(), SystemTime::now())
    }

    /// The complete list after a (re)list: slices not in it are gone.
    pub fn reset_slices(&mut self, slices: &[EndpointSlice]) {
        let mut gone: HashSet<(ServiceKey, String)> = self
            .slices
            .iter()
            .flat_map(|(key, by_name)| by_name.keys().map(|n| (key.clone(), n.clone())))
            .collect();
        for slice in slices {
            if let (Some(key), Some(name)) = (owning_service(slice), slice.metadata.name.clone()) {
                gone.remove(&(key.clone(), name.clone()));
                let ports = slice_ports(slice, self.family, &self.node_name);
                self.set_slice(key, name, ports, trigger_time(slice));
            }
        }
        for (key, name) in gone {
            self.set_slice(key, name, Vec::new(), SystemTime::now());
        }
        self.slices_listed = true;
    }

    fn set_slice(
        &mut self,
        key: ServiceKey,
        name: String,
        ports: Vec<SlicePort>,
        when: SystemTime,
    ) -> bool {
        let by_name = self.slices.entry(key.clone()).or_default();
        if by_name.get(&name).map(Vec::as_slice).unwrap_or(&[]) == ports.as_slice() {
            if by_name.is_empty() {
                self.slices.remove(&key);
            }
            return false;
        }
        if ports.is_empty() {
            by_name.remove(&name);
            if by_name.is_empty() {
                self.slices.remove(&key);
            }
        } else {
            by_name.insert(name, ports);
        }
        self.mark(key, when);
        true
    }

    fn mark(&mut self, key: ServiceKey, when: SystemTime) {
        self.dirty.insert(key);
        self.change_times.push(when);
    }

    /// When the changes since the last call happened (for the network
    /// programming latency).
    pub fn take_change_times(&mut self) -> Vec<SystemTime> {
        std::mem::take(&mut self.change_times)
    }

    /// The model with every change so far.
    pub fn model(&mut self) -> &Model {
        for key in std::mem::take(&mut self.dirty) {
            for name in self.in_model.remove(&key).unwrap_or_default() {
                self.model.remove(&name);
            }
            let Some(ports) = self.services.get(&key) else {
                continue;
            };
            let slices = self.slices.get(&key);
            let mut names = Vec::with_capacity(ports.len());
            for port in ports {
                let endpoints = endpoints_for(slices, port);
                names.push(port.name.clone());
                self.model.insert(Service::new(port.clone(), endpoints));
            }
            self.in_model.insert(key, names);
        }
        &self.model
    }
}

/// The endpoints all of a service's slices list for `port`.
fn endpoints_for(
    slices: Option<&BTreeMap<String, Vec<SlicePort>>>,
    port: &ServicePort,
) -> Vec<Endpoint> {
    slices
        .into_iter()
        .flat_map(|by_name| by_name.values())
        .flatten()
        .filter(|p| p.name == port.name.port && p.protocol == port.protocol)
        .flat_map(|p| p.endpoints.iter().cloned())
        .collect()
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<ServiceKey> {
    let name = meta.name.clone()?;
    Some((
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name,
    ))
}

fn trigger_time(slice: &EndpointSlice) -> SystemTime {
    slice
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LAST_CHANGE_TRIGGER_TIME))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(SystemTime::from)
        .unwrap_or_else(SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, ip: &str) -> ApiService {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": name, "resourceVersion": "1"},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap()
    }

    fn slice(name: &str, service: &str, ips: &[&str]) -> EndpointSlice {
        let endpoints: Vec<_> = ips
            .iter()
            .map(|ip| serde_json::json!({"addresses": [ip], "nodeName": "n1"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": name,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": endpoints
        }))
        .unwrap()
    }

    fn endpoints(tracker: &mut Tracker, name: &str) -> Vec<String> {
        let key = ServicePortName::new("ns", name, "http");
        let model = tracker.model();
        let service = model.get(&key).expect("service in the model");
        service.endpoints.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn services_and_slices_join_into_the_model() {
        let mut t = Tracker::new("n1", IpFamily::V4);
        assert!(!t.is_ready());
        t.reset_services(&[service("web", "10.96.0.5")]);
        t.reset_slices(&[
            slice("web-a", "web", &["10.244.1.2"]),
            slice("web-b", "web", &["10.244.1.3", "10.244.1.2"]),
        ]);
        assert!(t.is_ready());
        assert_eq!(
            endpoints(&mut t, "web"),
            ["10.244.1.2:8080", "10.244.1.3:8080"]
        );
        assert!(
            t.model()
                .get(&ServicePortName::new("ns", "web", "http"))
                .unwrap()
                .endpoints[0]
                .local
        );

        assert!(t.delete_slice(&slice("web-a", "web", &[])));
        assert!(t.apply_slice(&slice("web-b", "web", &["10.244.1.9"])));
        assert_eq!(endpoints(&mut t, "web"), ["10.244.1.9:8080"]);

        assert!(t.delete_service(&service("web", "10.96.0.5")));
        assert!(t.model().is_empty());
    }

    #[test]
    fn events_that_change_nothing_are_ignored() {
        let mut t = Tracker::new("n1", IpFamily::V4);
        t.reset_services(&[service("web", "10.96.0.5")]);
        t.reset_slices(&[slice("web-a", "web", &["10.244.1.2"])]);
        t.model();
        t.take_change_times();
        let mut bumped = service("web", "10.96.0.5");
        bumped.metadata.resource_version = Some("2".into());
        assert!(!t.apply_service(&bumped));
        assert!(!t.apply_slice(&slice("web-a", "web", &["10.244.1.2"])));
        assert!(!t.has_changes());
        assert!(t.take_change_times().is_empty());
    }

    #[test]
    fn a_relist_drops_what_is_gone() {
        let mut t = Tracker::new("n1", IpFamily::V4);
        t.reset_services(&[service("a", "10.96.0.1"), service("b", "10.96.0.2")]);
        t.reset_slices(&[
            slice("a-1", "a", &["10.244.1.2"]),
            slice("b-1", "b", &["10.244.1.3"]),
        ]);
        assert_eq!(t.model().len(), 2);
        t.reset_services(&[service("a", "10.96.0.1")]);
        t.reset_slices(&[]);
        let model = t.model();
        assert_eq!(model.len(), 1);
        assert!(model.services().next().unwrap().endpoints.is_empty());
    }
}
