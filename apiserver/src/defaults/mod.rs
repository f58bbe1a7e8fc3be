//! Upstream defaulting (`pkg/apis/*/v1/defaults.go`): fills the fields an
//! upstream apiserver fills, so `kubectl get -o yaml` looks the same.

use serde_json::Value;

use crate::resources::Resource;

/// Fills defaults into `obj` in place; called on create and update before
/// validation.
pub fn apply(res: &Resource, obj: &mut Value) {
    if res.kind == "Pod"
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.entry("restartPolicy").or_insert("Always".into());
    }
}
