//! Label selectors: `matchLabels`/`matchExpressions` of ReplicaSets and
//! Deployments, and the plain map of a Service.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

/// A parsed label selector. Upstream semantics: an empty selector selects
/// everything, a missing or malformed one nothing.
#[derive(Debug, Clone)]
pub struct Labels(Option<Selector>);

impl Labels {
    pub fn from_selector(selector: Option<&LabelSelector>) -> Labels {
        Labels(selector.and_then(|s| Selector::try_from(s.clone()).ok()))
    }

    /// A Service's selector: a missing or empty map selects nothing (the
    /// service's endpoints are managed by hand).
    pub fn from_map(map: Option<&BTreeMap<String, String>>) -> Labels {
        Labels(
            map.filter(|m| !m.is_empty())
                .map(|m| m.clone().into_iter().collect()),
        )
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        match &self.0 {
            Some(selector) => selector.matches(labels.unwrap_or(&EMPTY)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["front".into(), "edge".into()]),
            }]),
        };
        let s = Labels::from_selector(Some(&selector));
        assert!(s.matches(Some(&labels(&[("app", "web"), ("tier", "edge")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web")]))));
        assert!(!s.matches(None));
    }

    #[test]
    fn empty_selects_all_and_missing_selects_none() {
        let all = Labels::from_selector(Some(&LabelSelector::default()));
        assert!(all.matches(None));
        assert!(!Labels::from_selector(None).matches(Some(&labels(&[("a", "b")]))));
        assert!(!Labels::from_map(Some(&BTreeMap::new())).matches(None));
        let svc = Labels::from_map(Some(&labels(&[("app", "web")])));
        assert!(svc.matches(Some(&labels(&[("app", "web"), ("x", "y")]))));
    }
}
