//! Request bodies: read up to the limit (3 MiB, like upstream), then
//! decoded from JSON, YAML or Kubernetes protobuf into an object.

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::negotiate::{BodyFormat, body_format};
use crate::protobuf;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

/// The largest request body accepted.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub async fn read(body: Body) -> ApiResult<Bytes> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::too_large(MAX_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// Parses a body as JSON, YAML or protobuf (per `Content-Type`).
pub fn parse(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Value> {
    parse_optional(headers, bytes)?
        .ok_or_else(|| ApiError::bad_request("the request body is empty"))
}

/// Like [`parse`], but an empty body is `None` (a DELETE's options).
pub fn parse_optional(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Option<Value>> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = body_format(content_type)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value = match format {
        BodyFormat::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        BodyFormat::Yaml => parse_yaml(bytes)?,
        BodyFormat::Protobuf => protobuf::decode(bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not a valid protobuf object: {e}"
            ))
        })?,
    };
    Ok(Some(value))
}

pub fn parse_yaml(bytes: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not UTF-8: {e}")))?;
    serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
}

/// A body that must be an object of `res`'s kind: `apiVersion` and `kind`
/// must be there and match.
pub fn object_of(res: &Resource, value: Value) -> ApiResult<Value> {
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "the request body must be a JSON object (a {}), not {}",
            res.kind,
            json_type(&value)
        )));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body",
        ));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'apiVersion' is missing in the request body",
        ));
    }
    if api_version != res.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if kind != res.kind {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {}: the kind in the data ({kind}) does not match the expected kind ({})",
            res.version, res.kind, res.kind
        )));
    }
    Ok(value)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
