//! What strategic merge patch needs to know about a field: the schema of
//! its value and its patch strategy, read from the model of the OpenAPI
//! definitions (where `strategy::FIELD_STRATEGIES` is published), as
//! upstream reads them from its OpenAPI document.

use crate::openapi::{self, Shape, TypeId};
use crate::resources::Resource;

/// The schema of a JSON object being patched: a struct, a map (whose values
/// have one shape), or unknown (patched like a merge patch).
#[derive(Debug, Clone, Copy)]
pub enum ObjectSchema {
    Unknown,
    Struct(TypeId),
    Map(&'static Shape),
}

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
        openapi::model()
            .kind(res.group, res.version, res.kind)
            .map_or(ObjectSchema::Unknown, ObjectSchema::Struct)
    }

    /// The metadata of `key` and the schema of the objects its value holds
    /// (the value itself, its list elements, or its map values).
    pub fn field(&self, key: &str) -> (FieldMeta, ObjectSchema) {
        match *self {
            ObjectSchema::Unknown => (FieldMeta::default(), ObjectSchema::Unknown),
            ObjectSchema::Map(values) => (FieldMeta::default(), object_schema(values)),
            ObjectSchema::Struct(id) => match openapi::model().field(id, key) {
                None => (FieldMeta::default(), ObjectSchema::Unknown),
                Some(field) => {
                    let meta = FieldMeta {
                        merge: field.merge,
                        merge_key: field.merge_key.as_deref(),
                    };
                    (meta, object_schema(&field.shape))
                }
            },
        }
    }
}

/// The object schema a value of `shape` (or its list elements) has.
fn object_schema(shape: &'static Shape) -> ObjectSchema {
    match shape {
        Shape::Struct(id) => ObjectSchema::Struct(*id),
        Shape::Map(values) => ObjectSchema::Map(values),
        Shape::Array(element) => object_schema(element),
        _ => ObjectSchema::Unknown,
    }
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
        assert!(!labels_meta.merge && matches!(labels, ObjectSchema::Map(_)));
        let (_, value) = labels.field("app");
        assert!(
            matches!(value, ObjectSchema::Unknown),
            "label values are strings"
        );
        let (unknown, nothing) = pod.field("bogus");
        assert!(!unknown.merge && matches!(nothing, ObjectSchema::Unknown));
    }
}
