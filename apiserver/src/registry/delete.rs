//! Delete: immediate for most objects; graceful for pods a kubelet runs
//! (`deletionTimestamp` now + grace, removed by the kubelet's final delete);
//! deferred while finalizers remain (removed by the update that clears the
//! last one); namespaces terminate through their `kubernetes` finalizer.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::{Registry, keys, meta, pods, store_error, unstored};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Object, Op, StoreError, Write};

const MAX_RETRIES: usize = 16;

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    pub fn parse(s: &str) -> Option<Propagation> {
        match s {
            "Orphan" => Some(Propagation::Orphan),
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            _ => None,
        }
    }

    /// The finalizer the garbage collector acts on for this policy.
    fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Orphan => Some("orphan"),
            Propagation::Foreground => Some("foregroundDeletion"),
            Propagation::Background => None,
        }
    }
}

/// `DeleteOptions`, from the query and the body.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a delete did.
pub struct Deleted {
    /// The object as it was removed, or as it now waits for removal.
    pub object: Arc<Object>,
    /// Removed from storage (else it is terminating).
    pub finished: bool,
}

impl Registry {
    pub async fn delete(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        opts: DeleteOptions,
    ) -> ApiResult<Deleted> {
        let key = keys::key(res, namespace, name);
        for _ in 0..MAX_RETRIES {
            let current = self
                .store
                .get(&key)
                .ok_or_else(|| ApiError::not_found(res, name))?;
            let old = current.parse();
            check_preconditions(res, name, &opts, &old, &current)?;
            let grace = if res.kind == "Pod" && res.group.is_empty() {
                pods::grace_period(&old, opts.grace_period)
            } else {
                0
            };
            let mut finalizers = meta::finalizers(&old);
            if !meta::is_deleting(&old)
                && let Some(f) = opts.propagation.and_then(Propagation::finalizer)
                && !finalizers.iter().any(|x| x == f)
            {
                finalizers.push(f.to_string());
            }
            let namespace_finalizing = res.kind == "Namespace"
                && old
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            let outcome = if grace > 0 || !finalizers.is_empty() || namespace_finalizing {
                self.mark_deleting(res, &key, &current, old, grace, finalizers, opts.dry_run)
                    .await
            } else {
                self.remove(&key, &current, old, opts.dry_run).await
            };
            match outcome {
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(res, name, e)),
                Ok(deleted) => return Ok(deleted),
            }
        }
        Err(ApiError::modified(res, name))
    }

    /// Sets `deletionTimestamp` (now + grace) and the finalizers; the object
    /// stays until the kubelet or the finalizers' owners are done.
    #[allow(clippy::too_many_arguments)]
    async fn mark_deleting(
        &self,
        res: &Resource,
        key: &str,
        current: &Arc<Object>,
        old: Value,
        grace: i64,
        finalizers: Vec<String>,
        dry_run: bool,
    ) -> Result<Deleted, StoreError> {
        let pending_grace = old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        let same_finalizers = finalizers == meta::finalizers(&old);
        if meta::is_deleting(&old) && same_finalizers && pending_grace.is_some_and(|g| g <= grace) {
            return Ok(Deleted {
                object: current.clone(),
                finished: false,
            });
        }
        let mut new = old;
        meta::set(
            &mut new,
            "deletionTimestamp",
            json!(meta::timestamp(Utc::now() + Duration::seconds(grace))),
        );
        meta::set(&mut new, "deletionGracePeriodSeconds", json!(grace));
        if !finalizers.is_empty() {
            meta::set(&mut new, "finalizers", json!(finalizers));
        }
        if res.kind == "Namespace" {
            new["status"] = json!({"phase": "Terminating"});
        }
        if dry_run {
            return Ok(Deleted {
                object: unstored(key, &new).map_err(|e| anyhow::anyhow!("{e}"))?,
                finished: false,
            });
        }
        let object = self
            .store
            .write(Write {
                key: key.to_string(),
                op: Op::Update {
                    value: new,
                    expect: current.revision,
                },
            })
            .await?;
        Ok(Deleted {
            object,
            finished: false,
        })
    }

    /// Removes the object from storage.
    async fn remove(
        &self,
        key: &str,
        current: &Arc<Object>,
        old: Value,
        dry_run: bool,
    ) -> Result<Deleted, StoreError> {
        if dry_run {
            return Ok(Deleted {
                object: current.clone(),
                finished: true,
            });
        }
        let object = self
            .store
            .write(Write {
                key: key.to_string(),
                op: Op::Delete {
                    value: old.clone(),
                    expect: current.revision,
                },
            })
            .await?;
        if let Some(res) = keys::resource_of(key) {
            self.release_service(res, &old, None);
        }
        Ok(Deleted {
            object,
            finished: true,
        })
    }

    /// After an update: removes an object whose deletion was only waiting
    /// for what the update cleared (its last finalizer).
    pub(super) async fn finish_deletion(
        &self,
        res: &Resource,
        name: &str,
        stored: Arc<Object>,
        new: &Value,
    ) -> ApiResult<Arc<Object>> {
        let grace_pending = new
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0);
        let namespace_finalizing = res.kind == "Namespace"
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if !meta::is_deleting(new)
            || !meta::finalizers(new).is_empty()
            || grace_pending
            || namespace_finalizing
        {
            return Ok(stored);
        }
        match self.remove(&stored.key, &stored, new.clone(), false).await {
            Ok(deleted) => Ok(deleted.object),
            // Someone else changed or removed it meanwhile: theirs is newer.
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(stored),
            Err(e) => Err(store_error(res, name, e)),
        }
    }
}

fn check_preconditions(
    res: &Resource,
    name: &str,
    opts: &DeleteOptions,
    old: &Value,
    current: &Object,
) -> ApiResult<()> {
    if let Some(uid) = &opts.precondition_uid
        && uid != meta::uid(old)
    {
        return Err(ApiError::conflict(
            res,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(old)
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_resource_version
        && *rv != current.revision.to_string()
    {
        return Err(ApiError::conflict(
            res,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                current.revision
            ),
        ));
    }
    Ok(())
}
