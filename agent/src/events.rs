//! Events as the kubelet writes them (core/v1, so `kubectl describe` shows
//! them): source `kubelet` on this host, and a repeat of the same event
//! bumps its count instead of adding another.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

/// Events waiting to be written; beyond this, new ones are dropped (and
/// logged) rather than slowing the pod workers down.
const QUEUE: usize = 1024;
/// Repeats remembered for aggregation.
const REMEMBERED: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// A handle that queues events for the writer task.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
}

struct Record {
    object: ObjectReference,
    kind: Kind,
    reason: String,
    message: String,
}

impl Recorder {
    /// The recorder and the task that writes its events as `node`.
    pub fn new(
        client: kube::Client,
        node: String,
    ) -> (Recorder, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Recorder { tx }, write_events(client, node, rx))
    }

    pub fn record(&self, object: ObjectReference, kind: Kind, reason: &str, message: String) {
        let record = Record {
            object,
            kind,
            reason: reason.to_string(),
            message,
        };
        if self.tx.try_send(record).is_err() {
            tracing::warn!(reason, "dropping an event: the queue is full");
        }
    }
}

/// What makes two events the same one, repeated.
#[derive(Hash, PartialEq, Eq)]
struct Key {
    uid: String,
    field_path: String,
    reason: String,
    message: String,
}

struct Written {
    name: String,
    namespace: String,
    count: i32,
}

async fn write_events(client: kube::Client, node: String, mut rx: mpsc::Receiver<Record>) {
    let mut written: HashMap<Key, Written> = HashMap::new();
    while let Some(record) = rx.recv().await {
        let namespace = record
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = Key {
            uid: record.object.uid.clone().unwrap_or_default(),
            field_path: record.object.field_path.clone().unwrap_or_default(),
            reason: record.reason.clone(),
            message: record.message.clone(),
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let now = Time(Timestamp::now());
        if let Some(seen) = written.get_mut(&key) {
            seen.count += 1;
            let patch = json!({"count": seen.count, "lastTimestamp": now});
            let api: Api<Event> = Api::namespaced(client.clone(), &seen.namespace);
            match api
                .patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                // Gone (expired or deleted): write it anew below.
                Err(e) => tracing::debug!("updating event {}: {e}", seen.name),
            }
        }
        let name = format!(
            "{}.{:x}",
            record.object.name.as_deref().unwrap_or("unknown"),
            Timestamp::now().as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: record.object,
            reason: Some(record.reason),
            message: Some(record.message),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            type_: Some(format!("{:?}", record.kind)),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if written.len() >= REMEMBERED {
                    written.clear();
                }
                written.insert(
                    key,
                    Written {
                        name,
                        namespace,
                        count: 1,
                    },
                );
            }
            Err(e) => tracing::warn!("writing event: {e}"),
        }
    }
}
