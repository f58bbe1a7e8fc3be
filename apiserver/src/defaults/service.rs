//! Services: `SetDefaults_Service`, plus the IP family fields the service
//! registry fills on a single-stack IPv4 cluster.

use serde_json::{Map, Value, json};

use super::{mirror_first, object_entry, objects_in, pointer, set_default};

/// Upstream's `DefaultClientIPServiceAffinitySeconds` (3 hours).
const CLIENT_IP_AFFINITY_SECONDS: i64 = 10_800;

pub(super) fn service(obj: &mut Map<String, Value>) {
    let Some(spec) = object_entry(obj, "spec") else {
        return;
    };
    set_default(spec, "type", "ClusterIP");
    set_default(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = pointer(spec, "/sessionAffinityConfig/clientIP/timeoutSeconds")
                .is_some_and(|v| !v.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": CLIENT_IP_AFFINITY_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    for port in objects_in(spec, "ports") {
        set_default(port, "protocol", "TCP");
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if target_unset && let Some(number) = port.get("port").cloned() {
            port.insert("targetPort".into(), number);
        }
    }
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|ips| !ips.is_empty());
    let externally_accessible = matches!(service_type.as_str(), "NodePort" | "LoadBalancer")
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        set_default(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(
        service_type.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer"
    ) {
        set_default(spec, "internalTrafficPolicy", "Cluster");
        set_default(spec, "ipFamilyPolicy", "SingleStack");
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if service_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", true);
        for ingress in obj
            .get_mut("status")
            .and_then(|s| s.get_mut("loadBalancer"))
            .and_then(|lb| lb.get_mut("ingress"))
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            if ingress
                .get("ip")
                .and_then(Value::as_str)
                .is_some_and(|ip| !ip.is_empty())
            {
                set_default(ingress, "ipMode", "VIP");
            }
        }
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        // The service registry's normalisation.
        mirror_first(spec, "clusterIP", "clusterIPs", None);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::defaults::apply;
    use crate::resources::lookup;

    fn defaulted(svc: Value) -> Value {
        let mut svc = svc;
        apply(lookup("", "v1", "services").unwrap(), &mut svc);
        svc
    }

    /// `kubectl expose pod nginx --type=NodePort --port=80` sends this.
    #[test]
    fn kubectl_expose_node_port() {
        let svc = defaulted(json!({
            "kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "nginx", "labels": {"run": "nginx"}},
            "spec": {"ports": [{"protocol": "TCP", "port": 80, "targetPort": 80}],
                     "selector": {"run": "nginx"}, "type": "NodePort"},
            "status": {"loadBalancer": {}}
        }));
        assert_eq!(
            svc["spec"],
            json!({
                "ports": [{"protocol": "TCP", "port": 80, "targetPort": 80}],
                "selector": {"run": "nginx"},
                "type": "NodePort",
                "sessionAffinity": "None",
                "externalTrafficPolicy": "Cluster",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "ipFamilies": ["IPv4"],
            })
        );
    }

    #[test]
    fn minimal_service() {
        let svc = defaulted(
            json!({"spec": {"ports": [{"port": 8080, "name": "http"}], "clusterIP": "10.96.0.9"}}),
        );
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 8080, "name": "http", "protocol": "TCP", "targetPort": 8080})
        );
        assert_eq!(svc["spec"]["clusterIPs"], json!(["10.96.0.9"]));
        assert!(svc["spec"].get("externalTrafficPolicy").is_none());
    }

    #[test]
    fn load_balancer_and_client_ip_affinity() {
        let svc = defaulted(json!({
            "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": "http"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}}
        }));
        assert_eq!(svc["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
        assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    }

    #[test]
    fn external_name_gets_no_ip_fields() {
        let svc =
            defaulted(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert!(svc["spec"].get("ipFamilies").is_none());
        assert!(svc["spec"].get("internalTrafficPolicy").is_none());
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
    }
}
