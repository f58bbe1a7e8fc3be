//! Per-kind strategies (upstream's `PrepareForCreate`/`PrepareForUpdate`):
//! what the server sets or keeps regardless of what the client sent.

use serde_json::{Value, json};

use super::update::Target;
use crate::resources::Resource;

/// Kinds whose `metadata.generation` counts spec changes.
fn tracks_generation(res: &Resource) -> bool {
    matches!((res.group, res.kind), ("apps", "Deployment" | "ReplicaSet"))
}

/// Resets what a client may not set on create (status, mostly); runs before
/// defaulting, which fills the reset status in.
pub fn prepare_create(res: &Resource, obj: &mut Value) {
    match (res.group, res.kind) {
        // Defaulting then sets the phase (Pending) and the QoS class.
        ("", "Pod") => obj["status"] = json!({}),
        ("", "Service") => obj["status"] = json!({"loadBalancer": {}}),
        ("apps", "Deployment" | "ReplicaSet") => obj["status"] = json!({}),
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        _ => {}
    }
    if tracks_generation(res) {
        super::meta::set(obj, "generation", json!(1));
    }
}

/// Makes `new` an allowed successor of `old` for a write through `target`:
/// the main resource keeps the old status, the status subresource keeps
/// everything but the status, `finalize` changes only the namespace's
/// finalizers.
pub fn prepare_update(res: &Resource, new: &mut Value, old: &Value, target: Target) {
    match target {
        Target::Main => {
            if res.has_subresource("status") {
                copy_field(new, old, "status");
            }
            if res.kind == "Namespace" {
                let finalizers = old.pointer("/spec/finalizers").cloned();
                match (
                    new.get_mut("spec").and_then(Value::as_object_mut),
                    finalizers,
                ) {
                    (Some(spec), Some(f)) => {
                        spec.insert("finalizers".into(), f);
                    }
                    (None, Some(f)) => new["spec"] = json!({"finalizers": f}),
                    (Some(spec), None) => {
                        spec.remove("finalizers");
                    }
                    (None, None) => {}
                }
            }
        }
        Target::Status => {
            let status = new.get("status").cloned();
            let metadata = new.get("metadata").cloned();
            *new = old.clone();
            match status {
                Some(status) => new["status"] = status,
                None => {
                    if let Some(obj) = new.as_object_mut() {
                        obj.remove("status");
                    }
                }
            }
            // Labels and annotations may change through status updates.
            for field in ["labels", "annotations"] {
                if let Some(v) = metadata.as_ref().and_then(|m| m.get(field)) {
                    super::meta::set(new, field, v.clone());
                }
            }
        }
        Target::Binding => {}
        Target::Finalize => {
            let finalizers = new.pointer("/spec/finalizers").cloned();
            *new = old.clone();
            new["spec"]["finalizers"] = finalizers.unwrap_or_else(|| json!([]));
        }
    }
    if tracks_generation(res) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let changed = new.get("spec") != old.get("spec");
        super::meta::set(
            new,
            "generation",
            json!(if changed { generation + 1 } else { generation }),
        );
    }
}

fn copy_field(new: &mut Value, old: &Value, field: &str) {
    let Some(obj) = new.as_object_mut() else {
        return;
    };
    match old.get(field) {
        Some(v) => {
            obj.insert(field.to_string(), v.clone());
        }
        None => {
            obj.remove(field);
        }
    }
}

/// Whether PUT on a missing object creates it (upstream's
/// `AllowCreateOnUpdate`).
pub fn allow_create_on_update(res: &Resource) -> bool {
    matches!(
        (res.group, res.kind),
        ("", "Endpoints" | "Event" | "Service")
            | ("coordination.k8s.io", "Lease")
            | ("events.k8s.io", "Event")
    )
}
