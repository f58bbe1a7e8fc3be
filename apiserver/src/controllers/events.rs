//! The event recorder the controllers share: core/v1 Events (what `kubectl
//! describe` and `kubectl get events` read), deduplicated like client-go's
//! correlator: the same event about the same object again bumps `count` and
//! `lastTimestamp` of the first one instead of adding another.
//!
//! Recording never blocks a controller: events are queued to one writer task,
//! and dropped (with a log line) if the queue is full.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::mpsc;

const QUEUE: usize = 2048;
/// How long an event is remembered for deduplication.
const REMEMBER: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records events as one component (`deployment-controller`, …).
#[derive(Clone)]
pub struct Recorder {
    component: &'static str,
    queue: mpsc::Sender<Record>,
}

struct Record {
    component: &'static str,
    regarding: ObjectReference,
    type_: EventType,
    reason: &'static str,
    message: String,
}

impl Recorder {
    /// A recorder and the task that writes its events through `client`.
    pub fn new(client: Client) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let (queue, records) = mpsc::channel(QUEUE);
        let recorder = Recorder {
            component: "paddock",
            queue,
        };
        (recorder, write_events(client, records))
    }

    /// The same queue, recording as `component`.
    pub fn as_component(&self, component: &'static str) -> Recorder {
        Recorder {
            component,
            queue: self.queue.clone(),
        }
    }

    pub fn normal<K>(&self, obj: &K, reason: &'static str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record(obj.object_ref(&()), EventType::Normal, reason, message);
    }

    pub fn warning<K>(&self, obj: &K, reason: &'static str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record(obj.object_ref(&()), EventType::Warning, reason, message);
    }

    pub fn record(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &'static str,
        message: String,
    ) {
        let record = Record {
            component: self.component,
            regarding,
            type_,
            reason,
            message,
        };
        if self.queue.try_send(record).is_err() {
            tracing::warn!(
                component = self.component,
                reason,
                "event queue full, dropping event"
            );
        }
    }
}

/// What makes two events the same one.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    component: &'static str,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    type_: EventType,
    reason: &'static str,
    message: String,
}

struct Seen {
    name: String,
    namespace: String,
    count: i32,
    last: Instant,
}

async fn write_events(client: Client, mut records: mpsc::Receiver<Record>) {
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    while let Some(record) = records.recv().await {
        seen.retain(|_, s| s.last.elapsed() < REMEMBER);
        let key = Key {
            component: record.component,
            kind: record.regarding.kind.clone(),
            namespace: record.regarding.namespace.clone(),
            name: record.regarding.name.clone(),
            uid: record.regarding.uid.clone(),
            type_: record.type_,
            reason: record.reason,
            message: record.message.clone(),
        };
        let now = Timestamp::now();
        if let Some(prev) = seen.get_mut(&key) {
            let events: Api<Event> = Api::namespaced(client.clone(), &prev.namespace);
            let patch = json!({"count": prev.count + 1, "lastTimestamp": Time(now)});
            match events
                .patch(&prev.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    prev.count += 1;
                    prev.last = Instant::now();
                    continue;
                }
                // Gone (expired, deleted): record it afresh.
                Err(e) => tracing::debug!(event = prev.name, "patching event: {e}"),
            }
        }
        let event = new_event(&record, now);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => {
                seen.insert(
                    key,
                    Seen {
                        name,
                        namespace,
                        count: 1,
                        last: Instant::now(),
                    },
                );
            }
            Err(e) => tracing::warn!(reason = record.reason, "recording event: {e}"),
        }
    }
}

fn new_event(record: &Record, now: Timestamp) -> Event {
    let regarding = &record.regarding;
    let namespace = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or(record.component),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: regarding.clone(),
        reason: Some(record.reason.to_string()),
        message: Some(record.message.clone()),
        type_: Some(record.type_.as_str().to_string()),
        source: Some(EventSource {
            component: Some(record.component.to_string()),
            host: None,
        }),
        reporting_component: Some(record.component.to_string()),
        reporting_instance: Some(record.component.to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn an_event_names_and_points_at_its_object() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let record = Record {
            component: "default-scheduler",
            regarding: pod.object_ref(&()),
            type_: EventType::Normal,
            reason: "Scheduled",
            message: "Successfully assigned shop/web-1 to n1".into(),
        };
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let event = new_event(&record, now);
        assert_eq!(event.metadata.namespace.as_deref(), Some("shop"));
        assert!(event.metadata.name.unwrap().starts_with("web-1."));
        assert_eq!(event.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(event.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(event.count, Some(1));
        assert_eq!(event.type_.as_deref(), Some("Normal"));
        assert_eq!(
            event.source.and_then(|s| s.component).as_deref(),
            Some("default-scheduler")
        );
    }
}
