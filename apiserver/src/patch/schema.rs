//! What strategic merge patch needs to know about a field: the schema of
//! its value and its patch strategy, read from the OpenAPI definitions
//! (where `strategy::FIELD_STRATEGIES` is published), as upstream reads
//! them from its OpenAPI document.

use serde_json::Value;

use crate::openapi;
use crate::resources::Resource;

/// The schema of a JSON object being patched: a struct (`properties`), a
/// map (`additionalProperties`), or unknown (patched like a merge patch).
#[derive(Debug, Clone, Copy)]
pub struct ObjectSchema(Option<&'static Value>);

/// The patch metadata of one field. (`retainKeys` needs none: the server
/// acts on the `$retainKeys` directive clients put in patches.)
#[derive(Debug, Clone, Copy, Default)]
pub struct FieldMeta {
    /// Lists are merged (by `merge_key`, or as sets of primitives), not replaced.
    pub merge: bool,
    pub merge_key: Option<&'static str>,
}

impl ObjectSchema {
    /// The schema of `res`'s objects.
    pub fn of(res: &Resource) -> ObjectSchema {
        let defs = openapi::definitions();
        let schema = defs
            .kind(res.group, res.version, res.kind)
            .and_then(|kind| defs.schemas.get(&kind.definition));
        ObjectSchema(schema)
    }

    /// The metadata of `key` and the schema of the objects its value holds
    /// (the value itself, its list elements, or its map values).
    pub fn field(&self, key: &str) -> (FieldMeta, ObjectSchema) {
        let Some(schema) = self.0 else {
            return (FieldMeta::default(), ObjectSchema(None));
        };
        let property = match schema.get("properties") {
            Some(props) => props.get(key),
            None => schema.get("additionalProperties").filter(|v| v.is_object()),
        };
        let Some(property) = property else {
            return (FieldMeta::default(), ObjectSchema(None));
        };
        let strategy = property
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .unwrap_or("");
        let meta = FieldMeta {
            merge: strategy.split(',').any(|s| s == "merge"),
            merge_key: property
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str),
        };
        (meta, ObjectSchema(object_schema(property)))
    }
}

/// Follows `$ref`s and array items down to an object schema, if any.
fn object_schema(schema: &'static Value) -> Option<&'static Value> {
    let defs = openapi::definitions();
    let mut current = schema;
    // References and item schemas nest a few levels at most; the bound
    // keeps a malformed cycle from looping.
    for _ in 0..8 {
        if let Some(name) = current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/definitions/"))
        {
            current = defs.schemas.get(name)?;
        } else if let Some(items) = current.get("items") {
            current = items;
        } else {
            break;
        }
    }
    let is_object = current.get("properties").is_some()
        || current
            .get("additionalProperties")
            .is_some_and(Value::is_object);
    is_object.then_some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn finds_merge_keys_through_templates() {
        let deploy = ObjectSchema::of(lookup("apps", "v1", "deployments").unwrap());
        let (_, spec) = deploy.field("spec");
        let (strategy, _) = spec.field("strategy");
        assert!(!strategy.merge, "retainKeys alone does not merge lists");
        let (_, template) = spec.field("template");
        let (_, pod_spec) = template.field("spec");
        let (containers, container) = pod_spec.field("containers");
        assert!(containers.merge);
        assert_eq!(containers.merge_key, Some("name"));
        let (ports, _) = container.field("ports");
        assert_eq!(ports.merge_key, Some("containerPort"));
        let (args, _) = container.field("args");
        assert!(!args.merge);
        let (volumes, _) = pod_spec.field("volumes");
        assert!(volumes.merge);
        let (tolerations, _) = pod_spec.field("tolerations");
        assert!(!tolerations.merge, "tolerations are replaced, as upstream");
    }

    #[test]
    fn maps_and_unknown_fields() {
        let pod = ObjectSchema::of(lookup("", "v1", "pods").unwrap());
        let (_, meta) = pod.field("metadata");
        let (finalizers, _) = meta.field("finalizers");
        assert!(finalizers.merge && finalizers.merge_key.is_none());
        let (labels_meta, labels) = meta.field("labels");
        assert!(!labels_meta.merge);
        let (_, value) = labels.field("app");
        assert!(value.0.is_none(), "label values are strings");
        let (unknown, nothing) = pod.field("bogus");
        assert!(!unknown.merge && nothing.0.is_none());
    }
}
