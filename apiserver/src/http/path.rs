//! Resource URLs: `/api/v1/...` and `/apis/<group>/<version>/...` followed by
//! `[watch/][namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`.

use crate::resources::{Resource, lookup};
use crate::status::{ApiError, ApiResult};

#[derive(Debug)]
pub struct ResourcePath {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` prefix.
    pub watch: bool,
}

pub fn not_found() -> ApiError {
    ApiError::not_found_path()
}

/// Parses what follows `/api/v1/` or `/apis/<group>/<version>/`.
pub fn parse(group: &str, version: &str, rest: &str) -> ApiResult<ResourcePath> {
    let mut segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let watch = segments.first() == Some(&"watch");
    if watch {
        segments.remove(0);
    }
    let namespaced_plural = |s: &str| lookup(group, version, s).is_some_and(|r| r.namespaced);
    let namespace = match segments.as_slice() {
        ["namespaces", ns, plural, ..] if namespaced_plural(plural) => {
            let ns = ns.to_string();
            segments.drain(..2);
            Some(ns)
        }
        _ => None,
    };
    let (plural, name, subresource) = match segments.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(not_found()),
    };
    let res = lookup(group, version, plural).ok_or_else(not_found)?;
    if let Some(sub) = &subresource
        && !res.has_subresource(sub)
    {
        return Err(not_found());
    }
    if res.namespaced && name.is_some() && namespace.is_none() {
        return Err(not_found());
    }
    Ok(ResourcePath {
        res,
        namespace,
        name,
        subresource,
        watch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_cluster_and_subresource_paths() {
        let p = parse("", "v1", "namespaces/default/pods/web/status").unwrap();
        assert_eq!(p.res.plural, "pods");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("status"));

        let p = parse("", "v1", "namespaces/kube-system").unwrap();
        assert_eq!(
            (p.res.plural, p.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let p = parse("", "v1", "namespaces/x/finalize").unwrap();
        assert_eq!(p.subresource.as_deref(), Some("finalize"));

        let p = parse("apps", "v1", "watch/namespaces/d/deployments").unwrap();
        assert!(p.watch);
        assert_eq!(p.namespace.as_deref(), Some("d"));

        let all = parse("", "v1", "pods").unwrap();
        assert!(all.namespace.is_none() && all.name.is_none());
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for rest in [
            "widgets",
            "pods/x",
            "namespaces/d/pods/x/logs",
            "namespaces/d/pods/x/status/y",
        ] {
            assert_eq!(parse("", "v1", rest).unwrap_err().code, 404, "{rest}");
        }
    }
}
