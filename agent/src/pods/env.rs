//! A container's environment as upstream builds it: Service variables
//! (`KUBERNETES_SERVICE_HOST`…), then `envFrom`, then `env` with `$(VAR)`
//! references expanded; values from the pod's fields, its resources,
//! ConfigMaps and Secrets. Command and args are expanded against the result.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;

use super::ConfigError;
use crate::quantity;

/// What a `status.hostIP`/`status.podIP` fieldRef and the node's
/// allocatable (limits default to it) resolve to.
pub struct Facts<'a> {
    pub host_ip: &'a str,
    pub pod_ips: &'a [String],
    pub node_cpu_millis: i64,
    pub node_memory: i64,
}

/// Fetches ConfigMaps and Secrets once per container start.
pub struct Lookup {
    client: kube::Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Lookup {
    pub fn new(client: kube::Client, namespace: &str) -> Lookup {
        Lookup {
            client,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("reading configmap {name:?}: {e}")))?;
            self.config_maps.insert(name.to_string(), found);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("reading secret {name:?}: {e}")))?;
            self.secrets.insert(name.to_string(), found);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }

    /// `key` of ConfigMap `name`, or why not.
    async fn config_map_key(
        &mut self,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, ConfigError> {
        let namespace = self.namespace.clone();
        match self.config_map(name).await? {
            None if optional => Ok(None),
            None => Err(ConfigError(format!("configmap {name:?} not found"))),
            Some(cm) => match config_map_data(cm).remove(key) {
                Some(value) => Ok(Some(value)),
                None if optional => Ok(None),
                None => Err(ConfigError(format!(
                    "couldn't find key {key} in ConfigMap {namespace}/{name}"
                ))),
            },
        }
    }

    async fn secret_key(
        &mut self,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, ConfigError> {
        let namespace = self.namespace.clone();
        match self.secret(name).await? {
            None if optional => Ok(None),
            None => Err(ConfigError(format!("secret {name:?} not found"))),
            Some(secret) => match secret_data(secret).remove(key) {
                Some(value) => Ok(Some(String::from_utf8_lossy(&value).into_owned())),
                None if optional => Ok(None),
                None => Err(ConfigError(format!(
                    "couldn't find key {key} in Secret {namespace}/{name}"
                ))),
            },
        }
    }
}

/// A ConfigMap's data and binaryData, as text.
pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut data = cm.data.clone().unwrap_or_default();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    data
}

/// A Secret's data (stringData is folded in by the API server).
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

/// The container's environment, in order.
pub async fn environment(
    pod: &Pod,
    c: &Container,
    services: &[Service],
    facts: &Facts<'_>,
    lookup: &mut Lookup,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut env: Vec<(String, String)> = service_env(services, namespace, links);

    for source in c.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            let optional = r.optional == Some(true);
            match lookup.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in config_map_data(cm) {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(ConfigError(format!("configmap {:?} not found", r.name))),
            }
        }
        if let Some(r) = &source.secret_ref {
            let optional = r.optional == Some(true);
            match lookup.secret(&r.name).await? {
                Some(secret) => {
                    for (k, v) in secret_data(secret) {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                None if optional => {}
                None => return Err(ConfigError(format!("secret {:?} not found", r.name))),
            }
        }
    }

    for var in c.env.iter().flatten() {
        let value = match &var.value_from {
            None => {
                let defined: HashMap<&str, &str> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Some(expand(var.value.as_deref().unwrap_or(""), &defined))
            }
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    Some(field_ref(pod, &f.field_path, facts)?)
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref() {
                        Some(name) if !name.is_empty() => find_container(pod, name)
                            .ok_or_else(|| ConfigError(format!("container {name:?} not found")))?,
                        _ => c,
                    };
                    let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
                    Some(resource_field_ref(target, &r.resource, divisor, facts)?)
                } else if let Some(r) = &from.config_map_key_ref {
                    lookup
                        .config_map_key(&r.name, &r.key, r.optional == Some(true))
                        .await?
                } else if let Some(r) = &from.secret_key_ref {
                    lookup
                        .secret_key(&r.name, &r.key, r.optional == Some(true))
                        .await?
                } else {
                    None
                }
            }
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

fn set(env: &mut Vec<(String, String)>, key: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => env.push((key, value)),
    }
}

/// `$(VAR)` replaced by `VAR`'s value when defined (left as is otherwise);
/// `$$` is a literal `$`.
pub fn expand(input: &str, defined: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(open) = after.strip_prefix('(')
            && let Some(close) = open.find(')')
        {
            let name = &open[..close];
            match defined.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API field path.
pub fn field_ref(pod: &Pod, path: &str, facts: &Facts<'_>) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_entry = |map: Option<&BTreeMap<String, String>>, key: &str| {
        map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|p| p.strip_prefix("['"))
            .and_then(|p| p.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => facts.host_ip.to_string(),
        "status.hostIPs" => facts.host_ip.to_string(),
        "status.podIP" => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => facts.pod_ips.join(","),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                map_entry(meta.labels.as_ref(), &key)
            } else if let Some(key) = subscript("metadata.annotations") {
                map_entry(meta.annotations.as_ref(), &key)
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    })
}

/// `key="value"` lines, sorted, as the downward API writes maps.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `limits.cpu`, `requests.memory`… of `c` in units of `divisor` (rounded
/// up); limits default to the node's allocatable.
pub fn resource_field_ref(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    facts: &Facts<'_>,
) -> Result<String, ConfigError> {
    let bad = |e: anyhow::Error| ConfigError(format!("{resource}: {e}"));
    let resources = c.resources.as_ref();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError(format!("unsupported container resource: {resource}")))?;
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => {
            return Err(ConfigError(format!(
                "unsupported container resource: {resource}"
            )));
        }
    };
    let set = list.and_then(|l| l.get(name)).map(|q| q.0.as_str());
    let cpu = name == "cpu";
    // In thousandths for CPU, units otherwise.
    let value = match (set, kind, cpu) {
        (Some(q), _, true) => quantity::millis(q).map_err(bad)?,
        (Some(q), _, false) => quantity::units(q).map_err(bad)?,
        (None, "limits", true) => facts.node_cpu_millis,
        (None, "limits", false) if name == "memory" => facts.node_memory,
        (None, _, _) => 0,
    };
    let divisor = match (divisor, cpu) {
        (Some(d), true) => quantity::millis(d).map_err(bad)?,
        (Some(d), false) => quantity::units(d).map_err(bad)?,
        (None, true) => 1000,
        (None, false) => 1,
    };
    if divisor <= 0 {
        return Err(ConfigError(format!(
            "{resource}: the divisor must be positive"
        )));
    }
    Ok(((value + divisor - 1) / divisor).to_string())
}

/// Upstream's Service variables: the namespace's Services (when links are
/// enabled) and always the `kubernetes` Service of `default`.
pub fn service_env(services: &[Service], namespace: &str, links: bool) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        let ip = s
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        if (links && ns == namespace) || (ns == "default" && name == "kubernetes") {
            chosen.insert(name.to_string(), s);
        }
    }
    let mut env = Vec::new();
    for (name, s) in chosen {
        let spec = s
            .spec
            .as_ref()
            .expect("services with a cluster IP have a spec");
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or(&[]);
        env.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        if let Some(first) = ports.first() {
            env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                env.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        port_name.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{ip}:{}", proto.to_lowercase(), p.port);
            if i == 0 {
                env.push((format!("{prefix}_PORT"), url.clone()));
            }
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            env.push((format!("{base}_PROTO"), proto.to_lowercase()));
            env.push((format!("{base}_PORT"), p.port.to_string()));
            env.push((format!("{base}_ADDR"), ip.clone()));
            env.push((base, url));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ResourceRequirements, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn facts() -> Facts<'static> {
        Facts {
            host_ip: "192.168.56.11",
            pod_ips: &[],
            node_cpu_millis: 2000,
            node_memory: 1 << 30,
        }
    }

    #[test]
    fn expands_defined_references_only() {
        let defined = HashMap::from([("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &defined), "1-two");
        assert_eq!(expand("$(C) $$(A) $", &defined), "$(C) $(A) $");
        assert_eq!(expand("x$(A", &defined), "x$(A");
    }

    #[test]
    fn field_paths_of_the_downward_api() {
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            },
            ..Default::default()
        };
        let ips = vec!["10.244.0.7".to_string()];
        let f = Facts {
            pod_ips: &ips,
            ..facts()
        };
        assert_eq!(field_ref(&pod, "metadata.name", &f).unwrap(), "web");
        assert_eq!(
            field_ref(&pod, "metadata.labels['app']", &f).unwrap(),
            "web"
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels", &f).unwrap(),
            "app=\"web\""
        );
        assert_eq!(field_ref(&pod, "status.podIP", &f).unwrap(), "10.244.0.7");
        assert_eq!(
            field_ref(&pod, "status.hostIP", &f).unwrap(),
            "192.168.56.11"
        );
        assert!(field_ref(&pod, "spec.nope", &f).is_err());
    }

    #[test]
    fn resources_in_divisor_units_with_limits_defaulting_to_the_node() {
        let c = Container {
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
                requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            resource_field_ref(&c, "limits.memory", Some("1Mi"), &facts()).unwrap(),
            "64"
        );
        assert_eq!(
            resource_field_ref(&c, "requests.cpu", Some("1m"), &facts()).unwrap(),
            "250"
        );
        assert_eq!(
            resource_field_ref(&c, "requests.cpu", None, &facts()).unwrap(),
            "1"
        );
        assert_eq!(
            resource_field_ref(&c, "limits.cpu", None, &facts()).unwrap(),
            "2"
        );
    }

    fn service(ns: &str, name: &str, ip: &str, port: i32, port_name: Option<&str>) -> Service {
        Service {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(vec![ServicePort {
                    port,
                    name: port_name.map(String::from),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_variables_like_upstream() {
        let services = vec![
            service("default", "kubernetes", "10.96.0.1", 443, Some("https")),
            service("web", "my-svc", "10.96.0.20", 80, None),
            service("web", "headless", "None", 80, None),
            service("other", "elsewhere", "10.96.0.30", 80, None),
        ];
        let env: HashMap<String, String> =
            service_env(&services, "web", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://10.96.0.1:443");
        assert_eq!(env["MY_SVC_SERVICE_HOST"], "10.96.0.20");
        assert_eq!(env["MY_SVC_PORT"], "tcp://10.96.0.20:80");
        assert_eq!(env["MY_SVC_PORT_80_TCP_PROTO"], "tcp");
        assert!(!env.contains_key("HEADLESS_SERVICE_HOST"));
        assert!(!env.contains_key("ELSEWHERE_SERVICE_HOST"));
        let env: HashMap<String, String> =
            service_env(&services, "web", false).into_iter().collect();
        assert!(
            env.contains_key("KUBERNETES_SERVICE_HOST") && !env.contains_key("MY_SVC_SERVICE_HOST")
        );
    }
}
