//! Label and field selectors (`labelSelector=app=web,tier in (a,b)`,
//! `fieldSelector=spec.nodeName=n1`), parsed once per request and matched
//! against the attributes the store keeps for every object.

use std::collections::BTreeSet;

use crate::storage::Attrs;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, attrs: &Attrs) -> bool {
        self.requirements.iter().all(|r| {
            let value = attrs.label(&r.key);
            match &r.op {
                Op::In(values) => value.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Gt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let invalid = |why: &str| format!("unable to parse requirement: {part:?}: {why}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: check_key(key.trim()).map_err(|e| invalid(&e))?,
            op: Op::DoesNotExist,
        });
    }
    for (token, set_op) in [(" notin ", false), (" in ", true)] {
        if let Some((key, rest)) = part.split_once(token) {
            let values = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| invalid("expected a parenthesized list of values"))?;
            let values = values
                .split(',')
                .map(|v| check_value(v.trim()))
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| invalid(&e))?;
            let key = check_key(key.trim()).map_err(|e| invalid(&e))?;
            let op = if set_op {
                Op::In(values)
            } else {
                Op::NotIn(values)
            };
            return Ok(Requirement { key, op });
        }
    }
    let single = |value: String| BTreeSet::from([value]);
    let number = |value: &str| {
        value
            .parse::<i64>()
            .map_err(|_| invalid(&format!("{value:?} is not an integer")))
    };
    let parts = |token: &str| -> Result<Option<(String, String)>, String> {
        match part.split_once(token) {
            Some((key, value)) => Ok(Some((
                check_key(key.trim()).map_err(|e| invalid(&e))?,
                check_value(value.trim()).map_err(|e| invalid(&e))?,
            ))),
            None => Ok(None),
        }
    };
    let (key, op) = if let Some((key, value)) = parts("!=")? {
        (key, Op::NotIn(single(value)))
    } else if let Some((key, value)) = parts("==")? {
        (key, Op::In(single(value)))
    } else if let Some((key, value)) = parts("=")? {
        (key, Op::In(single(value)))
    } else if let Some((key, value)) = parts(">")? {
        (key, Op::Gt(number(&value)?))
    } else if let Some((key, value)) = parts("<")? {
        (key, Op::Lt(number(&value)?))
    } else {
        (check_key(part).map_err(|e| invalid(&e))?, Op::Exists)
    };
    Ok(Requirement { key, op })
}

fn check_key(key: &str) -> Result<String, String> {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.len() <= 253
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c));
    if name_ok && prefix_ok && !(key.contains('/') && prefix.is_empty()) {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn check_value(value: &str) -> Result<String, String> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

/// A parsed field selector: equality terms only, as upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in split_unescaped(s, ',') {
            if part.is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = split_once_unescaped(&part, "!=") {
                (f, false, v)
            } else if let Some((f, v)) = split_once_unescaped(&part, "==") {
                (f, true, v)
            } else if let Some((f, v)) = split_once_unescaped(&part, "=") {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            terms.push((field.trim().to_string(), equal, unescape(&value)));
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The field labels the selector names.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|(f, _, _)| f.as_str())
    }

    /// The value required by an equality term on `field`, if any.
    pub fn required(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, equal, _)| *equal && f == field)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, attrs: &Attrs) -> bool {
        self.terms.iter().all(|(field, equal, value)| {
            let actual = attrs.field(field).unwrap_or_default();
            (actual == value) == *equal
        })
    }
}

/// Splits on `sep` not preceded by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let (mut parts, mut current, mut escaped) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn split_once_unescaped(s: &str, op: &str) -> Option<(String, String)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(op) {
            return Some((s[..i].to_string(), s[i + op.len()..].to_string()));
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let (mut out, mut escaped) = (String::new(), false);
    for c in s.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(labels: &[(&str, &str)], fields: &[(&'static str, &str)]) -> Attrs {
        Attrs {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    #[test]
    fn label_selectors_equality_sets_and_existence() {
        let a = attrs(&[("app", "web"), ("tier", "front"), ("n", "5")], &[]);
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "tier in (front,back)",
            "env notin (prod)",
            "app",
            "!env",
            "app=web,tier",
            "n>3",
            "n<6",
            "app.kubernetes.io/name notin (x)",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&a), "{s}");
        }
        let no = [
            "app=db",
            "tier in (back)",
            "env",
            "!app",
            "app=web,env=prod",
            "n>5",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&a), "{s}");
        }
        assert!(LabelSelector::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_label_selectors_are_refused() {
        for s in ["app=we b", "-x=1", "x in a,b", "n>a"] {
            assert!(LabelSelector::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn field_selectors() {
        let a = attrs(&[], &[("spec.nodeName", "n1"), ("metadata.name", "a,b")]);
        assert!(
            FieldSelector::parse("spec.nodeName=n1")
                .unwrap()
                .matches(&a)
        );
        assert!(
            FieldSelector::parse("spec.nodeName!=n2")
                .unwrap()
                .matches(&a)
        );
        assert!(!FieldSelector::parse("spec.nodeName=").unwrap().matches(&a));
        assert!(
            FieldSelector::parse(r"metadata.name=a\,b")
                .unwrap()
                .matches(&a)
        );
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        assert_eq!(
            s.fields().collect::<Vec<_>>(),
            ["spec.nodeName", "status.phase"]
        );
        assert_eq!(s.required("spec.nodeName"), Some("n1"));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
