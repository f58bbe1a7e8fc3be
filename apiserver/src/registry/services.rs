//! Service allocation: ClusterIPs and NodePorts are reserved before a
//! Service is written and released when the write fails, when an update
//! drops them or when the Service is deleted.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{Registry, keys, meta};
use crate::alloc::AllocError;
use crate::resources::{Resource, lookup};
use crate::status::{ApiError, ApiResult};
use crate::validation::{ErrorType, FieldError};

/// What one write reserved; released on drop unless kept.
pub(super) struct Reservation<'a> {
    registry: &'a Registry,
    ips: Vec<Ipv4Addr>,
    ports: Vec<u16>,
}

impl Reservation<'_> {
    /// The write succeeded: the reservations now belong to the Service.
    pub fn keep(mut self) {
        self.ips.clear();
        self.ports.clear();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        for ip in &self.ips {
            self.registry.cluster_ips.release(*ip);
        }
        for port in &self.ports {
            self.registry.node_ports.release(*port);
        }
    }
}

fn is_service(res: &Resource) -> bool {
    res.group.is_empty() && res.kind == "Service"
}

fn service_type(svc: &Value) -> &str {
    match meta::str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn needs_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

fn needs_health_check_port(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer"
        && meta::str_at(svc, "/spec/externalTrafficPolicy") == "Local"
}

fn cluster_ip(svc: &Value) -> Option<Ipv4Addr> {
    meta::str_at(svc, "/spec/clusterIP").parse().ok()
}

fn node_ports(svc: &Value) -> Vec<u16> {
    let mut ports: Vec<u16> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    if let Some(p) = svc
        .pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
    {
        ports.push(p);
    }
    ports
}

/// The nodePort `old` gave the port with this number and protocol.
fn old_node_port(old: &Value, port: &Value) -> Option<u64> {
    old.pointer("/spec/ports")?
        .as_array()?
        .iter()
        .find(|p| p.get("port") == port.get("port") && p.get("protocol") == port.get("protocol"))?
        .get("nodePort")?
        .as_u64()
}

fn invalid(name: &str, field: String, message: String) -> ApiError {
    let services = lookup("", "v1", "services");
    match services {
        Some(res) => ApiError::invalid(
            res,
            name,
            &[FieldError {
                kind: ErrorType::Invalid,
                field,
                message,
            }],
        ),
        None => ApiError::internal("services are not served"),
    }
}

impl Registry {
    /// Marks what the stored Services hold as taken.
    pub(super) fn restore_allocations(&self) {
        let Some(services) = lookup("", "v1", "services") else {
            return;
        };
        for stored in self.store.list(&keys::prefix(services, None), None).items {
            let svc = stored.parse();
            if let Some(ip) = cluster_ip(&svc) {
                let _ = self.cluster_ips.reserve(ip);
            }
            for port in node_ports(&svc) {
                let _ = self.node_ports.reserve(port);
            }
        }
    }

    /// The address the `kubernetes` Service gets.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.cluster_ips.first()
    }

    /// Fills in and reserves the ClusterIP and NodePorts of `svc` (being
    /// created, or updated from `old`), keeping what `old` already holds.
    pub(super) fn allocate_service(
        &self,
        res: &Resource,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<Reservation<'_>> {
        let mut reservation = Reservation {
            registry: self,
            ips: Vec::new(),
            ports: Vec::new(),
        };
        if !is_service(res) {
            return Ok(reservation);
        }
        let name = meta::name(svc).to_string();
        self.allocate_cluster_ip(&name, svc, old, &mut reservation)?;
        self.allocate_node_ports(&name, svc, old, &mut reservation)?;
        Ok(reservation)
    }

    fn allocate_cluster_ip(
        &self,
        name: &str,
        svc: &mut Value,
        old: Option<&Value>,
        reservation: &mut Reservation<'_>,
    ) -> ApiResult<()> {
        if service_type(svc) == "ExternalName" {
            return Ok(());
        }
        let requested = meta::str_at(svc, "/spec/clusterIP").to_string();
        let old_ip = old.map(|o| meta::str_at(o, "/spec/clusterIP").to_string());
        let ip = match (requested.as_str(), old_ip) {
            ("", Some(old_ip)) if !old_ip.is_empty() => old_ip,
            (requested, Some(old_ip)) if requested == old_ip => old_ip,
            ("None", _) => "None".to_string(),
            ("", _) => {
                let ip = self.cluster_ips.allocate().map_err(|e| {
                    invalid(
                        name,
                        "spec.clusterIPs".into(),
                        format!("failed to allocate a serviceIP: {e}"),
                    )
                })?;
                reservation.ips.push(ip);
                ip.to_string()
            }
            (requested, _) => {
                let failed = |why: String| {
                    invalid(
                        name,
                        "spec.clusterIPs".into(),
                        format!(
                            "Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: {why}"
                        ),
                    )
                };
                let ip: Ipv4Addr = requested
                    .parse()
                    .map_err(|_| failed("not a valid IPv4 address".into()))?;
                self.cluster_ips.reserve(ip).map_err(|e| match e {
                    AllocError::OutOfRange { .. } => failed(format!(
                        "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                        self.cluster_ips.cidr()
                    )),
                    other => failed(other.to_string()),
                })?;
                reservation.ips.push(ip);
                requested.to_string()
            }
        };
        let spec = &mut svc["spec"];
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        if ip != "None" || spec.get("ipFamilies").is_none() {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec.get("ipFamilyPolicy").is_none_or(Value::is_null) {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        Ok(())
    }

    fn allocate_node_ports(
        &self,
        name: &str,
        svc: &mut Value,
        old: Option<&Value>,
        reservation: &mut Reservation<'_>,
    ) -> ApiResult<()> {
        let needs = needs_node_ports(svc);
        let old_needed = old.is_some_and(needs_node_ports);
        let held: Vec<u16> = old.map(node_ports).unwrap_or_default();
        let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for (i, port) in ports.iter_mut().enumerate() {
            let requested = port.get("nodePort").and_then(Value::as_u64).unwrap_or(0);
            if !needs {
                // Leaving NodePort: drop the ports the old type had.
                if old.and_then(|o| old_node_port(o, port)) == Some(requested)
                    && let Some(p) = port.as_object_mut()
                {
                    p.remove("nodePort");
                }
                continue;
            }
            let node_port = if requested == 0 {
                match old
                    .filter(|_| old_needed)
                    .and_then(|o| old_node_port(o, port))
                {
                    Some(kept) => kept as u16,
                    None => {
                        let p = self.node_ports.allocate().map_err(|e| {
                            invalid(
                                name,
                                format!("spec.ports[{i}].nodePort"),
                                format!("failed to allocate a nodePort: {e}"),
                            )
                        })?;
                        reservation.ports.push(p);
                        p
                    }
                }
            } else {
                let p = u16::try_from(requested).map_err(|_| {
                    invalid(
                        name,
                        format!("spec.ports[{i}].nodePort"),
                        format!(
                            "Invalid value: {requested}: must be between 1 and 65535, inclusive"
                        ),
                    )
                })?;
                if !held.contains(&p) {
                    self.node_ports.reserve(p).map_err(|e| {
                        invalid(
                            name,
                            format!("spec.ports[{i}].nodePort"),
                            format!("Invalid value: {p}: {e}"),
                        )
                    })?;
                    reservation.ports.push(p);
                }
                p
            };
            port["nodePort"] = json!(node_port);
        }
        if needs_health_check_port(svc) && svc.pointer("/spec/healthCheckNodePort").is_none() {
            let kept = old
                .and_then(|o| o.pointer("/spec/healthCheckNodePort"))
                .and_then(Value::as_u64);
            let port = match kept {
                Some(p) => p as u16,
                None => {
                    let p = self.node_ports.allocate().map_err(|e| {
                        invalid(
                            name,
                            "spec.healthCheckNodePort".into(),
                            format!("failed to allocate a nodePort: {e}"),
                        )
                    })?;
                    reservation.ports.push(p);
                    p
                }
            };
            svc["spec"]["healthCheckNodePort"] = json!(port);
        }
        Ok(())
    }

    /// Releases what `gone` held and `kept` (its successor, if any) does not.
    pub(super) fn release_service(&self, res: &Resource, gone: &Value, kept: Option<&Value>) {
        if !is_service(res) {
            return;
        }
        let kept_ip = kept.and_then(cluster_ip);
        if let Some(ip) = cluster_ip(gone)
            && kept_ip != Some(ip)
        {
            self.cluster_ips.release(ip);
        }
        let kept_ports = kept.map(node_ports).unwrap_or_default();
        for port in node_ports(gone) {
            if !kept_ports.contains(&port) {
                self.node_ports.release(port);
            }
        }
    }
}
