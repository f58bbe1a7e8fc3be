//! Per-resource validation, as upstream's `pkg/apis/*/validation`: a list of
//! field errors, with upstream's paths and wording, that the HTTP layer
//! turns into a 422 `Invalid` Status. `schema::check` finds what decoding
//! would reject (wrong types, unknown fields).

mod apps;
mod container;
mod core;
mod field;
mod meta;
mod names;
mod pod;
pub mod quantity;
pub mod schema;
mod service;
mod volume;

use std::fmt;

use serde_json::Value;

use crate::resources::Resource;
use field::Errors;

pub(crate) use volume::SOURCES as VOLUME_SOURCES;

/// The kind of a field error; `reason()` is the `StatusCause.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    NotFound,
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
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }
}

/// One invalid field: `field` is the upstream path (`spec.containers[0].name`),
/// `message` what upstream puts in the cause (`Required value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub message: String,
}

/// `spec.containers[0].image: Required value`, as in upstream's Status message.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Upstream's Status message for an invalid object of `res`:
/// `Pod "Bad_Name" is invalid: metadata.name: Invalid value: …`,
/// `Deployment.apps "web" is invalid: [spec.replicas: …, spec.selector: …]`.
pub fn invalid_message(res: &Resource, name: &str, errors: &[FieldError]) -> String {
    let details: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let details = match details.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let kind = if res.group.is_empty() {
        res.kind.to_owned()
    } else {
        format!("{}.{}", res.kind, res.group)
    };
    format!("{kind} {} is invalid: {details}", field::quote(name))
}

/// Validates `obj` (already defaulted) as a create (`old` is `None`) or an
/// update of `old`.
pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Errors::default();
    meta::object_meta(res, obj, &mut errs);
    if let Some(old) = old {
        meta::object_meta_update(obj, old, &mut errs);
    }
    match (res.group, res.kind) {
        ("", "Pod") => pod::pod(obj, old, &mut errs),
        ("", "Service") => service::service(obj, old, &mut errs),
        ("", "ConfigMap") => core::config_map(obj, old, &mut errs),
        ("", "Secret") => core::secret(obj, old, &mut errs),
        ("", "Node") => core::node(obj, &mut errs),
        ("", "Endpoints") => core::endpoints(obj, &mut errs),
        ("", "Event") => core::core_event(obj, &mut errs),
        ("events.k8s.io", "Event") => core::event(obj, &mut errs),
        ("discovery.k8s.io", "EndpointSlice") => core::endpoint_slice(obj, &mut errs),
        ("coordination.k8s.io", "Lease") => core::lease(obj, &mut errs),
        ("apps", "Deployment") => apps::deployment(obj, old, &mut errs),
        ("apps", "ReplicaSet") => apps::replica_set(obj, old, &mut errs),
        _ => {}
    }
    errs.0
}

/// RFC 1123 subdomain: the name rule of most kinds.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    names::dns1123_subdomain(s).is_empty()
}

#[cfg(test)]
mod tests;
