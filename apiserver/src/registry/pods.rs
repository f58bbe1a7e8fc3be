//! Pod specifics: binding to a node, eviction and the grace period of a
//! delete.

use serde_json::{Value, json};

use super::delete::{DeleteOptions, Deleted};
use super::update::{Target, UpdateCheck};
use super::{Registry, WriteOptions, meta};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};

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
