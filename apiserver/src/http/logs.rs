//! `GET pods/NAME/log`: proxied to the kubelet API of the pod's node
//! (`/containerLogs/{ns}/{pod}/{container}`) and streamed back as it comes
//! (`kubectl logs -f`).

use anyhow::anyhow;
use axum::body::Body;
use axum::response::Response;
use http::header;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::AppState;
use super::kubelet::Kubelet;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

pub async fn pod_log(
    state: &AppState,
    res: &'static Resource,
    namespace: &str,
    name: &str,
    container_asked: Option<&str>,
    query: Option<&str>,
) -> ApiResult<Response> {
    let pod = state.registry.get(res, Some(namespace), name)?.parse();
    let container = container(&pod, name, container_asked)?;
    let kubelet = Kubelet::of_pod(state, &pod, name)?;
    let path = format!(
        "/containerLogs/{namespace}/{name}/{container}?{}",
        query.unwrap_or_default()
    );
    fetch(state, &kubelet, &path)
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))
}

/// The named container, or the only one.
pub fn container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match main.as_slice() {
                [only] => Ok(only.to_string()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

/// GET `path` of `kubelet`; its answer streamed back.
async fn fetch(state: &AppState, kubelet: &Kubelet, path: &str) -> anyhow::Result<Response> {
    let tls = kubelet.connect(state).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(header::HOST, kubelet.authority())
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| anyhow!(e).context("asking the kubelet for the log"))?;
    let (parts, body) = response.into_parts();
    let mut out = Response::builder().status(parts.status);
    if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
        out = out.header(header::CONTENT_TYPE, kind);
    }
    Ok(out.body(Body::new(body))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_only_container_unless_named() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(container(&one, "p", None).unwrap(), "web");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let err = container(&two, "p", None).unwrap_err();
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(container(&two, "p", Some("i")).unwrap(), "i");
        assert_eq!(container(&two, "p", Some("x")).unwrap_err().code, 400);
    }
}
