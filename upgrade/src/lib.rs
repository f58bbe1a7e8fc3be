//! Relaying an HTTP/1.1 connection upgrade through a proxy, as `kubectl
//! exec` and `port-forward` need from the API server (to the kubelet) and
//! from the kubelet (to the runtime's streaming server): the client's
//! request goes on over a connection the caller opened; when the upstream
//! switches protocols (WebSocket or SPDY alike), the client's connection
//! switches too and the two are spliced until either side closes. Any
//! other answer comes back as it is.

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{StatusCode, header};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Request headers that stay with this hop: the upstream gets its own
/// `Host`, and authenticates the proxy rather than the client.
const NOT_RELAYED: [header::HeaderName; 3] =
    [header::HOST, header::AUTHORIZATION, header::CONTENT_LENGTH];

/// Sends `request` (its method and headers, without a body) to `uri` over
/// `upstream`, a connection to `authority`, and answers with what comes
/// back; a switch of protocols is relayed both ways in a task of its own.
pub async fn relay<T>(
    mut request: Request,
    authority: &str,
    uri: &str,
    upstream: T,
) -> Result<Response>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(upstream))
        .await
        .with_context(|| format!("HTTP handshake with {authority}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("upgrade relay connection: {e}");
        }
    });
    let mut onward = http::Request::builder()
        .method(request.method())
        .uri(uri)
        .header(header::HOST, authority);
    for (name, value) in request.headers() {
        if !NOT_RELAYED.contains(name) {
            onward = onward.header(name, value);
        }
    }
    let mut response = sender
        .send_request(onward.body(Empty::<Bytes>::new())?)
        .await
        .with_context(|| format!("sending the request to {authority}"))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!("relaying an upgraded connection: {e}");
                }
            }
            Err(e) => tracing::warn!("upgrading the relayed connection: {e}"),
        }
    });
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}
