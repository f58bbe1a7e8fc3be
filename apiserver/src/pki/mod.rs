//! The cluster's PKI: a CA made on first start, and the certificates signed
//! by it (apiserver serving cert, admin client cert, the apiserver's client
//! cert for kubelets, node credentials), kept as PEM files in `tls/`.

mod issue;
mod kubeconfig;
mod token;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{Issuer, KeyPair};

pub use issue::{CertAndKey, Subject};
pub use kubeconfig::{Kubeconfig, write_private};
pub use token::JoinToken;

/// A CA and the files under `<data-dir>/server/tls/`.
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// The admin identity's group: may do everything.
pub const MASTERS: &str = "system:masters";
/// The kubelets' group.
pub const NODES: &str = "system:nodes";

impl Pki {
    /// Loads the CA from `dir`, or makes one if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        let (ca_pem, key_pem) = if cert_path.exists() {
            (read(&cert_path)?, read(&key_path)?)
        } else {
            let ca = issue::new_ca("paddock-server-ca")?;
            write_private(&key_path, &ca.key_pem)?;
            write_private(&cert_path, &ca.cert_pem)?;
            (ca.cert_pem, ca.key_pem)
        };
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("parsing {}", key_path.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)
            .with_context(|| format!("parsing {}", cert_path.display()))?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            issuer,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Signs a new client certificate for `subject`.
    pub fn client_cert(&self, subject: &Subject) -> Result<CertAndKey> {
        issue::client(&self.issuer, subject)
    }

    /// Signs a new serving certificate for `dns_names` and `ips`.
    pub fn serving_cert(
        &self,
        cn: &str,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<CertAndKey> {
        issue::serving(&self.issuer, cn, dns_names, ips)
    }

    /// The client certificate kept as `<name>.crt`/`<name>.key`, made (and
    /// written) if missing or about to expire.
    pub fn kept_client_cert(&self, name: &str, subject: &Subject) -> Result<CertAndKey> {
        let (cert_path, key_path) = self.paths(name);
        if let Some(kept) = issue::load_valid(&cert_path, &key_path)? {
            return Ok(kept);
        }
        let made = self.client_cert(subject)?;
        self.save(name, &made)?;
        Ok(made)
    }

    /// Writes `<name>.crt` and `<name>.key`.
    pub fn save(&self, name: &str, pair: &CertAndKey) -> Result<()> {
        let (cert_path, key_path) = self.paths(name);
        write_private(&key_path, &pair.key_pem)?;
        write_private(&cert_path, &pair.cert_pem)
    }

    pub fn paths(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        )
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
