//! The smaller core kinds: namespaces, secrets, nodes, endpoints and
//! endpoint slices.

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use serde_json::{Map, Value, json};

use super::{is_unset, mirror_first, object_at, object_entry, objects_in, pointer, set_default};

/// The label upstream puts on every namespace, holding its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub(super) fn namespace(obj: &mut Map<String, Value>) {
    let name = pointer(obj, "/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let (Some(name), Some(labels)) = (
        name,
        object_entry(obj, "metadata").and_then(|m| object_entry(m, "labels")),
    ) {
        labels.insert(NAMESPACE_NAME_LABEL.into(), Value::String(name));
    }
    if let Some(spec) = object_entry(obj, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = object_entry(obj, "status") {
        set_default(status, "phase", "Active");
    }
}

/// The type defaults to Opaque; `stringData` is write-only: upstream's
/// conversion folds it into `data` (base64), where it wins over `data`.
pub(super) fn secret(obj: &mut Map<String, Value>) {
    set_default(obj, "type", "Opaque");
    let Some(Value::Object(string_data)) = obj.remove("stringData") else {
        return;
    };
    if let Some(data) = object_entry(obj, "data") {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, Value::String(BASE64_STANDARD.encode(text)));
        }
    }
}

/// `SetDefaults_NodeStatus`: allocatable is the capacity unless reported;
/// `podCIDRs[0]` mirrors `podCIDR`.
pub(super) fn node(obj: &mut Map<String, Value>) {
    if let Some(spec) = object_at(obj, "spec") {
        mirror_first(spec, "podCIDR", "podCIDRs", None);
    }
    if let Some(status) = object_at(obj, "status")
        && is_unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

pub(super) fn endpoints(obj: &mut Map<String, Value>) {
    for subset in objects_in(obj, "subsets") {
        for port in objects_in(subset, "ports") {
            set_default(port, "protocol", "TCP");
        }
    }
}

pub(super) fn endpoint_slice(obj: &mut Map<String, Value>) {
    for port in objects_in(obj, "ports") {
        set_default(port, "name", "");
        set_default(port, "protocol", "TCP");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::defaults::apply;
    use crate::resources::lookup;

    fn defaulted(group: &str, plural: &str, obj: Value) -> Value {
        let mut obj = obj;
        apply(lookup(group, "v1", plural).unwrap(), &mut obj);
        obj
    }

    #[test]
    fn namespace_label_finalizer_and_phase() {
        let ns = defaulted("", "namespaces", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(
            ns,
            json!({
                "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            })
        );
    }

    #[test]
    fn secret_type() {
        assert_eq!(defaulted("", "secrets", json!({}))["type"], "Opaque");
        let tls = defaulted("", "secrets", json!({"type": "kubernetes.io/tls"}));
        assert_eq!(tls["type"], "kubernetes.io/tls");
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let secret = defaulted(
            "",
            "secrets",
            json!({"data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "hi"}}),
        );
        assert_eq!(
            secret,
            json!({"type": "Opaque", "data": {"a": "eA==", "b": "aGk="}})
        );
    }

    #[test]
    fn node_allocatable_from_capacity() {
        let node = defaulted(
            "",
            "nodes",
            json!({"status": {"capacity": {"cpu": "2", "pods": "110"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "2", "pods": "110"})
        );
    }

    #[test]
    fn endpoint_ports() {
        let ep = defaulted(
            "",
            "endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let slice = defaulted(
            "discovery.k8s.io",
            "endpointslices",
            json!({"ports": [{"port": 80}]}),
        );
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
    }
}
