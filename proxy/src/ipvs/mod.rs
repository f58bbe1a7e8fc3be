//! IPVS mode: the model rendered as IPVS virtual servers, programmed over
//! generic netlink with our own client, plus upstream's helpers around
//! them: the `kube-ipvs0` dummy link holding the service addresses, ipsets
//! and a few iptables rules for masquerading and filtering, and the
//! sysctls IPVS needs.

pub mod dummy;
pub mod ipset;
pub mod netlink;
pub mod plan;
pub mod proxier;
pub mod render;
pub mod rules;
mod socket;
pub mod sysctl;

pub use proxier::{Config, Proxier};
