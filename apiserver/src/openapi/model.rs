//! A compact model of the served kinds' schemas — types, fields, patch
//! strategies, no documentation — for the code that walks objects on
//! requests (strategic merge patch, the strict-decoding check). It is
//! distilled from the OpenAPI definitions, which are then dropped: the
//! model takes a few hundred KiB where the JSON trees take megabytes.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::definitions::{Definitions, INT_OR_STRING, QUANTITY};

/// A struct type of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeId(usize);

/// What a value must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// No constraint (`RawExtension`-like).
    Any,
    String,
    /// Published as a string, also sent as a number (int-or-string, quantities).
    StringOrNumber,
    Integer,
    Number,
    Boolean,
    /// An object whose fields are known.
    Struct(TypeId),
    /// An object with arbitrary keys and values of one shape.
    Map(Box<Shape>),
    /// An object with anything in it (`FieldsV1`).
    AnyObject,
    Array(Box<Shape>),
}

/// A field of a struct, with its patch strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Box<str>,
    pub shape: Shape,
    /// `x-kubernetes-patch-strategy` includes `merge`.
    pub merge: bool,
    pub merge_key: Option<Box<str>>,
}

#[derive(Debug, Default)]
pub struct Model {
    /// Fields of each struct, sorted by name.
    structs: Vec<Vec<Field>>,
    /// Definition name (`io.k8s.api.core.v1.PodSpec`) → struct.
    by_name: HashMap<String, TypeId>,
    /// (group, version, kind) → struct.
    kinds: Vec<((&'static str, &'static str, String), TypeId)>,
}

impl Model {
    pub fn build(defs: &Definitions) -> Model {
        let ids: HashMap<&str, TypeId> = defs
            .schemas
            .iter()
            .filter(|(_, schema)| schema.get("properties").is_some())
            .enumerate()
            .map(|(i, (name, _))| (name.as_str(), TypeId(i)))
            .collect();
        let mut structs = vec![Vec::new(); ids.len()];
        for (name, id) in &ids {
            let properties = defs.schemas[*name]["properties"].as_object();
            let mut fields: Vec<Field> = properties
                .into_iter()
                .flatten()
                .map(|(field, schema)| field_of(field, schema, &defs.schemas, &ids))
                .collect();
            fields.sort_by(|a, b| a.name.cmp(&b.name));
            structs[id.0] = fields;
        }
        let kinds = defs
            .kinds
            .iter()
            .filter_map(|k| {
                Some((
                    (k.group, k.version, k.kind.clone()),
                    *ids.get(k.definition.as_str())?,
                ))
            })
            .collect();
        let by_name = ids
            .iter()
            .map(|(name, id)| ((*name).to_owned(), *id))
            .collect();
        Model {
            structs,
            by_name,
            kinds,
        }
    }

    /// The struct of `group/version` `kind`.
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<TypeId> {
        self.kinds
            .iter()
            .find(|((g, v, k), _)| *g == group && *v == version && k == kind)
            .map(|(_, id)| *id)
    }

    /// The struct of an OpenAPI definition.
    pub fn definition(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).copied()
    }

    /// The fields of a struct, sorted by name.
    pub fn fields(&self, id: TypeId) -> &[Field] {
        &self.structs[id.0]
    }

    /// The field `name` of a struct.
    pub fn field(&self, id: TypeId, name: &str) -> Option<&Field> {
        let fields = &self.structs[id.0];
        fields
            .binary_search_by(|f| (*f.name).cmp(name))
            .ok()
            .map(|i| &fields[i])
    }
}

fn field_of(
    name: &str,
    schema: &Value,
    defs: &Map<String, Value>,
    ids: &HashMap<&str, TypeId>,
) -> Field {
    let strategy = schema
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .unwrap_or("");
    Field {
        name: name.into(),
        shape: shape(schema, defs, ids),
        merge: strategy.split(',').any(|s| s == "merge"),
        merge_key: schema
            .get("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
            .map(Into::into),
    }
}

fn shape(schema: &Value, defs: &Map<String, Value>, ids: &HashMap<&str, TypeId>) -> Shape {
    if let Some(name) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
    {
        return match (ids.get(name), name) {
            (Some(id), _) => Shape::Struct(*id),
            (None, INT_OR_STRING | QUANTITY) => Shape::StringOrNumber,
            (None, _) => defs
                .get(name)
                .map_or(Shape::Any, |target| shape(target, defs, ids)),
        };
    }
    let element = |key: &str| Box::new(schema.get(key).map_or(Shape::Any, |s| shape(s, defs, ids)));
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => Shape::String,
        Some("integer") => Shape::Integer,
        Some("number") => Shape::Number,
        Some("boolean") => Shape::Boolean,
        Some("array") => Shape::Array(element("items")),
        Some("object")
            if schema
                .get("additionalProperties")
                .is_some_and(Value::is_object) =>
        {
            Shape::Map(element("additionalProperties"))
        }
        Some("object") => Shape::AnyObject,
        _ => Shape::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_shapes_and_strategies() {
        let model = Model::build(&Definitions::generate());
        let pod = model.kind("", "v1", "Pod").unwrap();
        let Shape::Struct(spec) = model.field(pod, "spec").unwrap().shape else {
            panic!("spec is a struct");
        };
        let containers = model.field(spec, "containers").unwrap();
        assert!(containers.merge);
        assert_eq!(containers.merge_key.as_deref(), Some("name"));
        let Shape::Array(element) = &containers.shape else {
            panic!("a list")
        };
        let Shape::Struct(container) = **element else {
            panic!("of structs")
        };
        assert_eq!(
            model.field(container, "image").unwrap().shape,
            Shape::String
        );
        let Shape::Struct(resources) = model.field(container, "resources").unwrap().shape else {
            panic!("resources")
        };
        assert_eq!(
            model.field(resources, "limits").unwrap().shape,
            Shape::Map(Box::new(Shape::StringOrNumber))
        );
        assert_eq!(
            model.field(spec, "nodeSelector").unwrap().shape,
            Shape::Map(Box::new(Shape::String))
        );
        assert!(model.field(spec, "bogus").is_none());
        assert!(model.kind("apps", "v1", "DeploymentList").is_some());
    }
}
