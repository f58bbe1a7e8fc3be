//! Commands in a VM through its channel directory: the host writes
//! `ID.cmd`, the VM's agent runs it and leaves `ID.pid`, `ID.out`, `ID.err`
//! and, last, `ID.rc`.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Vm;

/// How long [`Vm::exec`] waits for a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit status, 128 + N after signal N.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

impl Vm {
    /// Runs the shell script `script` (`/bin/sh`, in `/`) and waits for it.
    pub fn exec(&self, script: &str) -> Result<Output> {
        self.spawn(script)?.wait(COMMAND_TIMEOUT)
    }

    /// Runs `script` and returns its stdout; fails on a non-zero exit.
    pub fn run(&self, script: &str) -> Result<String> {
        let out = self.exec(script)?;
        if !out.success() {
            bail!(
                "on {}: `{script}` exited with {}: {}{}",
                self.name,
                out.status,
                out.stderr.trim(),
                out.stdout.trim()
            );
        }
        Ok(out.stdout)
    }

    /// Starts `script` in a session of its own and returns at once; the
    /// handle kills the session when dropped, unless it has finished.
    pub fn spawn(&self, script: &str) -> Result<Spawned<'_>> {
        self.ensure_running()?;
        let id = self.next_command.fetch_add(1, Ordering::Relaxed);
        let channel = self.channel();
        let staged = channel.join(format!("{id}.tmp"));
        fs::write(&staged, script).with_context(|| format!("writing {}", staged.display()))?;
        fs::rename(&staged, channel.join(format!("{id}.cmd")))?;
        Ok(Spawned {
            vm: self,
            id,
            script: script.to_string(),
        })
    }
}

/// A command started in a VM.
pub struct Spawned<'vm> {
    vm: &'vm Vm,
    id: u64,
    script: String,
}

impl Spawned<'_> {
    fn file(&self, extension: &str) -> PathBuf {
        self.vm.channel().join(format!("{}.{extension}", self.id))
    }

    /// The output once the command has exited.
    pub fn try_output(&self) -> Result<Option<Output>> {
        let Ok(rc) = fs::read_to_string(self.file("rc")) else {
            return Ok(None);
        };
        let status = rc
            .trim()
            .parse()
            .with_context(|| format!("exit status {rc:?} of `{}`", self.script))?;
        Ok(Some(Output {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }))
    }

    /// Waits up to `timeout` for the command to exit.
    pub fn wait(&self, timeout: Duration) -> Result<Output> {
        self.vm.poll(
            &format!("`{}` on {}", self.script, self.vm.name),
            timeout,
            || self.try_output(),
        )
    }

    /// What the command has written to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.file("out")).unwrap_or_default()
    }

    /// What the command has written to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.file("err")).unwrap_or_default()
    }

    /// Sends `signal` (a name such as `TERM` or `KILL`) to the command's
    /// session.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.vm.poll(
            &format!("the pid of `{}`", self.script),
            Duration::from_secs(10),
            || {
                let text = fs::read_to_string(self.file("pid")).unwrap_or_default();
                Ok(text.trim().parse::<u32>().ok())
            },
        )?;
        self.vm
            .run(&format!("kill -{signal} -{pid} 2>/dev/null || true"))?;
        Ok(())
    }
}

impl Drop for Spawned<'_> {
    fn drop(&mut self) {
        if matches!(self.try_output(), Ok(None)) && self.vm.ensure_running().is_ok() {
            let _ = self.signal("KILL");
        }
    }
}
