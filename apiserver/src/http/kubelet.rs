//! The kubelet API of a pod's node, as the API server calls it for
//! `pods/log` and `pods/exec`: at the node's InternalIP and kubelet port,
//! over TLS with the API server's kubelet client certificate, verifying the
//! kubelet's certificate against the cluster CA.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::AppState;
use crate::registry::meta;
use crate::resources;
use crate::status::{ApiError, ApiResult};

/// The kubelet API's port when a node does not say.
const KUBELET_PORT: i64 = 10250;

pub struct Kubelet {
    ip: IpAddr,
    port: u16,
}

impl Kubelet {
    /// The kubelet of the node `pod` is bound to.
    pub fn of_pod(state: &AppState, pod: &Value, name: &str) -> ApiResult<Kubelet> {
        let node_name = meta::str_at(pod, "/spec/nodeName");
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
            .filter(|p| (1..=i64::from(u16::MAX)).contains(p))
            .unwrap_or(KUBELET_PORT) as u16;
        Ok(Kubelet { ip, port })
    }

    /// `ip:port`, for `Host`.
    pub fn authority(&self) -> String {
        std::net::SocketAddr::new(self.ip, self.port).to_string()
    }

    /// A TLS connection to the kubelet API.
    pub async fn connect(&self, state: &AppState) -> anyhow::Result<TlsStream<TcpStream>> {
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
        let (ip, port) = (self.ip, self.port);
        let tcp = TcpStream::connect((ip, port))
            .await
            .with_context(|| format!("connecting to the kubelet at {ip}:{port}"))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp)
            .await
            .with_context(|| format!("TLS to the kubelet at {ip}:{port}"))
    }
}
