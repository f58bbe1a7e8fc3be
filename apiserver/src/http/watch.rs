//! Watch responses: a chunked stream of JSON watch events (`ADDED`,
//! `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`), one per line, filtered by
//! the request's selectors, in the representation the client asked for.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::encode::{partial_metadata, table_of};
use super::negotiate::Output;
use super::query::IncludeObject;
use crate::registry::selector::{FieldSelector, LabelSelector};
use crate::resources::Resource;
use crate::status::ApiError;
use crate::storage::{Attrs, Event, EventStream, EventType, Object, Revision};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Watches without `timeoutSeconds` end after 30–60 minutes, as upstream.
const DEFAULT_TIMEOUT_MIN: u64 = 1800;

/// What one watch sends and how.
pub struct WatchSpec {
    pub res: &'static Resource,
    pub output: Output,
    pub include: IncludeObject,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: mark the end of the initial ADDED events
    /// with a bookmark.
    pub initial_events_end: bool,
    pub timeout: Option<Duration>,
}

/// Where the stream starts.
pub enum Source {
    /// Initial objects (sent as ADDED), then `events`.
    Events {
        initial: Vec<Arc<Object>>,
        events: EventStream,
        from: Revision,
    },
    /// The watch cannot start (e.g. its revision was compacted): one ERROR
    /// event, as upstream's watch cache sends.
    Failed(ApiError),
}

pub fn respond(spec: WatchSpec, source: Source, shutdown: watch::Receiver<bool>) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(pump(spec, source, tx, shutdown));
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

struct Encoder {
    spec: WatchSpec,
    /// Table watches send column definitions with the first event only.
    sent_columns: bool,
}

impl Encoder {
    fn matches(&self, attrs: &Attrs) -> bool {
        self.spec.labels.matches(attrs) && self.spec.fields.matches(attrs)
    }

    /// The type this event has for a client with selectors, if any.
    fn visible(&self, event: &Event) -> Option<EventType> {
        let now = self.matches(&event.object.attrs);
        match event.kind {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => now.then_some(EventType::Deleted),
            EventType::Modified => {
                let before = event.prev.as_ref().map_or(now, |p| self.matches(&p.attrs));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }

    fn encode(&mut self, kind: EventType, obj: &Object) -> Bytes {
        let name = match kind {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        };
        match self.spec.output {
            Output::Json => {
                let mut line = Vec::with_capacity(obj.value.len() + 40);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(name.as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(&obj.value);
                line.extend_from_slice(b"}\n");
                line.into()
            }
            Output::Metadata { version } => line(name, partial_metadata(&obj.parse(), version)),
            Output::Table { version } => {
                let parsed = obj.parse();
                let rv = parsed
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                let table = table_of(
                    self.spec.res,
                    [&parsed],
                    version,
                    self.spec.include,
                    !self.sent_columns,
                    json!({"resourceVersion": rv}),
                );
                self.sent_columns = true;
                line(name, table)
            }
        }
    }

    fn bookmark(&self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut metadata =
            json!({"resourceVersion": revision.to_string(), "creationTimestamp": null});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let res = self.spec.res;
        line(
            "BOOKMARK",
            json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": metadata}),
        )
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    bytes.into()
}

fn error_line(e: &ApiError) -> Bytes {
    line("ERROR", e.to_status())
}

async fn pump(
    spec: WatchSpec,
    source: Source,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout = spec.timeout.unwrap_or_else(|| {
        Duration::from_secs(rand::rng().random_range(DEFAULT_TIMEOUT_MIN..2 * DEFAULT_TIMEOUT_MIN))
    });
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let (initial, mut events, mut cursor) = match source {
        Source::Events {
            initial,
            events,
            from,
        } => (initial, events, from),
        Source::Failed(e) => {
            let _ = tx.send(error_line(&e)).await;
            return;
        }
    };
    let initial_events_end = spec.initial_events_end;
    let mut encoder = Encoder {
        spec,
        sent_columns: false,
    };
    for obj in initial {
        if encoder.matches(&obj.attrs)
            && tx
                .send(encoder.encode(EventType::Added, &obj))
                .await
                .is_err()
        {
            return;
        }
    }
    if initial_events_end && tx.send(encoder.bookmark(cursor, true)).await.is_err() {
        return;
    }
    let mut bookmarks = tokio::time::interval(BOOKMARK_INTERVAL);
    bookmarks.tick().await;
    loop {
        let out = tokio::select! {
            next = events.next() => match next {
                Some(Ok(event)) => {
                    cursor = event.revision();
                    match encoder.visible(&event) {
                        Some(kind) => encoder.encode(kind, &event.object),
                        None => continue,
                    }
                }
                Some(Err(e)) => {
                    let e = match e {
                        crate::storage::StoreError::Compacted { requested, compacted } => ApiError::expired(
                            format!("too old resource version: {requested} ({compacted})"),
                        ),
                        other => ApiError::internal(other.to_string()),
                    };
                    let _ = tx.send(error_line(&e)).await;
                    return;
                }
                None => return,
            },
            _ = bookmarks.tick(), if encoder.spec.bookmarks => encoder.bookmark(cursor, false),
            () = &mut deadline => return,
            () = crate::shutdown::signalled(&mut shutdown) => return,
            () = tx.closed() => return,
        };
        if tx.send(out).await.is_err() {
            return;
        }
    }
}
