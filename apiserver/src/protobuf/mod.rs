//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed clients send (`kubectl create deployment|service|
//! configmap|secret|namespace|serviceaccount`, …), decoded into the same
//! JSON a JSON client would have sent. Responses stay JSON.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown`: the type meta
//! (apiVersion, kind) and the raw message. Messages are decoded with a
//! table of their fields (`messages.rs`, generated from the `k8s-pb`
//! crate by `scripts/gen-protobuf-messages.py`) and the JSON names of the
//! OpenAPI model.

mod decode;
mod messages;
mod names;
mod table;

use serde_json::Value;

/// The media type of protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// A body that is not a protobuf object of a served kind.
#[derive(Debug)]
pub struct DecodeError {
    /// The JSON path of the field that failed (`spec.containers[0]`).
    path: Vec<String>,
    reason: String,
}

impl DecodeError {
    fn new(reason: impl std::fmt::Display) -> DecodeError {
        DecodeError {
            path: Vec::new(),
            reason: reason.to_string(),
        }
    }

    /// The error, inside the field `key`.
    fn within(mut self, key: String) -> DecodeError {
        self.path.insert(0, key);
        self
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path.join("."), self.reason)
        }
    }
}

impl std::error::Error for DecodeError {}

/// The envelope of a body.
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    /// How `raw` is encoded: protobuf when empty.
    content_type: String,
}

/// Reads the envelope: `runtime.Unknown` with its `TypeMeta`.
fn unknown(buf: &[u8]) -> Result<Unknown<'_>, DecodeError> {
    let type_meta = decode::bytes_field(buf, 1)?.unwrap_or_default();
    let string = |bytes, tag| decode::string_field(bytes, tag).map(Option::unwrap_or_default);
    Ok(Unknown {
        api_version: string(type_meta, 1)?,
        kind: string(type_meta, 2)?,
        raw: decode::bytes_field(buf, 2)?.unwrap_or_default(),
        content_encoding: string(buf, 3)?,
        content_type: string(buf, 4)?,
    })
}

/// The message encoding `kind` of `api_version`: a served group's type, or
/// a meta type (`DeleteOptions`).
fn message_name(api_version: &str, kind: &str) -> Option<&'static str> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = group
        .split('.')
        .next()
        .filter(|g| !g.is_empty())
        .unwrap_or("core");
    [
        format!("io.k8s.api.{package}.{version}.{kind}"),
        format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"),
    ]
    .iter()
    .find_map(|name| table::message(name))
    .map(|message| message.name)
}

/// Decodes a protobuf body into the JSON object it encodes, `apiVersion`
/// and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| DecodeError::new("the body does not start with the protobuf magic"))?;
    let unknown = unknown(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(DecodeError::new(format!(
            "content encoding {:?} is not supported",
            unknown.content_encoding
        )));
    }
    if !unknown.content_type.is_empty() && unknown.content_type != CONTENT_TYPE {
        return Err(DecodeError::new(format!(
            "content type {:?} inside a protobuf body is not supported",
            unknown.content_type
        )));
    }
    let name = message_name(&unknown.api_version, &unknown.kind).ok_or_else(|| {
        DecodeError::new(format!(
            "no protobuf encoding is known for {} {}",
            unknown.api_version, unknown.kind
        ))
    })?;
    let mut object = decode::message(name, unknown.raw, 0)?;
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".into(), Value::String(unknown.api_version));
        map.insert("kind".into(), Value::String(unknown.kind));
    }
    Ok(object)
}

#[cfg(test)]
mod tests;
