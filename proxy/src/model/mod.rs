//! The proxy's view of the cluster: every service port with the endpoints
//! behind it, as plain values. Backends (iptables, IPVS) render from this and
//! nothing else, so the model knows no backend and no API object.
//!
//! A [`Model`] holds the service ports of one IP family. Entries are shared
//! (`Arc`) and replaced, never mutated: a backend that keeps the previous
//! model's entries can tell what changed with [`Arc::ptr_eq`] before it falls
//! back to comparing values.

mod endpoint;
mod selection;
mod service_port;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use endpoint::Endpoint;
pub use selection::EndpointSelection;
pub use service_port::{Protocol, ServicePort, ServicePortName, SessionAffinity, TrafficPolicy};

/// One service port and the endpoints currently behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub port: Arc<ServicePort>,
    /// Endpoints for this port from all of the service's EndpointSlices,
    /// sorted by address and port, without duplicates.
    pub endpoints: Arc<[Endpoint]>,
}

impl Service {
    pub fn new(port: ServicePort, endpoints: Vec<Endpoint>) -> Service {
        Service {
            port: Arc::new(port),
            endpoints: endpoint::normalize(endpoints).into(),
        }
    }

    /// Which endpoints each kind of traffic may use on this node.
    pub fn select_endpoints(&self) -> EndpointSelection<'_> {
        EndpointSelection::new(&self.port, &self.endpoints)
    }

    /// Whether this entry is known to be identical to `other` (the same
    /// shared values, or equal ones).
    pub fn same_as(&self, other: &Service) -> bool {
        (Arc::ptr_eq(&self.port, &other.port) || self.port == other.port)
            && (Arc::ptr_eq(&self.endpoints, &other.endpoints) || self.endpoints == other.endpoints)
    }
}

/// All service ports of one IP family, ordered by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    services: BTreeMap<ServicePortName, Service>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Adds or replaces the entry for the service port's name.
    pub fn insert(&mut self, service: Service) {
        self.services.insert(service.port.name.clone(), service);
    }

    pub fn remove(&mut self, name: &ServicePortName) -> Option<Service> {
        self.services.remove(name)
    }

    pub fn get(&self, name: &ServicePortName) -> Option<&Service> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl ExactSizeIterator<Item = &Service> {
        self.services.values()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Endpoints summed over all service ports.
    pub fn endpoint_count(&self) -> usize {
        self.services.values().map(|s| s.endpoints.len()).sum()
    }
}

impl FromIterator<Service> for Model {
    fn from_iter<I: IntoIterator<Item = Service>>(iter: I) -> Model {
        let mut model = Model::new();
        for service in iter {
            model.insert(service);
        }
        model
    }
}
