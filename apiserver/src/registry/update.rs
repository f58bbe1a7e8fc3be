//! Update and patch: read-modify-write with optimistic concurrency. A write
//! that names a `resourceVersion` fails with 409 if the object moved on; one
//! that does not is retried on the newest object.

use serde_json::Value;

use super::{
    Registry, WriteOptions, Written, decode_typed, keys, meta, store_error, strategy, unstored,
};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Op, StoreError, Write};
use crate::{defaults, patch, validation};

/// Attempts before a write without a precondition gives up on conflicts.
const MAX_RETRIES: usize = 16;

/// Which part of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The object, except its status (for kinds with a status subresource).
    Main,
    /// `<name>/status`: only the status.
    Status,
    /// `namespaces/<name>/finalize`: only `spec.finalizers`.
    Finalize,
    /// `pods/<name>/binding`: the server sets `spec.nodeName`, which a pod
    /// update may not change.
    Binding,
}

/// The media type of a PATCH body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

/// Preconditions a client put on an update.
#[derive(Debug, Clone, Default)]
pub struct UpdateCheck {
    pub resource_version: Option<String>,
}

impl Registry {
    /// PUT: replaces the object with `body`.
    pub async fn update(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        mut body: Value,
        opts: &WriteOptions,
        target: Target,
    ) -> ApiResult<Written> {
        check_identity(res, namespace, name, &mut body)?;
        let rv = meta::resource_version(&body).to_string();
        let key = keys::key(res, namespace, name);
        if self.store.get(&key).is_none() && target == Target::Main {
            if strategy::allow_create_on_update(res) && rv.is_empty() {
                return self.create(res, namespace, body, opts).await;
            }
            return Err(ApiError::not_found(res, name));
        }
        let check = UpdateCheck {
            resource_version: (!rv.is_empty()).then_some(rv),
        };
        self.guaranteed_update(res, namespace, name, &check, opts, target, |_| {
            Ok(body.clone())
        })
        .await
    }

    /// PATCH: applies `patch` to the current object.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &Value,
        opts: &WriteOptions,
        target: Target,
    ) -> ApiResult<Written> {
        let key = keys::key(res, namespace, name);
        if kind == PatchKind::Apply && target == Target::Main && self.store.get(&key).is_none() {
            let mut obj = patch::apply(res, None, None, body).map_err(|e| ApiError::patch(&e))?;
            check_identity(res, namespace, name, &mut obj)?;
            return self.create(res, namespace, obj, opts).await;
        }
        // A patch that names a resourceVersion makes it a precondition.
        let rv = match kind {
            PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
                meta::resource_version(body).to_string()
            }
            PatchKind::Json => String::new(),
        };
        let check = UpdateCheck {
            resource_version: (!rv.is_empty()).then_some(rv),
        };
        self.guaranteed_update(res, namespace, name, &check, opts, target, |current| {
            apply_patch(res, kind, current, body)
        })
        .await
    }

    /// Reads the current object, computes its successor with `mutate`,
    /// admits it and writes it, retrying on conflicts unless `check` pins a
    /// resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn guaranteed_update(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        check: &UpdateCheck,
        opts: &WriteOptions,
        target: Target,
        mut mutate: impl FnMut(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Written> {
        let key = keys::key(res, namespace, name);
        for _ in 0..MAX_RETRIES {
            let current = self
                .store
                .get(&key)
                .ok_or_else(|| ApiError::not_found(res, name))?;
            if check
                .resource_version
                .as_ref()
                .is_some_and(|rv| *rv != current.revision.to_string())
            {
                return Err(ApiError::modified(res, name));
            }
            let old = current.parse();
            let mut new = mutate(&old)?;
            let warnings = decode_typed(res, &mut new, opts)?;
            admit_update(res, &mut new, &old, target)?;
            let written = |object| Written {
                object,
                created: false,
                warnings: warnings.clone(),
            };
            if unchanged(&new, &old) {
                return Ok(written(current));
            }
            let reservation = self.allocate_service(res, &mut new, Some(&old))?;
            if opts.dry_run {
                return unstored(&key, &new).map(written);
            }
            let write = Write {
                key: key.clone(),
                op: Op::Update {
                    value: new.clone(),
                    expect: current.revision,
                },
            };
            match self.store.write(write).await {
                Ok(stored) => {
                    reservation.keep();
                    self.release_service(res, &old, Some(&new));
                    return self
                        .finish_deletion(res, name, stored, &new)
                        .await
                        .map(written);
                }
                Err(StoreError::Conflict { .. }) if check.resource_version.is_none() => continue,
                Err(e) => return Err(store_error(res, name, e)),
            }
        }
        Err(ApiError::modified(res, name))
    }
}

/// The body of a PUT must name the object of the URL.
fn check_identity(
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
    body: &mut Value,
) -> ApiResult<()> {
    let given = meta::name(body);
    if given.is_empty() {
        meta::set(body, "name", Value::String(name.to_string()));
    } else if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(ns) = namespace.filter(|_| res.namespaced) {
        let given = meta::namespace(body);
        if !given.is_empty() && given != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Keeps the server-owned metadata of `old`, applies the kind's strategy,
/// defaults and validates.
fn admit_update(res: &Resource, new: &mut Value, old: &Value, target: Target) -> ApiResult<()> {
    if !new.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(v) => meta::set(new, field, v.clone()),
            None => meta::remove(new, field),
        }
    }
    meta::remove(new, "selfLink");
    defaults::apply(res, new);
    strategy::prepare_update(res, new, old, target);
    if target == Target::Binding {
        return Ok(());
    }
    let errors = validation::validate(res, new, Some(old));
    if !errors.is_empty() {
        return Err(ApiError::invalid(res, meta::name(old), &errors));
    }
    Ok(())
}

/// Whether a write would change nothing but the resourceVersion.
fn unchanged(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        meta::remove(&mut v, "resourceVersion");
        meta::remove(&mut v, "managedFields");
        v
    };
    strip(new) == strip(old)
}

fn apply_patch(res: &Resource, kind: PatchKind, current: &Value, body: &Value) -> ApiResult<Value> {
    match kind {
        PatchKind::Json => patch::json_patch(current, body),
        PatchKind::Merge => {
            if !body.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            Ok(patch::json_merge(current, body))
        }
        PatchKind::Strategic => patch::strategic_merge(res, current, body),
        PatchKind::Apply => patch::apply(res, Some(current), None, body),
    }
    .map_err(|e| ApiError::patch(&e))
}
