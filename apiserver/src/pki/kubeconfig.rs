//! Kubeconfig files for the admin identity (and any client cert).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::CertAndKey;

/// A kubeconfig with one cluster, one user and one context, all `default`
/// (k3s's shape).
pub struct Kubeconfig<'a> {
    pub server: &'a str,
    pub ca_pem: &'a str,
    pub client: &'a CertAndKey,
}

impl Kubeconfig<'_> {
    pub fn render(&self) -> String {
        let b64 = |s: &str| STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: default
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: default
  context:
    cluster: default
    user: default
current-context: default
preferences: {{}}
",
            server = self.server,
            ca = b64(self.ca_pem),
            cert = b64(&self.client.cert_pem),
            key = b64(&self.client.key_pem),
        )
    }

    /// Writes the kubeconfig (mode 0600), creating its directory.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_private(path, &self.render())
    }
}

/// Writes `contents` to `path` readable by its owner only, replacing it
/// atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
