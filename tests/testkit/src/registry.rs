//! A real registry for tests: Debian's `docker-registry` serving a private
//! copy of the test images' storage ([`crate::images`]) inside a network
//! namespace, stopped and cleaned up on drop.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use paddock_testkit::{netns::NetNs, registry::Registry, unique_name};
//! let node = NetNs::create(&unique_name("pdk"))?;
//! let registry = Registry::start(&node)?; // http://127.0.0.1:5000 inside `node`
//! // registries.yaml: mirrors: docker.io: endpoint: ["http://127.0.0.1:5000"]
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::{NetNs, run};
use crate::process::Guard;
use crate::{images, unique_name, wait};

/// A running `docker-registry` (plain HTTP; no auth, or basic auth).
pub struct Registry {
    process: Option<Guard>,
    dir: PathBuf,
    addr: String,
}

impl Registry {
    /// Serves the test images on `127.0.0.1:5000` inside `ns`.
    pub fn start(ns: &NetNs) -> Result<Registry> {
        Registry::start_at(ns, "127.0.0.1:5000")
    }

    /// Serves the test images on `addr` (`IP:PORT`, an address of `ns`).
    pub fn start_at(ns: &NetNs, addr: &str) -> Result<Registry> {
        Registry::start_with(ns, addr, None)
    }

    /// Serves the test images on `addr`, to clients that send HTTP basic
    /// auth as `user` with `password` only.
    pub fn start_with_basic_auth(
        ns: &NetNs,
        addr: &str,
        user: &str,
        password: &str,
    ) -> Result<Registry> {
        Registry::start_with(ns, addr, Some((user, password)))
    }

    fn start_with(ns: &NetNs, addr: &str, basic_auth: Option<(&str, &str)>) -> Result<Registry> {
        let dir = std::env::temp_dir().join(unique_name("paddock-registry-"));
        let storage = dir.join("storage");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut registry = Registry {
            process: None,
            dir,
            addr: addr.to_string(),
        };
        run(Command::new("cp")
            .arg("-a")
            .arg(images::registry_storage()?)
            .arg(&storage))?;
        let auth = match basic_auth {
            Some((user, password)) => {
                let hash = bcrypt::hash_with_result(password, 4)?
                    .format_for_version(bcrypt::Version::TwoY);
                let htpasswd = registry.dir.join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
                format!(
                    "auth: {{ htpasswd: {{ realm: paddock-test, path: {} }} }}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let config = registry.dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: info }}\n\
                 storage: {{ filesystem: {{ rootdirectory: {} }}, delete: {{ enabled: true }} }}\n\
                 http: {{ addr: \"{addr}\" }}\n{auth}",
                storage.display()
            ),
        )?;
        let log = std::fs::File::create(registry.dir.join("registry.log"))?;
        let mut cmd = ns.command("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdout(log.try_clone()?)
            .stderr(log);
        registry.process = Some(Guard::spawn("docker-registry", cmd)?);
        let url = format!("http://{addr}/v2/");
        wait::until(
            "docker-registry to serve",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                if let Some(process) = registry.process.as_mut()
                    && !process.is_running()
                {
                    anyhow::bail!("docker-registry exited: {}", registry.log());
                }
                // 200, or 401 when it wants credentials: it serves.
                let out = ns.run(
                    "curl",
                    &["-s", "-o", "/dev/null", "-w", "%{http_code}", &url],
                );
                Ok(out
                    .ok()
                    .filter(|o| matches!(&o.stdout[..], b"200" | b"401"))
                    .map(|_| ()))
            },
        )?;
        Ok(registry)
    }

    /// `IP:PORT` it listens on, inside its namespace.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The storage directory it serves (a copy owned by this guard).
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// What the registry logged so far (info level: a line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_test_images_inside_a_namespace() -> Result<()> {
        let ns = NetNs::create(&unique_name("pdkrg"))?;
        let registry = Registry::start(&ns)?;
        let out = ns.run(
            "curl",
            &[
                "-sf",
                &format!("http://{}/v2/library/nginx/tags/list", registry.addr()),
            ],
        )?;
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.contains("\"latest\""), "{body}");
        let storage = registry.storage();
        drop(registry);
        assert!(!storage.exists(), "the registry's copy is removed on drop");
        Ok(())
    }

    #[test]
    fn a_basic_auth_registry_wants_its_credentials() -> Result<()> {
        let ns = NetNs::create(&unique_name("pdkrg"))?;
        let registry = Registry::start_with_basic_auth(&ns, "127.0.0.1:5001", "paddock", "s3cret")?;
        let code = |auth: &[&str]| -> Result<String> {
            let url = format!("http://{}/v2/", registry.addr());
            let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
            args.extend_from_slice(auth);
            args.push(&url);
            Ok(String::from_utf8(ns.run("curl", &args)?.stdout)?)
        };
        assert_eq!(code(&[])?, "401");
        assert_eq!(code(&["-u", "paddock:wrong"])?, "401");
        assert_eq!(code(&["-u", "paddock:s3cret"])?, "200");
        Ok(())
    }
}
