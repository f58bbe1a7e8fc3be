//! Nodes, namespaces, events (core and events.k8s.io), config maps,
//! secrets, service accounts and leases.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{array_at, int_at, len_at, str_at};
use super::{Column, age, age_of, core_doc, doc, name_of};

pub fn node_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Status", "The status of the node"),
        Column::text("Roles", "The roles of the node"),
        Column::age(),
        Column::text("Version", core_doc("NodeSystemInfo", "kubeletVersion")),
        Column::wide("Internal-IP", core_doc("NodeStatus", "addresses")),
        Column::wide("External-IP", core_doc("NodeStatus", "addresses")),
        Column::wide("OS-Image", core_doc("NodeSystemInfo", "osImage")),
        Column::wide(
            "Kernel-Version",
            core_doc("NodeSystemInfo", "kernelVersion"),
        ),
        Column::wide(
            "Container-Runtime",
            core_doc("NodeSystemInfo", "containerRuntimeVersion"),
        ),
    ]
}

const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
const ROLE_LABEL: &str = "kubernetes.io/role";

pub fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = array_at(node, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Ready")
        .map(|c| {
            if str_at(c, "/status") == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        });
    let mut status = vec![ready.unwrap_or("Unknown")];
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| match key.strip_prefix(ROLE_LABEL_PREFIX) {
            Some(role) if !role.is_empty() => Some(role),
            _ if key == ROLE_LABEL => value.as_str().filter(|v| !v.is_empty()),
            _ => None,
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let address = |type_: &str| {
        array_at(node, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == type_)
            .map_or("<none>", |a| str_at(a, "/address"))
            .to_owned()
    };
    let info = |field: &str| match str_at(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_owned(),
        v => v.to_owned(),
    };
    vec![
        name_of(node),
        status.join(",").into(),
        if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        }
        .into(),
        age_of(node, now),
        str_at(node, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

pub fn namespace_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Status", "The status of the namespace"),
        Column::age(),
    ]
}

pub fn namespace_cells(ns: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name_of(ns),
        str_at(ns, "/status/phase").into(),
        age_of(ns, now),
    ]
}

pub fn event_columns() -> Vec<Column> {
    let event_doc = |p| core_doc("Event", p);
    vec![
        Column::text("Last Seen", event_doc("lastTimestamp")),
        Column::text("Type", event_doc("type")),
        Column::text("Reason", event_doc("reason")),
        Column::text("Object", event_doc("involvedObject")),
        Column::wide("Subobject", core_doc("ObjectReference", "fieldPath")),
        Column::wide("Source", event_doc("source")),
        Column::text("Message", event_doc("message")),
        Column::wide("First Seen", event_doc("firstTimestamp")),
        Column::wide("Count", event_doc("count")),
        Column {
            format: "name",
            ..Column::wide("Name", super::meta_doc("name"))
        },
    ]
}

/// The fields both event APIs print, under their core/v1 names.
struct EventView<'a> {
    event: &'a Value,
    involved: &'a str,
    message: &'a str,
    first: &'a str,
    last: &'a str,
    count: &'a str,
    source: &'a str,
}

/// A core/v1 Event.
pub fn core_event_cells(event: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let view = EventView {
        event,
        involved: "/involvedObject",
        message: "/message",
        first: "/firstTimestamp",
        last: "/lastTimestamp",
        count: "/count",
        source: "/source",
    };
    view.cells(now)
}

/// An events.k8s.io/v1 Event, printed as upstream prints its internal form.
pub fn event_cells(event: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let view = EventView {
        event,
        involved: "/regarding",
        message: "/note",
        first: "/deprecatedFirstTimestamp",
        last: "/deprecatedLastTimestamp",
        count: "/deprecatedCount",
        source: "/deprecatedSource",
    };
    view.cells(now)
}

impl EventView<'_> {
    fn cells(&self, now: DateTime<Utc>) -> Vec<Value> {
        let event = self.event;
        let timestamp = |pointer: &str| event.pointer(pointer).filter(|v| !v.is_null());
        let first = match timestamp(self.first) {
            Some(t) => age::since(Some(t), now),
            None => age::since(timestamp("/eventTime"), now),
        };
        let mut last = match timestamp(self.last) {
            Some(t) => age::since(Some(t), now),
            None => first.clone(),
        };
        let mut count = int_at(event, self.count);
        if let Some(series) = event.get("series").filter(|s| s.is_object()) {
            last = age::since(series.get("lastObservedTime"), now);
            count = int_at(series, "/count");
        } else if count == 0 {
            count = 1;
        }
        let kind = str_at(event, &format!("{}/kind", self.involved)).to_lowercase();
        let target = match str_at(event, &format!("{}/name", self.involved)) {
            "" => kind,
            name => format!("{kind}/{name}"),
        };
        let first_non_empty = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_owned()
            } else {
                a.to_owned()
            }
        };
        let component = first_non_empty(
            str_at(event, &format!("{}/component", self.source)),
            str_at(event, "/reportingController"),
        );
        let host = first_non_empty(
            str_at(event, &format!("{}/host", self.source)),
            str_at(event, "/reportingInstance"),
        );
        let source = if host.is_empty() {
            component
        } else {
            format!("{component}, {host}")
        };
        vec![
            last.into(),
            str_at(event, "/type").into(),
            str_at(event, "/reason").into(),
            target.into(),
            str_at(event, &format!("{}/fieldPath", self.involved)).into(),
            source.into(),
            str_at(event, self.message).trim().into(),
            first.into(),
            count.into(),
            name_of(event),
        ]
    }
}

pub fn config_map_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Data", core_doc("ConfigMap", "data")),
        Column::age(),
    ]
}

pub fn config_map_cells(cm: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let entries = len_at(cm, "/data") + len_at(cm, "/binaryData");
    vec![name_of(cm), entries.into(), age_of(cm, now)]
}

pub fn secret_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Type", core_doc("Secret", "type")),
        Column::text("Data", core_doc("Secret", "data")),
        Column::age(),
    ]
}

pub fn secret_cells(secret: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name_of(secret),
        str_at(secret, "/type").into(),
        len_at(secret, "/data").into(),
        age_of(secret, now),
    ]
}

pub fn service_account_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Secrets", core_doc("ServiceAccount", "secrets")),
        Column::age(),
    ]
}

pub fn service_account_cells(sa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name_of(sa), len_at(sa, "/secrets").into(), age_of(sa, now)]
}

pub fn lease_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text(
            "Holder",
            doc("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity"),
        ),
        Column::age(),
    ]
}

pub fn lease_cells(lease: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name_of(lease),
        str_at(lease, "/spec/holderIdentity").into(),
        age_of(lease, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        age::parse(&json!("2024-05-01T12:00:00Z")).unwrap()
    }

    #[test]
    fn ready_control_plane_node() {
        let node = json!({
            "metadata": {"name": "m-k8s", "creationTimestamp": "2024-05-01T11:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "m-k8s"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.56.10"}, {"type": "Hostname", "address": "m-k8s"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.6.20"},
            },
        });
        assert_eq!(
            node_cells(&node, now()),
            json!([
                "m-k8s",
                "Ready,SchedulingDisabled",
                "control-plane",
                "60m",
                "v1.32.0",
                "192.168.56.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0",
                "containerd://1.6.20"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let bare = node_cells(&json!({"metadata": {"name": "w1"}}), now());
        assert_eq!(bare[1..3], [json!("Unknown"), json!("<none>")]);
        assert_eq!(bare[7], "<unknown>");
    }

    #[test]
    fn core_event() {
        let event = json!({
            "metadata": {"name": "nginx.17a"},
            "involvedObject": {"kind": "Pod", "name": "nginx", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "type": "Normal", "message": "Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "w1-k8s"},
            "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:58:00Z", "count": 3,
        });
        assert_eq!(
            core_event_cells(&event, now()),
            json!([
                "2m",
                "Normal",
                "Pulled",
                "pod/nginx",
                "spec.containers{nginx}",
                "kubelet, w1-k8s",
                "Successfully pulled image \"nginx\"",
                "10m",
                3,
                "nginx.17a"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn events_k8s_io_event() {
        let event = json!({
            "metadata": {"name": "web.1"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "reason": "ScalingReplicaSet", "type": "Normal", "note": "Scaled up",
            "eventTime": "2024-05-01T11:59:00.000000Z",
            "reportingController": "deployment-controller",
        });
        let cells = event_cells(&event, now());
        assert_eq!(cells[0], "60s");
        assert_eq!(cells[3], "deployment/web");
        assert_eq!(cells[5], "deployment-controller");
        assert_eq!(cells[6], "Scaled up");
        assert_eq!(cells[8], 1);
    }

    #[test]
    fn small_kinds() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(config_map_cells(&cm, now())[1], 3);
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}});
        assert_eq!(
            secret_cells(&secret, now())[1..3],
            [json!("Opaque"), json!(1)]
        );
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(service_account_cells(&sa, now())[1], 0);
        let lease = json!({"metadata": {"name": "w1"}, "spec": {"holderIdentity": "w1"}});
        assert_eq!(lease_cells(&lease, now())[1], "w1");
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(namespace_cells(&ns, now())[1], "Active");
    }
}
