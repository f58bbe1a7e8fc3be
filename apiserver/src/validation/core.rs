//! The smaller kinds: config maps, secrets, nodes, endpoints, endpoint
//! slices, events and leases.

use serde_json::Value;

use super::field::{Errors, Path, str_at};
use super::{meta, names};

/// Config maps and secrets may hold at most 1 MiB.
const DATA_MAX_BYTES: usize = 1024 * 1024;

fn entries<'a>(obj: &'a Value, key: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    obj.get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// Keys must be config keys, unique across the maps (`data` and
/// `binaryData`), the total within 1 MiB (reported at
/// `size_path`); an immutable object's data may not change.
fn keyed_data(
    obj: &Value,
    old: Option<&Value>,
    maps: &[&str],
    size_path: &Path,
    errs: &mut Errors,
) {
    let mut total = 0;
    let mut seen = std::collections::HashSet::new();
    for map in maps {
        for (key, value) in entries(obj, map) {
            let path = Path::new(map).key(key);
            errs.invalid_each(&path, key, names::config_key(key));
            if !seen.insert(key.as_str()) {
                errs.invalid_str(
                    &path,
                    key,
                    &format!("duplicate of key present in {}", maps[0]),
                );
            }
            total += key.len() + value.as_str().map_or(0, str::len);
        }
    }
    if total > DATA_MAX_BYTES {
        errs.too_long(size_path, DATA_MAX_BYTES);
    }
    if let Some(old) = old
        && old.get("immutable").and_then(Value::as_bool) == Some(true)
    {
        for map in maps {
            if obj.get(*map) != old.get(*map) {
                errs.forbidden(
                    &Path::new(map),
                    "field is immutable when `immutable` is set",
                );
            }
        }
        if obj.get("immutable") != old.get("immutable") {
            errs.forbidden(
                &Path::new("immutable"),
                "field is immutable when `immutable` is set",
            );
        }
    }
}

pub fn config_map(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    keyed_data(obj, old, &["data", "binaryData"], &Path::new(""), errs);
}

/// The keys each secret type must have.
fn required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        _ => &[],
    }
}

pub fn secret(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    keyed_data(obj, old, &["data"], &Path::new("data"), errs);
    let secret_type = str_at(obj, "type");
    for key in required_keys(secret_type) {
        if obj.get("data").and_then(|d| d.get(*key)).is_none() {
            errs.required(&Path::new("data").key(key), "");
        }
    }
    if secret_type == "kubernetes.io/service-account-token"
        && obj
            .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
            .is_none()
    {
        errs.required(
            &Path::new("metadata")
                .child("annotations")
                .key("kubernetes.io/service-account.name"),
            "",
        );
    }
    if let Some(old) = old {
        meta::immutable(obj.get("type"), old.get("type"), &Path::new("type"), errs);
    }
}

pub fn node(obj: &Value, errs: &mut Errors) {
    let path = Path::new("spec");
    for (i, cidr) in obj
        .pointer("/spec/podCIDRs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let cidr = cidr.as_str().unwrap_or("");
        if cidr.parse::<ipnet::IpNet>().is_err() {
            errs.invalid_str(
                &path.child("podCIDRs").index(i),
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            );
        }
    }
    for (i, taint) in obj
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = path.child("taints").index(i);
        let key = str_at(taint, "key");
        if key.is_empty() {
            errs.required(&p.child("key"), "");
        } else {
            errs.invalid_each(&p.child("key"), key, names::qualified_name(key));
        }
        let effect = str_at(taint, "effect");
        match effect {
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            "" => errs.required(&p.child("effect"), ""),
            other => errs.not_supported(
                &p.child("effect"),
                &Value::String(other.to_owned()),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ),
        }
    }
}

pub fn endpoints(obj: &Value, errs: &mut Errors) {
    for (i, subset) in obj
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = Path::new("subsets").index(i);
        for key in ["addresses", "notReadyAddresses"] {
            for (j, address) in subset
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let ip = str_at(address, "ip");
                errs.invalid_each(&p.child(key).index(j).child("ip"), ip, names::ip(ip));
            }
        }
        for (j, port) in subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let pp = p.child("ports").index(j);
            let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
            for msg in names::port_number(number) {
                errs.invalid(&pp.child("port"), &Value::from(number), &msg);
            }
            super::container::protocol(port, &pp.child("protocol"), errs);
        }
    }
}

pub fn endpoint_slice(obj: &Value, errs: &mut Errors) {
    let address_type = str_at(obj, "addressType");
    match address_type {
        "IPv4" | "IPv6" | "FQDN" => {}
        "" => errs.required(&Path::new("addressType"), ""),
        other => errs.not_supported(
            &Path::new("addressType"),
            &Value::String(other.to_owned()),
            &["FQDN", "IPv4", "IPv6"],
        ),
    }
    for (i, endpoint) in obj
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = Path::new("endpoints").index(i);
        let addresses = endpoint
            .get("addresses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if addresses.is_empty() {
            errs.required(&p.child("addresses"), "must contain at least 1 address");
        }
        for (j, address) in addresses.iter().enumerate() {
            let address = address.as_str().unwrap_or("");
            let path = p.child("addresses").index(j);
            let valid_ip = |v6: bool| {
                address
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_ipv6() == v6)
            };
            match address_type {
                "IPv4" if !valid_ip(false) => {
                    errs.invalid_str(&path, address, "must be a valid IPv4 address")
                }
                "IPv6" if !valid_ip(true) => {
                    errs.invalid_str(&path, address, "must be a valid IPv6 address")
                }
                "FQDN" => errs.invalid_each(&path, address, names::dns1123_subdomain(address)),
                _ => {}
            }
        }
    }
    for (i, port) in obj
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = Path::new("ports").index(i);
        if let Some(number) = port.get("port").and_then(Value::as_i64) {
            for msg in names::port_number(number) {
                errs.invalid(&p.child("port"), &Value::from(number), &msg);
            }
        }
        let name = str_at(port, "name");
        if !name.is_empty() {
            errs.invalid_each(&p.child("name"), name, names::dns1123_label(name));
        }
    }
}

/// The fields of an event under their core/v1 names (events.k8s.io/v1
/// renames some); upstream validates both APIs on its internal form, and
/// reports the internal names.
struct EventFields<'a> {
    obj: &'a Value,
    involved: &'a str,
    reporting_controller: &'a str,
    message: &'a str,
}

impl EventFields<'_> {
    fn get(&self, pointer: &str) -> &str {
        self.obj
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn is_set(&self, key: &str) -> bool {
        self.obj
            .get(key)
            .is_some_and(|v| !v.is_null() && v != "" && v != 0 && v != &serde_json::json!({}))
    }
}

const EVENT_FIELD_MAX: usize = 128;
const NOTE_MAX: usize = 1024;

/// `legacyValidateEvent`: old events (no `eventTime`) only need their
/// namespace to agree with the involved object's; new ones carry who
/// reported what.
fn legacy_event(event: &EventFields, controller_field: &str, errs: &mut Errors) {
    let namespace = event.get("/metadata/namespace");
    let involved_namespace = event.get(&format!("{}/namespace", event.involved));
    let involved_path = Path::new("involvedObject").child("namespace");
    if !event.is_set("eventTime") {
        let agrees = if involved_namespace.is_empty() {
            matches!(namespace, "" | "default")
        } else {
            namespace == involved_namespace
        };
        if !agrees {
            errs.invalid_str(
                &involved_path,
                involved_namespace,
                "does not match event.namespace",
            );
        }
        return;
    }
    if involved_namespace.is_empty() && !matches!(namespace, "default" | "kube-system") {
        errs.invalid_str(
            &involved_path,
            involved_namespace,
            "does not match event.namespace",
        );
    }
    let controller = event.get(&format!("/{}", event.reporting_controller));
    if controller.is_empty() {
        errs.required(&Path::new(controller_field), "");
    } else {
        errs.invalid_each(
            &Path::new(controller_field),
            controller,
            names::qualified_name(controller),
        );
    }
    for (key, max) in [
        ("reportingInstance", EVENT_FIELD_MAX),
        ("action", EVENT_FIELD_MAX),
        ("reason", EVENT_FIELD_MAX),
    ] {
        let value = event.get(&format!("/{key}"));
        if value.is_empty() {
            errs.required(&Path::new(key), "");
        } else if value.len() > max {
            errs.invalid_str(
                &Path::new(key),
                "",
                &format!("can have at most {max} characters"),
            );
        }
    }
    if event.get(&format!("/{}", event.message)).len() > NOTE_MAX {
        errs.invalid_str(
            &Path::new("message"),
            "",
            &format!("can have at most {NOTE_MAX} characters"),
        );
    }
}

/// core/v1 events.
pub fn core_event(obj: &Value, errs: &mut Errors) {
    let fields = EventFields {
        obj,
        involved: "/involvedObject",
        reporting_controller: "reportingComponent",
        message: "message",
    };
    legacy_event(&fields, "reportingComponent", errs);
}

/// events.k8s.io/v1 events: the legacy rules, and what the new API
/// requires (an event time, a type, none of the deprecated fields).
pub fn event(obj: &Value, errs: &mut Errors) {
    let fields = EventFields {
        obj,
        involved: "/regarding",
        reporting_controller: "reportingController",
        message: "note",
    };
    legacy_event(&fields, "reportingController", errs);
    if !fields.is_set("eventTime") {
        errs.required(&Path::new("eventTime"), "");
    }
    let event_type = str_at(obj, "type");
    if !matches!(event_type, "Normal" | "Warning") {
        errs.invalid_str(
            &Path::new("type"),
            "",
            &format!("has invalid value: {event_type}"),
        );
    }
    for (key, internal) in [
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
    ] {
        if fields.is_set(key) {
            errs.invalid_str(&Path::new(internal), "", "needs to be unset");
        }
    }
}

pub fn lease(obj: &Value, errs: &mut Errors) {
    let path = Path::new("spec");
    if let Some(seconds) = obj
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        && seconds <= 0
    {
        errs.invalid(
            &path.child("leaseDurationSeconds"),
            &Value::from(seconds),
            "must be greater than 0",
        );
    }
    if let Some(transitions) = obj
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
        && transitions < 0
    {
        errs.invalid(
            &path.child("leaseTransitions"),
            &Value::from(transitions),
            "must be greater than or equal to 0",
        );
    }
}
