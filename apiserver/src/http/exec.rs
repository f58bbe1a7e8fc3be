//! `pods/NAME/exec` (`kubectl exec`): the client's connection upgrade —
//! WebSocket (kubectl 1.30 and later) or SPDY — relayed to the kubelet API
//! of the pod's node (`/exec/{ns}/{pod}/{container}` with the same query),
//! which relays it on to the runtime's streaming server.

use axum::extract::Request;
use axum::response::Response;
use http::Method;

use super::AppState;
use super::kubelet::Kubelet;
use super::logs::container;
use super::path::ResourcePath;
use super::query::Query;
use crate::status::{ApiError, ApiResult};

pub async fn pod_exec(
    state: &AppState,
    path: &ResourcePath,
    request: Request,
) -> ApiResult<Response> {
    if request.method() != Method::GET && request.method() != Method::POST {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let namespace = path.namespace.as_deref().unwrap_or("default");
    let name = path.name.as_deref().unwrap_or_default();
    let raw_query = request.uri().query().unwrap_or_default().to_string();
    let query = Query::parse(Some(&raw_query))?;
    let pod = state.registry.get(path.res, Some(namespace), name)?.parse();
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let container = container(&pod, name, query.get("container"))?;
    let kubelet = Kubelet::of_pod(state, &pod, name)?;
    let uri = format!("/exec/{namespace}/{name}/{container}?{raw_query}");
    let relayed = async {
        let tls = kubelet.connect(state).await?;
        paddock_upgrade::relay(request, &kubelet.authority(), &uri, tls).await
    };
    relayed
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))
}
