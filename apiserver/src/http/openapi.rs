//! The OpenAPI documents: `/openapi/v2` as JSON or as the protobuf kubectl
//! asks for, and `/openapi/v3` (an index, then one document per
//! group-version).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::{encode, path};
use crate::openapi;
use crate::status::ApiError;

pub async fn v2(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    for range in accept.split(',') {
        let essence = range.split(';').next().unwrap_or_default().trim();
        if essence == openapi::V2_PROTOBUF_ACCEPT || essence == openapi::V2_PROTOBUF_CONTENT_TYPE {
            let mut response =
                (StatusCode::OK, Bytes::from_static(openapi::v2_protobuf())).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(openapi::V2_PROTOBUF_CONTENT_TYPE),
            );
            return response;
        }
        if matches!(essence, "application/json" | "*/*" | "application/*") {
            return encode::json_bytes(StatusCode::OK, Bytes::from_static(openapi::v2_json()));
        }
    }
    ApiError::not_acceptable(format!(
        "/openapi/v2 is served as JSON or protobuf (asked for {accept:?})"
    ))
    .into_response()
}

pub async fn v3_index() -> Response {
    encode::json_bytes(StatusCode::OK, Bytes::from_static(openapi::v3_index()))
}

pub async fn v3_group_version(Path(rest): Path<String>) -> Response {
    match openapi::v3_group_version(rest.trim_matches('/')) {
        Some(doc) => encode::json_bytes(StatusCode::OK, Bytes::from_static(doc)),
        None => path::not_found().into_response(),
    }
}
