//! The controllers that make the apiserver a control plane. Each is a
//! level-triggered reconcile loop over shared watches, talking to the API
//! through a `kube::Client` like upstream's controllers — never to storage —
//! so a restart loses nothing and a missed event is healed by the next
//! resync.

pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod informer;
pub mod owners;
pub mod pods;
pub mod reconciler;
pub mod replicaset;
pub mod scheduler;
pub mod selector;
