//! Health-check node ports: a service with `externalTrafficPolicy: Local`
//! gets a port (`healthCheckNodePort`) where each node says whether it has
//! local endpoints, so an external load balancer sends traffic only to
//! nodes that can serve it: 200 with endpoints here, 503 without.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio::task::JoinHandle;

use crate::model::Model;

/// What one health-check port answers about.
struct Answer {
    namespace: String,
    name: String,
    local_endpoints: AtomicUsize,
}

struct Listener {
    answer: Arc<Answer>,
    task: JoinHandle<()>,
}

/// The health-check node ports of all services, kept in step with the model.
#[derive(Default)]
pub struct ServiceHealthServers {
    listeners: HashMap<u16, Listener>,
}

impl ServiceHealthServers {
    pub fn new() -> ServiceHealthServers {
        ServiceHealthServers::default()
    }

    /// Opens the ports new services need, closes those of services gone,
    /// and updates the local endpoint counts. Must run inside a tokio
    /// runtime.
    pub fn sync(&mut self, model: &Model) {
        let mut wanted: HashMap<u16, (String, String, usize)> = HashMap::new();
        for service in model.services() {
            let port = &service.port;
            let Some(health_port) = port.health_check_node_port else {
                continue;
            };
            if !port.external_policy_local() {
                continue;
            }
            let local = service.select_endpoints().local.len();
            let entry = wanted
                .entry(health_port)
                .or_insert_with(|| (port.name.namespace.clone(), port.name.name.clone(), 0));
            entry.2 = entry.2.max(local);
        }
        self.listeners.retain(|port, listener| {
            let keep = wanted.get(port).is_some_and(|(ns, name, _)| {
                *ns == listener.answer.namespace && *name == listener.answer.name
            });
            if !keep {
                listener.task.abort();
            }
            keep
        });
        for (port, (namespace, name, local)) in wanted {
            let listener = self.listeners.entry(port).or_insert_with(|| {
                let answer = Arc::new(Answer {
                    namespace,
                    name,
                    local_endpoints: AtomicUsize::new(0),
                });
                let task = tokio::spawn(serve(port, answer.clone()));
                Listener { answer, task }
            });
            listener
                .answer
                .local_endpoints
                .store(local, Ordering::Relaxed);
        }
    }
}

impl Drop for ServiceHealthServers {
    fn drop(&mut self) {
        for listener in self.listeners.values() {
            listener.task.abort();
        }
    }
}

async fn serve(port: u16, answer: Arc<Answer>) {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(%addr, service = %format!("{}/{}", answer.namespace, answer.name),
                "cannot open the health-check node port: {e}");
            return;
        }
    };
    let app = Router::new().fallback(respond).with_state(answer);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(%addr, "health-check node port stopped: {e}");
    }
}

async fn respond(State(answer): State<Arc<Answer>>) -> impl IntoResponse {
    let local = answer.local_endpoints.load(Ordering::Relaxed);
    let status = if local > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "service": {"namespace": answer.namespace, "name": answer.name},
        "localEndpoints": local,
        "serviceProxyHealthy": true,
    });
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;
    use crate::model::{Endpoint, Protocol, Service, ServicePort, ServicePortName, TrafficPolicy};

    fn local_service(health_port: u16, local_endpoints: usize) -> Model {
        let mut port = ServicePort::cluster_ip(
            ServicePortName::new("shop", "web", "http"),
            Protocol::Tcp,
            "10.96.0.9".parse().unwrap(),
            80,
        );
        port.node_port = Some(30080);
        port.external_traffic_policy = TrafficPolicy::Local;
        port.health_check_node_port = Some(health_port);
        let mut remote = Endpoint::ready("10.244.2.2".parse().unwrap(), 80);
        remote.local = false;
        let mut endpoints = vec![remote];
        for i in 0..local_endpoints {
            let mut local = Endpoint::ready(format!("10.244.1.{}", i + 2).parse().unwrap(), 80);
            local.local = true;
            endpoints.push(local);
        }
        [Service::new(port, endpoints)].into_iter().collect()
    }

    async fn get(port: u16) -> String {
        tokio::task::spawn_blocking(move || {
            for _ in 0..100 {
                if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                    let mut response = String::new();
                    stream.read_to_string(&mut response).unwrap();
                    return response;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("nothing listens on {port}");
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn answers_whether_this_node_has_local_endpoints() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut servers = ServiceHealthServers::new();
        servers.sync(&local_service(port, 0));
        let response = get(port).await;
        assert!(response.starts_with("HTTP/1.0 503"), "{response}");
        assert!(response.contains("\"localEndpoints\":0"), "{response}");

        servers.sync(&local_service(port, 2));
        let response = get(port).await;
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.contains("\"namespace\":\"shop\""), "{response}");
        assert!(response.contains("\"localEndpoints\":2"), "{response}");

        servers.sync(&Model::new());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
