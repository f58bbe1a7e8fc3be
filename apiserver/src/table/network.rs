//! Services, Endpoints and EndpointSlices.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{array_at, int_at, labels, list_with_more, str_at};
use super::{Column, age_of, core_doc, doc, name_of};

pub fn service_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Type", core_doc("ServiceSpec", "type")),
        Column::text("Cluster-IP", core_doc("ServiceSpec", "clusterIP")),
        Column::text("External-IP", core_doc("ServiceSpec", "externalIPs")),
        Column::text("Port(s)", core_doc("ServiceSpec", "ports")),
        Column::age(),
        Column::wide("Selector", core_doc("ServiceSpec", "selector")),
    ]
}

pub fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let cluster_ip = match (
        str_at(svc, "/spec/clusterIPs/0"),
        str_at(svc, "/spec/clusterIP"),
    ) {
        ("", "") => "<none>",
        ("", single) => single,
        (first, _) => first,
    };
    let ports: Vec<String> = array_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let (port, protocol) = (int_at(p, "/port"), str_at(p, "/protocol"));
            match int_at(p, "/nodePort") {
                0 => format!("{port}/{protocol}"),
                node_port => format!("{port}:{node_port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    };
    vec![
        name_of(svc),
        str_at(svc, "/spec/type").into(),
        cluster_ip.into(),
        external_ip(svc).into(),
        ports.into(),
        age_of(svc, now),
        labels(svc.pointer("/spec/selector")).into(),
    ]
}

fn strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// EXTERNAL-IP: external IPs, load balancer ingress (`<pending>` until
/// assigned) or the external name.
fn external_ip(svc: &Value) -> String {
    let external_ips = strings(array_at(svc, "/spec/externalIPs"));
    match str_at(svc, "/spec/type") {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_owned(),
        "LoadBalancer" => {
            let mut ingress: Vec<String> = array_at(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match str_at(i, "/ip") {
                    "" => str_at(i, "/hostname").to_owned(),
                    ip => ip.to_owned(),
                })
                .filter(|s| !s.is_empty())
                .collect();
            ingress.sort();
            ingress.dedup();
            ingress.extend(external_ips);
            if ingress.is_empty() {
                "<pending>".to_owned()
            } else {
                ingress.join(",")
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

pub fn endpoints_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Endpoints", core_doc("Endpoints", "subsets")),
        Column::age(),
    ]
}

/// ENDPOINTS: up to three `ip:port` pairs, then `+ N more...`.
pub fn endpoints_cells(ep: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let subsets = array_at(ep, "/subsets");
    let text = if subsets.is_empty() {
        "<none>".to_owned()
    } else {
        let mut all = Vec::new();
        for subset in subsets {
            let addresses = array_at(subset, "/addresses");
            let ports = array_at(subset, "/ports");
            if ports.is_empty() {
                all.extend(addresses.iter().map(|a| str_at(a, "/ip").to_owned()));
            }
            for port in ports {
                for address in addresses {
                    let ip = str_at(address, "/ip");
                    let port = int_at(port, "/port");
                    all.push(if ip.contains(':') {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    });
                }
            }
        }
        match list_with_more(&all, 3).as_str() {
            "<unset>" => String::new(),
            text => text.to_owned(),
        }
    };
    vec![name_of(ep), text.into(), age_of(ep, now)]
}

pub fn endpoint_slice_columns() -> Vec<Column> {
    let slice_doc = |p| doc("io.k8s.api.discovery.v1.EndpointSlice", p);
    vec![
        Column::name(),
        Column::text("AddressType", slice_doc("addressType")),
        Column::text("Ports", slice_doc("ports")),
        Column::text("Endpoints", slice_doc("endpoints")),
        Column::age(),
    ]
}

pub fn endpoint_slice_cells(slice: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = array_at(slice, "/ports")
        .iter()
        .map(|p| {
            match (
                p.get("port").and_then(Value::as_i64),
                p.get("name").and_then(Value::as_str),
            ) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_owned(),
                (None, None) => "*".to_owned(),
            }
        })
        .collect();
    let addresses: Vec<String> = array_at(slice, "/endpoints")
        .iter()
        .flat_map(|e| strings(array_at(e, "/addresses")))
        .collect();
    vec![
        name_of(slice),
        str_at(slice, "/addressType").into(),
        list_with_more(&ports, 3).into(),
        list_with_more(&addresses, 3).into(),
        age_of(slice, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::table::age;

    fn now() -> DateTime<Utc> {
        age::parse(&json!("2024-05-01T12:00:00Z")).unwrap()
    }

    #[test]
    fn node_port_service() {
        let svc = json!({
            "metadata": {"name": "nginx", "creationTimestamp": "2024-05-01T11:58:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
                     "selector": {"run": "nginx"},
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 31234}]},
        });
        assert_eq!(
            service_cells(&svc, now()),
            json!([
                "nginx",
                "NodePort",
                "10.96.12.7",
                "<none>",
                "80:31234/TCP",
                "2m",
                "run=nginx"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn load_balancer_pending_then_assigned() {
        let mut svc = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                               {"port": 443, "protocol": "TCP", "nodePort": 30443}]},
        });
        let cells = service_cells(&svc, now());
        assert_eq!(cells[3], "<pending>");
        assert_eq!(cells[4], "80:30080/TCP,443:30443/TCP");
        assert_eq!(cells[6], "<none>");
        svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}});
        assert_eq!(service_cells(&svc, now())[3], "192.168.56.200");
    }

    #[test]
    fn headless_and_external_name() {
        let headless =
            json!({"spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}});
        let cells = service_cells(&headless, now());
        assert_eq!(
            (cells[2].clone(), cells[4].clone()),
            (json!("None"), json!("<none>"))
        );
        let external = json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        let cells = service_cells(&external, now());
        assert_eq!(
            (cells[2].clone(), cells[3].clone()),
            (json!("<none>"), json!("example.com"))
        );
    }

    #[test]
    fn endpoints() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.1.3"}, {"ip": "10.244.2.2"}, {"ip": "10.244.2.3"}],
            "ports": [{"port": 80, "protocol": "TCP"}]}]});
        assert_eq!(
            endpoints_cells(&ep, now())[1],
            "10.244.1.2:80,10.244.1.3:80,10.244.2.2:80 + 1 more..."
        );
        assert_eq!(
            endpoints_cells(&json!({"metadata": {"name": "x"}}), now())[1],
            "<none>"
        );
    }

    #[test]
    fn endpoint_slices() {
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.2"]}, {"addresses": ["10.244.2.2"]}]});
        let cells = endpoint_slice_cells(&slice, now());
        assert_eq!(
            cells[1..4],
            [json!("IPv4"), json!("80"), json!("10.244.1.2,10.244.2.2")]
        );
        let empty = endpoint_slice_cells(&json!({"addressType": "IPv4"}), now());
        assert_eq!(empty[2..4], [json!("<unset>"), json!("<unset>")]);
    }
}
