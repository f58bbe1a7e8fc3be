//! The OpenAPI 3.0 documents served under `/openapi/v3`: one per
//! group-version (what kubectl 1.27+ reads for `explain`, field validation
//! support and patch metadata), listed by an index.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::definitions::{Definitions, group_versions};
use super::operations::{self, Operation, PathItem, QueryParam};
use super::v2::{API_VERSION, response_description};

/// A group-version document and where it is served.
pub struct GroupVersionDocument {
    /// `api/v1`, `apis/apps/v1`: the path below `/openapi/v3/`.
    pub path: String,
    pub json: Vec<u8>,
    /// Upper-case hex digest of `json`, the `hash` query of its URL.
    pub hash: String,
}

pub fn documents(defs: &Definitions) -> Vec<GroupVersionDocument> {
    let all = operations::paths(|g, v, k| defs.kind(g, v, k).map(|k| k.definition.clone()));
    group_versions()
        .into_iter()
        .map(|(group, version)| {
            let root = operations::group_version_root(group, version);
            let items: Vec<&PathItem> = all
                .iter()
                .filter(|p| {
                    p.path
                        .strip_prefix(&root)
                        .is_some_and(|rest| rest.starts_with('/'))
                })
                .collect();
            let json = serde_json::to_vec(&document(defs, &items)).unwrap_or_default();
            let hash = hex::encode_upper(Sha256::digest(&json));
            GroupVersionDocument {
                path: root.trim_start_matches('/').to_owned(),
                json,
                hash,
            }
        })
        .collect()
}

/// The `/openapi/v3` index of the group-version documents.
pub fn index(documents: &[GroupVersionDocument]) -> Value {
    let paths: Map<String, Value> = documents
        .iter()
        .map(|doc| {
            let url = format!("/openapi/v3/{}?hash={}", doc.path, doc.hash);
            (doc.path.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

fn document(defs: &Definitions, items: &[&PathItem]) -> Value {
    let mut paths = Map::new();
    let mut wanted = BTreeSet::new();
    for item in items {
        for op in &item.operations {
            wanted.extend(op.body.iter().map(|(d, _)| d.clone()));
            wanted.extend(op.responses.iter().map(|(_, d)| d.clone()));
        }
        paths.insert(
            item.path.clone(),
            operations::render_path_item(item, operation, path_param, query_param),
        );
    }
    let mut schemas = Map::new();
    let mut pending: Vec<String> = wanted.into_iter().collect();
    while let Some(name) = pending.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        let Some(schema) = defs.schemas.get(&name) else {
            continue;
        };
        collect_refs(schema, &mut pending);
        schemas.insert(name, convert_schema(schema));
    }
    schemas.sort_keys();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": API_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
        "security": [{"BearerToken": []}],
    })
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/definitions/"))
            {
                out.push(name.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A v2 schema in v3 form: references point at `components/schemas`, and a
/// reference with siblings (a description, patch extensions) is wrapped in
/// `allOf`, as upstream does.
fn convert_schema(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .filter(|(key, _)| key.as_str() != "$ref")
                .map(|(key, v)| {
                    let converted = match key.as_str() {
                        "properties" => Value::Object(
                            v.as_object()
                                .into_iter()
                                .flatten()
                                .map(|(name, s)| (name.clone(), convert_schema(s)))
                                .collect(),
                        ),
                        "items" | "additionalProperties" | "allOf" => convert_schema(v),
                        _ => v.clone(),
                    };
                    (key.clone(), converted)
                })
                .collect();
            if let Some(target) = map.get("$ref").and_then(Value::as_str) {
                let reference =
                    json!({"$ref": target.replace("#/definitions/", "#/components/schemas/")});
                if out.is_empty() {
                    return reference;
                }
                out.insert("allOf".into(), json!([reference]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(convert_schema).collect()),
        other => other.clone(),
    }
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string", "uniqueItems": true},
    })
}

fn query_param((name, type_, description): QueryParam) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": type_, "uniqueItems": true},
    })
}

fn component_ref(definition: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{definition}")})
}

fn operation(op: &Operation) -> Value {
    let mut out = json!({
        "tags": [operations::tag(op.gvk.0, op.gvk.1)],
        "description": op.description,
        "operationId": op.id,
        "parameters": op.query.iter().copied().map(query_param).collect::<Vec<_>>(),
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {"group": op.gvk.0, "kind": op.gvk.2, "version": op.gvk.1},
    });
    if let Some((definition, required)) = &op.body {
        let content: Map<String, Value> = op
            .consumes
            .iter()
            .map(|t| {
                (
                    (*t).to_owned(),
                    json!({"schema": component_ref(definition)}),
                )
            })
            .collect();
        out["requestBody"] = json!({"content": content, "required": required});
    }
    let mut responses = Map::new();
    for (code, definition) in &op.responses {
        let content: Map<String, Value> = op
            .produces
            .iter()
            .map(|t| {
                (
                    (*t).to_owned(),
                    json!({"schema": component_ref(definition)}),
                )
            })
            .collect();
        responses.insert(
            code.to_string(),
            json!({"description": response_description(*code), "content": content}),
        );
    }
    responses.insert(
        "401".into(),
        json!({"description": response_description(401)}),
    );
    out["responses"] = Value::Object(responses);
    out
}
