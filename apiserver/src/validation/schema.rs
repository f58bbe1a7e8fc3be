//! What decoding into the typed object would catch: fields the kind does
//! not have (reported for `fieldValidation=Strict|Warn`) and values of the
//! wrong JSON type (which upstream rejects with 400 BadRequest).

use serde_json::Value;

use crate::openapi::{self, Shape};
use crate::resources::Resource;

/// The findings of `check`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaReport {
    /// Paths of unknown fields, `spec.containers[0].imagePullPolicyy`.
    pub unknown_fields: Vec<String>,
    /// `spec.replicas: expected integer, got string "two"`.
    pub type_errors: Vec<String>,
}

impl SchemaReport {
    /// Upstream's message for a strict decoding failure:
    /// `strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`.
    pub fn strict_error(&self) -> Option<String> {
        if self.unknown_fields.is_empty() {
            return None;
        }
        let fields: Vec<String> = self
            .unknown_fields
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        Some(format!("strict decoding error: {}", fields.join(", ")))
    }
}

/// Walks `obj` along the schema of `res`'s kind.
pub fn check(res: &Resource, obj: &Value) -> SchemaReport {
    let mut report = SchemaReport::default();
    if let Some(id) = openapi::model().kind(res.group, res.version, res.kind) {
        walk(obj, &Shape::Struct(id), "", &mut report);
    }
    report
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn expected(shape: &Shape) -> &'static str {
    match shape {
        Shape::Any => "any",
        Shape::String | Shape::StringOrNumber => "string",
        Shape::Integer => "integer",
        Shape::Number => "number",
        Shape::Boolean => "boolean",
        Shape::Struct(_) | Shape::Map(_) | Shape::AnyObject => "object",
        Shape::Array(_) => "array",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(value: &Value, shape: &Shape, path: &str, report: &mut SchemaReport) {
    let integer = |n: &serde_json::Number| n.is_i64() || n.is_u64();
    let fits = match (shape, value) {
        (_, Value::Null) | (Shape::Any, _) => true,
        (Shape::String, Value::String(_)) => true,
        (Shape::StringOrNumber, Value::String(_) | Value::Number(_)) => true,
        (Shape::Integer, Value::Number(n)) => integer(n),
        (Shape::Number, Value::Number(_)) => true,
        (Shape::Boolean, Value::Bool(_)) => true,
        (Shape::Struct(_) | Shape::Map(_) | Shape::AnyObject, Value::Object(_)) => true,
        (Shape::Array(_), Value::Array(_)) => true,
        _ => false,
    };
    if !fits {
        report.type_errors.push(format!(
            "{}: expected {}, got {} {value}",
            if path.is_empty() { "<root>" } else { path },
            expected(shape),
            type_name(value)
        ));
        return;
    }
    match (shape, value) {
        (Shape::Struct(id), Value::Object(map)) => {
            for (key, field) in map {
                match openapi::model().field(*id, key) {
                    Some(f) => walk(field, &f.shape, &join(path, key), report),
                    None => report.unknown_fields.push(join(path, key)),
                }
            }
        }
        (Shape::Map(values), Value::Object(map)) => {
            for (key, field) in map {
                walk(field, values, &format!("{path}[{key}]"), report);
            }
        }
        (Shape::Array(element), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, element, &format!("{path}[{i}]"), report);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::lookup;

    #[test]
    fn unknown_fields_have_upstream_paths() {
        let report = check(
            lookup("apps", "v1", "deployments").unwrap(),
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "x", "labels": {"a": "b"}},
                "spec": {"replicas": 1, "replica": 2, "template": {"spec": {"containers": [
                    {"name": "a", "image": "a", "protocl": "TCP",
                     "resources": {"limits": {"cpu": 1, "memory": "1Gi"}},
                     "ports": [{"containerPort": 80}]}]}}},
            }),
        );
        assert_eq!(
            report.unknown_fields,
            ["spec.replica", "spec.template.spec.containers[0].protocl"]
        );
        assert!(report.type_errors.is_empty(), "{:?}", report.type_errors);
        assert_eq!(
            report.strict_error().unwrap(),
            "strict decoding error: unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].protocl\""
        );
    }

    #[test]
    fn wrong_types_are_found() {
        let report = check(
            lookup("", "v1", "services").unwrap(),
            &json!({"metadata": {"name": "s", "labels": {"a": 1}},
                    "spec": {"ports": [{"port": "eighty", "targetPort": 8080}], "selector": "app=web"}}),
        );
        assert_eq!(
            report.type_errors,
            [
                "metadata.labels[a]: expected string, got integer 1",
                "spec.ports[0].port: expected integer, got string \"eighty\"",
                "spec.selector: expected object, got string \"app=web\"",
            ]
        );
        assert!(report.strict_error().is_none());
    }
}
