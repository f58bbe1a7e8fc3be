//! The Swagger 2.0 document served at `/openapi/v2`.

use serde_json::{Map, Value, json};

use super::definitions::Definitions;
use super::operations::{self, Operation, QueryParam};

/// The `info.version` of the documents.
pub const API_VERSION: &str = "v1.32.0";

pub fn document(defs: &Definitions) -> Value {
    let mut paths = Map::new();
    for item in operations::paths(|g, v, k| defs.kind(g, v, k).map(|k| k.definition.clone())) {
        paths.insert(
            item.path.clone(),
            operations::render_path_item(&item, operation, path_param, query_param),
        );
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": API_VERSION},
        "paths": paths,
        "definitions": defs.schemas,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            },
        },
        "security": [{"BearerToken": []}],
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "path",
        "name": name,
        "required": true,
        "type": "string",
        "uniqueItems": true,
    })
}

fn query_param((name, type_, description): QueryParam) -> Value {
    json!({
        "description": description,
        "in": "query",
        "name": name,
        "type": type_,
        "uniqueItems": true,
    })
}

fn definition_ref(definition: &str) -> Value {
    json!({"$ref": format!("#/definitions/{definition}")})
}

pub fn response_description(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Unauthorized",
    }
}

fn operation(op: &Operation) -> Value {
    let mut parameters: Vec<Value> = Vec::new();
    if let Some((definition, required)) = &op.body {
        parameters.push(json!({
            "in": "body",
            "name": "body",
            "required": required,
            "schema": definition_ref(definition),
        }));
    }
    parameters.extend(op.query.iter().copied().map(query_param));
    let mut responses = Map::new();
    for (code, definition) in &op.responses {
        responses.insert(
            code.to_string(),
            json!({"description": response_description(*code), "schema": definition_ref(definition)}),
        );
    }
    responses.insert(
        "401".into(),
        json!({"description": response_description(401)}),
    );
    let (group, version, kind) = &op.gvk;
    json!({
        "consumes": op.consumes,
        "description": op.description,
        "operationId": op.id,
        "parameters": parameters,
        "produces": op.produces,
        "responses": responses,
        "schemes": ["https"],
        "tags": [operations::tag(group, version)],
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {"group": group, "kind": kind, "version": version},
    })
}
