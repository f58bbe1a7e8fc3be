//! Services: type, ports, selector, cluster IPs, traffic policies, and
//! the cluster IP that may not change.

use std::collections::HashSet;

use serde_json::Value;

use super::container::{port_ref, protocol};
use super::field::{Errors, Path, str_at};
use super::{meta, names};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

pub fn service(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    let service_type = str_at(spec, "type");
    match service_type {
        "" => errs.required(&path.child("type"), ""),
        t if TYPES.contains(&t) => {}
        other => errs.not_supported(&path.child("type"), &Value::String(other.to_owned()), TYPES),
    }
    match str_at(spec, "sessionAffinity") {
        "" => errs.required(&path.child("sessionAffinity"), ""),
        "None" | "ClientIP" => {}
        other => errs.not_supported(
            &path.child("sessionAffinity"),
            &Value::String(other.to_owned()),
            &["ClientIP", "None"],
        ),
    }

    let cluster_ip = str_at(spec, "clusterIP");
    let headless = cluster_ip == "None";
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if service_type == "ExternalName" {
        let external_name = str_at(spec, "externalName");
        if external_name.is_empty() {
            errs.required(&path.child("externalName"), "");
        } else {
            errs.invalid_each(
                &path.child("externalName"),
                external_name,
                names::dns1123_subdomain(external_name.trim_end_matches('.')),
            );
        }
    } else if ports.is_empty() && !headless {
        errs.required(&path.child("ports"), "");
    }
    self::ports(ports, service_type, &path.child("ports"), errs);

    meta::labels(spec.get("selector"), &path.child("selector"), errs);
    for (i, ip) in spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ip = ip.as_str().unwrap_or("");
        if ip != "None" && !ip.is_empty() {
            errs.invalid_each(&path.child("clusterIPs").index(i), ip, names::ip(ip));
        }
    }
    if !cluster_ip.is_empty() && !headless && spec.get("clusterIPs").is_none() {
        errs.invalid_each(&path.child("clusterIP"), cluster_ip, names::ip(cluster_ip));
    }
    for (i, ip) in spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ip = ip.as_str().unwrap_or("");
        errs.invalid_each(&path.child("externalIPs").index(i), ip, names::ip(ip));
    }

    let externally_accessible = matches!(service_type, "NodePort" | "LoadBalancer")
        || (service_type == "ClusterIP"
            && spec
                .get("externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|ips| !ips.is_empty()));
    let policy = str_at(spec, "externalTrafficPolicy");
    if externally_accessible {
        if !matches!(policy, "" | "Cluster" | "Local") {
            errs.not_supported(
                &path.child("externalTrafficPolicy"),
                &Value::String(policy.to_owned()),
                &["Cluster", "Local"],
            );
        }
    } else if !policy.is_empty() {
        errs.invalid_str(
            &path.child("externalTrafficPolicy"),
            policy,
            "may only be set for externally-accessible services",
        );
    }
    let internal = str_at(spec, "internalTrafficPolicy");
    if !matches!(internal, "" | "Cluster" | "Local") {
        errs.not_supported(
            &path.child("internalTrafficPolicy"),
            &Value::String(internal.to_owned()),
            &["Cluster", "Local"],
        );
    }

    if let Some(old) = old {
        let before = old
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        let changing_type = service_type == "ExternalName"
            || str_at(old.get("spec").unwrap_or(&Value::Null), "type") == "ExternalName";
        if !before.is_empty() && !cluster_ip.is_empty() && before != cluster_ip && !changing_type {
            errs.invalid_str(
                &path.child("clusterIPs").index(0),
                cluster_ip,
                "may not change once set",
            );
        }
    }
}

fn ports(ports: &[Value], service_type: &str, path: &Path, errs: &mut Errors) {
    let mut port_names = HashSet::new();
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = str_at(port, "name");
        if name.is_empty() {
            if ports.len() > 1 {
                errs.required(&p.child("name"), "");
            }
        } else {
            errs.invalid_each(&p.child("name"), name, names::dns1123_label(name));
            if !port_names.insert(name) {
                errs.duplicate(&p.child("name"), &Value::String(name.to_owned()));
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        for msg in names::port_number(number) {
            errs.invalid(&p.child("port"), &Value::from(number), &msg);
        }
        protocol(port, &p.child("protocol"), errs);
        if port.get("targetPort").is_some_and(|t| !t.is_null()) {
            port_ref(port.get("targetPort"), &p.child("targetPort"), errs);
        }
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            if matches!(service_type, "ClusterIP" | "ExternalName") {
                errs.forbidden(
                    &p.child("nodePort"),
                    &format!("may not be used when `type` is '{service_type}'"),
                );
            }
            for msg in names::port_number(node_port) {
                errs.invalid(&p.child("nodePort"), &Value::from(node_port), &msg);
            }
        }
        if !seen.insert((number, str_at(port, "protocol"))) {
            errs.duplicate(
                &p,
                &Value::String(format!("{number}/{}", str_at(port, "protocol"))),
            );
        }
    }
}
