//! PATCH bodies: RFC 6902 JSON patch, RFC 7386 JSON merge patch,
//! strategic merge patch with the merge keys and strategies of the served
//! kinds, and the three-way merge that apply needs.

mod apply;
mod schema;
mod strategic;
pub mod strategy;

use serde_json::Value;

use crate::resources::Resource;
use schema::ObjectSchema;

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch is not well-formed (400 BadRequest upstream).
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// The patch is well-formed but cannot be applied to this object, e.g.
    /// a JSON patch `test` fails or a list item lacks its merge key (422
    /// upstream).
    #[error("{0}")]
    Unprocessable(String),
}

impl PatchError {
    /// The HTTP status upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::Invalid(_) => 400,
            PatchError::Unprocessable(_) => 422,
        }
    }
}

/// RFC 7386 JSON merge patch.
pub fn json_merge(original: &Value, patch: &Value) -> Value {
    let mut merged = original.clone();
    json_patch::merge(&mut merged, patch);
    merged
}

/// RFC 6902 JSON patch (a list of operations).
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Invalid(format!("not a JSON patch: {e}")))?;
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &operations)
        .map_err(|e| PatchError::Unprocessable(e.to_string()))?;
    Ok(patched)
}

/// Strategic merge patch of `patch` onto `original`, an object of `res`.
pub fn strategic_merge(
    res: &Resource,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Invalid("patch is not a JSON object".into()));
    };
    let Value::Object(original) = original else {
        return Err(PatchError::Unprocessable(
            "the object to patch is not a JSON object".into(),
        ));
    };
    strategic::merge(original.clone(), patch.clone(), ObjectSchema::of(res)).map(Value::Object)
}

/// Apply of `config` (a partial object) by one field manager: `live` is
/// the stored object (`None` on create), `last_applied` what this manager
/// applied before; fields it applied before and dropped now are removed,
/// fields it never set are kept.
pub fn apply(
    res: &Resource,
    live: Option<&Value>,
    last_applied: Option<&Value>,
    config: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(config) = config else {
        return Err(PatchError::Invalid(
            "applied configuration is not a JSON object".into(),
        ));
    };
    let empty = serde_json::Map::new();
    let live = match live {
        Some(Value::Object(live)) => live,
        Some(_) => {
            return Err(PatchError::Unprocessable(
                "the live object is not a JSON object".into(),
            ));
        }
        None => &empty,
    };
    let last = last_applied.and_then(Value::as_object);
    Ok(Value::Object(apply::merge(
        live,
        last,
        config,
        ObjectSchema::of(res),
    )))
}

/// The annotation `kubectl apply` (client-side) keeps its last applied
/// configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What client-side `kubectl apply` last applied to `live`, from its
/// annotation. Upstream counts it as the `kubectl` manager's previous
/// apply when a client-side applied object is first server-side applied
/// (KEP-3517), so pass it as `apply`'s `last_applied` when the manager has
/// no applied configuration of its own yet.
pub fn last_applied_annotation(live: &Value) -> Option<Value> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()?;
    serde_json::from_str(text).ok().filter(Value::is_object)
}

#[cfg(test)]
mod tests;
