//! What a pod asks of a node (requests, host ports) and what a node offers
//! (allocatable), as integers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::validation::quantity::Quantity as Parsed;

/// Requests used for scoring a container that states none, as upstream's
/// `DefaultMilliCPURequest` and `DefaultMemoryRequest`.
const DEFAULT_CPU_MILLIS: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 << 20;

/// CPU (millicores) and memory (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub cpu: i64,
    pub memory: i64,
}

impl Amount {
    pub fn add(&mut self, other: Amount) {
        self.cpu = self.cpu.saturating_add(other.cpu);
        self.memory = self.memory.saturating_add(other.memory);
    }

    fn max(self, other: Amount) -> Amount {
        Amount {
            cpu: self.cpu.max(other.cpu),
            memory: self.memory.max(other.memory),
        }
    }
}

/// What a pod needs on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDemand {
    /// Effective requests: the sum over containers, at least the largest
    /// init container, plus overhead.
    pub requests: Amount,
    /// The same with defaults for unset requests (for scoring only).
    pub nonzero: Amount,
    /// `(protocol, hostIP, hostPort)` of every container port with a hostPort.
    pub host_ports: Vec<(String, String, i32)>,
}

impl PodDemand {
    pub fn of(pod: &Pod) -> PodDemand {
        let Some(spec) = pod.spec.as_ref() else {
            return PodDemand::default();
        };
        let mut requests = Amount::default();
        let mut nonzero = Amount::default();
        for c in &spec.containers {
            requests.add(container_requests(c, false));
            nonzero.add(container_requests(c, true));
        }
        for c in spec.init_containers.iter().flatten() {
            requests = requests.max(container_requests(c, false));
            nonzero = nonzero.max(container_requests(c, true));
        }
        if let Some(overhead) = &spec.overhead {
            let extra = amount(overhead);
            requests.add(extra);
            nonzero.add(extra);
        }
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|port| port > 0))
            .map(|p| {
                (
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    p.host_port.unwrap_or_default(),
                )
            })
            .collect();
        PodDemand {
            requests,
            nonzero,
            host_ports,
        }
    }
}

fn container_requests(c: &Container, nonzero: bool) -> Amount {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let get = |name: &str| requests.and_then(|r| r.get(name));
    let cpu = get("cpu").and_then(cpu_millis);
    let memory = get("memory").and_then(units);
    if nonzero {
        Amount {
            cpu: cpu.unwrap_or(DEFAULT_CPU_MILLIS),
            memory: memory.unwrap_or(DEFAULT_MEMORY),
        }
    } else {
        Amount {
            cpu: cpu.unwrap_or(0),
            memory: memory.unwrap_or(0),
        }
    }
}

fn amount(list: &BTreeMap<String, Quantity>) -> Amount {
    Amount {
        cpu: list.get("cpu").and_then(cpu_millis).unwrap_or(0),
        memory: list.get("memory").and_then(units).unwrap_or(0),
    }
}

fn cpu_millis(q: &Quantity) -> Option<i64> {
    Parsed::parse(&q.0).and_then(|q| i64::try_from(q.ceil_millis()).ok())
}

/// Memory in bytes, pods as a count.
fn units(q: &Quantity) -> Option<i64> {
    Parsed::parse(&q.0).and_then(|q| i64::try_from(q.ceil_units()).ok())
}

/// What a node offers: allocatable (else capacity); pods unlimited if unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub amount: Amount,
    pub pods: i64,
}

impl Allocatable {
    pub fn of(node: &Node) -> Allocatable {
        let status = node.status.as_ref();
        let list = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        let Some(list) = list else {
            return Allocatable {
                amount: Amount::default(),
                pods: i64::MAX,
            };
        };
        Allocatable {
            amount: amount(list),
            pods: list.get("pods").and_then(units).unwrap_or(i64::MAX),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, ResourceRequirements};

    pub fn container(cpu: Option<&str>, memory: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if let Some(memory) = memory {
            requests.insert("memory".to_string(), Quantity(memory.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    #[test]
    fn sums_containers_and_honours_init_containers() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![
                    container(Some("100m"), Some("64Mi")),
                    container(Some("200m"), None),
                ],
                init_containers: Some(vec![container(Some("1"), None)]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let demand = PodDemand::of(&pod);
        assert_eq!(
            demand.requests,
            Amount {
                cpu: 1000,
                memory: 64 << 20
            }
        );
        assert_eq!(
            demand.nonzero,
            Amount {
                cpu: 1000,
                memory: (64 << 20) + DEFAULT_MEMORY
            }
        );
    }

    #[test]
    fn host_ports_default_protocol_and_address() {
        let mut c = container(None, None);
        c.ports = Some(vec![
            ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..ContainerPort::default()
            },
            ContainerPort {
                container_port: 53,
                ..ContainerPort::default()
            },
        ]);
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(
            PodDemand::of(&pod).host_ports,
            vec![("TCP".to_string(), "0.0.0.0".to_string(), 8080)]
        );
    }
}
