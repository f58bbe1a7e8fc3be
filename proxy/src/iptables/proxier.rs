//! The iptables proxier: keeps the kernel's rules equal to the model, one
//! `iptables-restore` transaction per sync.
//!
//! The first sync, any sync after a failure or after someone flushed the
//! tables (the canary chain is gone), and one an hour, is a full sync: it
//! reads `iptables-save` to find stale chains and missing jumps and
//! rewrites everything the proxy owns. Every other sync is partial and
//! writes only what changed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::command::Iptables;
use super::jumps::jump_rules;
use super::names;
use super::plan::{self, Applied, KernelState};
use super::render::{BaseRules, RenderConfig, Table, base_rules};
use crate::backend::{Backend, SyncReport};
use crate::model::Model;

/// Even without a reason, everything is rewritten this often (as
/// upstream), in case something changed the rules behind the proxy's back
/// without removing the canary.
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

pub struct Proxier {
    iptables: Iptables,
    config: RenderConfig,
    base: BaseRules,
    applied: Applied,
    needs_full_sync: bool,
    last_full_sync: Option<Instant>,
}

impl Proxier {
    pub fn new(iptables: Iptables, config: RenderConfig) -> Proxier {
        Proxier {
            base: base_rules(&config),
            iptables,
            config,
            applied: Applied::default(),
            needs_full_sync: true,
            last_full_sync: None,
        }
    }

    pub fn iptables(&self) -> &Iptables {
        &self.iptables
    }

    /// Rules the proxy maintains for services.
    pub fn rule_count(&self) -> usize {
        self.applied.rule_count()
    }

    /// Makes the next sync a full one.
    pub fn request_full_sync(&mut self) {
        self.needs_full_sync = true;
    }

    /// Asks for a full sync if the canary chain has disappeared, which means
    /// something flushed the tables behind the proxy's back.
    pub fn check_canary(&mut self) -> Result<()> {
        if !self.needs_full_sync && !self.iptables.chain_exists("mangle", names::CANARY)? {
            tracing::warn!("iptables canary chain is gone; the next sync rewrites all rules");
            self.needs_full_sync = true;
        }
        Ok(())
    }

    /// Brings the kernel's rules in line with `model`.
    pub fn sync(&mut self, model: &Model) -> Result<SyncReport> {
        let full = self.needs_full_sync
            || self.applied.comments_change(model)
            || self
                .last_full_sync
                .is_none_or(|t| t.elapsed() > FULL_SYNC_PERIOD);
        let plan = if full {
            let kernel = self.read_kernel()?;
            plan::full(&self.config, &self.base, &self.applied, model, &kernel)
        } else {
            plan::partial(&self.config, &self.applied, model)
        };
        let report = SyncReport {
            full,
            services_changed: plan.services_changed,
            operations: plan.transaction.lines(),
        };
        if !plan.transaction.is_empty() {
            let input = plan.transaction.to_restore_input();
            if let Err(e) = self.iptables.restore(&input) {
                // The transaction left the kernel as it was; start over.
                self.needs_full_sync = true;
                return Err(e);
            }
        }
        self.applied.commit(plan);
        self.needs_full_sync = false;
        if full {
            self.last_full_sync = Some(Instant::now());
        }
        Ok(report)
    }

    /// The per-service chains that exist and the jump rules that are missing.
    fn read_kernel(&self) -> Result<KernelState> {
        let nat = self
            .iptables
            .save(Table::Nat.as_str())
            .context("reading the nat table")?;
        let filter = self
            .iptables
            .save(Table::Filter.as_str())
            .context("reading the filter table")?;
        let service_chains = nat
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split(' ').next())
            .filter(|c| names::is_service_chain(c))
            .map(str::to_string)
            .collect();
        let present: HashSet<&str> = nat.lines().chain(filter.lines()).collect();
        let missing_jumps = jump_rules()
            .into_iter()
            .filter(|j| !present.contains(j.saved_line().as_str()))
            .collect();
        Ok(KernelState {
            service_chains,
            missing_jumps,
        })
    }
}

impl Backend for Proxier {
    fn mode(&self) -> &'static str {
        "iptables"
    }

    fn sync(&mut self, model: &Model) -> Result<SyncReport> {
        Proxier::sync(self, model)
    }

    fn request_full_sync(&mut self) {
        Proxier::request_full_sync(self)
    }

    fn check(&mut self) -> Result<()> {
        self.check_canary()
    }
}
