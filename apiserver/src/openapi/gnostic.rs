//! The protobuf form of `/openapi/v2` that kubectl asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): the
//! subset of gnostic's `openapi.v2.Document` messages that a Kubernetes
//! document uses, and the conversion from the JSON document.
//! Vendor extensions, defaults and enums travel as YAML text, which JSON is.

use serde_json::{Map, Value};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1")]
    pub oneof: Option<parameters_item::Oneof>,
}

pub mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Parameter(super::Parameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub oneof: Option<parameter::Oneof>,
}

pub mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, boxed, tag = "1")]
        BodyParameter(Box<super::BodyParameter>),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
    pub oneof: Option<non_body_parameter::Oneof>,
}

pub mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "3")]
        QueryParameterSubSchema(super::QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        PathParameterSubSchema(super::PathParameterSubSchema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1")]
    pub oneof: Option<response_value::Oneof>,
}

pub mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Response(super::Response),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaItem {
    #[prost(oneof = "schema_item::Oneof", tags = "1")]
    pub oneof: Option<schema_item::Oneof>,
}

pub mod schema_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(super::Schema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(double, tag = "7")]
    pub maximum: f64,
    #[prost(double, tag = "9")]
    pub minimum: f64,
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    #[prost(string, tag = "13")]
    pub pattern: String,
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub oneof: Option<additional_properties_item::Oneof>,
}

pub mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, boxed, tag = "1")]
        Schema(Box<super::Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

/// Converts the JSON document of `v2::document` into its protobuf form.
pub fn document(doc: &Value) -> Document {
    Document {
        swagger: string(doc, "swagger"),
        info: doc.get("info").map(|info| Info {
            title: string(info, "title"),
            version: string(info, "version"),
        }),
        paths: doc
            .get("paths")
            .and_then(Value::as_object)
            .map(|paths| Paths {
                path: paths
                    .iter()
                    .map(|(name, item)| NamedPathItem {
                        name: name.clone(),
                        value: Some(path_item(item)),
                    })
                    .collect(),
            }),
        definitions: doc
            .get("definitions")
            .and_then(Value::as_object)
            .map(|defs| Definitions {
                additional_properties: named_schemas(defs),
            }),
    }
}

fn string(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn any(value: &Value) -> Any {
    Any {
        yaml: value.to_string(),
    }
}

fn extensions(map: &Map<String, Value>) -> Vec<NamedAny> {
    map.iter()
        .filter(|(key, _)| key.starts_with("x-"))
        .map(|(key, value)| NamedAny {
            name: key.clone(),
            value: Some(any(value)),
        })
        .collect()
}

fn path_item(item: &Value) -> PathItem {
    let op = |method: &str| item.get(method).map(operation);
    PathItem {
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        patch: op("patch"),
        parameters: parameters(item),
    }
}

fn operation(op: &Value) -> Operation {
    Operation {
        tags: strings(op, "tags"),
        description: string(op, "description"),
        operation_id: string(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: parameters(op),
        responses: op
            .get("responses")
            .and_then(Value::as_object)
            .map(|codes| Responses {
                response_code: codes
                    .iter()
                    .map(|(code, response)| NamedResponseValue {
                        name: code.clone(),
                        value: Some(ResponseValue {
                            oneof: Some(response_value::Oneof::Response(Response {
                                description: string(response, "description"),
                                schema: response.get("schema").map(|s| SchemaItem {
                                    oneof: Some(schema_item::Oneof::Schema(schema(s))),
                                }),
                            })),
                        }),
                    })
                    .collect(),
            }),
        schemes: strings(op, "schemes"),
        vendor_extension: op.as_object().map(extensions).unwrap_or_default(),
    }
}

fn parameters(owner: &Value) -> Vec<ParametersItem> {
    owner
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            let unique_items = p
                .get("uniqueItems")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let oneof = match p.get("in").and_then(Value::as_str) {
                Some("body") => parameter::Oneof::BodyParameter(Box::new(BodyParameter {
                    description: string(p, "description"),
                    name: string(p, "name"),
                    r#in: "body".into(),
                    required,
                    schema: p.get("schema").map(schema),
                })),
                Some("path") => parameter::Oneof::NonBodyParameter(NonBodyParameter {
                    oneof: Some(non_body_parameter::Oneof::PathParameterSubSchema(
                        PathParameterSubSchema {
                            required,
                            r#in: "path".into(),
                            description: string(p, "description"),
                            name: string(p, "name"),
                            r#type: string(p, "type"),
                            unique_items,
                        },
                    )),
                }),
                _ => parameter::Oneof::NonBodyParameter(NonBodyParameter {
                    oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(
                        QueryParameterSubSchema {
                            required,
                            r#in: "query".into(),
                            description: string(p, "description"),
                            name: string(p, "name"),
                            r#type: string(p, "type"),
                            unique_items,
                        },
                    )),
                }),
            };
            ParametersItem {
                oneof: Some(parameters_item::Oneof::Parameter(Parameter {
                    oneof: Some(oneof),
                })),
            }
        })
        .collect()
}

fn named_schemas(map: &Map<String, Value>) -> Vec<NamedSchema> {
    map.iter()
        .map(|(name, s)| NamedSchema {
            name: name.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

fn schema(value: &Value) -> Schema {
    let Some(map) = value.as_object() else {
        return Schema::default();
    };
    let number = |key: &str| map.get(key).and_then(Value::as_f64).unwrap_or_default();
    let integer = |key: &str| map.get(key).and_then(Value::as_i64).unwrap_or_default();
    Schema {
        r#ref: string(value, "$ref"),
        format: string(value, "format"),
        title: string(value, "title"),
        description: string(value, "description"),
        default: map.get("default").map(any),
        maximum: number("maximum"),
        minimum: number("minimum"),
        max_length: integer("maxLength"),
        min_length: integer("minLength"),
        pattern: string(value, "pattern"),
        max_items: integer("maxItems"),
        min_items: integer("minItems"),
        unique_items: map
            .get("uniqueItems")
            .and_then(Value::as_bool)
            .unwrap_or_default(),
        required: strings(value, "required"),
        r#enum: map
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(any)
            .collect(),
        additional_properties: map.get("additionalProperties").map(|extra| {
            AdditionalPropertiesItem {
                oneof: Some(match extra {
                    Value::Bool(allowed) => additional_properties_item::Oneof::Boolean(*allowed),
                    other => additional_properties_item::Oneof::Schema(Box::new(schema(other))),
                }),
            }
        }),
        r#type: map.get("type").map(|t| TypeItem {
            value: match t {
                Value::Array(types) => types
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                other => other.as_str().map(str::to_owned).into_iter().collect(),
            },
        }),
        items: map.get("items").map(|items| ItemsItem {
            schema: match items {
                Value::Array(each) => each.iter().map(schema).collect(),
                one => vec![schema(one)],
            },
        }),
        all_of: map
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(schema)
            .collect(),
        properties: map
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| Properties {
                additional_properties: named_schemas(props),
            }),
        read_only: map
            .get("readOnly")
            .and_then(Value::as_bool)
            .unwrap_or_default(),
        example: map.get("example").map(any),
        vendor_extension: extensions(map),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use serde_json::json;

    use super::*;

    /// The JSON Schema keywords `schema` carries over.
    const SCHEMA_KEYWORDS: &[&str] = &[
        "$ref",
        "format",
        "title",
        "description",
        "default",
        "maximum",
        "minimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "required",
        "enum",
        "additionalProperties",
        "type",
        "items",
        "allOf",
        "properties",
        "readOnly",
        "example",
    ];

    fn check_keywords(schema: &Value, path: &str) {
        let Some(map) = schema.as_object() else {
            return;
        };
        for (key, value) in map {
            assert!(
                key.starts_with("x-") || SCHEMA_KEYWORDS.contains(&key.as_str()),
                "{path}: keyword {key} would be lost in protobuf"
            );
            match key.as_str() {
                "properties" => {
                    for (name, s) in value.as_object().into_iter().flatten() {
                        check_keywords(s, &format!("{path}.{name}"));
                    }
                }
                "items" | "additionalProperties" => check_keywords(value, path),
                "allOf" => value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .for_each(|s| check_keywords(s, path)),
                _ => {}
            }
        }
    }

    #[test]
    fn definitions_use_only_keywords_the_protobuf_carries() {
        for (name, schema) in &crate::openapi::Definitions::generate().schemas {
            check_keywords(schema, name);
        }
    }

    #[test]
    fn encodes_and_decodes_a_document() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": {"/api/v1/namespaces/{namespace}/pods/{name}": {
                "patch": {
                    "operationId": "patchCoreV1NamespacedPod",
                    "parameters": [
                        {"in": "body", "name": "body", "required": true, "schema": {"$ref": "#/definitions/x"}},
                        {"in": "query", "name": "dryRun", "type": "string", "uniqueItems": true},
                    ],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/x"}}},
                    "x-kubernetes-group-version-kind": {"group": "", "kind": "Pod", "version": "v1"},
                },
                "parameters": [{"in": "path", "name": "name", "required": true, "type": "string"}],
            }},
            "definitions": {"x": {
                "type": "object",
                "required": ["a"],
                "properties": {
                    "a": {"type": "array", "items": {"type": "string"},
                          "x-kubernetes-patch-strategy": "merge"},
                    "m": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}],
            }},
        });
        let bytes = document(&doc).encode_to_vec();
        let decoded = Document::decode(bytes.as_slice()).unwrap();
        let path = &decoded.paths.as_ref().unwrap().path[0];
        assert_eq!(path.name, "/api/v1/namespaces/{namespace}/pods/{name}");
        let patch = path.value.as_ref().unwrap().patch.as_ref().unwrap();
        assert_eq!(patch.operation_id, "patchCoreV1NamespacedPod");
        let Some(parameters_item::Oneof::Parameter(Parameter {
            oneof:
                Some(parameter::Oneof::NonBodyParameter(NonBodyParameter {
                    oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(query)),
                })),
        })) = &patch.parameters[1].oneof
        else {
            panic!("dryRun should be a query parameter");
        };
        assert_eq!(query.name, "dryRun");
        assert_eq!(
            patch.vendor_extension[0].name,
            "x-kubernetes-group-version-kind"
        );
        let gvk: Value =
            serde_json::from_str(&patch.vendor_extension[0].value.as_ref().unwrap().yaml).unwrap();
        assert_eq!(gvk["kind"], "Pod");
        let schema = decoded.definitions.unwrap().additional_properties[0]
            .value
            .clone()
            .unwrap();
        assert_eq!(schema.required, ["a"]);
        let props = schema.properties.unwrap().additional_properties;
        let a = props
            .iter()
            .find(|p| p.name == "a")
            .unwrap()
            .value
            .clone()
            .unwrap();
        assert_eq!(a.r#type.unwrap().value, ["array"]);
        assert_eq!(
            a.items.unwrap().schema[0].r#type.as_ref().unwrap().value,
            ["string"]
        );
        assert_eq!(
            a.vendor_extension[0].value.as_ref().unwrap().yaml,
            "\"merge\""
        );
        let m = props
            .iter()
            .find(|p| p.name == "m")
            .unwrap()
            .value
            .clone()
            .unwrap();
        assert!(matches!(
            m.additional_properties.unwrap().oneof,
            Some(additional_properties_item::Oneof::Schema(_))
        ));
    }
}
