//! Strategic merge patch, as upstream's `strategicpatch` applies it on the
//! server: maps merge key by key, `null` deletes, lists with a merge
//! strategy merge by their merge key (or as sets of primitives), other lists
//! are replaced; and the directives kubectl sends: `$patch:
//! replace|delete|merge`, `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`.

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{FieldMeta, ObjectSchema};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

type Object = Map<String, Value>;

/// Applies `patch` to `original`, both objects described by `schema`.
pub fn merge(original: Object, patch: Object, schema: ObjectSchema) -> Result<Object, PatchError> {
    merge_map(original, patch, schema)
}

fn merge_map(
    mut original: Object,
    mut patch: Object,
    schema: ObjectSchema,
) -> Result<Object, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Object::new(), patch, schema),
            Some("delete") => return Ok(Object::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::Invalid(format!(
                    "Unknown patch type: {directive} in map"
                )));
            }
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        retain_keys(&mut original, &patch, &retain)?;
    }
    let orders: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in orders {
        let order = patch.remove(&directive).unwrap_or(Value::Null);
        let field = &directive[SET_ELEMENT_ORDER.len()..];
        let Value::Array(order) = order else {
            return Err(PatchError::Invalid(format!(
                "invalid patch: {directive} must be a list"
            )));
        };
        ordered_list(&mut original, &mut patch, field, &order, schema)?;
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut original, field, &value)?;
            continue;
        }
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let (meta, sub) = schema.field(&key);
        let merged = match (original.remove(&key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(o, p, sub)?),
            (Some(Value::Array(o)), Value::Array(p)) if meta.merge => {
                Value::Array(merge_list(o, p, meta, sub)?)
            }
            (_, value) => fresh(value, meta, sub)?,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// A patch value with nothing to merge into: nulls and directives are
/// dropped, as when merging into an empty value.
fn fresh(value: Value, meta: FieldMeta, schema: ObjectSchema) -> Result<Value, PatchError> {
    Ok(match value {
        Value::Object(p) => Value::Object(merge_map(Object::new(), p, schema)?),
        Value::Array(p) if meta.merge => Value::Array(merge_list(Vec::new(), p, meta, schema)?),
        other => other,
    })
}

/// `$retainKeys`: the original keeps only the listed keys (the patch may
/// set only those too).
fn retain_keys(original: &mut Object, patch: &Object, retain: &Value) -> Result<(), PatchError> {
    let keys: Option<Vec<&str>> = retain
        .as_array()
        .map(|keys| keys.iter().filter_map(Value::as_str).collect());
    let Some(keys) = keys.filter(|k| Some(k.len()) == retain.as_array().map(Vec::len)) else {
        return Err(PatchError::Invalid(
            "invalid patch: $retainKeys must be a list of strings".into(),
        ));
    };
    if let Some(stray) = patch
        .iter()
        .find(|(k, v)| !k.starts_with('$') && !v.is_null() && !keys.contains(&k.as_str()))
    {
        return Err(PatchError::Unprocessable(format!(
            "patch content doesn't match retainKeys list: {} is not in {keys:?}",
            stray.0
        )));
    }
    original.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

fn delete_from_primitive_list(
    original: &mut Object,
    field: &str,
    values: &Value,
) -> Result<(), PatchError> {
    let Value::Array(values) = values else {
        return Err(PatchError::Invalid(format!(
            "invalid patch: {DELETE_FROM_PRIMITIVE_LIST}{field} must be a list"
        )));
    };
    if let Some(Value::Array(list)) = original.get_mut(field) {
        list.retain(|v| !values.contains(v));
    }
    Ok(())
}

/// Merges the list `field` (if the patch has it) and puts the result in
/// the order `$setElementOrder/<field>` gives.
fn ordered_list(
    original: &mut Object,
    patch: &mut Object,
    field: &str,
    order: &[Value],
    schema: ObjectSchema,
) -> Result<(), PatchError> {
    let (meta, sub) = schema.field(field);
    let live = match original.get(field) {
        Some(Value::Array(items)) => Some(items.clone()),
        _ => None,
    };
    let merged = match (live.clone(), patch.remove(field)) {
        (Some(live), None | Some(Value::Null)) => live,
        (None, Some(Value::Array(p))) => merge_list(
            Vec::new(),
            p,
            FieldMeta {
                merge: true,
                ..meta
            },
            sub,
        )?,
        (Some(live), Some(Value::Array(p))) => merge_list(
            live,
            p,
            FieldMeta {
                merge: true,
                ..meta
            },
            sub,
        )?,
        (None, None | Some(Value::Null)) => return Ok(()),
        (_, Some(other)) => {
            return Err(PatchError::Invalid(format!(
                "invalid patch: {field} must be a list, not {other}"
            )));
        }
    };
    let ordered = apply_order(
        merged,
        order,
        live.as_deref().unwrap_or(&[]),
        meta.merge_key,
    );
    original.insert(field.to_owned(), Value::Array(ordered));
    Ok(())
}

/// Merges a patch list into a list with the `merge` strategy.
fn merge_list(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    meta: FieldMeta,
    schema: ObjectSchema,
) -> Result<Vec<Value>, PatchError> {
    let of_objects = patch.iter().chain(&original).any(Value::is_object);
    if !of_objects {
        for value in patch {
            if !original.contains(&value) {
                original.push(value);
            }
        }
        return Ok(original);
    }
    let Some(key) = meta.merge_key else {
        return Ok(patch);
    };
    let mut items = Vec::new();
    let mut replace = false;
    for element in patch {
        let Value::Object(element) = element else {
            return Err(PatchError::Invalid(format!(
                "invalid patch: list elements must all be objects, found {element}"
            )));
        };
        match element.get(DIRECTIVE).map(|d| d.as_str()) {
            None => items.push(element),
            Some(Some("delete")) => {
                let value = merge_key_value(&element, key)?;
                original.retain(|o| o.get(key) != Some(value));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                return Err(PatchError::Invalid(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            Some(_) => {
                return Err(PatchError::Invalid(format!(
                    "Unknown patch type: {} in list element",
                    element[DIRECTIVE]
                )));
            }
        }
    }
    if replace {
        original.clear();
    }
    for item in items {
        let value = merge_key_value(&item, key)?.clone();
        match original.iter().position(|o| o.get(key) == Some(&value)) {
            Some(pos) => {
                let Value::Object(live) = std::mem::take(&mut original[pos]) else {
                    return Err(PatchError::Unprocessable(format!(
                        "list item with {key} {value} is not an object"
                    )));
                };
                original[pos] = Value::Object(merge_map(live, item, schema)?);
            }
            None => original.push(Value::Object(merge_map(Object::new(), item, schema)?)),
        }
    }
    Ok(original)
}

fn merge_key_value<'a>(element: &'a Object, key: &str) -> Result<&'a Value, PatchError> {
    element.get(key).ok_or_else(|| {
        PatchError::Unprocessable(format!(
            "map: {} does not contain declared merge key: {key}",
            Value::Object(element.clone())
        ))
    })
}

/// Orders a merged list: the items named in `order` in that order, and
/// the others (which only the server had) kept where they were relative
/// to them in `live`.
pub(super) fn apply_order(
    merged: Vec<Value>,
    order: &[Value],
    live: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let identity = |v: &Value| -> Value {
        match merge_key {
            Some(key) => v.get(key).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let order_ids: Vec<Value> = order.iter().map(identity).collect();
    let live_ids: Vec<Value> = live.iter().map(identity).collect();
    let position = |ids: &[Value], v: &Value| ids.iter().position(|id| *id == identity(v));
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(&order_ids, v).is_some());
    named.sort_by_key(|v| position(&order_ids, v));
    server_only.sort_by_key(|v| position(&live_ids, v).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut named = named.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), named.peek()) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
            (Some(s), Some(n)) => {
                matches!((position(&live_ids, s), position(&live_ids, n)), (Some(si), Some(ni)) if si < ni)
            }
        };
        let next = if take_server {
            server_only.next()
        } else {
            named.next()
        };
        out.extend(next);
    }
    out
}
