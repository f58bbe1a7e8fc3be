//! Upstream defaulting (`pkg/apis/*/v1/defaults.go`, plus the admission
//! plugins that fill pods: Priority, DefaultTolerationSeconds,
//! ServiceAccount): fills the fields an upstream apiserver fills, so
//! `kubectl get -o yaml` looks the same.

mod apps;
mod core;
mod pod;
mod service;

use serde_json::{Map, Value, json};

use crate::resources::Resource;

/// What the admission plugins that have flags add (upstream's
/// `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// How long pods tolerate the `node.kubernetes.io/not-ready` NoExecute
    /// taint unless they say otherwise.
    pub not_ready_toleration_seconds: i64,
    /// The same for `node.kubernetes.io/unreachable`.
    pub unreachable_toleration_seconds: i64,
}

impl Default for Admission {
    /// Upstream's 300 s.
    fn default() -> Admission {
        Admission {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

/// Fills defaults into `obj` in place; called on create and update before
/// validation. Fields already set (and not `null`) are left alone, so
/// applying twice changes nothing.
pub fn apply(res: &Resource, obj: &mut Value) {
    apply_with(res, obj, &Admission::default());
}

/// `apply`, with admission settings other than upstream's defaults.
pub fn apply_with(res: &Resource, obj: &mut Value, admission: &Admission) {
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    match (res.group, res.kind) {
        ("", "Pod") => pod::pod(obj, admission),
        ("", "Service") => service::service(obj),
        ("", "Namespace") => core::namespace(obj),
        ("", "Secret") => core::secret(obj),
        ("", "Node") => core::node(obj),
        ("", "Endpoints") => core::endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => core::endpoint_slice(obj),
        ("apps", "Deployment") => apps::deployment(obj),
        ("apps", "ReplicaSet") => apps::replica_set(obj),
        _ => {}
    }
}

/// Whether `map[key]` is unset: absent or JSON `null` (Go's zero value).
fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

/// Sets `map[key]` to `value` when it is unset.
fn set_default(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if is_unset(map, key) {
        map.insert(key.to_owned(), value.into());
    }
}

/// `map[key]` as an object, created empty when unset; `None` when it holds
/// something else (validation reports that).
fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    if is_unset(map, key) {
        map.insert(key.to_owned(), Value::Object(Map::new()));
    }
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `map[key]`, if it is one.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// v1 keeps singular fields beside their plural successors (`podIP` and
/// `podIPs`, `clusterIP` and `clusterIPs`, `podCIDR` and `podCIDRs`); like
/// upstream's conversion, the first of the plural mirrors the singular.
/// Plural items are strings, or objects holding the value under `item_key`.
fn mirror_first(
    map: &mut Map<String, Value>,
    singular: &str,
    plural: &str,
    item_key: Option<&str>,
) {
    let single = map
        .get(singular)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let first = map
        .get(plural)
        .and_then(|p| p.get(0))
        .and_then(|item| match item_key {
            Some(key) => item.get(key),
            None => Some(item),
        })
        .and_then(Value::as_str)
        .map(str::to_owned);
    match first {
        None if !single.is_empty() => {
            let item = match item_key {
                Some(key) => json!({ key: single }),
                None => Value::String(single),
            };
            map.insert(plural.to_owned(), Value::Array(vec![item]));
        }
        Some(first) if single.is_empty() => {
            map.insert(singular.to_owned(), Value::String(first));
        }
        _ => {}
    }
}

/// The value at a JSON pointer (`/a/b`) below `map`.
fn pointer<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let path = path.strip_prefix('/')?;
    let (first, rest) = path.split_once('/').map_or((path, ""), |(f, r)| (f, r));
    let value = map.get(first)?;
    if rest.is_empty() {
        Some(value)
    } else {
        value.pointer(&format!("/{rest}"))
    }
}

/// The objects in the array at `map[key]` (non-objects are skipped).
fn objects_in<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::lookup;

    #[test]
    fn unknown_kinds_and_non_objects_are_left_alone() {
        let lease = lookup("coordination.k8s.io", "v1", "leases").unwrap();
        let mut obj = json!({"spec": {"holderIdentity": "a"}});
        apply(lease, &mut obj);
        assert_eq!(obj, json!({"spec": {"holderIdentity": "a"}}));
        let mut not_an_object = json!([1, 2]);
        apply(lookup("", "v1", "pods").unwrap(), &mut not_an_object);
        assert_eq!(not_an_object, json!([1, 2]));
    }

    #[test]
    fn plural_fields_mirror_singular_ones() {
        let mut status = json!({"podIP": "10.244.1.5"}).as_object().unwrap().clone();
        mirror_first(&mut status, "podIP", "podIPs", Some("ip"));
        assert_eq!(status["podIPs"], json!([{"ip": "10.244.1.5"}]));
        let mut status = json!({"podIPs": [{"ip": "10.244.1.6"}]})
            .as_object()
            .unwrap()
            .clone();
        mirror_first(&mut status, "podIP", "podIPs", Some("ip"));
        assert_eq!(status["podIP"], "10.244.1.6");
        let mut spec = json!({"podCIDR": "10.244.3.0/24"})
            .as_object()
            .unwrap()
            .clone();
        mirror_first(&mut spec, "podCIDR", "podCIDRs", None);
        assert_eq!(spec["podCIDRs"], json!(["10.244.3.0/24"]));
    }

    #[test]
    fn null_counts_as_unset() {
        let mut map = json!({"a": null, "b": 1}).as_object().unwrap().clone();
        set_default(&mut map, "a", 5);
        set_default(&mut map, "b", 5);
        assert_eq!(Value::Object(map), json!({"a": 5, "b": 1}));
    }
}
