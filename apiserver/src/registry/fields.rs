//! Selectable fields: what `fieldSelector` may name for each kind (upstream's
//! `GetAttrs`/field label conversion funcs), and the store's indexer that
//! extracts them with the labels when an object is written.

use serde_json::Value;

use super::keys;
use crate::resources::Resource;
use crate::storage::Attrs;

/// `(field label, JSON pointer)` pairs beyond `metadata.name` and
/// `metadata.namespace`, which every kind supports.
fn kind_fields(res: &Resource) -> &'static [(&'static str, &'static str)] {
    match (res.group, res.kind) {
        ("", "Pod") => &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.hostNetwork", "/spec/hostNetwork"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        ("", "Event") => &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            (
                "involvedObject.resourceVersion",
                "/involvedObject/resourceVersion",
            ),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ],
        ("events.k8s.io", "Event") => &[
            ("regarding.kind", "/regarding/kind"),
            ("regarding.namespace", "/regarding/namespace"),
            ("regarding.name", "/regarding/name"),
            ("regarding.uid", "/regarding/uid"),
            ("regarding.apiVersion", "/regarding/apiVersion"),
            ("regarding.resourceVersion", "/regarding/resourceVersion"),
            ("regarding.fieldPath", "/regarding/fieldPath"),
            ("reason", "/reason"),
            ("reportingController", "/reportingController"),
            ("type", "/type"),
        ],
        ("", "Node") => &[("spec.unschedulable", "/spec/unschedulable")],
        ("", "Namespace") => &[("status.phase", "/status/phase")],
        ("", "Secret") => &[("type", "/type")],
        ("apps", "ReplicaSet") => &[("status.replicas", "/status/replicas")],
        _ => &[],
    }
}

/// Whether `fieldSelector` may name `label` for `res`.
pub fn is_selectable(res: &Resource, label: &str) -> bool {
    label == "metadata.name"
        || (label == "metadata.namespace" && res.namespaced)
        || kind_fields(res).iter().any(|(l, _)| *l == label)
}

/// The field value as upstream renders it for selectors: strings as they
/// are, numbers and booleans in decimal/`true`/`false`, missing as `""`
/// (`false` for booleans that default to false).
fn render(value: Option<&Value>, label: &str) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ if label == "spec.unschedulable" || label == "spec.hostNetwork" => "false".into(),
        _ => String::new(),
    }
}

/// The store's indexer: labels and selectable fields of the object at `key`.
pub fn indexer(key: &str, object: &Value) -> Attrs {
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut fields = vec![
        (
            "metadata.name",
            render(object.pointer("/metadata/name"), ""),
        ),
        (
            "metadata.namespace",
            render(object.pointer("/metadata/namespace"), ""),
        ),
    ];
    if let Some(res) = keys::resource_of(key) {
        fields.extend(
            kind_fields(res)
                .iter()
                .map(|(label, ptr)| (*label, render(object.pointer(ptr), label))),
        );
    }
    Attrs { labels, fields }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::lookup;

    #[test]
    fn pods_index_node_and_phase() {
        let pod = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"run": "a"}},
                         "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let attrs = indexer("/core/pods/ns/a", &pod);
        assert_eq!(attrs.label("run"), Some("a"));
        assert_eq!(attrs.field("spec.nodeName"), Some("n1"));
        assert_eq!(attrs.field("status.phase"), Some("Running"));
        assert_eq!(attrs.field("metadata.namespace"), Some("ns"));
        assert_eq!(attrs.field("spec.hostNetwork"), Some("false"));
    }

    #[test]
    fn selectable_labels_depend_on_the_kind() {
        let pods = lookup("", "v1", "pods").unwrap();
        let events = lookup("", "v1", "events").unwrap();
        let nodes = lookup("", "v1", "nodes").unwrap();
        assert!(is_selectable(pods, "spec.nodeName"));
        assert!(is_selectable(events, "involvedObject.uid"));
        assert!(!is_selectable(pods, "involvedObject.uid"));
        assert!(!is_selectable(nodes, "metadata.namespace"));
    }
}
