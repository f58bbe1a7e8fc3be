//! ClusterIPs from an IPv4 CIDR: the network and broadcast addresses are
//! never handed out; the first host address is the `kubernetes` Service's.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ipnet::Ipv4Net;
use rand::Rng;

use super::AllocError;

pub struct IpAllocator {
    net: Ipv4Net,
    used: Mutex<HashSet<u32>>,
}

impl IpAllocator {
    pub fn new(net: Ipv4Net) -> IpAllocator {
        IpAllocator {
            net: net.trunc(),
            used: Mutex::new(HashSet::new()),
        }
    }

    /// The first host address (`10.96.0.1` in `10.96.0.0/12`).
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net.network()) + 1)
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.net
    }

    fn bounds(&self) -> (u32, u32) {
        let network = u32::from(self.net.network());
        let broadcast = u32::from(self.net.broadcast());
        (network + 1, broadcast.saturating_sub(1).max(network + 1))
    }

    fn used(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `ip`.
    pub fn reserve(&self, ip: Ipv4Addr) -> Result<(), AllocError> {
        let n = u32::from(ip);
        let (lo, hi) = self.bounds();
        if !(lo..=hi).contains(&n) {
            return Err(AllocError::OutOfRange {
                what: "IP",
                range: self.net.to_string(),
            });
        }
        if self.used().insert(n) {
            Ok(())
        } else {
            Err(AllocError::Taken { what: "IP" })
        }
    }

    /// Reserves a free address, chosen at random; never the first, which
    /// only the `kubernetes` Service asks for.
    pub fn allocate(&self) -> Result<Ipv4Addr, AllocError> {
        let (first, hi) = self.bounds();
        let lo = (first + 1).min(hi);
        let mut used = self.used();
        let size = hi - lo + 1;
        let start = rand::rng().random_range(0..size);
        for i in 0..size {
            let n = lo + (start + i) % size;
            if used.insert(n) {
                return Ok(Ipv4Addr::from(n));
            }
        }
        Err(AllocError::Full)
    }

    pub fn release(&self, ip: Ipv4Addr) {
        self.used().remove(&u32::from(ip));
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.net.contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_each_address_once() {
        let alloc = IpAllocator::new("10.96.0.0/29".parse().unwrap());
        assert_eq!(alloc.first(), Ipv4Addr::new(10, 96, 0, 1));
        let mut got: Vec<_> = (0..5).map(|_| alloc.allocate().unwrap()).collect();
        got.sort();
        assert_eq!(got.first(), Some(&Ipv4Addr::new(10, 96, 0, 2)));
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 96, 0, 6)));
        assert_eq!(alloc.allocate(), Err(AllocError::Full));
        alloc.reserve(alloc.first()).unwrap();
        assert_eq!(
            alloc.reserve(alloc.first()),
            Err(AllocError::Taken { what: "IP" })
        );
        alloc.release(Ipv4Addr::new(10, 96, 0, 4));
        assert_eq!(alloc.allocate(), Ok(Ipv4Addr::new(10, 96, 0, 4)));
        assert!(matches!(
            alloc.reserve(Ipv4Addr::new(10, 97, 0, 1)),
            Err(AllocError::OutOfRange { .. })
        ));
    }
}
