//! Get, list (selectors, paging) and watch.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use serde::{Deserialize, Serialize};

use super::selector::{FieldSelector, LabelSelector};
use super::{Registry, fields, keys, store_error};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::storage::{EventStream, Object, Revision};

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Arc<Object>>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    /// How many more items the next pages hold (unfiltered lists only).
    pub remaining: Option<usize>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// `resourceVersion` unset or `0`: the current objects as ADDED events,
    /// then changes.
    Now,
    /// Changes after this revision.
    After(Revision),
}

/// A `continue` token: where the next page starts (upstream's shape).
#[derive(Serialize, Deserialize)]
struct Continue {
    v: String,
    rv: Revision,
    start: String,
}

impl Registry {
    pub fn get(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Arc<Object>> {
        self.store
            .get(&keys::key(res, namespace, name))
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// Checks that `fieldSelector` only names fields `res` supports.
    pub fn check_field_selector(res: &Resource, selector: &FieldSelector) -> ApiResult<()> {
        match selector.fields().find(|f| !fields::is_selectable(res, f)) {
            Some(f) => Err(ApiError::bad_request(format!(
                "field label not supported: {f}"
            ))),
            None => Ok(()),
        }
    }

    pub fn list(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        Self::check_field_selector(res, &opts.fields)?;
        let prefix = keys::prefix(res, namespace);
        let start_after = match &opts.continue_token {
            Some(token) => Some(self.decode_continue(token)?),
            None => None,
        };
        let snapshot = self.store.list(&prefix, start_after.as_deref());
        let filtered = !opts.labels.is_empty() || !opts.fields.is_empty();
        let mut matching = snapshot
            .items
            .into_iter()
            .filter(|o| opts.labels.matches(&o.attrs) && opts.fields.matches(&o.attrs));
        let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let items: Vec<_> = matching.by_ref().take(limit).collect();
        let rest = matching.count();
        let continue_token = match items.last() {
            Some(last) if rest > 0 => Some(encode_continue(snapshot.revision, &last.key)),
            _ => None,
        };
        Ok(ListResult {
            items,
            revision: snapshot.revision,
            remaining: (rest > 0 && !filtered).then_some(rest),
            continue_token,
        })
    }

    fn decode_continue(&self, token: &str) -> ApiResult<String> {
        let invalid =
            |why: String| ApiError::bad_request(format!("continue key is not valid: {why}"));
        let bytes = URL_SAFE.decode(token).map_err(|e| invalid(e.to_string()))?;
        let parsed: Continue =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if parsed.rv < self.store.compacted() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        Ok(parsed.start)
    }

    /// The changes to `res` in `namespace` after `from`.
    pub fn watch(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        from: Revision,
    ) -> ApiResult<EventStream> {
        self.store
            .watch(&keys::prefix(res, namespace), from)
            .map_err(|e| store_error(res, "", e))
    }
}

fn encode_continue(revision: Revision, last_key: &str) -> String {
    let token = Continue {
        v: "meta.k8s.io/v1".into(),
        rv: revision,
        start: last_key.to_string(),
    };
    URL_SAFE.encode(serde_json::to_vec(&token).unwrap_or_default())
}
