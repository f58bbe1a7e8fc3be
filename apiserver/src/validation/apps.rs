//! Deployments and ReplicaSets: replicas, selector (which must match the
//! template's labels and may not change), strategy, template.

use serde_json::{Map, Value};

use super::field::{Errors, Path};
use super::{meta, names, pod};

fn int_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub fn deployment(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    workload_spec(spec, &path, "deployment", errs);
    for key in ["revisionHistoryLimit", "minReadySeconds"] {
        non_negative(spec, key, &path, errs);
    }
    if let Some(deadline) = int_at(spec, "progressDeadlineSeconds") {
        non_negative(spec, "progressDeadlineSeconds", &path, errs);
        if deadline <= int_at(spec, "minReadySeconds").unwrap_or(0) {
            errs.invalid(
                &path.child("progressDeadlineSeconds"),
                &Value::from(deadline),
                "must be greater than minReadySeconds",
            );
        }
    }
    strategy(
        spec.get("strategy").unwrap_or(&Value::Null),
        &path.child("strategy"),
        errs,
    );
    selector_update(obj, old, errs);
}

pub fn replica_set(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    workload_spec(spec, &path, "replicaset", errs);
    non_negative(spec, "minReadySeconds", &path, errs);
    selector_update(obj, old, errs);
}

fn non_negative(spec: &Value, key: &str, path: &Path, errs: &mut Errors) {
    if let Some(n) = int_at(spec, key)
        && n < 0
    {
        errs.invalid(
            &path.child(key),
            &Value::from(n),
            "must be greater than or equal to 0",
        );
    }
}

/// Replicas, selector, and a template whose labels the selector matches.
fn workload_spec(spec: &Value, path: &Path, what: &str, errs: &mut Errors) {
    non_negative(spec, "replicas", path, errs);
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None => errs.required(&path.child("selector"), ""),
        Some(selector) => {
            label_selector(selector, &path.child("selector"), errs);
            if selector_is_empty(selector) {
                errs.invalid(
                    &path.child("selector"),
                    selector,
                    &format!("empty selector is invalid for {what}"),
                );
            } else {
                let labels = spec.pointer("/template/metadata/labels");
                if !selector_matches(selector, labels.and_then(Value::as_object)) {
                    errs.invalid(
                        &path.child("template").child("metadata").child("labels"),
                        labels.unwrap_or(&Value::Object(Map::new())),
                        "`selector` does not match template `labels`",
                    );
                }
            }
        }
    }
    pod::template(spec.get("template"), &path.child("template"), errs);
}

fn selector_is_empty(selector: &Value) -> bool {
    let empty = |key: &str| match selector.get(key) {
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => true,
    };
    empty("matchLabels") && empty("matchExpressions")
}

/// `ValidateLabelSelector`: label syntax and operator rules.
pub fn label_selector(selector: &Value, path: &Path, errs: &mut Errors) {
    meta::labels(
        selector.get("matchLabels"),
        &path.child("matchLabels"),
        errs,
    );
    for (i, expr) in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = path.child("matchExpressions").index(i);
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        errs.invalid_each(&p.child("key"), key, names::qualified_name(key));
        let values = expr
            .get("values")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let operator = expr.get("operator").and_then(Value::as_str).unwrap_or("");
        match operator {
            "In" | "NotIn" if values == 0 => {
                errs.required(
                    &p.child("values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                );
            }
            "Exists" | "DoesNotExist" if values > 0 => {
                errs.forbidden(
                    &p.child("values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                );
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.invalid_str(&p.child("operator"), other, "not a valid selector operator"),
        }
    }
}

/// Whether the labels satisfy every requirement of the selector.
pub fn selector_matches(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let match_expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|expr| {
            let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = expr
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match expr.get("operator").and_then(Value::as_str) {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        });
    match_labels && match_expressions
}

fn strategy(strategy: &Value, path: &Path, errs: &mut Errors) {
    let type_ = strategy.get("type").and_then(Value::as_str).unwrap_or("");
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match type_ {
        "" => errs.required(&path.child("type"), ""),
        "Recreate" => {
            if rolling.is_some() {
                errs.forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => {
            if let Some(rolling) = rolling {
                rolling_update(rolling, &path.child("rollingUpdate"), errs);
            }
        }
        other => errs.not_supported(
            &path.child("type"),
            &Value::String(other.to_owned()),
            &["Recreate", "RollingUpdate"],
        ),
    }
}

/// An int-or-percent: `Some(n)` for a count, a percentage, or an error.
fn int_or_percent(value: &Value, path: &Path, errs: &mut Errors) -> Option<i64> {
    match value {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                errs.invalid(path, value, "must be greater than or equal to 0");
            }
            Some(n)
        }
        Value::String(s) => {
            let percent = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok());
            match percent {
                None => {
                    errs.invalid(path, value, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
                    None
                }
                Some(p) if p > 100 => {
                    errs.invalid(path, value, "must not be greater than 100%");
                    Some(p)
                }
                Some(p) => Some(p),
            }
        }
        _ => None,
    }
}

fn rolling_update(rolling: &Value, path: &Path, errs: &mut Errors) {
    let unavailable = rolling
        .get("maxUnavailable")
        .and_then(|v| int_or_percent(v, &path.child("maxUnavailable"), errs));
    let surge = rolling
        .get("maxSurge")
        .and_then(|v| int_or_percent(v, &path.child("maxSurge"), errs));
    if unavailable == Some(0) && surge == Some(0) {
        errs.invalid(
            &path.child("maxUnavailable"),
            rolling.get("maxUnavailable").unwrap_or(&Value::Null),
            "may not be 0 when `maxSurge` is 0",
        );
    }
}

fn selector_update(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    if let Some(old) = old {
        meta::immutable(
            obj.pointer("/spec/selector"),
            old.pointer("/spec/selector"),
            &Path::new("spec").child("selector"),
            errs,
        );
    }
}
