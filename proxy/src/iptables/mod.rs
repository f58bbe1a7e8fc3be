//! The iptables backend: renders the model into upstream kube-proxy's chains
//! and applies them with `iptables-restore --noflush`, one transaction per
//! sync, writing only the chains that changed.

pub mod command;
pub mod jumps;
pub mod names;
pub mod plan;
pub mod proxier;
pub mod render;
pub mod restore;

pub use command::{Flavor, Iptables};
pub use proxier::Proxier;
pub use render::RenderConfig;
