//! Table printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`):
//! the columns and cells upstream's printers produce, so `kubectl get` and
//! `-o wide` (columns with priority > 0) look like upstream.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resources::Resource;

/// A `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `date`, …
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for `-o wide` columns.
    pub priority: i32,
}

impl Column {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The columns for `res`.
pub fn columns(res: &Resource) -> Vec<Column> {
    let _ = res;
    vec![
        Column {
            name: "Name",
            type_: "string",
            format: "name",
            description: "Name must be unique within a namespace.",
            priority: 0,
        },
        Column {
            name: "Created At",
            type_: "date",
            format: "",
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
            priority: 0,
        },
    ]
}

/// One row's cells for `obj`, in the order of `columns(res)`.
pub fn cells(res: &Resource, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let _ = (res, now);
    vec![
        obj.pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null),
        obj.pointer("/metadata/creationTimestamp")
            .cloned()
            .unwrap_or(Value::Null),
    ]
}
