//! The patch strategies of the served kinds: upstream's `patchStrategy` and
//! `patchMergeKey` struct tags, keyed by OpenAPI definition and property.
//! The OpenAPI documents publish them as `x-kubernetes-patch-strategy` /
//! `x-kubernetes-patch-merge-key`, and strategic merge patch reads them
//! back from there, so clients and server agree.

/// One list (or struct, for `retainKeys`) field with a non-default strategy.
pub struct FieldStrategy {
    /// OpenAPI definition name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub definition: &'static str,
    pub property: &'static str,
    /// `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    /// For lists of objects merged by key; `None` for lists of primitives
    /// (merged as sets) and for `retainKeys` structs.
    pub merge_key: Option<&'static str>,
}

const fn merge_by(
    definition: &'static str,
    property: &'static str,
    key: &'static str,
) -> FieldStrategy {
    FieldStrategy {
        definition,
        property,
        strategy: "merge",
        merge_key: Some(key),
    }
}

macro_rules! core {
    ($name:literal) => {
        concat!("io.k8s.api.core.v1.", $name)
    };
}

macro_rules! apps {
    ($name:literal) => {
        concat!("io.k8s.api.apps.v1.", $name)
    };
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Every field with a patch strategy in the served kinds.
pub static FIELD_STRATEGIES: &[FieldStrategy] = &[
    FieldStrategy {
        definition: OBJECT_META,
        property: "finalizers",
        strategy: "merge",
        merge_key: None,
    },
    merge_by(OBJECT_META, "ownerReferences", "uid"),
    merge_by(core!("PodSpec"), "containers", "name"),
    merge_by(core!("PodSpec"), "initContainers", "name"),
    merge_by(core!("PodSpec"), "ephemeralContainers", "name"),
    merge_by(core!("PodSpec"), "imagePullSecrets", "name"),
    merge_by(core!("PodSpec"), "hostAliases", "ip"),
    merge_by(core!("PodSpec"), "topologySpreadConstraints", "topologyKey"),
    merge_by(core!("PodSpec"), "schedulingGates", "name"),
    FieldStrategy {
        definition: core!("PodSpec"),
        property: "volumes",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    FieldStrategy {
        definition: core!("PodSpec"),
        property: "resourceClaims",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    merge_by(core!("Container"), "ports", "containerPort"),
    merge_by(core!("Container"), "env", "name"),
    merge_by(core!("Container"), "volumeMounts", "mountPath"),
    merge_by(core!("Container"), "volumeDevices", "devicePath"),
    merge_by(core!("EphemeralContainer"), "ports", "containerPort"),
    merge_by(core!("EphemeralContainer"), "env", "name"),
    merge_by(core!("EphemeralContainer"), "volumeMounts", "mountPath"),
    merge_by(core!("EphemeralContainer"), "volumeDevices", "devicePath"),
    merge_by(core!("PodStatus"), "conditions", "type"),
    merge_by(core!("PodStatus"), "podIPs", "ip"),
    merge_by(core!("PodStatus"), "hostIPs", "ip"),
    FieldStrategy {
        definition: core!("PodStatus"),
        property: "resourceClaimStatuses",
        strategy: "merge,retainKeys",
        merge_key: Some("name"),
    },
    merge_by(core!("ServiceSpec"), "ports", "port"),
    merge_by(core!("ServiceStatus"), "conditions", "type"),
    merge_by(core!("ServiceAccount"), "secrets", "name"),
    FieldStrategy {
        definition: core!("NodeSpec"),
        property: "podCIDRs",
        strategy: "merge",
        merge_key: None,
    },
    merge_by(core!("NodeStatus"), "conditions", "type"),
    merge_by(core!("NodeStatus"), "addresses", "type"),
    merge_by(core!("NamespaceStatus"), "conditions", "type"),
    FieldStrategy {
        definition: apps!("DeploymentSpec"),
        property: "strategy",
        strategy: "retainKeys",
        merge_key: None,
    },
    merge_by(apps!("DeploymentStatus"), "conditions", "type"),
    merge_by(apps!("ReplicaSetStatus"), "conditions", "type"),
];

/// The strategy of `definition.property`, if it has one.
pub fn lookup(definition: &str, property: &str) -> Option<&'static FieldStrategy> {
    FIELD_STRATEGIES
        .iter()
        .find(|f| f.definition == definition && f.property == property)
}
