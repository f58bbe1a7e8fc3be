//! Filters: can this pod run on this node at all? Each failure names the
//! reason the way upstream's plugins do, so the FailedScheduling message
//! reads like upstream's.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::resources::PodDemand;
use super::snapshot::NodeInfo;

pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Why a node does not fit a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unfit {
    Unschedulable,
    Taint { key: String, value: String },
    NotReady,
    Affinity,
    Ports,
    Insufficient(&'static str),
    TooManyPods,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Unschedulable => f.write_str("node(s) were unschedulable"),
            Unfit::Taint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Unfit::NotReady => write!(f, "node(s) had untolerated taint {{{TAINT_NOT_READY}: }}"),
            Unfit::Affinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Unfit::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Unfit::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Unfit::TooManyPods => f.write_str("Too many pods"),
        }
    }
}

/// Whether `pod` fits `node`; the reasons it does not otherwise (one filter's
/// worth, several only for insufficient resources).
pub fn fits(pod: &Pod, demand: &PodDemand, node: &NodeInfo) -> Result<(), Vec<Unfit>> {
    let one = |u: Unfit| Err(vec![u]);
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let spec = node.node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable) == Some(true)
        && !tolerated(tolerations, TAINT_UNSCHEDULABLE, "", "NoSchedule")
    {
        return one(Unfit::Unschedulable);
    }
    for taint in spec.and_then(|s| s.taints.as_deref()).unwrap_or(&[]) {
        if matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerates(tolerations, taint)
        {
            return one(Unfit::Taint {
                key: taint.key.clone(),
                value: taint.value.clone().unwrap_or_default(),
            });
        }
    }
    if !is_node_ready(node) && !tolerated(tolerations, TAINT_NOT_READY, "", "NoSchedule") {
        return one(Unfit::NotReady);
    }
    if !matches_node_selector(pod, node) {
        return one(Unfit::Affinity);
    }
    if demand
        .host_ports
        .iter()
        .any(|p| port_conflicts(p, &node.host_ports))
    {
        return one(Unfit::Ports);
    }
    let mut unfit = Vec::new();
    let free = node.allocatable;
    if node.pods + 1 > free.pods {
        unfit.push(Unfit::TooManyPods);
    }
    if demand.requests.cpu > 0 && node.requested.cpu + demand.requests.cpu > free.amount.cpu {
        unfit.push(Unfit::Insufficient("cpu"));
    }
    if demand.requests.memory > 0
        && node.requested.memory + demand.requests.memory > free.amount.memory
    {
        unfit.push(Unfit::Insufficient("memory"));
    }
    if unfit.is_empty() { Ok(()) } else { Err(unfit) }
}

pub fn is_node_ready(node: &NodeInfo) -> bool {
    node.node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Whether some toleration tolerates `taint`.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerated(
        tolerations,
        &taint.key,
        taint.value.as_deref().unwrap_or(""),
        &taint.effect,
    )
}

fn tolerated(tolerations: &[Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations
        .iter()
        .any(|t| toleration_matches(t, key, value, effect))
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn toleration_matches(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    let t_effect = t.effect.as_deref().unwrap_or("");
    if !t_effect.is_empty() && t_effect != effect {
        return false;
    }
    let t_key = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => t_key.is_empty() || t_key == key,
        "Equal" => t_key == key && t.value.as_deref().unwrap_or("") == value,
        _ => false,
    }
}

fn port_conflicts(wanted: &(String, String, i32), used: &[(String, String, i32)]) -> bool {
    let (protocol, ip, port) = wanted;
    used.iter().any(|(p, i, n)| {
        p == protocol && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0")
    })
}

fn matches_node_selector(pod: &Pod, node: &NodeInfo) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&EMPTY);
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(selector) = &spec.node_selector
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        // The terms are ORed.
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, labels, &node.name)),
        None => true,
    }
}

/// A term's requirements are ANDed; a term without any matches no node.
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let as_int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(as_int),
                values.first().and_then(|b| as_int(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}
