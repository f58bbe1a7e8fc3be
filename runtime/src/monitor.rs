//! The container monitor, one per container (conmon's job): a helper
//! process in its own session that creates the libcontainer container (so
//! the container's init is its child), copies the container's stdout and
//! stderr into the CRI log, reaps the init, records the exit (code, time,
//! OOM kill) in `exit.json` and deletes the libcontainer state. It outlives
//! a runtime restart; SIGUSR1 makes it reopen the log (ReopenContainerLog).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::logs::{LineWriter, Stream};
use crate::process::{pidfd_open, poll_readable, with_default_sigpipe};
use crate::{cgroups, state};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    /// libcontainer's state root.
    pub state_root: PathBuf,
    pub bundle: PathBuf,
    pub log_path: Option<PathBuf>,
    pub exit_file: PathBuf,
    pub cgroup: String,
}

/// What the monitor reports on its stdout once the container is created.
#[derive(Debug, Serialize, Deserialize)]
pub enum Report {
    Created { init_pid: i32 },
    Failed { error: String },
}

/// How a container ended, as `exit.json` records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit status, or 128 + the signal that killed it.
    pub code: i32,
    pub oom_killed: bool,
    pub finished_at: i64,
}

static REOPEN_LOG: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    REOPEN_LOG.store(true, Ordering::SeqCst);
}

pub fn run(request: Request) -> i32 {
    // Our own session: the runtime's process group may be killed as a whole.
    let _ = nix::unistd::setsid();
    let created = create(&request);
    let report = match &created {
        Ok((pid, _, _)) => Report::Created {
            init_pid: pid.as_raw(),
        },
        Err(e) => Report::Failed {
            error: format!("{e:#}"),
        },
    };
    {
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, &report);
        let _ = stdout.write_all(b"\n");
        let _ = stdout.flush();
    }
    // Close the report pipe (the runtime reads it to EOF) and the runtime's
    // stderr; from here on the monitor speaks through files only.
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
    let Ok((init, stdout, stderr)) = created else {
        return 1;
    };
    let exit = supervise(&request, init, stdout, stderr);
    let _ = state::write_json(&request.exit_file, &exit);
    if let Ok(mut container) = Container::load(request.state_root.join(&request.id)) {
        let _ = container.delete(true);
    }
    0
}

/// Creates the container with its stdout and stderr on pipes; returns the
/// init's pid and the pipes' read ends.
fn create(request: &Request) -> Result<(Pid, OwnedFd, OwnedFd)> {
    let (stdout_r, stdout_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (stderr_r, stderr_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let stdin = File::open("/dev/null")?;
    let builder = ContainerBuilder::new(request.id.clone(), SyscallType::default())
        .with_root_path(&request.state_root)?
        .with_stdin(OwnedFd::from(stdin))
        .with_stdout(stdout_w)
        .with_stderr(stderr_w)
        .as_init(&request.bundle)
        .with_systemd(false)
        .with_detach(true);
    let container = with_default_sigpipe(|| builder.build()).context("creating the container")?;
    let pid = container.pid().context("the container has no init pid")?;
    Ok((pid, stdout_r, stderr_r))
}

/// Runs the container of `bundle` to completion with this process's stdio
/// (create, start, wait, delete: what `runc run` does), returning its exit
/// code. For benchmarks of the container lifecycle; single-threaded callers
/// only.
pub fn run_to_completion(state_root: &Path, bundle: &Path, id: &str) -> Result<i32> {
    let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(state_root)?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(false);
    let mut container =
        with_default_sigpipe(|| builder.build()).context("creating the container")?;
    container.start().context("starting the container")?;
    let pid = container.pid().context("the container has no init pid")?;
    let code = loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for the container"),
        }
    };
    container.delete(true).context("deleting the container")?;
    Ok(code)
}

struct Log {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl Log {
    fn open(path: Option<&Path>) -> Log {
        let mut log = Log {
            path: path.map(Path::to_path_buf),
            file: None,
        };
        log.reopen();
        log
    }

    fn reopen(&mut self) {
        self.file = self.path.as_ref().and_then(|p| {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            File::options().create(true).append(true).open(p).ok()
        });
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Ok(buf.len()), // no log path: discard, as containerd does
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn supervise(request: &Request, init: Pid, stdout: OwnedFd, stderr: OwnedFd) -> Exit {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_sigusr1),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &action);
    }
    let mut log = Log::open(request.log_path.as_deref());
    let mut streams = [
        (Some(stdout), LineWriter::new(Stream::Stdout)),
        (Some(stderr), LineWriter::new(Stream::Stderr)),
    ];
    let pidfd = pidfd_open(init.as_raw(), 0).ok().flatten();
    let mut status = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if REOPEN_LOG.swap(false, Ordering::SeqCst) {
            log.reopen();
        }
        if status.is_none() {
            status = reap(init);
            if status.is_some() {
                // Give the pipes a moment to deliver what is left: every
                // process of the container's pid namespace dies with init.
                drain_deadline = Some(Instant::now() + Duration::from_millis(500));
            }
        }
        let open: Vec<usize> = (0..2).filter(|i| streams[*i].0.is_some()).collect();
        if status.is_some()
            && (open.is_empty() || drain_deadline.is_some_and(|d| Instant::now() >= d))
        {
            break;
        }
        let mut fds: Vec<_> = open
            .iter()
            .filter_map(|i| streams[*i].0.as_ref().map(|fd| fd.as_fd()))
            .collect();
        if status.is_none()
            && let Some(pidfd) = &pidfd
        {
            fds.push(pidfd.as_fd());
        }
        let timeout_ms = if status.is_some() { 50 } else { 1000 };
        let ready = match poll_readable(&fds, timeout_ms) {
            Ok(ready) => ready,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        drop(fds);
        for (slot, is_ready) in open.iter().zip(ready) {
            if !is_ready {
                continue;
            }
            let (fd, writer) = &mut streams[*slot];
            let Some(raw) = fd.as_ref() else { continue };
            match nix::unistd::read(raw.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    let _ = writer.finish(&mut log);
                    *fd = None;
                }
                Ok(n) => {
                    let _ = writer.write(&buf[..n], &mut log);
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => *fd = None,
            }
        }
    }
    for (_, writer) in &mut streams {
        let _ = writer.finish(&mut log);
    }
    let code = match status {
        Some(WaitStatus::Exited(_, code)) => code,
        Some(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
        _ => 255,
    };
    Exit {
        code,
        oom_killed: cgroups::oom_kills(&request.cgroup) > 0,
        finished_at: state::now_nanos(),
    }
}

/// The init's exit status if it has exited (and is now reaped).
fn reap(init: Pid) -> Option<WaitStatus> {
    match waitpid(init, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => Some(status),
        Ok(_) => None,
        Err(_) => Some(WaitStatus::Exited(init, 255)),
    }
}
