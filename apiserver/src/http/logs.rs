//! `GET pods/NAME/log`: proxied to the kubelet API of the pod's node
//! (`/containerLogs/{ns}/{pod}/{container}`) with the API server's kubelet
//! client certificate, verifying the kubelet's certificate against the
//! cluster CA, and streamed back as it comes (`kubectl logs -f`).

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use axum::body::Body;
use axum::response::Response;
use http::header;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::AppState;
use crate::registry::meta;
use crate::resources::{self, Resource};
use crate::status::{ApiError, ApiResult};

/// The kubelet API's port when a node does not say.
const KUBELET_PORT: i64 = 10250;

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
    let node_name = meta::str_at(&pod, "/spec/nodeName");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes = resources::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let node = state.registry.get(nodes, None, node_name)?.parse();
    let ip: IpAddr = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!("node {node_name} has no InternalIP address"))
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .filter(|p| *p > 0)
        .unwrap_or(KUBELET_PORT);
    let path = format!(
        "/containerLogs/{namespace}/{name}/{container}?{}",
        query.unwrap_or_default()
    );
    fetch(state, ip, port as u16, &path)
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))
}

/// The named container, or the only one.
fn container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
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

/// GET `path` of the kubelet at `ip:port`; its answer streamed back.
async fn fetch(state: &AppState, ip: IpAddr, port: u16, path: &str) -> anyhow::Result<Response> {
    let (cert, key) = state.pki.paths("client-kube-apiserver-kubelet");
    let chain = rustls_pemfile::certs(&mut std::fs::read(&cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the kubelet client certificate")?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(&key)?.as_slice())?
        .context("no kubelet client key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut state.ca_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .with_context(|| format!("connecting to the kubelet at {ip}:{port}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp)
        .await
        .with_context(|| format!("TLS to the kubelet at {ip}:{port}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(header::HOST, format!("{ip}:{port}"))
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
