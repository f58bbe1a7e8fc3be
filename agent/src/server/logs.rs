//! `GET /containerLogs/{ns}/{pod}/{container}`: the log of the container
//! the pod's status names (or, with `previous`, of its last terminated
//! instance), with `tailLines`, `sinceSeconds`/`sinceTime`, `timestamps`,
//! `limitBytes`, and `follow` streaming until the container stops or the
//! client goes away.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_cri::v1 as cri;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{AppState, container_status, find_pod, runtime_id, status};
use crate::logs::{Options, Reader, append, render};
use crate::pods::state::PodState;

/// How often a followed log is checked for more.
const POLL: Duration = Duration::from_millis(100);

pub async fn container_logs(
    State(state): State<AppState>,
    Path((namespace, pod_name, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "true" || v == "1");
    let number = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
    let since = match (number("sinceSeconds"), query.get("sinceTime")) {
        (Some(secs), _) => Timestamp::now()
            .checked_sub(SignedDuration::from_secs(secs))
            .ok(),
        (None, Some(time)) => match time.parse::<Timestamp>() {
            Ok(t) => Some(t),
            Err(e) => return bad_request(format!("sinceTime {time:?}: {e}")),
        },
        (None, None) => None,
    };
    let options = Options {
        tail_lines: number("tailLines").map(|n| n.max(0) as usize),
        since,
        timestamps: flag("timestamps"),
        limit_bytes: number("limitBytes").map(|n| n.max(0) as usize),
    };
    let pod = match find_pod(&state, &namespace, &pod_name) {
        Ok(pod) => pod,
        Err(failure) => return failure.into_response(),
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let known = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == container);
    if !known {
        return bad_request(format!(
            "container {container} is not valid for pod {pod_name}"
        ));
    }
    let cs = container_status(&pod, &container).cloned();
    let previous = flag("previous");
    let container_id = match (&cs, previous) {
        (Some(cs), true) => cs
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .and_then(|t| t.container_id.clone()),
        (Some(cs), false) => cs.container_id.clone(),
        (None, _) => None,
    };
    let Some(container_id) = container_id.map(|id| runtime_id(&id).to_string()) else {
        return if previous {
            bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ))
        } else {
            let reason = cs
                .and_then(|s| s.state)
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason)
                .unwrap_or_else(|| "ContainerCreating".into());
            bad_request(format!(
                "container {container:?} in pod {pod_name:?} is waiting to start: {reason}"
            ))
        };
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let instance = match PodState::fetch(&state.pods.cri, &uid).await {
        Ok(pod_state) => pod_state
            .containers
            .into_iter()
            .find(|i| i.id == container_id),
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("{e:#}"),
            );
        }
    };
    let Some(instance) = instance else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("container {container:?} in pod {pod_name:?} is gone from the runtime"),
        );
    };
    let mut reader = match Reader::open(std::path::Path::new(&instance.log_path)) {
        Ok(reader) => reader,
        Err(e) => return status(StatusCode::NOT_FOUND, "NotFound", format!("{e:#}")),
    };
    let existing = match reader.read_new() {
        Ok(messages) => messages,
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("{e:#}"),
            );
        }
    };
    let first = render(&existing, &options);
    if !flag("follow") {
        return ([(http::header::CONTENT_TYPE, "text/plain")], first).into_response();
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let cri = state.pods.cri.clone();
    tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        follow(reader, options, cri, container_id, tx).await;
    });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, std::io::Error>));
    ([(http::header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Sends what is appended to the log until the container is no longer
/// running (and its last lines are out) or the client is gone.
async fn follow(
    mut reader: Reader,
    options: Options,
    cri: crate::cri::Cri,
    id: String,
    tx: mpsc::Sender<Vec<u8>>,
) {
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(POLL).await;
        let messages = match reader.read_new() {
            Ok(messages) => messages,
            Err(_) => return,
        };
        if messages.is_empty() {
            quiet += POLL;
            if quiet >= Duration::from_secs(1) {
                quiet = Duration::ZERO;
                let running = cri
                    .container_status(&id)
                    .await
                    .is_ok_and(|s| s.state == cri::ContainerState::ContainerRunning as i32);
                if !running {
                    if let Ok(last) = reader.read_new() {
                        let _ = tx.send(render(&last, &options_for_more(&options))).await;
                    }
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            continue;
        }
        quiet = Duration::ZERO;
        let mut out = Vec::new();
        for m in &messages {
            append(&mut out, m, options.timestamps);
        }
        if tx.send(out).await.is_err() {
            return;
        }
    }
}

/// Lines after the first batch: only the timestamps option still applies.
fn options_for_more(options: &Options) -> Options {
    Options {
        timestamps: options.timestamps,
        ..Default::default()
    }
}

fn bad_request(message: String) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message)
}
