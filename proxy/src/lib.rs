//! paddock-proxy: kube-proxy for Paddock nodes.
//!
//! Services and EndpointSlices become a plain [`model`], which a backend
//! renders into kernel rules: [`iptables`] writes them with one
//! `iptables-restore` transaction per sync, touching only the chains that
//! changed; [`ipvs`] programs IPVS virtual servers over netlink.

pub mod announce;
pub mod backend;
pub mod config;
pub mod conntrack;
pub mod healthz;
pub mod iptables;
pub mod ipvs;
pub mod metrics;
pub mod model;
mod runner;
pub mod service_health;
pub mod source;

pub use backend::{Backend, SyncReport};
pub use config::{Config, Mode, backend};
pub use runner::run;
