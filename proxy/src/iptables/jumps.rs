//! The rules that send packets from the kernel's built-in chains into ours.
//! They live in chains other programs use too, so they are never flushed:
//! the applier reads `iptables-save` output and inserts the missing ones.

use super::names;
use super::render::Table;

/// A rule in a built-in chain that jumps to one of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JumpRule {
    pub table: Table,
    /// The built-in chain (INPUT, PREROUTING, ...).
    pub from: &'static str,
    /// The rule as `iptables-save` prints it, without `-A CHAIN`.
    pub spec: String,
}

impl JumpRule {
    fn new(table: Table, from: &'static str, new_only: bool, comment: &str, to: &str) -> Self {
        let state = if new_only {
            "-m conntrack --ctstate NEW "
        } else {
            ""
        };
        JumpRule {
            table,
            from,
            spec: format!("{state}-m comment --comment \"{comment}\" -j {to}"),
        }
    }

    /// The line `iptables-save` prints for this rule.
    pub fn saved_line(&self) -> String {
        format!("-A {} {}", self.from, self.spec)
    }
}

/// All jump rules, in the order they are inserted at the head of their
/// chains (so the last one listed for a chain ends up first).
pub fn jump_rules() -> Vec<JumpRule> {
    use Table::{Filter, Nat};
    let external = "kubernetes externally-visible service portals";
    let portals = "kubernetes service portals";
    let firewall = "kubernetes load balancer firewall";
    vec![
        JumpRule::new(Filter, "INPUT", true, external, names::EXTERNAL_SERVICES),
        JumpRule::new(Filter, "FORWARD", true, external, names::EXTERNAL_SERVICES),
        JumpRule::new(
            Filter,
            "INPUT",
            false,
            "kubernetes health check service ports",
            names::NODE_PORTS,
        ),
        JumpRule::new(Filter, "FORWARD", true, portals, names::SERVICES),
        JumpRule::new(Filter, "OUTPUT", true, portals, names::SERVICES),
        JumpRule::new(
            Filter,
            "FORWARD",
            false,
            "kubernetes forwarding rules",
            names::FORWARD,
        ),
        JumpRule::new(Filter, "INPUT", true, firewall, names::PROXY_FIREWALL),
        JumpRule::new(Filter, "OUTPUT", true, firewall, names::PROXY_FIREWALL),
        JumpRule::new(Filter, "FORWARD", true, firewall, names::PROXY_FIREWALL),
        JumpRule::new(Nat, "OUTPUT", false, portals, names::SERVICES),
        JumpRule::new(Nat, "PREROUTING", false, portals, names::SERVICES),
        JumpRule::new(
            Nat,
            "POSTROUTING",
            false,
            "kubernetes postrouting rules",
            names::POSTROUTING,
        ),
    ]
}
