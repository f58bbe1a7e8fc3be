//! The schemas of the served kinds, generated from `k8s-openapi`'s types
//! and shaped like upstream's: group-version-kind and patch-strategy
//! extensions, list kinds, and upstream's forms of the special types.

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events, policy::v1 as policy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::patch::strategy::FIELD_STRATEGIES;
use crate::resources::{RESOURCES, Resource};

/// A kind with a schema: the group-version-kind and its definition name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: String,
    pub definition: String,
}

impl Kind {
    fn gvk_json(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// All definitions, and which of them are top-level kinds.
pub struct Definitions {
    pub schemas: Map<String, Value>,
    pub kinds: Vec<Kind>,
}

pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

type Register = fn(&mut SchemaGenerator) -> String;

fn register<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The `k8s-openapi` type of a served resource's objects.
fn resource_type(res: &Resource) -> Option<Register> {
    Some(match (res.group, res.kind) {
        ("", "Namespace") => register::<core::Namespace>,
        ("", "Node") => register::<core::Node>,
        ("", "Pod") => register::<core::Pod>,
        ("", "Service") => register::<core::Service>,
        ("", "Endpoints") => register::<core::Endpoints>,
        ("", "ConfigMap") => register::<core::ConfigMap>,
        ("", "Secret") => register::<core::Secret>,
        ("", "ServiceAccount") => register::<core::ServiceAccount>,
        ("", "Event") => register::<core::Event>,
        ("apps", "Deployment") => register::<apps::Deployment>,
        ("apps", "ReplicaSet") => register::<apps::ReplicaSet>,
        ("discovery.k8s.io", "EndpointSlice") => register::<discovery::EndpointSlice>,
        ("events.k8s.io", "Event") => register::<events::Event>,
        ("coordination.k8s.io", "Lease") => register::<coordination::Lease>,
        _ => return None,
    })
}

/// The kinds subresources take and return, besides the resources' own.
const SUBRESOURCE_KINDS: &[(&str, &str, &str, Register)] = &[
    ("autoscaling", "v1", "Scale", register::<autoscaling::Scale>),
    ("", "v1", "Binding", register::<core::Binding>),
    ("policy", "v1", "Eviction", register::<policy::Eviction>),
];

impl Definitions {
    pub fn generate() -> Definitions {
        let mut generator = SchemaSettings::draft07()
            .with(|s| s.transforms.clear())
            .into_generator();
        let mut kinds = Vec::new();
        for res in RESOURCES {
            if let Some(register) = resource_type(res) {
                let definition = register(&mut generator);
                kinds.push(Kind {
                    group: res.group,
                    version: res.version,
                    kind: res.kind.to_owned(),
                    definition,
                });
            }
        }
        for &(group, version, kind, register) in SUBRESOURCE_KINDS {
            let definition = register(&mut generator);
            kinds.push(Kind {
                group,
                version,
                kind: kind.to_owned(),
                definition,
            });
        }
        register::<meta::Status>(&mut generator);
        register::<meta::DeleteOptions>(&mut generator);
        let mut schemas = generator.take_definitions(false);

        let served: Vec<Kind> = kinds.clone();
        for kind in &served {
            if let Some(schema) = schemas
                .get_mut(&kind.definition)
                .and_then(Value::as_object_mut)
            {
                not_requiring_metadata(schema);
            }
        }
        for kind in served.iter().filter(|k| {
            RESOURCES
                .iter()
                .any(|r| r.kind == k.kind && r.group == k.group)
        }) {
            let list = list_kind(kind);
            schemas.insert(list.definition.clone(), list_schema(kind));
            kinds.push(list);
        }
        for kind in &kinds {
            add_gvk(&mut schemas, &kind.definition, kind.gvk_json());
        }
        for (group, version) in group_versions() {
            let gvk = json!({"group": group, "kind": "DeleteOptions", "version": version});
            add_gvk(&mut schemas, DELETE_OPTIONS, gvk);
        }
        add_gvk(
            &mut schemas,
            STATUS,
            json!({"group": "", "kind": "Status", "version": "v1"}),
        );
        schemas.insert(
            PATCH.into(),
            json!({
                "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
                "type": "object",
            }),
        );
        upstream_special_types(&mut schemas);
        patch_strategies(&mut schemas);
        Definitions { schemas, kinds }
    }

    /// The definition describing objects of `group/version` `kind`.
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<&Kind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }

    /// The schema of `definition.property`.
    pub fn property(&self, definition: &str, property: &str) -> Option<&Value> {
        self.schemas
            .get(definition)?
            .get("properties")?
            .get(property)
    }
}

/// The distinct group-versions of the served resources, in catalogue order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen = Vec::new();
    for res in RESOURCES {
        if !seen.contains(&(res.group, res.version)) {
            seen.push((res.group, res.version));
        }
    }
    seen
}

/// `k8s-openapi` requires `metadata` of every kind; upstream does not.
fn not_requiring_metadata(schema: &mut Map<String, Value>) {
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

fn list_kind(kind: &Kind) -> Kind {
    Kind {
        group: kind.group,
        version: kind.version,
        kind: format!("{}List", kind.kind),
        definition: format!("{}List", kind.definition),
    }
}

fn list_schema(item: &Kind) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", item.kind, item.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("List of {} objects.", item.kind),
                "type": "array",
                "items": {"$ref": format!("#/definitions/{}", item.definition)},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("#/definitions/{LIST_META}"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
        "required": ["items"],
    })
}

fn add_gvk(schemas: &mut Map<String, Value>, definition: &str, gvk: Value) {
    let Some(schema) = schemas.get_mut(definition).and_then(Value::as_object_mut) else {
        return;
    };
    let list = schema
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = list.as_array_mut() {
        list.push(gvk);
    }
}

/// Upstream publishes int-or-string as a formatted string and quantities
/// as strings; clients (kubectl's validation among them) expect that.
fn upstream_special_types(schemas: &mut Map<String, Value>) {
    let description = |schemas: &Map<String, Value>, name: &str| {
        schemas
            .get(name)
            .and_then(|s| s.get("description"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let int_or_string = description(schemas, INT_OR_STRING);
    schemas.insert(
        INT_OR_STRING.into(),
        json!({"description": int_or_string, "type": "string", "format": "int-or-string"}),
    );
    let quantity = description(schemas, QUANTITY);
    schemas.insert(
        QUANTITY.into(),
        json!({"description": quantity, "type": "string"}),
    );
}

fn patch_strategies(schemas: &mut Map<String, Value>) {
    for field in FIELD_STRATEGIES {
        let Some(property) = schemas
            .get_mut(field.definition)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(field.property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        property.insert("x-kubernetes-patch-strategy".into(), field.strategy.into());
        if let Some(key) = field.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_resource_has_a_kind_and_a_list() {
        let defs = Definitions::generate();
        for res in RESOURCES {
            let kind = defs.kind(res.group, res.version, res.kind).expect(res.kind);
            assert!(
                defs.schemas.contains_key(&kind.definition),
                "{}",
                kind.definition
            );
            let list = defs
                .kind(res.group, res.version, &res.list_kind())
                .expect("list");
            assert!(defs.schemas.contains_key(&list.definition));
        }
        let pod = &defs.schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert!(pod.get("required").is_none());
    }

    #[test]
    fn every_patch_strategy_names_a_real_property() {
        let defs = Definitions::generate();
        for field in FIELD_STRATEGIES {
            let property = defs
                .property(field.definition, field.property)
                .unwrap_or_else(|| panic!("{}.{}", field.definition, field.property));
            assert_eq!(property["x-kubernetes-patch-strategy"], field.strategy);
        }
        let containers = defs
            .property("io.k8s.api.core.v1.PodSpec", "containers")
            .unwrap();
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    }

    #[test]
    fn references_all_resolve() {
        fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let defs = Definitions::generate();
        let mut all = Vec::new();
        for schema in defs.schemas.values() {
            refs(schema, &mut all);
        }
        assert!(all.len() > 100);
        for r in all {
            let name = r.strip_prefix("#/definitions/").expect(r);
            assert!(defs.schemas.contains_key(name), "{r}");
        }
    }

    #[test]
    fn int_or_string_is_published_like_upstream() {
        let defs = Definitions::generate();
        assert_eq!(defs.schemas[INT_OR_STRING]["format"], "int-or-string");
        assert_eq!(defs.schemas[QUANTITY]["type"], "string");
    }
}
