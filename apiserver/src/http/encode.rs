//! Response bodies: objects and lists as stored (lists are concatenated from
//! the stored JSON, not re-serialized), Tables, and metadata-only views.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::negotiate::Output;
use super::query::IncludeObject;
use crate::registry::ListResult;
use crate::resources::Resource;
use crate::storage::Object;
use crate::table;

pub fn json_bytes(code: StatusCode, body: Bytes) -> Response {
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn json_value(code: StatusCode, value: &Value) -> Response {
    json_bytes(code, serde_json::to_vec(value).unwrap_or_default().into())
}

/// Adds `Warning: 299 - "..."` headers.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

pub fn partial_metadata(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// One stored object in the asked representation.
pub fn object(
    res: &Resource,
    code: StatusCode,
    obj: &Object,
    output: Output,
    include: IncludeObject,
) -> Response {
    match output {
        Output::Json => json_bytes(code, obj.value.clone()),
        Output::Metadata { version } => json_value(code, &partial_metadata(&obj.parse(), version)),
        Output::Table { version } => {
            let parsed = obj.parse();
            let rv = parsed
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let table = table_of(
                res,
                [&parsed],
                version,
                include,
                true,
                json!({"resourceVersion": rv}),
            );
            json_value(code, &table)
        }
    }
}

fn list_metadata(list: &ListResult) -> Value {
    let mut meta = json!({"resourceVersion": list.revision.to_string()});
    if let Some(token) = &list.continue_token {
        meta["continue"] = json!(token);
    }
    if let Some(remaining) = list.remaining {
        meta["remainingItemCount"] = json!(remaining);
    }
    meta
}

/// A list in the asked representation.
pub fn list(res: &Resource, list: &ListResult, output: Output, include: IncludeObject) -> Response {
    match output {
        Output::Json => {
            let mut body = Vec::with_capacity(
                128 + list.items.iter().map(|o| o.value.len() + 1).sum::<usize>(),
            );
            let head = json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": list_metadata(list)});
            let head = serde_json::to_vec(&head).unwrap_or_default();
            // `{...}` without its closing brace, then the items.
            body.extend_from_slice(&head[..head.len().saturating_sub(1)]);
            body.extend_from_slice(b",\"items\":[");
            for (i, item) in list.items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&item.value);
            }
            body.extend_from_slice(b"]}");
            json_bytes(StatusCode::OK, body.into())
        }
        Output::Metadata { version } => {
            let items: Vec<Value> = list
                .items
                .iter()
                .map(|o| partial_metadata(&o.parse(), version))
                .collect();
            json_value(
                StatusCode::OK,
                &json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": format!("meta.k8s.io/{version}"),
                    "metadata": list_metadata(list),
                    "items": items,
                }),
            )
        }
        Output::Table { version } => {
            let parsed: Vec<Value> = list.items.iter().map(|o| o.parse()).collect();
            let table = table_of(
                res,
                parsed.iter(),
                version,
                include,
                true,
                list_metadata(list),
            );
            json_value(StatusCode::OK, &table)
        }
    }
}

/// A `meta.k8s.io` Table of `objects`; `with_columns` false leaves out the
/// column definitions (watch events after the first).
pub fn table_of<'a>(
    res: &Resource,
    objects: impl IntoIterator<Item = &'a Value>,
    version: &str,
    include: IncludeObject,
    with_columns: bool,
    metadata: Value,
) -> Value {
    let now = Utc::now();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|obj| {
            let mut row = json!({"cells": table::cells(res, obj, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(obj, version),
                IncludeObject::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let mut table = json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": metadata,
        "rows": rows,
    });
    if with_columns {
        table["columnDefinitions"] = table::columns(res).iter().map(|c| c.to_json()).collect();
    } else {
        table["columnDefinitions"] = json!(null);
    }
    table
}
