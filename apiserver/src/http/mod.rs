//! The HTTP API: routing, discovery, the resource endpoints, watch streams,
//! Status errors, content negotiation, the join endpoints, and the HTTPS
//! listener that serves them.

mod authn;
mod body;
mod discovery;
mod encode;
mod exec;
mod join;
mod kubelet;
pub mod listener;
mod logs;
mod negotiate;
mod openapi;
mod path;
mod query;
mod resource;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::StatusCode;

use crate::auth::TokenAuthenticator;
use crate::pki::{JoinToken, Pki};
use crate::registry::Registry;

pub use discovery::{KUBE_MAJOR, KUBE_MINOR};

/// What the handlers share.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub pki: Arc<Pki>,
    pub ca_pem: String,
    pub join_token: JoinToken,
    pub tokens: TokenAuthenticator,
    /// `host:port` clients should use (for `/api`).
    pub server_address: String,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/version", get(version))
        .route("/healthz", get(healthy))
        .route("/livez", get(healthy))
        .route("/readyz", get(healthy))
        .route("/api", get(core_versions))
        .route("/api/{version}", get(core_resources))
        .route("/api/{version}/{*rest}", any(resource::core))
        .route("/apis", get(groups))
        .route("/apis/{group}", get(group))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/apis/{group}/{version}/{*rest}", any(resource::grouped))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::v3_index))
        .route("/openapi/v3/{*rest}", get(openapi::v3_group_version))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authn::authenticate,
        ));
    Router::new()
        .route("/cacerts", get(join::cacerts))
        .route("/v1-paddock/node-credentials", post(join::node_credentials))
        .merge(api)
        .with_state(state)
}

async fn version() -> Response {
    encode::json_value(StatusCode::OK, &discovery::version())
}

async fn healthy() -> &'static str {
    "ok"
}

async fn core_versions(State(state): State<Arc<AppState>>) -> Response {
    encode::json_value(
        StatusCode::OK,
        &discovery::core_versions(&state.server_address),
    )
}

async fn core_resources(Path(version): Path<String>) -> Response {
    match discovery::resource_list("", &version) {
        Some(list) => encode::json_value(StatusCode::OK, &list),
        None => path::not_found().into_response(),
    }
}

async fn groups() -> Response {
    encode::json_value(StatusCode::OK, &discovery::group_list())
}

async fn group(Path(name): Path<String>) -> Response {
    match discovery::group(&name) {
        Some(group) => encode::json_value(StatusCode::OK, &group),
        None => path::not_found().into_response(),
    }
}

async fn group_resources(Path((group, version)): Path<(String, String)>) -> Response {
    match discovery::resource_list(&group, &version) {
        Some(list) => encode::json_value(StatusCode::OK, &list),
        None => path::not_found().into_response(),
    }
}

async fn not_found() -> Response {
    path::not_found().into_response()
}
