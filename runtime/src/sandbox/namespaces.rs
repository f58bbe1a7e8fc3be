//! A pod's network, IPC and UTS namespaces, created by a short-lived thread
//! and held by bind mounts (no pause process): `<dir>/ns/{net,ipc,uts}`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use crate::snapshot::unmount;

/// The namespaces a pod can own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Net,
    Ipc,
    Uts,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

/// Where the bind mount holding namespace `kind` of the pod in `dir` lives.
pub fn path(dir: &Path, kind: Kind) -> PathBuf {
    dir.join("ns").join(kind.name())
}

/// Creates the namespaces `kinds` for the pod in `dir`, with `hostname` set
/// in a new UTS namespace and the loopback up in a new network namespace.
pub fn create(dir: &Path, kinds: &[Kind], hostname: &str) -> Result<()> {
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir)?;
    let (dir, kinds, hostname) = (dir.to_path_buf(), kinds.to_vec(), hostname.to_string());
    // unshare() affects the calling thread only for these namespaces; the
    // thread exits afterwards so no other work ever runs inside them.
    std::thread::spawn(move || enter_and_hold(&dir, &kinds, &hostname))
        .join()
        .map_err(|_| anyhow!("the namespace thread panicked"))?
}

fn enter_and_hold(dir: &Path, kinds: &[Kind], hostname: &str) -> Result<()> {
    let flags = kinds.iter().fold(CloneFlags::empty(), |f, k| f | k.flag());
    nix::sched::unshare(flags).context("unshare")?;
    if kinds.contains(&Kind::Uts) && !hostname.is_empty() {
        nix::unistd::sethostname(hostname).context("setting the pod's hostname")?;
    }
    if kinds.contains(&Kind::Net) {
        loopback_up().context("bringing lo up")?;
    }
    for kind in kinds {
        let target = path(dir, *kind);
        std::fs::File::create(&target).with_context(|| format!("creating {}", target.display()))?;
        let source = format!("/proc/thread-self/ns/{}", kind.name());
        nix::mount::mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {source} at {}", target.display()))?;
    }
    Ok(())
}

fn loopback_up() -> Result<()> {
    use std::os::fd::AsRawFd;
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    Ok(())
}

/// Unmounts and deletes whatever namespaces of the pod in `dir` remain.
pub fn remove(dir: &Path) -> Result<()> {
    let ns_dir = dir.join("ns");
    for kind in [Kind::Net, Kind::Ipc, Kind::Uts] {
        let target = path(dir, kind);
        if target.exists() {
            unmount(&target)?;
            std::fs::remove_file(&target)
                .with_context(|| format!("removing {}", target.display()))?;
        }
    }
    match std::fs::remove_dir(&ns_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", ns_dir.display()))
        }
        _ => Ok(()),
    }
}
