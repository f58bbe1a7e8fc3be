//! paddock-runtime: a CRI v1 runtime on youki's `libcontainer`.
//!
//! Pods are network, IPC and UTS namespaces held by bind mounts and wired by
//! the standard CNI plugins; containers are libcontainer containers on an
//! overlayfs snapshot of their image, each watched by a small monitor
//! process that writes its CRI log and records its exit, so containers
//! outlive a runtime restart.
//!
//! Embedding: call [`run_helper_if_requested`] first thing in `main`, then
//! [`Runtime::open`] and [`serve`] on a unix socket ([`bind`]).

mod cgroups;
mod container;
pub mod cri;
pub mod error;
mod exec;
mod helper;
pub mod image;
mod logs;
mod monitor;
mod process;
mod runtime;
mod sandbox;
mod snapshot;
mod state;
mod stream;

pub use cri::{bind, serve};
pub use helper::run_helper_if_requested;
pub use monitor::run_to_completion;
pub use runtime::{Config, Runtime};
