//! Pod specifics: the QoS class, binding to a node, eviction and the grace
//! period of a delete.

use serde_json::{Value, json};

use super::delete::{DeleteOptions, Deleted};
use super::update::{Target, UpdateCheck};
use super::{Registry, WriteOptions, meta};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

/// `status.qosClass` as upstream computes it from the containers' cpu and
/// memory requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten();
    let mut requests = [0f64; 2];
    let mut limits = [0f64; 2];
    let mut any_request = false;
    let mut any_limit = false;
    let mut guaranteed = true;
    for container in containers {
        for (i, resource) in ["cpu", "memory"].iter().enumerate() {
            let amount = |kind: &str| {
                container
                    .pointer(&format!("/resources/{kind}/{resource}"))
                    .and_then(quantity)
                    .filter(|q| *q > 0.0)
            };
            if let Some(q) = amount("requests") {
                requests[i] += q;
                any_request = true;
            }
            match amount("limits") {
                Some(q) => {
                    limits[i] += q;
                    any_limit = true;
                }
                None => guaranteed = false,
            }
        }
    }
    if !any_request && !any_limit {
        "BestEffort"
    } else if guaranteed
        && requests
            .iter()
            .zip(&limits)
            .all(|(r, l)| (r - l).abs() < 1e-9 || *r == 0.0)
    {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A resource quantity (`500m`, `1Gi`, `2`, `1e3`) as a number.
fn quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// The grace period a delete of `pod` gets: none for pods no kubelet runs
/// (unscheduled or finished), else the request's or the pod's own.
pub fn grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = !meta::str_at(pod, "/spec/nodeName").is_empty();
    let finished = matches!(meta::str_at(pod, "/status/phase"), "Succeeded" | "Failed");
    if !scheduled || finished {
        return 0;
    }
    requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

impl Registry {
    /// `POST pods/<name>/binding`: assigns the pod to a node, once.
    pub async fn bind(
        &self,
        res: &'static Resource,
        namespace: &str,
        name: &str,
        binding: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<()> {
        let node = meta::str_at(binding, "/target/name").to_string();
        if node.is_empty() {
            return Err(ApiError::bad_request("a binding must name a target node"));
        }
        let binding_name = meta::name(binding);
        if !binding_name.is_empty() && binding_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({binding_name}) does not match the name on the URL ({name})"
            )));
        }
        let conflict = |why: String| ApiError::conflict(res, &format!("{name}/binding"), &why);
        let uid = meta::uid(binding).to_string();
        let check = UpdateCheck::default();
        self.guaranteed_update(
            res,
            Some(namespace),
            name,
            &check,
            opts,
            Target::Binding,
            |pod| {
                if !uid.is_empty() && uid != meta::uid(pod) {
                    return Err(conflict(format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(pod)
                    )));
                }
                if meta::is_deleting(pod) {
                    return Err(conflict(format!(
                        "pod {name} is being deleted, cannot be assigned to a host"
                    )));
                }
                let current = meta::str_at(pod, "/spec/nodeName");
                if !current.is_empty() {
                    return Err(conflict(format!(
                        "pod {name} is already assigned to node {current:?}"
                    )));
                }
                let mut pod = pod.clone();
                pod["spec"]["nodeName"] = json!(node);
                set_condition(&mut pod, "PodScheduled", "True");
                Ok(pod)
            },
        )
        .await?;
        Ok(())
    }

    /// `POST pods/<name>/eviction`: a delete with the eviction's options.
    pub async fn evict(
        &self,
        res: &'static Resource,
        namespace: &str,
        name: &str,
        options: DeleteOptions,
    ) -> ApiResult<Deleted> {
        self.delete(res, Some(namespace), name, options).await
    }
}

/// Sets (or adds) the pod condition `kind` to `status`.
fn set_condition(pod: &mut Value, kind: &str, status: &str) {
    let now = meta::timestamp(chrono::Utc::now());
    let condition =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conditions = &mut pod["status"]["conditions"];
    match conditions.as_array_mut() {
        Some(list) => match list.iter_mut().find(|c| c["type"] == kind) {
            Some(existing) => *existing = condition,
            None => list.push(condition),
        },
        None => *conditions = json!([condition]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "0.5", "memory": "1Gi"},
                                   "requests": {"cpu": "500m", "memory": "1024Mi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"},
                                   "requests": {"cpu": "500m", "memory": "1Gi"}}))),
            "Burstable"
        );
    }

    #[test]
    fn grace_periods() {
        let unscheduled = json!({"spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(grace_period(&unscheduled, Some(10)), 0);
        let bound = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 20}});
        assert_eq!(grace_period(&bound, None), 20);
        assert_eq!(grace_period(&bound, Some(5)), 5);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(grace_period(&done, None), 0);
    }
}
