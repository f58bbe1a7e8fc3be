//! The seam between the proxy's run loop and the kernel: a backend turns the
//! model into rules (iptables chains, IPVS virtual servers) and reports what
//! a sync did. The run loop, metrics and health checks are shared by all.

use anyhow::Result;

use crate::model::Model;

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Whether everything was rewritten (else only what changed).
    pub full: bool,
    /// Service ports whose rules were written or removed.
    pub services_changed: usize,
    /// Kernel operations performed: iptables-restore lines, netlink requests.
    /// 0 when nothing had changed.
    pub operations: usize,
}

/// A way of making services work in the kernel. Syncs block (they run
/// iptables-restore or talk netlink): call them from a blocking thread.
pub trait Backend: Send {
    /// The mode's name, as `--proxy-mode` spells it.
    fn mode(&self) -> &'static str;

    /// Brings the kernel in line with `model`.
    fn sync(&mut self, model: &Model) -> Result<SyncReport>;

    /// Makes the next sync rewrite everything.
    fn request_full_sync(&mut self);

    /// A periodic look for changes made behind the proxy's back; asks for a
    /// full sync if it finds one.
    fn check(&mut self) -> Result<()> {
        Ok(())
    }
}
