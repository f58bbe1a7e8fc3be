//! Storage keys: `/<group>/<plural>/<namespace>/<name>` for namespaced
//! objects and `/<group>/<plural>/<name>` for cluster-scoped ones, with
//! `core` for the core group. Prefixes select a resource or a namespace.

use crate::resources::{RESOURCES, Resource};

fn group(res: &Resource) -> &'static str {
    if res.group.is_empty() {
        "core"
    } else {
        res.group
    }
}

pub fn key(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if res.namespaced => format!("/{}/{}/{ns}/{name}", group(res), res.plural),
        _ => format!("/{}/{}/{name}", group(res), res.plural),
    }
}

/// The prefix of every object of `res`, or of those in `namespace`.
pub fn prefix(res: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if res.namespaced => format!("/{}/{}/{ns}/", group(res), res.plural),
        _ => format!("/{}/{}/", group(res), res.plural),
    }
}

/// The resource whose objects live under `key`.
pub fn resource_of(key: &str) -> Option<&'static Resource> {
    let mut parts = key.trim_start_matches('/').splitn(3, '/');
    let (g, plural) = (parts.next()?, parts.next()?);
    let g = if g == "core" { "" } else { g };
    RESOURCES
        .iter()
        .find(|r| r.group == g && r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn keys_and_prefixes() {
        let pods = lookup("", "v1", "pods").unwrap();
        let nodes = lookup("", "v1", "nodes").unwrap();
        let deploys = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(key(pods, Some("default"), "a"), "/core/pods/default/a");
        assert_eq!(key(nodes, None, "n1"), "/core/nodes/n1");
        assert_eq!(prefix(deploys, Some("ns")), "/apps/deployments/ns/");
        assert_eq!(prefix(pods, None), "/core/pods/");
        assert_eq!(resource_of("/apps/deployments/ns/x"), Some(deploys));
        assert_eq!(resource_of("/core/nodes/n1"), Some(nodes));
    }
}
