//! The kubelet API on :10250, over TLS with the node's serving certificate:
//! only the API server's kubelet client certificate (signed by the cluster
//! CA) may call it. `/containerLogs/{ns}/{pod}/{container}` (what the API
//! server's `pods/log` proxies to), `/exec/{ns}/{pod}/{container}` (what
//! `pods/exec` relays), `/healthz`, `/metrics` and `/pods`.

mod exec;
mod logs;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use rustls::server::WebPkiClientVerifier;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::join::{Credentials, pem_certs};
use crate::metrics::Metrics;
use crate::pods::Context;

/// The only caller the kubelet API accepts.
pub const API_SERVER_CLIENT: &str = "kube-apiserver-kubelet-client";

/// The client certificate's common name, per connection.
#[derive(Clone)]
struct Caller(Option<String>);

#[derive(Clone)]
struct AppState {
    pods: Arc<Context>,
    metrics: Metrics,
}

/// Serves the kubelet API on `addr` until the future is dropped.
pub async fn serve(
    addr: SocketAddr,
    credentials: Credentials,
    pods: Arc<Context>,
    metrics: Metrics,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&credentials)?));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} for the kubelet API"))?;
    tracing::info!(%addr, "serving the kubelet API");
    let app = router(AppState { pods, metrics });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a kubelet API connection: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, "kubelet API TLS handshake: {e}");
                    return;
                }
            };
            let caller = Caller(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| common_name(cert.as_ref())),
            );
            let service = TowerToHyperService::new(app.layer(Extension(caller)).into_service());
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, "kubelet API connection: {e}");
            }
        });
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/pods", get(pods))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec::exec))
        .fallback(|| async {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "404 page not found".into(),
            )
        })
        .layer(middleware::from_fn(authorize))
        .with_state(state)
}

/// Only the API server's kubelet client.
async fn authorize(Extension(caller): Extension<Caller>, request: Request, next: Next) -> Response {
    match caller.0.as_deref() {
        Some(API_SERVER_CLIENT) => next.run(request).await,
        Some(user) => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)"),
        ),
        None => status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn pods(State(state): State<AppState>) -> Response {
    let items: Vec<serde_json::Value> = state
        .pods
        .pods
        .lock()
        .expect("pods lock")
        .values()
        .map(|p| serde_json::to_value(p.as_ref()).unwrap_or_default())
        .collect();
    axum::Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

/// A request the kubelet API turns down, answered as a `Status`.
struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Failure {
    fn bad_request(message: String) -> Failure {
        Failure {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        status(self.code, self.reason, self.message)
    }
}

/// The pod `namespace/name` if this node runs it.
fn find_pod(state: &AppState, namespace: &str, name: &str) -> Result<Arc<Pod>, Failure> {
    let pods = state.pods.pods.lock().expect("pods lock");
    pods.get(&(namespace.to_string(), name.to_string()))
        .cloned()
        .ok_or_else(|| Failure {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: format!("pod {namespace}/{name} is not running on this node"),
        })
}

/// The status of `container` (or init container) in the pod.
fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .find(|s| s.name == container)
}

/// The runtime's own ID in a `containerID` (`<runtime>://<id>`).
fn runtime_id(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// The runtime's ID of the current instance of `container` in the pod.
fn running_container_id(
    state: &AppState,
    namespace: &str,
    pod_name: &str,
    container: &str,
) -> Result<String, Failure> {
    let pod = find_pod(state, namespace, pod_name)?;
    let Some(current) = container_status(&pod, container) else {
        return Err(Failure::bad_request(format!(
            "container {container} is not valid for pod {pod_name}"
        )));
    };
    let running = current.state.as_ref().is_some_and(|s| s.running.is_some());
    match current.container_id.as_deref() {
        Some(id) if running => Ok(runtime_id(id).to_string()),
        _ => Err(Failure::bad_request(format!(
            "container {container} in pod {pod_name} is not running"
        ))),
    }
}

/// A `Status` object, as the API server passes kubelet errors on.
pub(crate) fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// TLS with the node's serving certificate; clients must present a
/// certificate signed by the cluster CA.
fn tls_config(credentials: &Credentials) -> Result<rustls::ServerConfig> {
    let ca = std::fs::read_to_string(credentials.ca())
        .with_context(|| format!("reading {}", credentials.ca().display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(&ca)? {
        roots.add(cert.into()).context("adding the cluster CA")?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .context("building the client certificate verifier")?;
    let certs = pem_certs(
        &std::fs::read_to_string(credentials.serving_cert())
            .with_context(|| format!("reading {}", credentials.serving_cert().display()))?,
    )?
    .into_iter()
    .map(rustls::pki_types::CertificateDer::from)
    .collect();
    let key_pem = std::fs::read(credentials.serving_key())
        .with_context(|| format!("reading {}", credentials.serving_key().display()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .context("parsing the serving key")?
        .context("no private key in the serving key file")?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("loading the serving certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The subject's common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}
