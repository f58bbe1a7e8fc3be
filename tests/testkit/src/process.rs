//! Child processes that die with the test: each runs in its own process
//! group, killed (and reaped) when its guard drops, also when a test panics.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A running child in its own process group.
pub struct Guard {
    child: Child,
    name: String,
}

impl Guard {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Guard> {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Guard {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` to the whole group.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        killpg(Pid::from_raw(self.child.id() as i32), signal)
            .with_context(|| format!("sending {signal} to {}", self.name))
    }

    /// SIGKILL to the group, as `kill -9` does to a crashed daemon, and reap.
    pub fn kill9(mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.name))?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the group has not exited after `grace`.
    pub fn stop(mut self, grace: Duration) -> Result<()> {
        self.terminate(grace);
        Ok(())
    }

    fn terminate(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        let _ = self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}
