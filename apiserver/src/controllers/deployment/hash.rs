//! The `pod-template-hash`: names a Deployment's ReplicaSet after its pod
//! template (`<deployment>-<hash>`) and labels the ReplicaSet's selector and
//! pods, so the ReplicaSets of one Deployment never select each other's pods.
//! FNV-1a over the template (and the collision count, when a name was already
//! taken), encoded with upstream's vowel-free alphabet.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

pub const LABEL: &str = "pod-template-hash";
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of `template` (ignoring its own hash label).
pub fn compute(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(&without_hash(template)).unwrap_or_default();
    if let Some(n) = collision_count {
        bytes.extend_from_slice(&(n as u32).to_le_bytes());
    }
    safe_encode(&fnv1a32(&bytes).to_string())
}

/// Whether two templates are the same apart from the hash label (how a
/// Deployment finds its current ReplicaSet).
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

fn without_hash(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(LABEL);
        if labels.is_empty()
            && let Some(meta) = value
                .pointer_mut("/metadata")
                .and_then(Value::as_object_mut)
        {
            meta.remove("labels");
        }
    }
    value
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn stable_short_and_label_safe() {
        let h = compute(&template("nginx:1"), None);
        assert_eq!(h, compute(&template("nginx:1"), None));
        assert!(h.len() <= 10 && !h.is_empty(), "{h}");
        assert!(h.bytes().all(|b| ALPHABET.contains(&b)), "{h}");
    }

    #[test]
    fn changes_with_template_and_collisions() {
        let a = compute(&template("nginx:1"), None);
        assert_ne!(a, compute(&template("nginx:2"), None));
        assert_ne!(a, compute(&template("nginx:1"), Some(1)));
    }

    #[test]
    fn the_hash_label_does_not_count() {
        let mut labelled = template("nginx:1");
        let hash = compute(&labelled, None);
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL.into(), hash.clone());
        assert!(same_template(&labelled, &template("nginx:1")));
        assert_eq!(compute(&labelled, None), hash);
        assert!(!same_template(&labelled, &template("nginx:2")));
    }
}
