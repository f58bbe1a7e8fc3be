//! The shape of the generated message table (`messages.rs`).

use super::messages::MESSAGES;

/// A protobuf message: its OpenAPI definition name and its fields.
#[derive(Debug)]
pub struct Message {
    /// `io.k8s.api.apps.v1.Deployment`, the OpenAPI definition it encodes.
    pub name: &'static str,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// The proto field name in snake case (`pod_ip`), as prost spells it.
    pub name: &'static str,
    pub kind: Kind,
    pub repeated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Scalar(Value),
    Message(&'static str),
    /// `map<string, V>`, encoded as repeated key (1) / value (2) entries.
    Map(Value),
}

/// What a single value on the wire is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Message(&'static str),
}

/// The message named `name` (`io.k8s.api.core.v1.Pod`).
pub fn message(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &MESSAGES[i])
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<(usize, &'static Field)> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| (i, &self.fields[i]))
    }
}
