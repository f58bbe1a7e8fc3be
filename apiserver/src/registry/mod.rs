//! The registry: what each API verb means for the stored objects. It turns
//! requests into store writes — metadata stamping, per-kind strategies,
//! defaulting and validation, optimistic concurrency, graceful deletion and
//! finalizers, Service allocation, subresources — independent of HTTP.

mod create;
mod delete;
pub mod fields;
pub mod keys;
mod lifecycle;
pub mod meta;
mod pods;
mod read;
mod scale;
pub mod selector;
mod services;
mod strategy;
#[cfg(test)]
mod tests;
mod typed;
mod update;

pub use update::{PatchKind, Target, UpdateCheck};

use std::sync::Arc;

use crate::alloc::{IpAllocator, PortAllocator};
use crate::defaults::Admission;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Object, Store, StoreError};

pub use delete::{DeleteOptions, Deleted, Propagation};
pub use lifecycle::{Bootstrap, run_namespace_lifecycle};
pub use read::{ListOptions, ListResult, WatchStart};
pub use scale::ScaleChange;

/// How a write is made.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run every step but the store write.
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
}

/// `fieldValidation`: what fields the kind does not have lead to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// A 400 BadRequest.
    Strict,
    /// A warning in the response (upstream's default).
    #[default]
    Warn,
    /// Nothing: they are dropped.
    Ignore,
}

/// The outcome of a create, update or patch.
pub struct Written {
    pub object: Arc<Object>,
    /// Made by this write (PUT or apply on a missing object).
    pub created: bool,
    /// For `Warning` response headers.
    pub warnings: Vec<String>,
}

pub struct Registry {
    store: Arc<dyn Store>,
    cluster_ips: IpAllocator,
    node_ports: PortAllocator,
    admission: Admission,
}

impl Registry {
    /// A registry over `store`, with the allocators rebuilt from the stored
    /// Services.
    pub fn new(
        store: Arc<dyn Store>,
        cluster_ips: IpAllocator,
        node_ports: PortAllocator,
    ) -> Registry {
        let registry = Registry {
            store,
            cluster_ips,
            node_ports,
            admission: Admission::default(),
        };
        registry.restore_allocations();
        registry
    }

    /// The registry with admission settings other than upstream's defaults.
    pub fn with_admission(self, admission: Admission) -> Registry {
        Registry { admission, ..self }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// Maps a store failure on `name` of `res` to the API error a client sees.
fn store_error(res: &Resource, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists(_) => ApiError::already_exists(res, name),
        StoreError::NotFound(_) => ApiError::not_found(res, name),
        StoreError::Conflict { .. } => ApiError::modified(res, name),
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::Internal(e) => ApiError::internal(format!("{e:#}")),
    }
}

/// Decodes `obj` into its kind's type, dropping unknown fields, which
/// `Strict` field validation refuses and `Warn` reports.
fn decode_typed(
    res: &Resource,
    obj: &mut serde_json::Value,
    opts: &WriteOptions,
) -> ApiResult<Vec<String>> {
    let decoded = typed::decode(res, obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })?;
    *obj = decoded.value;
    let unknown: Vec<String> = decoded
        .unknown
        .iter()
        .map(|path| format!("unknown field \"{path}\""))
        .collect();
    match opts.field_validation {
        FieldValidation::Strict if !unknown.is_empty() => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            unknown.join(", ")
        ))),
        FieldValidation::Warn => Ok(unknown),
        _ => Ok(Vec::new()),
    }
}

/// An object that was not stored (a dry run): serialized as it would be.
fn unstored(key: &str, value: &serde_json::Value) -> ApiResult<Arc<Object>> {
    let bytes = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Arc::new(Object {
        key: Arc::from(key),
        revision: 0,
        attrs: fields::indexer(key, value),
        value: bytes.into(),
    }))
}
