//! Polling until something a user would wait for holds.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Calls `probe` every `interval` until it returns `Some`, or fails after
/// `timeout` with `what` and the last probe's error in the message.
pub fn until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("timed out after {timeout:?} waiting for {what}: {e:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value() {
        let mut calls = 0;
        let v = until(
            "three calls",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                Ok((calls == 3).then_some(calls))
            },
        )
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn times_out_with_the_last_error() {
        let err = until::<()>(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || anyhow::bail!("still broken"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("still broken"), "{err}");
    }
}
