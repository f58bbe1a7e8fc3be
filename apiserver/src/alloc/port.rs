//! NodePorts from a port range.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::Mutex;

use rand::Rng;

use super::AllocError;

pub struct PortAllocator {
    range: RangeInclusive<u16>,
    used: Mutex<HashSet<u16>>,
}

impl PortAllocator {
    pub fn new(range: RangeInclusive<u16>) -> PortAllocator {
        PortAllocator {
            range,
            used: Mutex::new(HashSet::new()),
        }
    }

    pub fn range(&self) -> &RangeInclusive<u16> {
        &self.range
    }

    fn used(&self) -> std::sync::MutexGuard<'_, HashSet<u16>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reserve(&self, port: u16) -> Result<(), AllocError> {
        if !self.range.contains(&port) {
            return Err(AllocError::OutOfRange {
                what: "port",
                range: format!("{}-{}", self.range.start(), self.range.end()),
            });
        }
        if self.used().insert(port) {
            Ok(())
        } else {
            Err(AllocError::Taken { what: "port" })
        }
    }

    /// Reserves a free port, chosen at random.
    pub fn allocate(&self) -> Result<u16, AllocError> {
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let size = u32::from(hi - lo) + 1;
        let mut used = self.used();
        let start = rand::rng().random_range(0..size);
        for i in 0..size {
            let port = lo + ((start + i) % size) as u16;
            if used.insert(port) {
                return Ok(port);
            }
        }
        Err(AllocError::Full)
    }

    pub fn release(&self, port: u16) {
        self.used().remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_and_in_range() {
        let alloc = PortAllocator::new(30000..=30002);
        alloc.reserve(30001).unwrap();
        assert_eq!(
            alloc.reserve(30001),
            Err(AllocError::Taken { what: "port" })
        );
        let mut got = vec![alloc.allocate().unwrap(), alloc.allocate().unwrap()];
        got.sort();
        assert_eq!(got, [30000, 30002]);
        assert_eq!(alloc.allocate(), Err(AllocError::Full));
        assert_eq!(
            alloc.reserve(80).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-30002"
        );
    }
}
