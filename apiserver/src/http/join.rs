//! Joining nodes: `GET /cacerts` (no credentials: the join token pins its
//! hash) and `POST /v1-paddock/node-credentials`, where the join token buys
//! a kubelet client certificate and a kubelet serving certificate.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, authn, body, encode};
use crate::pki::{NODES, Subject};
use crate::status::{ApiError, ApiResult};
use crate::validation::is_dns1123_subdomain;

pub async fn cacerts(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.ca_pem.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsRequest {
    node_name: String,
    #[serde(default)]
    addresses: Vec<String>,
}

pub async fn node_credentials(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Body,
) -> Response {
    issue(&state, &headers, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn issue(state: &AppState, headers: &HeaderMap, request: Body) -> ApiResult<Response> {
    // Read the body first: an HTTP/2 answer before it would reset the stream.
    let bytes = body::read(request).await?;
    let presented = authn::bearer_token(headers).unwrap_or_default();
    if !state.join_token.matches(presented) {
        return Err(ApiError::unauthorized());
    }
    let req: CredentialsRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid node credentials request: {e}")))?;
    if !is_dns1123_subdomain(&req.node_name) {
        return Err(ApiError::bad_request(format!(
            "nodeName {:?} is not a valid node name (a lowercase RFC 1123 subdomain)",
            req.node_name
        )));
    }
    let ips = req
        .addresses
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|_| ApiError::bad_request(format!("address {a:?} is not an IP address")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let client = state
        .pki
        .client_cert(&Subject {
            common_name: format!("system:node:{}", req.node_name),
            organizations: vec![NODES.to_string()],
        })
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let serving = state
        .pki
        .serving_cert(&req.node_name, std::slice::from_ref(&req.node_name), &ips)
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    tracing::info!(node = %req.node_name, "issued node credentials");
    Ok(encode::json_value(
        StatusCode::OK,
        &json!({
            "ca": state.ca_pem,
            "clientCert": client.cert_pem,
            "clientKey": client.key_pem,
            "servingCert": serving.cert_pem,
            "servingKey": serving.key_pem,
        }),
    ))
}
