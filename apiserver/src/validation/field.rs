//! Field paths and field errors worded as upstream's `field.Error`
//! (`spec.containers[0].image: Required value`).

use std::fmt;

use serde_json::Value;

use super::{ErrorType, FieldError};

/// A field path: `spec.containers[0].ports[1].containerPort`,
/// `metadata.labels`, `data[tls.crt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Path {
        Path(root.to_owned())
    }

    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_owned())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bad value as upstream prints it: strings quoted, numbers and
/// booleans bare, anything else as JSON.
pub fn show(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// Go's `%q` for the strings that appear in field errors.
pub fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The string at `key` of an object, `""` when absent.
pub fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Collects the errors of one object.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    fn push(&mut self, kind: ErrorType, path: &Path, message: String) {
        self.0.push(FieldError {
            kind,
            field: path.to_string(),
            message,
        });
    }

    fn with_detail(body: String, detail: &str) -> String {
        if detail.is_empty() {
            body
        } else {
            format!("{body}: {detail}")
        }
    }

    pub fn required(&mut self, path: &Path, detail: &str) {
        self.push(
            ErrorType::Required,
            path,
            Errors::with_detail("Required value".into(), detail),
        );
    }

    pub fn invalid(&mut self, path: &Path, value: &Value, detail: &str) {
        let body = format!("Invalid value: {}", show(value));
        self.push(ErrorType::Invalid, path, Errors::with_detail(body, detail));
    }

    /// `invalid` for a string value.
    pub fn invalid_str(&mut self, path: &Path, value: &str, detail: &str) {
        self.invalid(path, &Value::String(value.to_owned()), detail);
    }

    pub fn not_supported(&mut self, path: &Path, value: &Value, supported: &[&str]) {
        let supported: Vec<String> = supported.iter().map(|s| quote(s)).collect();
        let message = format!(
            "Unsupported value: {}: supported values: {}",
            show(value),
            supported.join(", ")
        );
        self.push(ErrorType::NotSupported, path, message);
    }

    pub fn duplicate(&mut self, path: &Path, value: &Value) {
        self.push(
            ErrorType::Duplicate,
            path,
            format!("Duplicate value: {}", show(value)),
        );
    }

    pub fn forbidden(&mut self, path: &Path, detail: &str) {
        self.push(
            ErrorType::Forbidden,
            path,
            Errors::with_detail("Forbidden".into(), detail),
        );
    }

    pub fn too_long(&mut self, path: &Path, max: usize) {
        self.push(
            ErrorType::TooLong,
            path,
            format!("Too long: must have at most {max} bytes"),
        );
    }

    pub fn not_found(&mut self, path: &Path, value: &Value) {
        self.push(
            ErrorType::NotFound,
            path,
            format!("Not found: {}", show(value)),
        );
    }

    /// One `Invalid` error per message of a name/syntax check.
    pub fn invalid_each(&mut self, path: &Path, value: &str, messages: Vec<String>) {
        for message in messages {
            self.invalid_str(path, value, &message);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths() {
        let p = Path::new("spec")
            .child("containers")
            .index(0)
            .child("ports")
            .index(2);
        assert_eq!(p.to_string(), "spec.containers[0].ports[2]");
        assert_eq!(
            Path::new("data").key("tls.crt").to_string(),
            "data[tls.crt]"
        );
        assert_eq!(Path::new("").child("type").to_string(), "type");
    }

    #[test]
    fn messages_like_upstream() {
        let mut e = Errors::default();
        let p = Path::new("spec").child("restartPolicy");
        e.required(&p, "");
        e.invalid(&p, &json!(70000), "must be between 1 and 65535, inclusive");
        e.not_supported(&p, &json!("Sometimes"), &["Always", "OnFailure", "Never"]);
        e.duplicate(&p, &json!("web"));
        e.forbidden(&p, "may not be set");
        let messages: Vec<&str> = e.0.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Required value",
                "Invalid value: 70000: must be between 1 and 65535, inclusive",
                "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "Duplicate value: \"web\"",
                "Forbidden: may not be set",
            ]
        );
        assert_eq!(e.0[0].to_string(), "spec.restartPolicy: Required value");
    }
}
