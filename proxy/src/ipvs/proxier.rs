//! The IPVS proxier: keeps the kernel's virtual servers, kube-ipvs0's
//! addresses, the mode's ipsets and iptables rules equal to the model.
//!
//! The first sync, and any sync after a failure or after the rules went
//! missing, is full: it reads the kernel's virtual servers and addresses,
//! changes what differs, rebuilds the ipsets and rewrites the iptables
//! chains. Every other sync re-renders only the service ports that changed
//! and sends their differences: one netlink batch, one `ipset restore` if
//! entries changed. After each sync, draining real servers that have no
//! connections left are deleted.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;

use super::dummy::{self, DummyLink};
use super::ipset::{self, Family};
use super::netlink::{Change, Destination, Ipvs, Scheduler};
use super::plan::{KernelState, Plan, Programmed};
use super::render::RenderConfig;
use super::rules::{self, RulesConfig};
use super::sysctl;
use crate::backend::{Backend, SyncReport};
use crate::iptables::{Flavor, Iptables};
use crate::model::Model;

/// How the IPVS proxier is set up (`paddock proxy --proxy-mode ipvs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `--ipvs-scheduler`.
    pub scheduler: Scheduler,
    /// The node's addresses that take node ports; the first one's family is
    /// the proxier's.
    pub node_ips: Vec<IpAddr>,
    /// `--cluster-cidr`: traffic from elsewhere to a cluster IP is
    /// masqueraded.
    pub cluster_cidr: Option<IpNet>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// The mark bit that asks for masquerading (upstream: 0x4000).
    pub masquerade_mark: u32,
    /// Answer ARP only for addresses of the asking interface
    /// (`--ipvs-strict-arp`), so that kube-ipvs0's addresses are not
    /// claimed on the LAN.
    pub strict_arp: bool,
}

impl Config {
    pub fn new(node_ip: IpAddr) -> Config {
        Config {
            scheduler: Scheduler::default(),
            node_ips: vec![node_ip],
            cluster_cidr: None,
            masquerade_all: false,
            masquerade_mark: 0x4000,
            strict_arp: false,
        }
    }
}

pub struct Proxier {
    ipvs: Ipvs,
    link: DummyLink,
    iptables: Iptables,
    sysctls: Vec<(&'static str, &'static str)>,
    family: Family,
    render: RenderConfig,
    rules: RulesConfig,
    programmed: Programmed,
    needs_full_sync: bool,
}

impl Proxier {
    /// Connects to the kernel's IPVS and sets the kernel up for the mode.
    pub fn new(config: Config) -> Result<Proxier> {
        let Some(&first) = config.node_ips.first() else {
            bail!("IPVS mode needs the node's IP");
        };
        let family = Family::of(first);
        let ipvs = Ipvs::connect()?;
        let kernel_release = nix::sys::utsname::uname()
            .context("reading the kernel release")?
            .release()
            .to_string_lossy()
            .into_owned();
        let sysctls = sysctl::settings(&kernel_release, config.strict_arp);
        sysctl::apply(&sysctls)?;
        let link = DummyLink::ensure(dummy::NAME)?;
        let iptables = Iptables::new(Flavor::detect()?);
        tracing::info!(
            scheduler = %config.scheduler,
            iptables = %iptables.flavor(),
            "IPVS mode"
        );
        Ok(Proxier {
            ipvs,
            link,
            iptables,
            sysctls,
            family,
            render: RenderConfig {
                scheduler: config.scheduler,
                node_ips: config.node_ips,
            },
            rules: RulesConfig {
                family,
                cluster_cidr: config.cluster_cidr,
                masquerade_all: config.masquerade_all,
                masquerade_mark: config.masquerade_mark,
            },
            programmed: Programmed::default(),
            needs_full_sync: true,
        })
    }

    /// Returns the plan and how many set entries and rules it wrote.
    fn full_sync(&mut self, model: &Model) -> Result<(Plan, usize)> {
        sysctl::apply(&self.sysctls)?;
        let wanted = self.programmed.reset(model, &self.render);
        let kernel = self.read_kernel(&wanted)?;
        let plan = self.programmed.reconcile(&kernel);

        // The rules match the sets: sets first.
        let entries = self.programmed.entries();
        ipset::restore(&ipset::rebuild_script(self.family, &entries))
            .context("rebuilding the ipsets")?;
        let written: usize = entries.values().map(|e| e.len()).sum();
        let saved = format!(
            "{}{}",
            self.iptables.save("nat")?,
            self.iptables.save("filter")?
        );
        let missing = rules::missing_jumps(&saved);
        let input = rules::restore_input(&self.rules, &missing);
        self.iptables
            .restore(&input)
            .context("writing the IPVS mode's iptables rules")?;
        self.apply_ipvs_and_addresses(&plan)?;
        Ok((plan, written + input.lines().count()))
    }

    /// The kernel's virtual servers of our family, the real servers of
    /// those in `wanted`, and kube-ipvs0's addresses.
    fn read_kernel(&mut self, wanted: &[super::netlink::ServiceKey]) -> Result<KernelState> {
        let family = self.family;
        let services: Vec<_> = self
            .ipvs
            .services()?
            .into_iter()
            .filter(|s| Family::of(s.key.addr) == family)
            .collect();
        let present: std::collections::HashSet<_> = services.iter().map(|s| s.key).collect();
        let mut destinations = HashMap::new();
        for key in wanted.iter().filter(|k| present.contains(k)) {
            destinations.insert(*key, self.ipvs.destinations(key)?);
        }
        let bound = self
            .link
            .addresses()?
            .into_iter()
            .filter(|ip| Family::of(*ip) == family)
            .collect();
        Ok(KernelState {
            services,
            destinations,
            bound,
        })
    }

    /// Returns the plan and how many set entries it changed.
    fn partial_sync(&mut self, model: &Model) -> Result<(Plan, usize)> {
        let plan = self.programmed.partial(model, &self.render);
        let script = ipset::update_script(self.family, &plan.added_entries, &plan.deleted_entries);
        ipset::restore(&script).context("updating the ipsets")?;
        self.apply_ipvs_and_addresses(&plan)?;
        let entries = plan
            .added_entries
            .values()
            .chain(plan.deleted_entries.values())
            .map(|e| e.len())
            .sum();
        Ok((plan, entries))
    }

    /// Virtual servers before their addresses appear, after they vanish.
    fn apply_ipvs_and_addresses(&mut self, plan: &Plan) -> Result<()> {
        self.link.unbind(&plan.unbind)?;
        self.ipvs.apply(&plan.changes)?;
        self.link.bind(&plan.bind)?;
        Ok(())
    }

    /// Deletes draining real servers that have no connections left.
    fn delete_drained(&mut self) -> Result<usize> {
        let draining: Vec<_> = self
            .programmed
            .draining()
            .map(|(key, servers)| (*key, servers.clone()))
            .collect();
        let mut deletions = Vec::new();
        for (key, servers) in draining {
            let current: HashMap<_, _> = self
                .ipvs
                .destinations(&key)?
                .into_iter()
                .map(|s| ((s.destination.addr, s.destination.port), s))
                .collect();
            for server in servers {
                match current.get(&server) {
                    None => self.programmed.drained(&key, server),
                    Some(s) if s.active_connections + s.inactive_connections == 0 => {
                        deletions.push(Change::DeleteDestination(
                            key,
                            Destination {
                                weight: 0,
                                ..s.destination
                            },
                        ));
                        self.programmed.drained(&key, server);
                    }
                    Some(_) => {}
                }
            }
        }
        self.ipvs.apply(&deletions)?;
        Ok(deletions.len())
    }
}

impl Backend for Proxier {
    fn mode(&self) -> &'static str {
        "ipvs"
    }

    fn sync(&mut self, model: &Model) -> Result<SyncReport> {
        let full = self.needs_full_sync;
        // A failed sync leaves the kernel somewhere between two states:
        // the next one starts from what the kernel holds.
        self.needs_full_sync = true;
        let (plan, written) = if full {
            self.full_sync(model)?
        } else {
            self.partial_sync(model)?
        };
        let deleted = self.delete_drained()?;
        self.needs_full_sync = false;
        Ok(SyncReport {
            full,
            services_changed: plan.services_changed,
            operations: plan.changes.len()
                + plan.bind.len()
                + plan.unbind.len()
                + written
                + deleted,
        })
    }

    fn request_full_sync(&mut self) {
        self.needs_full_sync = true;
    }

    fn check(&mut self) -> Result<()> {
        if !self.needs_full_sync && !self.iptables.chain_exists("filter", rules::IPVS_FILTER)? {
            tracing::warn!("the IPVS mode's iptables rules are gone; the next sync rewrites them");
            self.needs_full_sync = true;
        }
        Ok(())
    }
}
