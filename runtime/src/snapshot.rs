//! A container's root filesystem: an overlayfs of its image's layers (read
//! only, shared) under a writable upper directory of its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use nix::mount::{MntFlags, MsFlags};

/// The mount options of an overlay must fit in a page.
const MAX_OPTIONS: usize = 4000;

/// Mounts the overlay of `layers` (bottom first) at `dir/rootfs`, with its
/// upper and work directories in `dir`. Returns the rootfs path.
pub fn mount(layers: &[PathBuf], dir: &Path) -> Result<PathBuf> {
    ensure!(
        !layers.is_empty(),
        "an image without layers has no root filesystem"
    );
    let (rootfs, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    ensure!(
        options.len() <= MAX_OPTIONS,
        "{} layers are too many for one overlay mount",
        layers.len()
    );
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .with_context(|| format!("mounting the overlay at {}", rootfs.display()))?;
    Ok(rootfs)
}

/// Unmounts `dir/rootfs` if mounted and deletes the snapshot's directories.
pub fn remove(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    unmount(&rootfs)?;
    for d in ["rootfs", "upper", "work"] {
        let path = dir.join(d);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Lazily unmounts `path`, every mount stacked there; fine if none is.
pub fn unmount(path: &Path) -> Result<()> {
    loop {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("unmounting {}", path.display())),
        }
    }
}
