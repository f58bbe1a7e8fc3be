//! Support for Paddock's end-to-end tests, which run as root: network
//! namespaces standing in for machines, User-Mode Linux VMs for what the
//! host kernel lacks, child processes that die with the test, and polling
//! for what a user would wait for.

pub mod cluster;
pub mod containerd;
pub mod cri;
pub mod cri_node;
pub mod fake_nodes;
pub mod images;
pub mod kubectl;
pub mod lab;
pub mod leftovers;
pub mod netns;
pub mod process;
pub mod registry;
pub mod relay;
pub mod server;
pub mod service_lab;
pub mod timings;
pub mod uml;
pub mod wait;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name unique to this process and call, `<prefix><pid36><n>`, short enough
/// for an interface name when `prefix` has at most 5 characters.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{}", radix36(std::process::id()), radix36(n))
}

fn radix36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).expect("digit below 36"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_fit_an_interface_name() {
        let a = unique_name("pdk");
        let b = unique_name("pdk");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }
}
