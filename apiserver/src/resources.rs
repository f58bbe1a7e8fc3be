//! The catalogue of served resources: one row per REST resource, shared by
//! discovery, routing, OpenAPI, Table printing, validation and defaulting.

/// A REST resource the apiserver serves, e.g. `apps/v1 deployments`.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; `""` is the core group (served under `/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in URLs (`deployments`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served under `<plural>/<name>/<sub>` (`status`, `scale`, …).
    pub subresources: &'static [&'static str],
}

impl Resource {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of this resource (`DeploymentList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

const ALL: &[&str] = &["all"];

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, namespaced: $ns:expr,
     short: [$($short:expr),*], categories: $cat:expr, sub: [$($sub:expr),*]) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: $cat,
            subresources: &[$($sub),*],
        }
    };
}

/// Every resource the apiserver serves, in discovery order.
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", namespaced: false, short: ["ns"], categories: &[], sub: ["status", "finalize"]),
    resource!("", "v1", "Node", "nodes", "node", namespaced: false, short: ["no"], categories: &[], sub: ["status"]),
    resource!("", "v1", "Pod", "pods", "pod", namespaced: true, short: ["po"], categories: ALL, sub: ["status", "binding", "eviction", "log", "exec"]),
    resource!("", "v1", "Service", "services", "service", namespaced: true, short: ["svc"], categories: ALL, sub: ["status"]),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", namespaced: true, short: ["ep"], categories: &[], sub: []),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", namespaced: true, short: ["cm"], categories: &[], sub: []),
    resource!("", "v1", "Secret", "secrets", "secret", namespaced: true, short: [], categories: &[], sub: []),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", namespaced: true, short: ["sa"], categories: &[], sub: []),
    resource!("", "v1", "Event", "events", "event", namespaced: true, short: ["ev"], categories: &[], sub: []),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", namespaced: true, short: ["deploy"], categories: ALL, sub: ["status", "scale"]),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", namespaced: true, short: ["rs"], categories: ALL, sub: ["status", "scale"]),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", namespaced: true, short: [], categories: &[], sub: []),
    resource!("events.k8s.io", "v1", "Event", "events", "event", namespaced: true, short: ["ev"], categories: &[], sub: []),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", namespaced: true, short: [], categories: &[], sub: []),
];

/// The resource served at `group/version/plural`, if any.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_grouped_api_versions() {
        assert_eq!(lookup("", "v1", "pods").unwrap().api_version(), "v1");
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.list_kind(), "DeploymentList");
        assert!(deploy.has_subresource("scale"));
    }

    #[test]
    fn events_are_served_in_two_groups() {
        let core = by_kind("v1", "Event").unwrap();
        let new = by_kind("events.k8s.io/v1", "Event").unwrap();
        assert_ne!(core, new);
        assert!(lookup("", "v1", "widgets").is_none());
    }

    #[test]
    fn plurals_are_unique_within_a_group() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.plural == b.plural),
                    "{}",
                    a.plural
                );
            }
        }
    }
}
