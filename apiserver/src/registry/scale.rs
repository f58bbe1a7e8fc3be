//! The `scale` subresource of deployments and replicasets: an
//! `autoscaling/v1 Scale` view of `spec.replicas`.

use serde_json::{Value, json};

use super::update::{PatchKind, Target, UpdateCheck};
use super::{Registry, WriteOptions, meta};
use crate::patch;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::validation::{ErrorType, FieldError};

/// The Scale of a scalable object.
pub fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"],
            "namespace": m["namespace"],
            "uid": m["uid"],
            "resourceVersion": m["resourceVersion"],
            "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(obj.pointer("/spec/selector")),
        },
    })
}

/// A label selector as a string (`app=web,tier in (a,b)`), keys sorted.
fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut terms: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            terms.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = meta::str_at(e, "/key").to_string();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let term = match meta::str_at(e, "/operator") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.clone(),
                "DoesNotExist" => format!("!{key}"),
                _ => continue,
            };
            terms.push((key, term));
        }
    }
    terms.sort();
    terms
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// How the new Scale is made from the current one.
pub enum ScaleChange<'a> {
    Replace(&'a Value),
    Patch(PatchKind, &'a Value),
}

impl Registry {
    pub fn get_scale(
        &self,
        res: &'static Resource,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Value> {
        Ok(scale_of(&self.get(res, Some(namespace), name)?.parse()))
    }

    /// PUT or PATCH of `<name>/scale`: sets `spec.replicas`.
    pub async fn update_scale(
        &self,
        res: &'static Resource,
        namespace: &str,
        name: &str,
        change: ScaleChange<'_>,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let pinned = match &change {
            ScaleChange::Replace(scale) => meta::resource_version(scale).to_string(),
            ScaleChange::Patch(PatchKind::Json, _) => String::new(),
            ScaleChange::Patch(_, patch) => meta::resource_version(patch).to_string(),
        };
        let check = UpdateCheck {
            resource_version: (!pinned.is_empty()).then_some(pinned),
        };
        let updated = self
            .guaranteed_update(
                res,
                Some(namespace),
                name,
                &check,
                opts,
                Target::Main,
                |obj| {
                    let current = scale_of(obj);
                    let wanted = match &change {
                        ScaleChange::Replace(scale) => (*scale).clone(),
                        ScaleChange::Patch(PatchKind::Json, ops) => {
                            let ops: json_patch::Patch = serde_json::from_value((*ops).clone())
                                .map_err(|e| {
                                    ApiError::bad_request(format!("invalid JSON patch: {e}"))
                                })?;
                            let mut scale = current.clone();
                            json_patch::patch(&mut scale, &ops).map_err(|e| {
                                ApiError::unprocessable(format!(
                                    "the JSON patch could not be applied: {e}"
                                ))
                            })?;
                            scale
                        }
                        ScaleChange::Patch(_, merge) => patch::json_merge(&current, merge),
                    };
                    let replicas = wanted
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if replicas < 0 {
                        return Err(ApiError::invalid(
                            res,
                            name,
                            &[FieldError {
                                kind: ErrorType::Invalid,
                                field: "spec.replicas".into(),
                                message: format!(
                                    "Invalid value: {replicas}: must be greater than or equal to 0"
                                ),
                            }],
                        ));
                    }
                    let mut obj = obj.clone();
                    obj["spec"]["replicas"] = json!(replicas);
                    Ok(obj)
                },
            )
            .await?;
        Ok(scale_of(&updated.object.parse()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view_of_a_deployment() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "a", "app": "web"},
                                "matchExpressions": [{"key": "env", "operator": "In", "values": ["x", "y"]}]}},
                       "status": {"replicas": 2}});
        let scale = scale_of(&d);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web,env in (x,y),tier=a");
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }
}
