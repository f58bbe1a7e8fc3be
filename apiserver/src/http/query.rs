//! Request options from the query string (and, for deletes, the body).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::registry::selector::{FieldSelector, LabelSelector};
use crate::registry::{DeleteOptions, FieldValidation, ListOptions, Propagation, WriteOptions};
use crate::status::{ApiError, ApiResult};
use crate::storage::Revision;

/// The query parameters of a request (the last of repeated ones wins).
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> ApiResult<Query> {
        let pairs: Vec<(String, String)> = match raw {
            Some(raw) => serde_urlencoded::from_str(raw)
                .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?,
            None => Vec::new(),
        };
        Ok(Query(pairs.into_iter().collect()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid {key}: {v:?}")))
            })
            .transpose()
    }

    pub fn is_watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn list_options(&self) -> ApiResult<ListOptions> {
        Ok(ListOptions {
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?,
            limit: self.number("limit")?,
            continue_token: self.get("continue").map(str::to_string),
        })
    }

    /// `resourceVersion` as a revision; `None` when unset or `0`.
    pub fn resource_version(&self) -> ApiResult<Option<Revision>> {
        match self.get("resourceVersion") {
            None | Some("0") => Ok(None),
            Some(rv) => rv
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}"))),
        }
    }

    pub fn watch_timeout(&self) -> ApiResult<Option<Duration>> {
        Ok(self
            .number::<u64>("timeoutSeconds")?
            .map(Duration::from_secs))
    }

    pub fn bookmarks(&self) -> bool {
        self.flag("allowWatchBookmarks")
    }

    pub fn send_initial_events(&self) -> bool {
        self.flag("sendInitialEvents")
    }

    /// `includeObject` for Table output: `None`, `Metadata` (default) or `Object`.
    pub fn include_object(&self) -> ApiResult<IncludeObject> {
        match self.get("includeObject") {
            None | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("Object") => Ok(IncludeObject::Object),
            Some("None") => Ok(IncludeObject::None),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"None\", \"Metadata\", \"Object\""
            ))),
        }
    }

    fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    pub fn write_options(&self) -> ApiResult<WriteOptions> {
        let field_validation = match self.get("fieldValidation") {
            None | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )));
            }
        };
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_manager: self.get("fieldManager").map(str::to_string),
            field_validation,
        })
    }

    /// Delete options from the query, overridden by a `DeleteOptions` body.
    pub fn delete_options(&self, body: Option<&Value>) -> ApiResult<DeleteOptions> {
        let mut opts = DeleteOptions {
            grace_period: self.number("gracePeriodSeconds")?,
            propagation: None,
            precondition_uid: None,
            precondition_resource_version: None,
            dry_run: self.dry_run()?,
        };
        let mut policy = self.get("propagationPolicy").map(str::to_string);
        if self.get("orphanDependents") == Some("true") {
            policy.get_or_insert_with(|| "Orphan".into());
        }
        if let Some(body) = body {
            if let Some(g) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
                opts.grace_period = Some(g);
            }
            if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
                policy = Some(p.to_string());
            }
            if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                policy.get_or_insert_with(|| "Orphan".into());
            }
            if let Some(dry) = body.get("dryRun").and_then(Value::as_array) {
                opts.dry_run |= dry.iter().any(|d| d == "All");
            }
            let pre = |field: &str| {
                body.pointer(&format!("/preconditions/{field}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            opts.precondition_uid = pre("uid");
            opts.precondition_resource_version = pre("resourceVersion");
        }
        opts.propagation = match policy {
            None => None,
            Some(p) => Some(Propagation::parse(&p).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                ))
            })?),
        };
        if opts.grace_period.is_some_and(|g| g < 0) {
            opts.grace_period = Some(0);
        }
        Ok(opts)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}
