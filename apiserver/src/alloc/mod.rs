//! Allocation of Service ClusterIPs (from the service CIDR) and NodePorts
//! (from the node port range). The stored Services are the record of what is
//! taken: the allocators are rebuilt from them at start, so nothing is handed
//! out twice, also across restarts. A reservation is released when the
//! write it was made for fails.

mod ip;
mod port;

pub use ip::IpAllocator;
pub use port::PortAllocator;

/// Why a requested value cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("provided {what} is already allocated")]
    Taken { what: &'static str },
    #[error("provided {what} is not in the valid range. The range of valid {what}s is {range}")]
    OutOfRange { what: &'static str, range: String },
    #[error("range is full")]
    Full,
}
