//! The three-way merge of apply: a manager's new configuration is merged
//! into the live object, and what the same manager applied last time but
//! no longer does is removed. Fields the manager never set (defaults,
//! status, other managers' fields) are kept. Lists follow the patch
//! strategies: keyed lists are merged item by item, set-like lists of
//! primitives by value, others replaced.

use serde_json::{Map, Value};

use super::schema::{FieldMeta, ObjectSchema};
use super::strategic::apply_order;

type Object = Map<String, Value>;

/// `live` with `config` applied, given what was applied before (`last`).
pub fn merge(
    live: &Object,
    last: Option<&Object>,
    config: &Object,
    schema: ObjectSchema,
) -> Object {
    let mut result = live.clone();
    if let Some(last) = last {
        for key in last.keys().filter(|k| !config.contains_key(*k)) {
            result.remove(key);
        }
    }
    for (key, wanted) in config {
        if wanted.is_null() {
            result.remove(key);
            continue;
        }
        let (meta, sub) = schema.field(key);
        let previous = last.and_then(|l| l.get(key));
        let merged = match (live.get(key), wanted) {
            (Some(Value::Object(current)), Value::Object(wanted)) => Value::Object(merge(
                current,
                previous.and_then(Value::as_object),
                wanted,
                sub,
            )),
            (Some(Value::Array(current)), Value::Array(wanted)) if meta.merge => {
                Value::Array(merge_list(
                    current,
                    previous.and_then(Value::as_array),
                    wanted,
                    meta,
                    sub,
                ))
            }
            _ => wanted.clone(),
        };
        result.insert(key.clone(), merged);
    }
    result
}

fn merge_list(
    live: &[Value],
    last: Option<&Vec<Value>>,
    config: &[Value],
    meta: FieldMeta,
    schema: ObjectSchema,
) -> Vec<Value> {
    let last = last.map(Vec::as_slice).unwrap_or(&[]);
    let of_objects = config.iter().chain(live).any(Value::is_object);
    let key = match (of_objects, meta.merge_key) {
        (true, None) => return config.to_vec(),
        (_, key) => key,
    };
    let identity = |v: &Value| -> Value {
        match key {
            Some(key) => v.get(key).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let wanted: Vec<Value> = config.iter().map(identity).collect();
    let dropped: Vec<Value> = last
        .iter()
        .map(identity)
        .filter(|id| !wanted.contains(id))
        .collect();
    let mut result: Vec<Value> = live
        .iter()
        .filter(|item| !dropped.contains(&identity(item)))
        .cloned()
        .collect();
    for item in config {
        let id = identity(item);
        match result.iter().position(|r| identity(r) == id) {
            Some(pos) => {
                if let (Value::Object(current), Value::Object(wanted)) = (&result[pos], item) {
                    let previous = last
                        .iter()
                        .find(|l| identity(l) == id)
                        .and_then(Value::as_object);
                    result[pos] = Value::Object(merge(current, previous, wanted, schema));
                }
            }
            None => result.push(item.clone()),
        }
    }
    apply_order(result, config, live, key)
}
