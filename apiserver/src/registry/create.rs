//! Create: stamp the server-owned metadata, default, validate, allocate,
//! store.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};

use super::{
    Registry, WriteOptions, Written, decode_typed, keys, meta, store_error, strategy, unstored,
};
use crate::resources::{Resource, lookup};
use crate::status::{ApiError, ApiResult};
use crate::storage::{Object, Op, Write};

use crate::{defaults, validation};

/// Attempts at a fresh name when a generated one is taken.
const GENERATE_NAME_ATTEMPTS: usize = 5;

impl Registry {
    /// Creates `obj` (a JSON object of kind `res`) in `namespace`.
    pub async fn create(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let warnings = decode_typed(res, &mut obj, opts)?;
        self.place(res, namespace, &mut obj)?;
        let generate = meta::name(&obj).is_empty();
        let base = meta::str_at(&obj, "/metadata/generateName").to_string();
        for _ in 0..GENERATE_NAME_ATTEMPTS {
            let mut attempt = obj.clone();
            if generate && !base.is_empty() {
                meta::set(&mut attempt, "name", json!(meta::generate_name(&base)));
            }
            match self.create_once(res, namespace, attempt, opts).await {
                Err(e) if generate && e.reason == "AlreadyExists" => continue,
                done => {
                    return done.map(|object| Written {
                        object,
                        created: true,
                        warnings,
                    });
                }
            }
        }
        Err(ApiError::already_exists(res, &base))
    }

    /// Puts the object in the request's namespace (or none, if cluster-scoped).
    fn place(&self, res: &Resource, namespace: Option<&str>, obj: &mut Value) -> ApiResult<()> {
        match namespace.filter(|_| res.namespaced) {
            Some(ns) => {
                let given = meta::namespace(obj);
                if !given.is_empty() && given != ns {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                meta::set(obj, "namespace", json!(ns));
            }
            None => meta::remove(obj, "namespace"),
        }
        Ok(())
    }

    async fn create_once(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Arc<Object>> {
        let name = meta::name(&obj).to_string();
        if let Some(ns) = namespace.filter(|_| res.namespaced) {
            self.check_namespace_open(res, &name, ns)?;
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta::remove(&mut obj, field);
        }
        meta::set(&mut obj, "uid", json!(meta::new_uid()));
        meta::set(
            &mut obj,
            "creationTimestamp",
            json!(meta::timestamp(Utc::now())),
        );
        strategy::prepare_create(res, &mut obj);
        defaults::apply_with(res, &mut obj, &self.admission);
        let errors = validation::validate(res, &obj, None);
        if !errors.is_empty() {
            return Err(ApiError::invalid(res, &name, &errors));
        }
        let key = keys::key(res, namespace, &name);
        // Checked again by the store; here so a taken name is not reported
        // as, say, a taken ClusterIP.
        if self.store.get(&key).is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        let reservation = self.allocate_service(res, &mut obj, None)?;
        if opts.dry_run {
            return unstored(&key, &obj);
        }
        let stored = self
            .store
            .write(Write {
                key,
                op: Op::Create(obj),
            })
            .await
            .map_err(|e| store_error(res, &name, e))?;
        reservation.keep();
        Ok(stored)
    }

    /// Refuses content in a namespace that does not exist or is going away.
    fn check_namespace_open(&self, res: &Resource, name: &str, ns: &str) -> ApiResult<()> {
        let namespaces = lookup("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
        match self.store.get(&keys::key(namespaces, None, ns)) {
            None => Err(ApiError::not_found(namespaces, ns)),
            Some(found) if meta::is_deleting(&found.parse()) => {
                Err(ApiError::namespace_terminating(res, name, ns))
            }
            Some(_) => Ok(()),
        }
    }

    /// Creates `obj` unless an object of that name exists already.
    pub(super) async fn ensure(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        obj: Value,
    ) -> ApiResult<()> {
        match self
            .create(res, namespace, obj, &WriteOptions::default())
            .await
        {
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            other => other.map(|_| ()),
        }
    }
}
