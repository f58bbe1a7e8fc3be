//! ExecSync: a command run inside a running container by a helper process
//! (libcontainer's tenant builder joins the container's namespaces and
//! cgroup), its stdout and stderr collected, killed after a timeout.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::helper;
use crate::process::{pidfd_open, poll_readable, with_default_sigpipe};

/// Output kept per stream, as the kubelet caps it.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub state_root: PathBuf,
    pub args: Vec<String>,
    /// Zero: no timeout.
    pub timeout_ms: u64,
    /// Where the helper records how the command ended.
    pub status_file: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Status {
    exit_code: i32,
    timed_out: bool,
    error: Option<String>,
}

pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Runs `request` through a helper of `exe` and collects its output.
pub async fn exec_sync(exe: &Path, request: Request) -> Result<Output> {
    let status_file = request.status_file.clone();
    let mut child = spawn(exe, request, Stdio::null(), Stdio::piped(), Stdio::piped())?;
    let (mut out, mut err) = (
        child.stdout.take().context("stdout")?,
        child.stderr.take().context("stderr")?,
    );
    let (stdout, stderr, _) =
        tokio::join!(read_capped(&mut out), read_capped(&mut err), child.wait());
    let exit_code = exit_code(&status_file)?;
    Ok(Output {
        stdout,
        stderr,
        exit_code,
    })
}

/// Starts `request` in a helper of `exe` whose command gets the given stdio.
pub fn spawn(
    exe: &Path,
    request: Request,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<tokio::process::Child> {
    Ok(helper::command(exe, &helper::Request::Exec(request))?
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .context("spawning the exec helper")?)
}

/// How the command ended, from the status file its helper wrote (and
/// removes it).
pub fn exit_code(status_file: &Path) -> Result<i32> {
    let status: Option<Status> = crate::state::read_json(status_file)?;
    let _ = std::fs::remove_file(status_file);
    let status = status.context("the exec helper recorded no status")?;
    if let Some(error) = status.error {
        return Err(Error::Internal(anyhow::anyhow!("exec failed: {error}")));
    }
    if status.timed_out {
        return Err(Error::DeadlineExceeded("command timed out".into()));
    }
    Ok(status.exit_code)
}

async fn read_capped(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
    out
}

/// The helper's side: run the command with our stdout/stderr, wait.
pub fn run(request: Request) -> i32 {
    let status = run_command(&request).unwrap_or_else(|e| Status {
        exit_code: -1,
        timed_out: false,
        error: Some(format!("{e:#}")),
    });
    match crate::state::write_json(&request.status_file, &status) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn run_command(request: &Request) -> anyhow::Result<Status> {
    let builder = ContainerBuilder::new(request.id.clone(), SyscallType::default())
        .with_root_path(&request.state_root)?
        .as_tenant()
        .with_container_args(request.args.clone())
        .with_detach(false);
    let pid = with_default_sigpipe(|| builder.build())
        .context("starting the command in the container")?;
    let pidfd = pidfd_open(pid.as_raw(), 0)?.context("the command is gone")?;
    let deadline = (request.timeout_ms > 0)
        .then(|| std::time::Instant::now() + Duration::from_millis(request.timeout_ms));
    let exited = loop {
        let timeout_ms = match deadline {
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .as_millis() as i32,
            None => -1,
        };
        if poll_readable(&[pidfd.as_fd()], timeout_ms).context("waiting for the command")?[0] {
            break true;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break false;
        }
    };
    if !exited {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let exit_code = match waitpid(pid, Some(WaitPidFlag::__WALL))? {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => -1,
    };
    Ok(Status {
        exit_code,
        timed_out: !exited,
        error: None,
    })
}
