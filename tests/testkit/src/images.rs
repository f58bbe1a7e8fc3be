//! The test images, built offline from Debian packages by
//! `tests/images/build.sh` (`make images`) into `target/images`:
//!
//! - OCI layouts (umoci) of nginx, busybox and pause, for tools that import
//!   images without a registry (`ctr images import`, `skopeo copy oci:...`);
//! - a docker-registry storage directory holding them under the paths a
//!   mirror of docker.io and registry.k8s.io serves, which
//!   [`crate::registry::Registry`] serves on a namespace's loopback.
//!
//! The references below are what a user writes; with registries.yaml
//! mirroring `docker.io` and `registry.k8s.io` to the test registry they pull
//! these images. `PADDOCK_TEST_IMAGES` overrides the directory.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// `nginx`: Debian's nginx listening on :80, logging to stdout/stderr,
/// `stopSignal` SIGQUIT.
pub const NGINX: &str = "docker.io/library/nginx:latest";
/// `busybox`: Debian's busybox-static with every applet (`sh`, `sleep`,
/// `httpd`, `wget`...) linked; default command `sh`.
pub const BUSYBOX: &str = "docker.io/library/busybox:latest";
/// The busybox image with zstd-compressed layers.
pub const BUSYBOX_ZSTD: &str = "docker.io/library/busybox:zstd";
/// An OCI image index whose linux/amd64 entry is the busybox image and
/// whose linux/arm64 entry is the pause image.
pub const BUSYBOX_MULTI: &str = "docker.io/library/busybox:multi";
/// The sandbox image: a static pause binary running as 65535.
pub const PAUSE: &str = "registry.k8s.io/pause:3.6";

/// The directory `make images` fills; fails with a hint if it was not run.
pub fn dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("PADDOCK_TEST_IMAGES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/images")),
    };
    if !dir.join(".inputs").exists() {
        bail!(
            "test images are not built in {}: run `make images` (tests/images/build.sh)",
            dir.display()
        );
    }
    Ok(dir)
}

/// The docker-registry storage directory (its `rootdirectory`) holding every
/// test image. Serve a copy of it rather than writing into it.
pub fn registry_storage() -> Result<PathBuf> {
    Ok(dir()?.join("registry"))
}

/// The OCI layout of `name` (`nginx`, `busybox` or `pause`); its tag is the
/// one in the reference above (`latest`, or `3.6` for pause).
pub fn oci_layout(name: &str) -> Result<PathBuf> {
    let layout = dir()?.join("oci").join(name);
    if !layout.join("index.json").exists() {
        bail!("no test image {name} in {}", layout.display());
    }
    Ok(layout)
}
