//! Running one probe once: exec (through CRI), httpGet, tcpSocket and gRPC
//! health checks, from the node's network namespace to the pod's IP, as
//! upstream's prober does (HTTP 200–399 succeeds, redirects are not
//! followed, certificates are not verified).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use crate::cri::Cri;

/// What a probe found: `Ok(())` or the failure's message.
pub type Outcome = std::result::Result<(), String>;

/// Where the probe is run.
pub struct Target<'a> {
    pub cri: &'a Cri,
    pub container_id: &'a str,
    pub container: &'a Container,
    pub pod_ip: &'a str,
}

pub async fn run(probe: &Probe, target: &Target<'_>) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        if let Some(exec) = &probe.exec {
            return exec_probe(target, exec.command.clone().unwrap_or_default(), timeout).await;
        }
        if let Some(get) = &probe.http_get {
            return http_action(get, target).await;
        }
        if let Some(tcp) = &probe.tcp_socket {
            return tcp_action(tcp, target).await;
        }
        if let Some(grpc) = &probe.grpc {
            let service = grpc.service.clone().unwrap_or_default();
            return grpc_probe(target.pod_ip, grpc.port as u16, service)
                .await
                .map_err(|e| format!("{e:#}"));
        }
        Err("the probe has no handler".to_string())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "timeout: the probe took longer than {}s",
            timeout.as_secs()
        )),
    }
}

/// Runs a lifecycle hook (postStart, preStop): exec, httpGet or sleep.
pub async fn hook(handler: &LifecycleHandler, target: &Target<'_>, timeout: Duration) -> Outcome {
    let attempt = async {
        if let Some(exec) = &handler.exec {
            return exec_probe(target, exec.command.clone().unwrap_or_default(), timeout).await;
        }
        if let Some(get) = &handler.http_get {
            return http_action(get, target).await;
        }
        if let Some(sleep) = &handler.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
            return Ok(());
        }
        if let Some(tcp) = &handler.tcp_socket {
            return tcp_action(tcp, target).await;
        }
        Err("the hook has no handler".to_string())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("timeout after {}s", timeout.as_secs())),
    }
}

async fn http_action(get: &HTTPGetAction, target: &Target<'_>) -> Outcome {
    let host = get
        .host
        .clone()
        .unwrap_or_else(|| target.pod_ip.to_string());
    let port = port(&get.port, target.container).map_err(|e| e.to_string())?;
    let headers: Vec<(String, String)> = get
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let https = get.scheme.as_deref() == Some("HTTPS");
    let path = get.path.clone().unwrap_or_else(|| "/".into());
    http_probe(&host, port, &path, https, &headers)
        .await
        .map_err(|e| {
            let scheme = if https { "https" } else { "http" };
            format!("Get \"{scheme}://{host}:{port}{path}\": {e:#}")
        })
}

async fn tcp_action(tcp: &TCPSocketAction, target: &Target<'_>) -> Outcome {
    let host = tcp
        .host
        .clone()
        .unwrap_or_else(|| target.pod_ip.to_string());
    let port = port(&tcp.port, target.container).map_err(|e| e.to_string())?;
    TcpStream::connect((host.as_str(), port))
        .await
        .map(drop)
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
}

async fn exec_probe(target: &Target<'_>, command: Vec<String>, timeout: Duration) -> Outcome {
    let reply = target
        .cri
        .exec_sync(target.container_id, command, timeout)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if reply.exit_code == 0 {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&reply.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&reply.stderr));
    let output = output.trim();
    Err(if output.is_empty() {
        format!("command exited with {}", reply.exit_code)
    } else {
        output.to_string()
    })
}

/// A container port by number or by name.
pub fn port(port: &IntOrString, container: &Container) -> Result<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).with_context(|| format!("invalid port {p}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .with_context(|| {
                    format!(
                        "couldn't find port {name:?} in container {:?}",
                        container.name
                    )
                })
        }
    }
}

async fn http_probe(
    host: &str,
    port: u16,
    path: &str,
    https: bool,
    headers: &[(String, String)],
) -> Result<()> {
    let tcp = TcpStream::connect((host, port)).await?;
    let mut request = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::USER_AGENT, "kube-probe/1.32")
        .header(http::header::ACCEPT, "*/*");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Empty::<Bytes>::new())?;
    let status = if https {
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new()?))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| anyhow!("{host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        send(TokioIo::new(tls), request).await?
    } else {
        send(TokioIo::new(tcp), request).await?
    };
    if (200..400).contains(&status) {
        Ok(())
    } else {
        bail!("HTTP probe failed with statuscode: {status}")
    }
}

async fn send<T>(io: T, request: http::Request<Empty<Bytes>>) -> Result<u16>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Read (and discard) the body, as upstream does, up to its limit.
    let _ = response.into_body().collect().await;
    connection.abort();
    Ok(status)
}

/// Upstream does not verify a probed server's certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl AnyCertificate {
    fn new() -> Result<AnyCertificate> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .context("no TLS crypto provider installed")?;
        Ok(AnyCertificate(provider))
    }
}

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`; status 1 is SERVING.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

async fn grpc_probe(ip: &str, port: u16, service: String) -> Result<()> {
    let channel = tonic::transport::Endpoint::try_from(format!("http://{ip}:{port}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to {ip}:{port}"))?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await?;
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let response: tonic::Response<HealthCheckResponse> = client
        .unary(
            tonic::Request::new(HealthCheckRequest { service }),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(|s| anyhow!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?;
    match response.into_inner().status {
        1 => Ok(()),
        other => bail!("service unhealthy (responded with {})", status_name(other)),
    }
}

fn status_name(status: i32) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "an unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn ports_by_number_or_name() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(port(&IntOrString::Int(80), &c).unwrap(), 80);
        assert_eq!(port(&IntOrString::String("http".into()), &c).unwrap(), 8080);
        assert_eq!(port(&IntOrString::String("8081".into()), &c).unwrap(), 8081);
        assert!(port(&IntOrString::String("grpc".into()), &c).is_err());
    }

    #[tokio::test]
    async fn http_status_decides() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "302 Found", "500 Internal Server Error"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let host = addr.ip().to_string();
        assert!(
            http_probe(&host, addr.port(), "/", false, &[])
                .await
                .is_ok()
        );
        assert!(
            http_probe(&host, addr.port(), "/", false, &[])
                .await
                .is_ok()
        );
        let err = http_probe(&host, addr.port(), "/", false, &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("statuscode: 500"), "{err}");
    }
}
