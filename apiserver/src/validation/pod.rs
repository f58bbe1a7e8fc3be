//! Pods and pod templates: `ValidatePodSpec` and what a pod update may
//! change.

use std::collections::HashSet;

use serde_json::Value;

use super::container::{self, ContainerKind, PodContext};
use super::field::{Errors, Path, str_at};
use super::{meta, names, volume};

/// Where a pod spec sits, which changes what it may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SpecOf {
    Pod,
    /// The template of a workload controller, whose pods must restart.
    ControllerTemplate,
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn pod(obj: &Value, old: Option<&Value>, errs: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    pod_spec(spec, &Path::new("spec"), SpecOf::Pod, errs);
    if let Some(old) = old {
        pod_update(spec, old.get("spec").unwrap_or(&Value::Null), errs);
    }
}

/// A pod template (`spec.template` of deployments and replica sets).
pub fn template(template: Option<&Value>, path: &Path, errs: &mut Errors) {
    let Some(template) = template.filter(|t| t.is_object()) else {
        errs.required(path, "");
        return;
    };
    let meta_path = path.child("metadata");
    meta::labels(
        template.pointer("/metadata/labels"),
        &meta_path.child("labels"),
        errs,
    );
    meta::annotations(
        template.pointer("/metadata/annotations"),
        &meta_path.child("annotations"),
        errs,
    );
    let spec = template.get("spec").unwrap_or(&Value::Null);
    pod_spec(spec, &path.child("spec"), SpecOf::ControllerTemplate, errs);
}

pub fn pod_spec(spec: &Value, path: &Path, of: SpecOf, errs: &mut Errors) {
    let volumes = volume::volumes(list(spec, "volumes"), &path.child("volumes"), errs);
    let mut ctx = PodContext {
        volumes,
        names: HashSet::new(),
    };
    let containers = list(spec, "containers");
    if containers.is_empty() {
        errs.required(&path.child("containers"), "");
    }
    container::containers(
        list(spec, "initContainers"),
        &path.child("initContainers"),
        ContainerKind::Init,
        &mut ctx,
        errs,
    );
    container::containers(
        containers,
        &path.child("containers"),
        ContainerKind::Regular,
        &mut ctx,
        errs,
    );
    container::containers(
        list(spec, "ephemeralContainers"),
        &path.child("ephemeralContainers"),
        ContainerKind::Ephemeral,
        &mut ctx,
        errs,
    );

    let restart_policy = Value::String(str_at(spec, "restartPolicy").to_owned());
    match (of, str_at(spec, "restartPolicy")) {
        (_, "") => errs.required(&path.child("restartPolicy"), ""),
        (SpecOf::ControllerTemplate, "Always") => {}
        (SpecOf::ControllerTemplate, _) => {
            errs.not_supported(&path.child("restartPolicy"), &restart_policy, &["Always"]);
        }
        (SpecOf::Pod, "Always" | "OnFailure" | "Never") => {}
        (SpecOf::Pod, _) => {
            errs.not_supported(
                &path.child("restartPolicy"),
                &restart_policy,
                &["Always", "OnFailure", "Never"],
            );
        }
    }
    match str_at(spec, "dnsPolicy") {
        "" => errs.required(&path.child("dnsPolicy"), ""),
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" => {}
        "None" => {
            if spec.get("dnsConfig").is_none_or(Value::is_null) {
                errs.required(
                    &path.child("dnsConfig"),
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                );
            }
        }
        other => errs.not_supported(
            &path.child("dnsPolicy"),
            &Value::String(other.to_owned()),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ),
    }
    if let Some(seconds) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if of == SpecOf::ControllerTemplate {
            errs.forbidden(
                &path.child("activeDeadlineSeconds"),
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            );
        } else if !(1..=i64::from(i32::MAX)).contains(&seconds) {
            errs.invalid(
                &path.child("activeDeadlineSeconds"),
                &Value::from(seconds),
                "must be between 1 and 2147483647, inclusive",
            );
        }
    }
    meta::labels(spec.get("nodeSelector"), &path.child("nodeSelector"), errs);
    for (key, rule) in [
        (
            "serviceAccountName",
            names::dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", names::dns1123_subdomain),
        ("hostname", names::dns1123_label),
        ("subdomain", names::dns1123_label),
    ] {
        let value = str_at(spec, key);
        if !value.is_empty() {
            errs.invalid_each(&path.child(key), value, rule(value));
        }
    }
    tolerations(list(spec, "tolerations"), &path.child("tolerations"), errs);
    for (i, alias) in list(spec, "hostAliases").iter().enumerate() {
        let ip = str_at(alias, "ip");
        errs.invalid_each(
            &path.child("hostAliases").index(i).child("ip"),
            ip,
            names::ip(ip),
        );
    }
}

fn tolerations(list: &[Value], path: &Path, errs: &mut Errors) {
    for (i, toleration) in list.iter().enumerate() {
        let p = path.index(i);
        let key = str_at(toleration, "key");
        if !key.is_empty() {
            errs.invalid_each(&p.child("key"), key, names::qualified_name(key));
        }
        let operator = str_at(toleration, "operator");
        let value = str_at(toleration, "value");
        match operator {
            "" | "Equal" => {
                if key.is_empty() {
                    errs.invalid_str(&p.child("operator"), operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\"");
                }
                errs.invalid_each(&p.child("value"), value, names::label_value(value));
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.invalid_str(
                        &p.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => errs.not_supported(
                &p.child("operator"),
                &Value::String(other.to_owned()),
                &["Equal", "Exists"],
            ),
        }
        let effect = str_at(toleration, "effect");
        if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            errs.not_supported(
                &p.child("effect"),
                &Value::String(effect.to_owned()),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            );
        }
        if toleration
            .get("tolerationSeconds")
            .is_some_and(|s| !s.is_null())
            && effect != "NoExecute"
        {
            errs.invalid_str(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
    }
}

const POD_UPDATE_MESSAGE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`: of a pod's spec only container images, the active
/// deadline, added tolerations and a negative grace period may change.
fn pod_update(spec: &Value, old: &Value, errs: &mut Errors) {
    let mut masked = spec.clone();
    for key in ["containers", "initContainers"] {
        let old_images: Vec<Value> = list(old, key)
            .iter()
            .map(|c| c.get("image").cloned().unwrap_or(Value::Null))
            .collect();
        if let Some(new) = masked.get_mut(key).and_then(Value::as_array_mut)
            && new.len() == old_images.len()
        {
            for (container, image) in new.iter_mut().zip(old_images) {
                if let Some(container) = container.as_object_mut() {
                    container.insert("image".into(), image);
                }
            }
        }
    }
    let Some(masked_map) = masked.as_object_mut() else {
        return;
    };
    match old.get("activeDeadlineSeconds") {
        Some(v) => masked_map.insert("activeDeadlineSeconds".into(), v.clone()),
        None => masked_map.remove("activeDeadlineSeconds"),
    };
    let old_tolerations = list(old, "tolerations");
    let new_tolerations = list(spec, "tolerations");
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        match old.get("tolerations") {
            Some(v) => masked_map.insert("tolerations".into(), v.clone()),
            None => masked_map.remove("tolerations"),
        };
    }
    let old_grace = old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let new_grace = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        masked_map.insert(
            "terminationGracePeriodSeconds".into(),
            Value::from(old_grace),
        );
    }
    if masked != *old {
        errs.forbidden(&Path::new("spec"), POD_UPDATE_MESSAGE);
    }
}
