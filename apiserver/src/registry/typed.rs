//! Decoding into the kind's `k8s-openapi` type, as upstream decodes into its
//! Go struct: a value of the wrong type is a 400, and fields the type does
//! not have are dropped (reported as unknown for `fieldValidation`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::Resource;

/// The decoded object and the paths of the fields it dropped.
pub struct Decoded {
    pub value: Value,
    pub unknown: Vec<String>,
}

/// Decodes `obj` as the kind of `res`. Kinds without a known type pass
/// through unchanged.
pub fn decode(res: &Resource, obj: &Value) -> Result<Decoded, String> {
    use k8s_openapi::api::{apps, coordination, core, discovery, events};
    match (res.group, res.kind) {
        ("", "Namespace") => roundtrip::<core::v1::Namespace>(obj),
        ("", "Node") => roundtrip::<core::v1::Node>(obj),
        ("", "Pod") => roundtrip::<core::v1::Pod>(obj),
        ("", "Service") => roundtrip::<core::v1::Service>(obj),
        ("", "Endpoints") => roundtrip::<core::v1::Endpoints>(obj),
        ("", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(obj),
        ("", "Secret") => roundtrip::<core::v1::Secret>(obj),
        ("", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(obj),
        ("", "Event") => roundtrip::<core::v1::Event>(obj),
        ("apps", "Deployment") => roundtrip::<apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => roundtrip::<apps::v1::ReplicaSet>(obj),
        ("discovery.k8s.io", "EndpointSlice") => roundtrip::<discovery::v1::EndpointSlice>(obj),
        ("events.k8s.io", "Event") => roundtrip::<events::v1::Event>(obj),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::v1::Lease>(obj),
        _ => Ok(Decoded {
            value: obj.clone(),
            unknown: Vec::new(),
        }),
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Decoded, String> {
    let mut input = obj.clone();
    quantities_to_strings(&mut input, false);
    let typed: T = serde_json::from_value(input.clone()).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    dropped_fields(&input, &value, "", &mut unknown);
    Ok(Decoded { value, unknown })
}

/// Keys whose values are maps of resource quantities.
const QUANTITY_MAPS: &[&str] = &["limits", "requests", "capacity", "allocatable", "overhead"];

/// Upstream accepts quantities as JSON numbers (`cpu: 1`); the typed
/// decoder wants strings.
fn quantities_to_strings(v: &mut Value, in_quantity_map: bool) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if in_quantity_map || key == "sizeLimit" {
                    if let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                    }
                    continue;
                }
                quantities_to_strings(child, QUANTITY_MAPS.contains(&key.as_str()));
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| quantities_to_strings(i, false)),
        _ => {}
    }
}

/// Paths (`spec.containers[0].foo`) present in `input` but not in `typed`.
fn dropped_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    Some(k) => dropped_fields(value, k, &child, out),
                    None if value.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (g, k)) in given.iter().zip(kept).enumerate() {
                dropped_fields(g, k, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::lookup;

    #[test]
    fn unknown_fields_are_dropped_and_reported() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "creationTimestamp": null, "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Always", "colour": "red",
                                     "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}]}});
        let decoded = decode(pods, &pod).unwrap();
        assert_eq!(
            decoded.unknown,
            ["metadata.bogus", "spec.containers[0].colour"]
        );
        assert!(decoded.value.pointer("/spec/containers/0/colour").is_none());
        assert_eq!(
            decoded
                .value
                .pointer("/spec/containers/0/resources/limits/cpu"),
            Some(&json!("1"))
        );
        assert_eq!(
            decoded.value["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        let pods = lookup("", "v1", "pods").unwrap();
        let err = decode(pods, &json!({"spec": {"containers": "nginx"}}))
            .err()
            .unwrap();
        assert!(err.contains("invalid type"), "{err}");
        let deploys = lookup("apps", "v1", "deployments").unwrap();
        assert!(decode(deploys, &json!({"spec": {"replicas": "three"}})).is_err());
    }
}
