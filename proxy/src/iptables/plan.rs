//! Planning a sync: what the kernel holds (as far as the proxy knows) and
//! the model → one transaction. A full sync rewrites every chain the proxy
//! owns; a partial sync (KEP-3453) rewrites only the chains of services that
//! changed and edits the shared chains rule by rule, so its cost follows
//! the change, not the number of services.
//!
//! Pure: the caller runs the transaction and, if it succeeds, commits the
//! plan into its [`Applied`] state.

use std::collections::{HashMap, HashSet};

use super::jumps::JumpRule;
use super::names;
use super::render::{
    BaseRules, EndpointComments, RenderConfig, ServiceRules, SharedChain, Table, service_rules,
};
use super::restore::Transaction;
use crate::model::{Model, Service, ServicePortName};

/// Clusters with more endpoints than this get no per-endpoint comments.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// What the proxy last wrote for each service port.
#[derive(Debug)]
pub struct Applied {
    services: HashMap<ServicePortName, AppliedService>,
    comments: EndpointComments,
}

#[derive(Debug)]
struct AppliedService {
    service: Service,
    rules: ServiceRules,
}

impl Default for Applied {
    fn default() -> Self {
        Applied {
            services: HashMap::new(),
            comments: EndpointComments::On,
        }
    }
}

impl Applied {
    /// Rules written for all services, plus the base rules.
    pub fn rule_count(&self) -> usize {
        self.services.values().map(|s| s.rules.rule_count()).sum()
    }

    /// Whether the model's comment mode differs from what was written, which
    /// changes every endpoint rule and so needs a full sync.
    pub fn comments_change(&self, model: &Model) -> bool {
        comments_for(model) != self.comments
    }

    pub fn commit(&mut self, plan: Plan) {
        if plan.full {
            self.services.clear();
        }
        self.comments = plan.comments;
        for (name, change) in plan.changes {
            match change {
                Some((service, rules)) => {
                    self.services
                        .insert(name, AppliedService { service, rules });
                }
                None => {
                    self.services.remove(&name);
                }
            }
        }
    }
}

/// A transaction and the state it leads to.
#[derive(Debug)]
pub struct Plan {
    pub transaction: Transaction,
    pub full: bool,
    /// Service ports whose rules changed (new, changed or removed).
    pub services_changed: usize,
    comments: EndpointComments,
    /// The new state of each service written (`None`: removed). A full plan
    /// lists every service.
    changes: Vec<(ServicePortName, Option<(Service, ServiceRules)>)>,
}

/// What a full sync needs to know about the kernel.
#[derive(Debug, Default)]
pub struct KernelState {
    /// Per-service nat chains that exist now (from `iptables-save`).
    pub service_chains: HashSet<String>,
    /// Jump rules missing from the built-in chains.
    pub missing_jumps: Vec<JumpRule>,
}

fn comments_for(model: &Model) -> EndpointComments {
    if model.endpoint_count() > LARGE_CLUSTER_ENDPOINTS {
        EndpointComments::Off
    } else {
        EndpointComments::On
    }
}

/// Rewrites everything the proxy owns; deletes the per-service chains in
/// `kernel` that no service uses; inserts missing jumps.
pub fn full(
    config: &RenderConfig,
    base: &BaseRules,
    applied: &Applied,
    model: &Model,
    kernel: &KernelState,
) -> Plan {
    let comments = comments_for(model);
    let mut changes = Vec::with_capacity(model.len());
    for service in model.services() {
        let rules = match applied.services.get(&service.port.name) {
            Some(old) if comments == applied.comments && old.service.same_as(service) => {
                old.rules.clone()
            }
            _ => service_rules(config, service, comments),
        };
        changes.push((service.port.name.clone(), Some((service.clone(), rules))));
    }

    let mut tx = Transaction::new();
    let mut shared: HashMap<SharedChain, String> = HashMap::new();
    let mut live_chains = HashSet::new();
    for (_, change) in &changes {
        let Some((_, rules)) = change else { continue };
        for rule in &rules.shared {
            let text = shared.entry(rule.chain).or_default();
            text.push_str("-A ");
            text.push_str(rule.chain.name());
            text.push(' ');
            text.push_str(&rule.spec);
            text.push('\n');
        }
    }
    // KUBE-SERVICES in nat ends with the jump to KUBE-NODEPORTS.
    let services = shared.entry(SharedChain::NatServices).or_default();
    services.push_str(&format!(
        "-A {} {}\n",
        names::SERVICES,
        base.final_services_rule
    ));
    for chain in SharedChain::ALL {
        let rules = shared.get(&chain).map(String::as_str).unwrap_or("");
        tx.write_chain(chain.table(), chain.name(), rules);
    }
    tx.write_chain(Table::Filter, names::FORWARD, &base.forward);
    tx.write_chain(Table::Nat, names::POSTROUTING, &base.postrouting);
    tx.write_chain(Table::Nat, names::MARK_MASQ, &base.mark_masq);
    for (_, change) in &changes {
        let Some((_, rules)) = change else { continue };
        for chain in &rules.chains {
            tx.write_chain(Table::Nat, &chain.name, &chain.rules);
            live_chains.insert(chain.name.as_str());
        }
    }
    let mut stale: Vec<&String> = kernel
        .service_chains
        .iter()
        .filter(|c| names::is_service_chain(c) && !live_chains.contains(c.as_str()))
        .collect();
    stale.sort();
    for chain in stale {
        tx.remove_chain(Table::Nat, chain);
    }
    for jump in &kernel.missing_jumps {
        tx.insert_rule(jump.table, jump.from, &jump.spec);
    }
    tx.mangle_chain(names::CANARY);

    Plan {
        transaction: tx,
        full: true,
        services_changed: changes.len(),
        comments,
        changes,
    }
}

/// Writes only what changed since `applied`.
pub fn partial(config: &RenderConfig, applied: &Applied, model: &Model) -> Plan {
    let comments = applied.comments;
    let mut tx = Transaction::new();
    let mut changes = Vec::new();
    for service in model.services() {
        let old = applied.services.get(&service.port.name);
        if old.is_some_and(|old| old.service.same_as(service)) {
            continue;
        }
        let rules = service_rules(config, service, comments);
        diff(&mut tx, old.map(|o| &o.rules), Some(&rules));
        changes.push((service.port.name.clone(), Some((service.clone(), rules))));
    }
    for (name, old) in &applied.services {
        if model.get(name).is_none() {
            diff(&mut tx, Some(&old.rules), None);
            changes.push((name.clone(), None));
        }
    }
    Plan {
        transaction: tx,
        full: false,
        services_changed: changes.len(),
        comments,
        changes,
    }
}

/// The edits that turn one service's `old` rules into its `new` ones.
fn diff(tx: &mut Transaction, old: Option<&ServiceRules>, new: Option<&ServiceRules>) {
    let empty = ServiceRules::default();
    let old = old.unwrap_or(&empty);
    let new = new.unwrap_or(&empty);

    for chain in &new.chains {
        let unchanged = old.chains.iter().any(|o| o == chain);
        if !unchanged {
            tx.write_chain(Table::Nat, &chain.name, &chain.rules);
        }
    }
    for chain in &old.chains {
        if !new.chains.iter().any(|n| n.name == chain.name) {
            tx.remove_chain(Table::Nat, &chain.name);
        }
    }
    for rule in &old.shared {
        if !new.shared.contains(rule) {
            tx.delete_rule(rule.chain.table(), rule.chain.name(), &rule.spec);
        }
    }
    for rule in &new.shared {
        if old.shared.contains(rule) {
            continue;
        }
        if rule.chain.has_final_rule() {
            tx.insert_rule(rule.chain.table(), rule.chain.name(), &rule.spec);
        } else {
            tx.append_rule(rule.chain.table(), rule.chain.name(), &rule.spec);
        }
    }
}
