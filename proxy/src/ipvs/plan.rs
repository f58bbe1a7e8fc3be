//! Planning: what the kernel must change to follow a new model. The
//! [`Programmed`] state remembers each service port's rendering; a partial
//! plan re-renders only the ports that changed and diffs their rules, so a
//! sync costs what changed, not what exists. A full plan compares the whole
//! rendering with what the kernel holds.
//!
//! Real servers that go away are drained, not deleted: weight 0 takes them
//! out of scheduling while their connections finish, and the proxier
//! deletes them once they have none (UDP ones at once, as upstream: the
//! kernel drops their flows at the next packet, `expire_nodest_conn`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;

use super::ipset::{Entries, Set};
use super::netlink::{
    Change, Destination, DestinationStatus, Protocol, ServiceKey, VirtualService,
};
use super::render::{RenderConfig, ServiceRules, VirtualServer, render};
use crate::model::{Model, Service, ServicePortName};

/// A real server's identity within its virtual server.
type ServerAddr = (IpAddr, u16);

/// What a sync must do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// IPVS changes, deletions of virtual servers first.
    pub changes: Vec<Change>,
    pub bind: Vec<IpAddr>,
    pub unbind: Vec<IpAddr>,
    pub added_entries: Entries,
    pub deleted_entries: Entries,
    /// Service ports whose rules changed.
    pub services_changed: usize,
}

/// What the kernel holds, read for a full plan.
#[derive(Debug, Default)]
pub struct KernelState {
    pub services: Vec<VirtualService>,
    /// Real servers of the services the plan keeps.
    pub destinations: HashMap<ServiceKey, Vec<DestinationStatus>>,
    /// Addresses on kube-ipvs0.
    pub bound: BTreeSet<IpAddr>,
}

/// What the proxier has programmed, assuming its plans were applied.
#[derive(Debug, Default)]
pub struct Programmed {
    services: HashMap<ServicePortName, Rendered>,
    /// The service port each virtual server belongs to.
    owners: HashMap<ServiceKey, ServicePortName>,
    virtual_servers: HashMap<ServiceKey, VirtualServer>,
    /// Real servers at weight 0, to delete once they have no connections.
    draining: BTreeMap<ServiceKey, BTreeSet<ServerAddr>>,
    addresses: Counts<IpAddr>,
    entries: Counts<(Set, String)>,
}

#[derive(Debug)]
struct Rendered {
    service: Service,
    rules: ServiceRules,
}

impl Programmed {
    /// The changes that take the kernel from the last plan's state to
    /// `model`'s.
    pub fn partial(&mut self, model: &Model, config: &RenderConfig) -> Plan {
        let mut changed: Vec<(ServicePortName, Option<Rendered>)> = Vec::new();
        for service in model.services() {
            let name = &service.port.name;
            match self.services.get(name) {
                Some(done) if done.service.same_as(service) => {}
                _ => changed.push((
                    name.clone(),
                    Some(Rendered {
                        service: service.clone(),
                        rules: render(service, config),
                    }),
                )),
            }
        }
        let removed: Vec<ServicePortName> = self
            .services
            .keys()
            .filter(|name| model.get(name).is_none())
            .cloned()
            .collect();
        changed.extend(removed.into_iter().map(|name| (name, None)));

        let mut plan = Plan {
            services_changed: changed.len(),
            ..Plan::default()
        };
        // Virtual servers that go away first, so that another port may take
        // over their address and port in the same plan.
        for (name, new) in &changed {
            let keep: HashSet<ServiceKey> = new
                .iter()
                .flat_map(|r| r.rules.virtual_servers.iter().map(|vs| vs.service.key))
                .collect();
            let old_keys: Vec<ServiceKey> = self
                .services
                .get(name)
                .map(|old| {
                    old.rules
                        .virtual_servers
                        .iter()
                        .map(|vs| vs.service.key)
                        .collect()
                })
                .unwrap_or_default();
            for key in old_keys.into_iter().filter(|k| !keep.contains(k)) {
                self.remove_virtual_server(name, key, &mut plan);
            }
        }
        for (name, new) in changed {
            let old = self.services.remove(&name);
            if let Some(old) = &old {
                self.forget(&old.rules);
            }
            if let Some(new) = new {
                for vs in &new.rules.virtual_servers {
                    self.put_virtual_server(&name, vs, &mut plan);
                }
                self.remember(&new.rules);
                self.services.insert(name, new);
            }
        }
        self.finish(&mut plan);
        plan
    }

    /// Forgets everything and renders `model` afresh; returns the virtual
    /// servers wanted, whose real servers [`Programmed::reconcile`] needs.
    pub fn reset(&mut self, model: &Model, config: &RenderConfig) -> Vec<ServiceKey> {
        *self = Programmed::default();
        for service in model.services() {
            let name = service.port.name.clone();
            let rules = render(service, config);
            for vs in &rules.virtual_servers {
                if self.owners.contains_key(&vs.service.key) {
                    conflict(&name, vs.service.key, &self.owners);
                    continue;
                }
                self.owners.insert(vs.service.key, name.clone());
                self.virtual_servers.insert(vs.service.key, vs.clone());
            }
            self.remember(&rules);
            let rendered = Rendered {
                service: service.clone(),
                rules,
            };
            self.services.insert(name, rendered);
        }
        // Only the result matters to a full plan: no transitions.
        self.addresses.touched.clear();
        self.entries.touched.clear();
        let mut keys: Vec<ServiceKey> = self.virtual_servers.keys().copied().collect();
        keys.sort();
        keys
    }

    /// The changes that take the kernel from `kernel` to what the last
    /// [`Programmed::reset`] rendered. Set entries are not in the plan: a
    /// full sync rebuilds the sets from [`Programmed::entries`].
    pub fn reconcile(&mut self, kernel: &KernelState) -> Plan {
        let mut plan = Plan {
            services_changed: self.services.len(),
            ..Plan::default()
        };
        let in_kernel: HashMap<ServiceKey, &VirtualService> =
            kernel.services.iter().map(|s| (s.key, s)).collect();
        for service in &kernel.services {
            if !self.virtual_servers.contains_key(&service.key) {
                plan.changes.push(Change::DeleteService(service.key));
            }
        }
        let mut keys: Vec<ServiceKey> = self.virtual_servers.keys().copied().collect();
        keys.sort();
        for key in keys {
            let vs = &self.virtual_servers[&key];
            let Some(current) = in_kernel.get(&key) else {
                plan.changes.push(Change::AddService(vs.service.clone()));
                for &d in &vs.destinations {
                    plan.changes.push(Change::AddDestination(key, d));
                }
                continue;
            };
            if **current != vs.service {
                plan.changes.push(Change::UpdateService(vs.service.clone()));
            }
            let current = kernel
                .destinations
                .get(&key)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let mut draining = BTreeSet::new();
            reconcile_destinations(key, vs, current, &mut draining, &mut plan);
            if !draining.is_empty() {
                self.draining.insert(key, draining);
            }
        }
        let wanted: BTreeSet<IpAddr> = self.addresses.counts.keys().copied().collect();
        plan.bind = wanted.difference(&kernel.bound).copied().collect();
        plan.unbind = kernel.bound.difference(&wanted).copied().collect();
        plan
    }

    /// Every set entry the programmed services need.
    pub fn entries(&self) -> Entries {
        let mut entries = Entries::new();
        for (set, entry) in self.entries.counts.keys() {
            entries.entry(*set).or_default().insert(entry.clone());
        }
        entries
    }

    /// The virtual servers with real servers draining, and those servers.
    pub fn draining(&self) -> impl Iterator<Item = (&ServiceKey, &BTreeSet<ServerAddr>)> {
        self.draining.iter()
    }

    /// Drops `server` of `key` from the draining list (it was deleted, or
    /// is gone).
    pub fn drained(&mut self, key: &ServiceKey, server: ServerAddr) {
        if let Some(servers) = self.draining.get_mut(key) {
            servers.remove(&server);
            if servers.is_empty() {
                self.draining.remove(key);
            }
        }
    }

    fn remove_virtual_server(&mut self, name: &ServicePortName, key: ServiceKey, plan: &mut Plan) {
        if self.owners.get(&key) != Some(name) {
            return;
        }
        self.owners.remove(&key);
        self.virtual_servers.remove(&key);
        self.draining.remove(&key);
        plan.changes.push(Change::DeleteService(key));
    }

    fn put_virtual_server(&mut self, name: &ServicePortName, new: &VirtualServer, plan: &mut Plan) {
        let key = new.service.key;
        match self.owners.get(&key) {
            Some(owner) if owner != name => {
                conflict(name, key, &self.owners);
                return;
            }
            Some(_) => {}
            None => {
                self.owners.insert(key, name.clone());
                plan.changes.push(Change::AddService(new.service.clone()));
                for &d in &new.destinations {
                    plan.changes.push(Change::AddDestination(key, d));
                }
                self.virtual_servers.insert(key, new.clone());
                return;
            }
        }
        let Some(old) = self.virtual_servers.insert(key, new.clone()) else {
            return;
        };
        if old.service != new.service {
            plan.changes
                .push(Change::UpdateService(new.service.clone()));
        }
        let old_addrs: BTreeSet<ServerAddr> = old.destinations.iter().map(addr).collect();
        let new_addrs: BTreeSet<ServerAddr> = new.destinations.iter().map(addr).collect();
        for &d in &new.destinations {
            if old_addrs.contains(&addr(&d)) {
                continue;
            }
            let was_draining = self
                .draining
                .get(&key)
                .is_some_and(|s| s.contains(&addr(&d)));
            if was_draining {
                self.drained(&key, addr(&d));
                plan.changes.push(Change::UpdateDestination(key, d));
            } else {
                plan.changes.push(Change::AddDestination(key, d));
            }
        }
        for &d in old
            .destinations
            .iter()
            .filter(|d| !new_addrs.contains(&addr(d)))
        {
            if key.protocol == Protocol::Udp {
                plan.changes.push(Change::DeleteDestination(key, d));
            } else {
                plan.changes.push(Change::UpdateDestination(
                    key,
                    Destination { weight: 0, ..d },
                ));
                self.draining.entry(key).or_default().insert(addr(&d));
            }
        }
    }

    fn remember(&mut self, rules: &ServiceRules) {
        for &ip in &rules.bound {
            self.addresses.add(ip);
        }
        for entry in &rules.entries {
            self.entries.add(entry.clone());
        }
    }

    fn forget(&mut self, rules: &ServiceRules) {
        for ip in &rules.bound {
            self.addresses.remove(ip);
        }
        for entry in &rules.entries {
            self.entries.remove(entry);
        }
    }

    fn finish(&mut self, plan: &mut Plan) {
        (plan.bind, plan.unbind) = self.addresses.take_changes();
        let (added, deleted) = self.entries.take_changes();
        for (set, entry) in added {
            plan.added_entries.entry(set).or_default().insert(entry);
        }
        for (set, entry) in deleted {
            plan.deleted_entries.entry(set).or_default().insert(entry);
        }
    }
}

/// Brings the kernel's real servers of `key` (`current`) in line with
/// `vs`; servers the kernel has beyond `vs` are drained into `draining`.
fn reconcile_destinations(
    key: ServiceKey,
    vs: &VirtualServer,
    current: &[DestinationStatus],
    draining: &mut BTreeSet<ServerAddr>,
    plan: &mut Plan,
) {
    let current: HashMap<ServerAddr, &Destination> = current
        .iter()
        .map(|s| (addr(&s.destination), &s.destination))
        .collect();
    for &d in &vs.destinations {
        match current.get(&addr(&d)) {
            None => plan.changes.push(Change::AddDestination(key, d)),
            Some(c) if c.weight != d.weight => plan.changes.push(Change::UpdateDestination(key, d)),
            Some(_) => {}
        }
    }
    let wanted: HashSet<ServerAddr> = vs.destinations.iter().map(addr).collect();
    let mut extra: Vec<&Destination> = current
        .values()
        .filter(|c| !wanted.contains(&addr(c)))
        .copied()
        .collect();
    extra.sort();
    for &d in extra {
        if key.protocol == Protocol::Udp {
            plan.changes.push(Change::DeleteDestination(key, d));
            continue;
        }
        if d.weight != 0 {
            plan.changes.push(Change::UpdateDestination(
                key,
                Destination { weight: 0, ..d },
            ));
        }
        draining.insert(addr(&d));
    }
}

fn addr(d: &Destination) -> ServerAddr {
    (d.addr, d.port)
}

fn conflict(
    name: &ServicePortName,
    key: ServiceKey,
    owners: &HashMap<ServiceKey, ServicePortName>,
) {
    tracing::warn!(
        service = %name,
        owner = %owners[&key],
        "virtual server {key} belongs to another service port; skipped"
    );
}

/// How many service ports need each thing, and which things appeared or
/// disappeared since the last [`Counts::take_changes`].
#[derive(Debug)]
struct Counts<K> {
    counts: HashMap<K, u32>,
    /// Things counted since the last take, with whether they were there
    /// before.
    touched: HashMap<K, bool>,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            counts: HashMap::new(),
            touched: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> Counts<K> {
    fn add(&mut self, key: K) {
        let count = self.counts.entry(key.clone()).or_default();
        self.touched.entry(key).or_insert(*count > 0);
        *count += 1;
    }

    fn remove(&mut self, key: &K) {
        if let Some(count) = self.counts.get_mut(key) {
            self.touched.entry(key.clone()).or_insert(true);
            *count -= 1;
            if *count == 0 {
                self.counts.remove(key);
            }
        }
    }

    /// What appeared and what disappeared, each sorted.
    fn take_changes(&mut self) -> (Vec<K>, Vec<K>) {
        let (mut appeared, mut gone) = (Vec::new(), Vec::new());
        for (key, before) in self.touched.drain() {
            match (before, self.counts.contains_key(&key)) {
                (false, true) => appeared.push(key),
                (true, false) => gone.push(key),
                _ => {}
            }
        }
        appeared.sort();
        gone.sort();
        (appeared, gone)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ipvs::netlink::Scheduler;
    use crate::ipvs::render::tests::config;
    use crate::model::{self, Endpoint, ServicePort, SessionAffinity};

    fn service(name: &str, protocol: model::Protocol, vip: &str, backends: &[&str]) -> Service {
        let port = ServicePort::cluster_ip(
            ServicePortName::new("default", name, ""),
            protocol,
            vip.parse().unwrap(),
            80,
        );
        let endpoints = backends
            .iter()
            .map(|b| Endpoint::ready(b.parse().unwrap(), 8080))
            .collect();
        Service::new(port, endpoints)
    }

    fn web(backends: &[&str]) -> Service {
        service("web", model::Protocol::Tcp, "10.96.0.10", backends)
    }

    fn changes(plan: &Plan) -> Vec<String> {
        plan.changes
            .iter()
            .map(|c| match c {
                Change::UpdateDestination(_, d) => format!("{c} weight {}", d.weight),
                other => other.to_string(),
            })
            .collect()
    }

    fn key(vip: &str, protocol: Protocol) -> ServiceKey {
        ServiceKey {
            protocol,
            addr: vip.parse().unwrap(),
            port: 80,
        }
    }

    #[test]
    fn the_first_plan_adds_everything_and_an_unchanged_model_plans_nothing() {
        let mut programmed = Programmed::default();
        let model: Model = [web(&["10.244.1.5", "10.244.2.6"])].into_iter().collect();
        let plan = programmed.partial(&model, &config());
        assert_eq!(
            changes(&plan),
            [
                "adding virtual service TCP 10.96.0.10:80",
                "adding real server 10.244.1.5:8080 to TCP 10.96.0.10:80",
                "adding real server 10.244.2.6:8080 to TCP 10.96.0.10:80",
            ]
        );
        assert_eq!(plan.bind, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(plan.services_changed, 1);
        assert_eq!(plan.added_entries[&Set::ClusterIp].len(), 1);

        let again = programmed.partial(&model, &config());
        assert_eq!(again, Plan::default());
    }

    #[test]
    fn a_removed_endpoint_drains_and_comes_back_without_a_duplicate() {
        let mut programmed = Programmed::default();
        let both: Model = [web(&["10.244.1.5", "10.244.2.6"])].into_iter().collect();
        programmed.partial(&both, &config());

        let one: Model = [web(&["10.244.1.5"])].into_iter().collect();
        let plan = programmed.partial(&one, &config());
        assert_eq!(
            changes(&plan),
            ["updating real server 10.244.2.6:8080 of TCP 10.96.0.10:80 weight 0"]
        );
        assert!(plan.bind.is_empty() && plan.unbind.is_empty());
        let draining: Vec<_> = programmed.draining().collect();
        assert_eq!(draining.len(), 1);

        let plan = programmed.partial(&both, &config());
        assert_eq!(
            changes(&plan),
            ["updating real server 10.244.2.6:8080 of TCP 10.96.0.10:80 weight 1"]
        );
        assert_eq!(programmed.draining().count(), 0);
    }

    #[test]
    fn udp_servers_are_deleted_at_once() {
        let mut programmed = Programmed::default();
        let dns = |backends: &[&str]| -> Model {
            [service("dns", model::Protocol::Udp, "10.96.0.53", backends)]
                .into_iter()
                .collect()
        };
        programmed.partial(&dns(&["10.244.1.5", "10.244.2.6"]), &config());
        let plan = programmed.partial(&dns(&["10.244.1.5"]), &config());
        assert_eq!(
            changes(&plan),
            ["deleting real server 10.244.2.6:8080 of UDP 10.96.0.53:80"]
        );
        assert_eq!(programmed.draining().count(), 0);
    }

    #[test]
    fn a_deleted_service_takes_its_virtual_servers_address_and_entries() {
        let mut programmed = Programmed::default();
        let model: Model = [web(&["10.244.1.5"])].into_iter().collect();
        programmed.partial(&model, &config());
        let plan = programmed.partial(&Model::new(), &config());
        assert_eq!(
            changes(&plan),
            ["deleting virtual service TCP 10.96.0.10:80"]
        );
        assert_eq!(plan.unbind, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            plan.deleted_entries[&Set::ClusterIp],
            BTreeSet::from(["10.96.0.10,tcp:80".to_string()])
        );
        assert!(plan.added_entries.is_empty());
    }

    #[test]
    fn an_address_shared_by_two_ports_stays_bound_while_one_needs_it() {
        let mut programmed = Programmed::default();
        let mut https = web(&["10.244.1.5"]);
        let mut port = (*https.port).clone();
        port.name = ServicePortName::new("default", "web", "https");
        port.port = 443;
        https.port = port.into();
        let both: Model = [web(&["10.244.1.5"]), https.clone()].into_iter().collect();
        let plan = programmed.partial(&both, &config());
        assert_eq!(plan.bind.len(), 1);

        let only_https: Model = [https].into_iter().collect();
        let plan = programmed.partial(&only_https, &config());
        assert!(plan.unbind.is_empty(), "{plan:?}");
        assert_eq!(
            changes(&plan),
            ["deleting virtual service TCP 10.96.0.10:80"]
        );
    }

    #[test]
    fn affinity_changes_update_the_virtual_server_in_place() {
        let mut programmed = Programmed::default();
        let plain = web(&["10.244.1.5"]);
        programmed.partial(&[plain.clone()].into_iter().collect(), &config());
        let mut port = (*plain.port).clone();
        port.session_affinity = SessionAffinity::ClientIp {
            timeout: Duration::from_secs(60),
        };
        let sticky = Service {
            port: port.into(),
            endpoints: plain.endpoints.clone(),
        };
        let plan = programmed.partial(&[sticky].into_iter().collect(), &config());
        assert_eq!(
            changes(&plan),
            ["updating virtual service TCP 10.96.0.10:80"]
        );
        let Change::UpdateService(vs) = &plan.changes[0] else {
            unreachable!()
        };
        assert_eq!(vs.persistence_timeout, Some(60));
    }

    #[test]
    fn a_second_port_claiming_the_same_virtual_server_is_skipped() {
        let mut programmed = Programmed::default();
        let first = web(&["10.244.1.5"]);
        let second = service("copy", model::Protocol::Tcp, "10.96.0.10", &["10.244.9.9"]);
        let plan = programmed.partial(&[first, second].into_iter().collect(), &config());
        let adds = changes(&plan)
            .iter()
            .filter(|c| c.starts_with("adding virtual service"))
            .count();
        assert_eq!(adds, 1, "{plan:?}");
    }

    #[test]
    fn a_full_plan_fixes_what_differs_and_adopts_draining_servers() {
        let mut programmed = Programmed::default();
        let model: Model = [web(&["10.244.1.5", "10.244.2.6"])].into_iter().collect();
        let wanted = programmed.reset(&model, &config());
        assert_eq!(wanted, [key("10.96.0.10", Protocol::Tcp)]);

        let vip = key("10.96.0.10", Protocol::Tcp);
        let status = |addr: &str, weight| DestinationStatus {
            destination: Destination {
                addr: addr.parse().unwrap(),
                port: 8080,
                weight,
            },
            active_connections: 0,
            inactive_connections: 0,
        };
        let stale = VirtualService {
            key: key("10.96.0.99", Protocol::Tcp),
            scheduler: Scheduler::RoundRobin,
            persistence_timeout: None,
        };
        let current = VirtualService {
            key: vip,
            scheduler: Scheduler::LeastConnection,
            persistence_timeout: None,
        };
        let kernel = KernelState {
            services: vec![stale, current],
            destinations: HashMap::from([(
                vip,
                vec![
                    status("10.244.1.5", 0),
                    status("10.244.7.7", 1),
                    status("10.244.8.8", 0),
                ],
            )]),
            bound: BTreeSet::from(["10.96.0.99".parse().unwrap()]),
        };
        let plan = programmed.reconcile(&kernel);
        assert_eq!(
            changes(&plan),
            [
                "deleting virtual service TCP 10.96.0.99:80",
                "updating virtual service TCP 10.96.0.10:80",
                "updating real server 10.244.1.5:8080 of TCP 10.96.0.10:80 weight 1",
                "adding real server 10.244.2.6:8080 to TCP 10.96.0.10:80",
                "updating real server 10.244.7.7:8080 of TCP 10.96.0.10:80 weight 0",
            ]
        );
        assert_eq!(plan.bind, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(plan.unbind, ["10.96.0.99".parse::<IpAddr>().unwrap()]);
        let draining: Vec<_> = programmed.draining().flat_map(|(_, s)| s.clone()).collect();
        assert_eq!(
            draining,
            [
                ("10.244.7.7".parse().unwrap(), 8080),
                ("10.244.8.8".parse().unwrap(), 8080)
            ]
        );
        assert!(programmed.entries()[&Set::ClusterIp].contains("10.96.0.10,tcp:80"));

        // After a full plan, partial plans go on from it.
        assert_eq!(programmed.partial(&model, &config()), Plan::default());
    }
}
