//! What a Service's endpoints should be, pure: each selected pod with an IP
//! becomes an endpoint with its readiness and the service ports resolved
//! against the pod (a named `targetPort` is looked up in the pod's container
//! ports, so pods may serve one service port on different numbers). Endpoints
//! are grouped by their resolved ports, as EndpointSlices and Endpoints
//! subsets both want.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controllers::pods;
use crate::controllers::selector::Labels;

/// A resolved service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

/// One pod as an endpoint of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEndpoint {
    pub ip: String,
    pub node: Option<String>,
    pub hostname: Option<String>,
    pub target: ObjectReference,
    /// Ready to receive new connections (always, with publishNotReadyAddresses).
    pub ready: bool,
    /// Its Ready condition, terminating or not.
    pub serving: bool,
    pub terminating: bool,
}

impl PodEndpoint {
    pub fn is_ipv6(&self) -> bool {
        self.ip.contains(':')
    }
}

/// The endpoints of `svc` among `pods`, grouped by resolved ports (in a
/// stable order); `None` for a service whose endpoints are not ours to manage
/// (no selector, or ExternalName).
pub fn groups(svc: &Service, pods: &[Arc<Pod>]) -> Option<BTreeMap<Vec<Port>, Vec<PodEndpoint>>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let selector = Labels::from_map(spec.selector.as_ref());
    if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
        return None;
    }
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let namespace = svc.metadata.namespace.as_deref();
    let svc_name = svc.metadata.name.as_deref().unwrap_or_default();
    let mut groups: BTreeMap<Vec<Port>, Vec<PodEndpoint>> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.namespace.as_deref() != namespace
            || !selector.matches(pod.metadata.labels.as_ref())
            || pods::is_terminal(pod)
        {
            continue;
        }
        let Some(ip) = pods::ip(pod) else {
            continue;
        };
        let ports = resolve_ports(svc, pod);
        let terminating = pods::is_terminating(pod);
        let ready = pods::is_ready(pod);
        let pod_spec = pod.spec.as_ref();
        let hostname = pod_spec
            .filter(|s| s.subdomain.as_deref() == Some(svc_name))
            .and_then(|s| s.hostname.clone());
        let endpoint = PodEndpoint {
            ip: ip.to_string(),
            node: pods::node_name(pod).map(String::from),
            hostname,
            target: ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            },
            ready: publish_not_ready || (ready && !terminating),
            serving: publish_not_ready || ready,
            terminating,
        };
        groups.entry(ports).or_default().push(endpoint);
    }
    for endpoints in groups.values_mut() {
        endpoints.sort_by(|a, b| (&a.target.name, &a.ip).cmp(&(&b.target.name, &b.ip)));
    }
    Some(groups)
}

/// The service's ports as this pod serves them; a named target port the pod
/// does not have drops that port for this pod, as upstream.
fn resolve_ports(svc: &Service, pod: &Pod) -> Vec<Port> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[]);
    let mut resolved: Vec<Port> = ports
        .iter()
        .filter_map(|sp| {
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            let port = match &sp.target_port {
                None => sp.port,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(name)) => match name.parse::<i32>() {
                    Ok(n) => n,
                    Err(_) => named_port(pod, name, &protocol)?,
                },
            };
            Some(Port {
                name: sp.name.clone().unwrap_or_default(),
                port,
                protocol,
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    resolved.sort();
    resolved
}

fn named_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol
        })
        .map(|p| p.container_port)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    pub fn service(selector: Option<&[(&str, &str)]>, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: selector.map(|s| {
                    s.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    pub fn pod(name: &str, ip: Option<&str>, ready: bool, http_port: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "web".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: http_port,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                pod_ip: ip.map(Into::into),
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn named_target_ports_group_pods() {
        let svc = service(
            Some(&[("app", "web")]),
            vec![port("http", 80, IntOrString::String("http".into()))],
        );
        let pods = [
            pod("a", Some("10.0.0.1"), true, 8080),
            pod("b", Some("10.0.0.2"), false, 9090),
            pod("c", None, true, 8080),
        ];
        let groups = groups(&svc, &pods).unwrap();
        assert_eq!(groups.len(), 2);
        let (ports, eps) = groups.iter().next().unwrap();
        assert_eq!(ports[0].port, 8080);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].ip, "10.0.0.1");
        assert!(eps[0].ready);
        let b = &groups.values().nth(1).unwrap()[0];
        assert!(!b.ready && !b.serving && !b.terminating);
    }

    #[test]
    fn terminating_and_publish_not_ready() {
        let mut svc = service(
            Some(&[("app", "web")]),
            vec![port("", 80, IntOrString::Int(8080))],
        );
        let mut dying = (*pod("a", Some("10.0.0.1"), true, 8080)).clone();
        dying.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        let groups_ = groups(&svc, &[Arc::new(dying.clone())]).unwrap();
        let ep = &groups_.values().next().unwrap()[0];
        assert!(!ep.ready && ep.serving && ep.terminating);

        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let groups_ = groups(&svc, &[pod("b", Some("10.0.0.2"), false, 8080)]).unwrap();
        assert!(groups_.values().next().unwrap()[0].ready);
    }

    #[test]
    fn services_without_selectors_are_left_alone() {
        assert!(groups(&service(None, vec![]), &[]).is_none());
        assert!(groups(&service(Some(&[]), vec![]), &[]).is_none());
    }
}
