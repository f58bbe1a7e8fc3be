//! An endpoint: one address and port serving a service port.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// One backend of a service port, with the EndpointSlice conditions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// Whether it runs on this proxy's node.
    pub local: bool,
    /// `conditions.ready`: serving and not terminating.
    pub ready: bool,
    /// `conditions.serving`: passing readiness, terminating or not.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
}

impl Endpoint {
    /// A ready endpoint on another node.
    pub fn ready(ip: IpAddr, port: u16) -> Endpoint {
        Endpoint {
            ip,
            port,
            local: false,
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// Still serving while it shuts down: used only when nothing is ready.
    pub fn serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }
}

impl fmt::Display for Endpoint {
    /// `ip:port` (`[ip]:port` for IPv6), the form upstream hashes into chain
    /// names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr().fmt(f)
    }
}

/// Sorts endpoints by address and drops duplicates (an address listed in
/// two slices); of duplicates, a ready one is kept.
pub(super) fn normalize(mut endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    endpoints.sort_by_key(|e| (e.ip, e.port, !e.ready));
    endpoints.dedup_by(|later, kept| later.ip == kept.ip && later.port == kept.port);
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_a_socket_address() {
        let v4 = Endpoint::ready("10.244.1.5".parse().unwrap(), 8080);
        assert_eq!(v4.to_string(), "10.244.1.5:8080");
        let v6 = Endpoint::ready("fd00::5".parse().unwrap(), 80);
        assert_eq!(v6.to_string(), "[fd00::5]:80");
    }

    #[test]
    fn normalize_sorts_and_keeps_the_ready_duplicate() {
        let mut not_ready = Endpoint::ready("10.0.0.2".parse().unwrap(), 80);
        not_ready.ready = false;
        let eps = normalize(vec![
            not_ready.clone(),
            Endpoint::ready("10.0.0.9".parse().unwrap(), 80),
            Endpoint::ready("10.0.0.2".parse().unwrap(), 80),
        ]);
        let addrs: Vec<String> = eps.iter().map(|e| e.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.2:80", "10.0.0.9:80"]);
        assert!(eps[0].ready);
    }
}
