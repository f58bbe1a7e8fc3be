//! Processes the runtime did not fork itself (container monitors survive a
//! runtime restart): identified by pid plus start time, so a recycled pid is
//! never mistaken for them, and awaited through a pidfd.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

/// A process as recorded on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: clock ticks after boot.
    pub start_time: u64,
}

impl ProcessId {
    /// The running process `pid`.
    pub fn of(pid: i32) -> Result<ProcessId> {
        let (_, start_time) = stat(pid)?.with_context(|| format!("process {pid} is gone"))?;
        Ok(ProcessId { pid, start_time })
    }

    /// Whether this very process still runs (a zombie has exited).
    pub fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Ok(Some((state, t))) if t == self.start_time && state != 'Z')
    }

    /// Waits until the process has exited; at once if it is gone already.
    pub async fn exited(&self) -> Result<()> {
        let Some(pidfd) = pidfd_open(self.pid, libc::PIDFD_NONBLOCK as libc::c_int)? else {
            return Ok(());
        };
        if !self.is_alive() {
            return Ok(());
        }
        // SAFETY: the AsyncFd owns the pidfd, which stays open and the same
        // until it is dropped.
        let fd = unsafe { AsyncFd::register(pidfd) }
            .map_err(|e| anyhow::anyhow!("registering a pidfd: {e}"))?;
        let _ready = fd.readable().await?;
        Ok(())
    }
}

/// The state letter and start time of `pid`, `None` when it is gone.
fn stat(pid: i32) -> Result<Option<(char, u64)>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("reading /proc/PID/stat"),
    };
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let (Some(state), Some(start)) = (fields.first(), fields.get(19)) else {
        anyhow::bail!("short /proc/{pid}/stat");
    };
    let state = state.chars().next().unwrap_or('?');
    Ok(Some((
        state,
        start.parse().context("parsing the start time")?,
    )))
}

/// A pidfd for `pid`; `None` when there is no such process.
pub fn pidfd_open(pid: i32, flags: libc::c_int) -> Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(err).context("pidfd_open");
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// poll(2) for readability: which of `fds` became readable (or hung up)
/// within `timeout_ms` (-1: no limit). Interrupted by a signal: none.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> std::io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `polled` is a valid array of pollfd of the given length.
    let n = unsafe {
        libc::poll(
            polled.as_mut_ptr(),
            polled.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    Ok(polled.iter().map(|p| p.revents != 0).collect())
}

/// Runs `f` with SIGPIPE at its default disposition, so processes it
/// forks and execs (containers) do not inherit the ignored SIGPIPE that
/// Rust programs run with.
pub fn with_default_sigpipe<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: only dispositions change; no handler code runs.
    let previous = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let result = f();
    if let Ok(previous) = previous {
        // SAFETY: as above, restoring what was there.
        let _ = unsafe { signal(Signal::SIGPIPE, previous) };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_is_alive_until_it_exits() -> Result<()> {
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn()?;
        let id = ProcessId::of(child.id() as i32)?;
        assert!(id.is_alive());
        let waiter = tokio::spawn(async move { id.exited().await });
        child.wait()?;
        waiter.await??;
        assert!(!id.is_alive());
        Ok(())
    }

    #[test]
    fn another_start_time_is_another_process() -> Result<()> {
        let me = ProcessId::of(std::process::id() as i32)?;
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(me.is_alive());
        assert!(!impostor.is_alive());
        Ok(())
    }
}
