//! `/exec/{ns}/{pod}/{container}?command=…&stdin=…&stdout=…&stderr=…&tty=…`
//! (what the API server's `pods/exec` relays): the runtime opens a
//! streaming session (CRI Exec), and the client's upgraded connection —
//! WebSocket or SPDY, whichever the runtime's streaming server speaks — is
//! relayed to it.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_cri::v1 as cri;

use super::{AppState, running_container_id, status};

pub async fn exec(
    State(state): State<AppState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let mut exec = cri::ExecRequest::default();
    for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
    {
        let on = value == "true" || value == "1";
        match key.as_ref() {
            "command" => exec.cmd.push(value.into_owned()),
            "stdin" | "input" => exec.stdin = on,
            "stdout" | "output" => exec.stdout = on,
            "stderr" | "error" => exec.stderr = on,
            "tty" => exec.tty = on,
            _ => {}
        }
    }
    if exec.cmd.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least one command for the container".into(),
        );
    }
    // A terminal carries stderr on stdout.
    exec.stderr &= !exec.tty;
    exec.container_id = match running_container_id(&state, &namespace, &pod, &container) {
        Ok(id) => id,
        Err(failure) => return failure.into_response(),
    };
    let url = match state.pods.cri.exec(exec).await {
        Ok(url) => url,
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("{e:#}"),
            );
        }
    };
    match relay_to_runtime(request, &url).await {
        Ok(response) => response,
        Err(e) => status(
            StatusCode::BAD_GATEWAY,
            "InternalError",
            format!("relaying to the runtime's streaming server: {e:#}"),
        ),
    }
}

/// Relays `request` to the runtime's streaming `url` (plain HTTP on the
/// node).
async fn relay_to_runtime(request: Request, url: &str) -> anyhow::Result<Response> {
    let uri: http::Uri = url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("the runtime's streaming URL {url} has no host"))?
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&authority).await?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    paddock_upgrade::relay(request, &authority, path, tcp).await
}
