//! Per-resource validation, as upstream's `pkg/apis/*/validation`: a list of
//! field errors that the HTTP layer turns into a 422 `Invalid` Status.

pub mod quantity;

use serde_json::Value;

use crate::resources::Resource;

/// The kind of a field error; `reason()` is the `StatusCause.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
}

impl ErrorType {
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
        }
    }
}

/// One invalid field: `field` is the upstream path (`spec.containers[0].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub message: String,
}

/// Validates `obj` (already defaulted) as a create (`old` is `None`) or an
/// update of `old`.
pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let _ = (res, old);
    let mut errors = Vec::new();
    match obj.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) if is_dns1123_subdomain(name) => {}
        Some(name) => errors.push(FieldError {
            kind: ErrorType::Invalid,
            field: "metadata.name".into(),
            message: format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        }),
        None => errors.push(FieldError {
            kind: ErrorType::Required,
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        }),
    }
    errors
}

/// RFC 1123 subdomain: at most 253 characters of `[a-z0-9.-]`, each
/// dot-separated label starting and ending alphanumeric.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
