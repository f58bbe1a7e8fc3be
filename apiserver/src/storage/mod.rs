//! Storage: a revision log (kine-like). Every write appends a row with a new
//! revision, which becomes the object's `resourceVersion`; reads are served
//! from an in-memory index of the current state; watches replay the log from
//! a revision and then follow live events.
//!
//! `Store` is the boundary the registry talks to; `SqliteStore` is the
//! embedded implementation (an etcd one can sit behind the same trait).

mod cache;
mod object;
mod sqlite;
mod watch;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;

pub use object::{Attrs, Event, EventType, Indexer, Object};
pub use sqlite::SqliteStore;

/// A position in the revision log; `resourceVersion` is its decimal form.
pub type Revision = i64;

/// One write. The store stamps `metadata.resourceVersion` with the new
/// revision before it serializes `value`.
#[derive(Debug)]
pub struct Write {
    pub key: String,
    pub op: Op,
}

#[derive(Debug)]
pub enum Op {
    /// Fails with `AlreadyExists` if the key holds an object.
    Create(Value),
    /// Fails with `Conflict` unless the key's current revision is `expect`.
    Update { value: Value, expect: Revision },
    /// Removes the key; `value` is the object's final state (what DELETED
    /// watch events carry). Fails with `Conflict` unless the current revision
    /// is `expect`.
    Delete { value: Value, expect: Revision },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {key} is at revision {current}, not the expected one")]
    Conflict { key: String, current: Revision },
    /// The requested revision is older than the compacted part of the log.
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("storage failed: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The objects under a prefix at one revision.
pub struct Snapshot {
    pub items: Vec<Arc<Object>>,
    pub revision: Revision,
}

pub type EventStream = BoxStream<'static, Result<Arc<Event>, StoreError>>;

pub trait Store: Send + Sync {
    /// The revision of the last write.
    fn revision(&self) -> Revision;

    /// The oldest revision a watch may start from.
    fn compacted(&self) -> Revision;

    /// The current object at `key`.
    fn get(&self, key: &str) -> Option<Arc<Object>>;

    /// The current objects whose keys start with `prefix`, in key order,
    /// beginning after `start_after` (for paged lists).
    fn list(&self, prefix: &str, start_after: Option<&str>) -> Snapshot;

    /// Applies one write; concurrent writes are committed together.
    fn write(&self, write: Write) -> BoxFuture<'static, Result<Arc<Object>, StoreError>>;

    /// Events under `prefix` after revision `from`, then live events, in
    /// revision order. Fails with `Compacted` if `from` is too old.
    fn watch(&self, prefix: &str, from: Revision) -> Result<EventStream, StoreError>;

    /// Drops log rows older than `retention` that a newer row of the same key
    /// (or a delete) supersedes; watches from before them then get `Compacted`.
    fn compact(
        &self,
        retention: std::time::Duration,
    ) -> BoxFuture<'static, Result<Revision, StoreError>>;
}
