//! Our client of the kernel's IPVS over generic netlink (family `IPVS`):
//! virtual services with their scheduler and persistence, and their real
//! servers with weights and connection counts.

mod client;
pub(crate) mod message;
mod types;

pub use client::{Error, Info, Ipvs};
pub use types::{
    Change, Destination, DestinationStatus, Protocol, Scheduler, ServiceKey, VirtualService,
};
