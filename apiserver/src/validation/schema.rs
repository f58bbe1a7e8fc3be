//! What decoding into the typed object would catch: fields the kind does
//! not have (reported for `fieldValidation=Strict|Warn`) and values of the
//! wrong JSON type (which upstream rejects with 400 BadRequest).

use serde_json::Value;

use crate::openapi;
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
    let defs = openapi::definitions();
    let mut report = SchemaReport::default();
    if let Some(schema) = defs
        .kind(res.group, res.version, res.kind)
        .and_then(|k| defs.schemas.get(&k.definition))
    {
        walk(obj, schema, "", &mut report);
    }
    report
}

fn resolve(schema: &Value) -> &Value {
    let defs = openapi::definitions();
    let mut current = schema;
    for _ in 0..8 {
        match current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/definitions/"))
            .and_then(|name| defs.schemas.get(name))
        {
            Some(target) => current = target,
            None => break,
        }
    }
    current
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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(value: &Value, schema: &Value, path: &str, report: &mut SchemaReport) {
    let schema = resolve(schema);
    if value.is_null() {
        return;
    }
    let expected = schema.get("type").and_then(Value::as_str);
    let fits = match (expected, value) {
        (None, _) => true,
        (Some("string"), Value::String(_)) => true,
        // Quantities and int-or-strings also come as numbers.
        (Some("string"), Value::Number(_)) => takes_numbers(schema),
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Some("number"), Value::Number(_)) => true,
        (Some("boolean"), Value::Bool(_)) => true,
        (Some("array"), Value::Array(_)) => true,
        (Some("object"), Value::Object(_)) => true,
        _ => false,
    };
    if !fits {
        report.type_errors.push(format!(
            "{}: expected {}, got {} {value}",
            if path.is_empty() { "<root>" } else { path },
            expected.unwrap_or("any"),
            type_name(value)
        ));
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, field) in map {
                    match properties.get(key) {
                        Some(field_schema) => walk(field, field_schema, &join(path, key), report),
                        None => report.unknown_fields.push(join(path, key)),
                    }
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                for (key, field) in map {
                    walk(field, values, &format!("{path}[{key}]"), report);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), report);
                }
            }
        }
        _ => {}
    }
}

/// Int-or-string and quantity fields are published as strings but take
/// numbers too.
fn takes_numbers(schema: &Value) -> bool {
    let defs = openapi::definitions();
    [
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
    ]
    .iter()
    .filter_map(|name| defs.schemas.get(*name))
    .any(|definition| std::ptr::eq(definition, schema))
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
