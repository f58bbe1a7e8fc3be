//! paddock-proxy: kube-proxy for Paddock nodes.
//!
//! Services and EndpointSlices become a plain [`model`], which a backend
//! renders into kernel rules: [`iptables`] writes them with one
//! `iptables-restore` transaction per sync, touching only the chains that
//! changed; [`ipvs`] programs IPVS virtual servers over netlink.

pub mod backend;
pub mod iptables;
pub mod ipvs;
pub mod model;

pub use backend::{Backend, SyncReport};
