//! What the store holds: serialized objects with their revision and the
//! attributes selectors match on, and the events of the log.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::Revision;

/// The labels and selectable fields of an object, extracted once when it is
/// written so that lists and watches filter without parsing JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub labels: Vec<(String, String)>,
    /// Field selector labels (`spec.nodeName`) and their values.
    pub fields: Vec<(&'static str, String)>,
}

impl Attrs {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Computes the attributes of the object stored at a key.
pub type Indexer = fn(key: &str, object: &Value) -> Attrs;

/// One version of one object.
#[derive(Debug)]
pub struct Object {
    pub key: Arc<str>,
    pub revision: Revision,
    /// The object as JSON, with `metadata.resourceVersion` = `revision`.
    pub value: Bytes,
    pub attrs: Attrs,
}

impl Object {
    /// Parses the stored JSON.
    pub fn parse(&self) -> Value {
        // The store only holds what it serialized itself from a `Value`.
        serde_json::from_slice(&self.value).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One entry of the revision log.
#[derive(Debug)]
pub struct Event {
    pub kind: EventType,
    /// The new state; for `Deleted`, the final state at the delete revision.
    pub object: Arc<Object>,
    /// The state before this event, if the log still has it.
    pub prev: Option<Arc<Object>>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.object.revision
    }
}
