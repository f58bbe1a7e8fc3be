//! Back-off for restarts and pulls, with upstream's semantics: the first
//! failure retries at once, then waits `initial`, doubling to `max`; an
//! entry that has not been bumped for twice `max` (ten minutes by default)
//! starts over.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: SystemTime,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// If `key`'s failure at `failed_at` is still being backed off at `now`:
    /// the delay in force and when it ends.
    pub fn in_backoff(
        &self,
        key: &str,
        failed_at: SystemTime,
        now: SystemTime,
    ) -> Option<(Duration, SystemTime)> {
        let entry = self.entries.get(key)?;
        if self.expired(entry, failed_at) {
            return None;
        }
        let until = failed_at + entry.delay;
        (now < until).then_some((entry.delay, until))
    }

    /// Records a retry of `key` at `now`: the next failure waits longer.
    pub fn next(&mut self, key: &str, now: SystemTime) {
        let delay = match self.entries.get(key) {
            Some(entry) if !self.expired(entry, now) => (entry.delay * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
    }

    fn expired(&self, entry: &Entry, at: SystemTime) -> bool {
        at.duration_since(entry.last_update)
            .is_ok_and(|since| since > self.max * 2)
    }
}

/// `10s`, `1m20s`, `5m0s`: durations as Go prints them in messages.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_failure_retries_at_once_then_waits_double() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = Backoff::new(10 * S, 300 * S);
        assert_eq!(b.in_backoff("c", t0, t0), None);
        b.next("c", t0);
        // Failed again at t0+1: ten seconds to wait.
        let failed = t0 + S;
        assert_eq!(
            b.in_backoff("c", failed, failed + S),
            Some((10 * S, failed + 10 * S))
        );
        assert_eq!(b.in_backoff("c", failed, failed + 10 * S), None);
        b.next("c", failed + 10 * S);
        let failed = failed + 11 * S;
        assert_eq!(b.in_backoff("c", failed, failed).map(|b| b.0), Some(20 * S));
        for _ in 0..10 {
            b.next("c", failed);
        }
        assert_eq!(
            b.in_backoff("c", failed, failed).map(|b| b.0),
            Some(300 * S)
        );
    }

    #[test]
    fn ten_quiet_minutes_start_over() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = Backoff::new(10 * S, 300 * S);
        b.next("c", t0);
        b.next("c", t0 + S);
        let much_later = t0 + 700 * S;
        assert_eq!(b.in_backoff("c", much_later, much_later), None);
        b.next("c", much_later);
        assert_eq!(
            b.in_backoff("c", much_later, much_later).map(|b| b.0),
            Some(10 * S)
        );
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(10 * S), "10s");
        assert_eq!(go_duration(80 * S), "1m20s");
        assert_eq!(go_duration(300 * S), "5m0s");
    }
}
