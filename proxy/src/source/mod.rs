//! Where the model comes from: Services and EndpointSlices from the API,
//! watched and folded into the model as they change.

pub mod endpoint_slice;
pub mod service;
pub mod tracker;
pub mod watch;

pub use service::IpFamily;
pub use tracker::Tracker;

use crate::model::Protocol;

/// A port's `protocol` field (TCP when unset); `None` for one the proxy
/// does not know.
fn protocol(field: Option<&str>) -> Option<Protocol> {
    match field {
        None | Some("TCP") => Some(Protocol::Tcp),
        Some("UDP") => Some(Protocol::Udp),
        Some("SCTP") => Some(Protocol::Sctp),
        Some(_) => None,
    }
}
