//! How proto fields appear in JSON: under their OpenAPI names (prost's
//! `pod_ip` is upstream's `podIP`), or inlined into their parent (Go's
//! embedded structs, `Volume.VolumeSource`), and which zero values survive.
//!
//! Upstream's Go types marshal every non-pointer field, zero or not, so a
//! body carries `""`, `0` and `false` for everything its sender left
//! unset; decoding into Go and encoding JSON drops them again (`omitempty`).
//! Pointer fields are only sent when set, and then their zero value means
//! something (`replicas: 0`, `enableServiceLinks: false`): those are listed
//! here, by OpenAPI definition and JSON name. Neither the .proto files nor
//! the OpenAPI schemas say which fields are pointers, so this list is
//! upstream's Go types (`k8s.io/api`) written down; a test checks that every
//! entry names a real field.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::messages::MESSAGES;
use super::table::{Kind, Message};
use crate::openapi;

/// Pointer fields (in upstream's Go types) of the served kinds whose zero
/// value differs from leaving them unset.
const KEEPS_ZERO: &[(&str, &[&str])] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        &["deletionGracePeriodSeconds"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        &[
            "gracePeriodSeconds",
            "orphanDependents",
            "ignoreStoreReadErrorWithClusterBreakingPotential",
        ],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        &[
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "automountServiceAccountToken",
            "shareProcessNamespace",
            "priority",
            "enableServiceLinks",
            "setHostnameAsFQDN",
            "hostUsers",
        ],
    ),
    (
        "io.k8s.api.core.v1.SecurityContext",
        &[
            "privileged",
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
        ],
    ),
    (
        "io.k8s.api.core.v1.PodSecurityContext",
        &["runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"],
    ),
    (
        "io.k8s.api.core.v1.Probe",
        &["terminationGracePeriodSeconds"],
    ),
    ("io.k8s.api.core.v1.Toleration", &["tolerationSeconds"]),
    (
        "io.k8s.api.core.v1.SecretVolumeSource",
        &["defaultMode", "optional"],
    ),
    (
        "io.k8s.api.core.v1.ConfigMapVolumeSource",
        &["defaultMode", "optional"],
    ),
    ("io.k8s.api.core.v1.ProjectedVolumeSource", &["defaultMode"]),
    (
        "io.k8s.api.core.v1.DownwardAPIVolumeSource",
        &["defaultMode"],
    ),
    ("io.k8s.api.core.v1.KeyToPath", &["mode"]),
    ("io.k8s.api.core.v1.DownwardAPIVolumeFile", &["mode"]),
    (
        "io.k8s.api.core.v1.ServiceAccountTokenProjection",
        &["expirationSeconds"],
    ),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", &["optional"]),
    ("io.k8s.api.core.v1.SecretKeySelector", &["optional"]),
    ("io.k8s.api.core.v1.ConfigMapEnvSource", &["optional"]),
    ("io.k8s.api.core.v1.SecretEnvSource", &["optional"]),
    ("io.k8s.api.core.v1.ConfigMapProjection", &["optional"]),
    ("io.k8s.api.core.v1.SecretProjection", &["optional"]),
    ("io.k8s.api.core.v1.CSIVolumeSource", &["readOnly"]),
    (
        "io.k8s.api.core.v1.ClusterTrustBundleProjection",
        &["optional"],
    ),
    (
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        &["minDomains"],
    ),
    (
        "io.k8s.api.core.v1.WindowsSecurityContextOptions",
        &["hostProcess"],
    ),
    ("io.k8s.api.core.v1.ContainerStatus", &["started"]),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        &["allocateLoadBalancerNodePorts"],
    ),
    ("io.k8s.api.core.v1.ClientIPConfig", &["timeoutSeconds"]),
    ("io.k8s.api.core.v1.ConfigMap", &["immutable"]),
    ("io.k8s.api.core.v1.Secret", &["immutable"]),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        &["automountServiceAccountToken"],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        &[
            "replicas",
            "revisionHistoryLimit",
            "progressDeadlineSeconds",
        ],
    ),
    (
        "io.k8s.api.apps.v1.RollingUpdateDeployment",
        &["maxUnavailable", "maxSurge"],
    ),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", &["replicas"]),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        &["collisionCount", "terminatingReplicas"],
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        &["terminatingReplicas"],
    ),
    // Not a pointer upstream (zero means zero there too, by omission), but
    // a scale to 0 reads more plainly with the 0 kept.
    ("io.k8s.api.autoscaling.v1.ScaleSpec", &["replicas"]),
    (
        "io.k8s.api.discovery.v1.EndpointConditions",
        &["ready", "serving", "terminating"],
    ),
    ("io.k8s.api.discovery.v1.EndpointPort", &["port"]),
    (
        "io.k8s.api.coordination.v1.LeaseSpec",
        &["leaseDurationSeconds", "leaseTransitions"],
    ),
];

/// Whether `message.field` keeps a zero value.
pub fn keeps_zero(message: &str, json_name: &str) -> bool {
    KEEPS_ZERO
        .iter()
        .any(|(m, fields)| *m == message && fields.contains(&json_name))
}

/// Where a proto field goes in the JSON object of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonField {
    /// Under this name.
    Named(String),
    /// The fields of this message are the parent's (a Go embedded struct).
    Inline(&'static str),
}

/// The JSON placement of every message's fields, in the order of
/// `Message::fields`.
static FIELDS: LazyLock<HashMap<&'static str, Vec<JsonField>>> = LazyLock::new(|| {
    let model = openapi::model();
    MESSAGES
        .iter()
        .map(|message| {
            let known = model.definition(message.name).map(|id| model.fields(id));
            let fields = message
                .fields
                .iter()
                .map(|field| {
                    let squashed: String = field.name.chars().filter(|c| *c != '_').collect();
                    let Some(known) = known else {
                        return JsonField::Named(lower_camel(field.name));
                    };
                    match (
                        known
                            .iter()
                            .find(|f| f.name.eq_ignore_ascii_case(&squashed)),
                        field.kind,
                    ) {
                        (Some(f), _) => JsonField::Named(f.name.to_string()),
                        (None, Kind::Message(target)) => JsonField::Inline(target),
                        (None, _) => JsonField::Named(lower_camel(field.name)),
                    }
                })
                .collect();
            (message.name, fields)
        })
        .collect()
});

/// Where the `index`th field of `message` goes.
pub fn json_field(message: &Message, index: usize) -> &'static JsonField {
    &FIELDS[message.name][index]
}

/// `pod_ip` → `podIp`, for messages the model does not know.
fn lower_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::table::message;

    fn field_of(definition: &str, proto: &str) -> &'static JsonField {
        let message = message(definition).unwrap();
        let index = message.fields.iter().position(|f| f.name == proto).unwrap();
        json_field(message, index)
    }

    fn named(name: &str) -> JsonField {
        JsonField::Named(name.into())
    }

    #[test]
    fn json_names_come_from_the_model() {
        assert_eq!(
            *field_of("io.k8s.api.core.v1.PodStatus", "pod_ip"),
            named("podIP")
        );
        assert_eq!(
            *field_of("io.k8s.api.core.v1.ServiceSpec", "external_ips"),
            named("externalIPs")
        );
        assert_eq!(
            *field_of("io.k8s.api.core.v1.NodeSpec", "pod_cid_rs"),
            named("podCIDRs")
        );
        assert_eq!(
            *field_of("io.k8s.api.core.v1.ServicePort", "node_port"),
            named("nodePort")
        );
        assert_eq!(
            *field_of("io.k8s.api.core.v1.Secret", "type"),
            named("type")
        );
        assert_eq!(
            *field_of("io.k8s.api.core.v1.Volume", "volume_source"),
            JsonField::Inline("io.k8s.api.core.v1.VolumeSource")
        );
        assert_eq!(lower_camel("last_transition_time"), "lastTransitionTime");
    }

    /// Every field of a message the model knows has its JSON name there,
    /// or is an embedded struct: no name is guessed.
    #[test]
    fn every_field_of_a_known_message_is_in_the_model() {
        let model = openapi::model();
        let mut guessed = Vec::new();
        for message in MESSAGES {
            let Some(id) = model.definition(message.name) else {
                continue;
            };
            for (index, field) in message.fields.iter().enumerate() {
                if let JsonField::Named(name) = json_field(message, index)
                    && model.field(id, name).is_none()
                {
                    guessed.push(format!("{}.{} ({name})", message.name, field.name));
                }
            }
        }
        assert!(guessed.is_empty(), "{guessed:#?}");
    }

    #[test]
    fn every_kept_zero_names_a_real_field() {
        let model = openapi::model();
        for (definition, fields) in KEEPS_ZERO {
            let id = model
                .definition(definition)
                .unwrap_or_else(|| panic!("{definition}"));
            for field in *fields {
                assert!(model.field(id, field).is_some(), "{definition}.{field}");
            }
        }
    }
}
