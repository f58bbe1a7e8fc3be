//! `registries.yaml` in k3s's format: mirrors per registry host (tried in
//! order, then the registry itself) and per-host auth and TLS settings.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: { username: user, password: secret }
//!     tls: { insecure_skip_verify: true }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default)]
    mirrors: HashMap<String, Mirror>,
    #[serde(default)]
    configs: HashMap<String, HostConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct Mirror {
    #[serde(default)]
    endpoint: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct HostConfig {
    auth: Option<AuthConfig>,
    tls: Option<TlsConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthConfig {
    username: Option<String>,
    password: Option<String>,
    /// base64 of `username:password`.
    auth: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TlsConfig {
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

/// One place to pull a registry's images from.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// `host[:port]`, as in an image reference.
    pub host: String,
    pub plain_http: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    /// Whether this is a mirror rather than the registry itself (a
    /// registry may list itself to be reached over plain HTTP).
    pub mirror: bool,
}

impl Registries {
    /// Reads `path`; a missing file means no mirrors and no credentials.
    pub fn load(path: Option<&Path>) -> Result<Registries> {
        let Some(path) = path else {
            return Ok(Registries::default());
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Registries::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registries::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn parse(text: &str) -> Result<Registries> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let registries: Registries =
            serde_saphyr::from_str(text).context("parsing registries.yaml")?;
        for mirror in registries.mirrors.values() {
            for endpoint in &mirror.endpoint {
                parse_endpoint(endpoint)?;
            }
        }
        Ok(registries)
    }

    /// Where to pull images of `registry` from, in order: its mirrors (or
    /// those of `*`), then the registry itself over HTTPS.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirrors = self
            .mirrors
            .get(registry)
            .or_else(|| self.mirrors.get("*"))
            .map(|m| m.endpoint.as_slice())
            .unwrap_or_default();
        let mut endpoints: Vec<Endpoint> = mirrors
            .iter()
            .filter_map(|url| parse_endpoint(url).ok())
            .map(|(host, plain_http)| {
                let mirror = host != registry;
                self.endpoint(host, plain_http, mirror)
            })
            .collect();
        if !endpoints.iter().any(|e| e.host == registry) {
            endpoints.push(self.endpoint(registry.to_string(), false, false));
        }
        endpoints
    }

    fn endpoint(&self, host: String, plain_http: bool, mirror: bool) -> Endpoint {
        let tls = self.configs.get(&host).and_then(|c| c.tls.as_ref());
        Endpoint {
            plain_http,
            insecure_skip_verify: tls.is_some_and(|t| t.insecure_skip_verify),
            ca_file: tls.and_then(|t| t.ca_file.clone()),
            host,
            mirror,
        }
    }

    /// The credentials configured for `host`, anonymous if none.
    pub fn auth(&self, host: &str) -> Result<RegistryAuth> {
        let Some(auth) = self.configs.get(host).and_then(|c| c.auth.as_ref()) else {
            return Ok(RegistryAuth::Anonymous);
        };
        credentials(
            auth.username.as_deref(),
            auth.password.as_deref(),
            auth.auth.as_deref(),
            auth.identitytoken.as_deref(),
        )
        .with_context(|| format!("auth for {host} in registries.yaml"))
    }
}

/// Credentials from the fields registries.yaml and CRI's AuthConfig share.
pub fn credentials(
    username: Option<&str>,
    password: Option<&str>,
    auth: Option<&str>,
    identity_token: Option<&str>,
) -> Result<RegistryAuth> {
    fn present(s: Option<&str>) -> Option<&str> {
        s.filter(|s| !s.is_empty())
    }
    if let Some(token) = present(identity_token) {
        return Ok(RegistryAuth::Bearer(token.to_string()));
    }
    if let Some(encoded) = present(auth) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .context("auth is not base64")?;
        let decoded = String::from_utf8(decoded).context("auth is not UTF-8")?;
        let Some((user, pass)) = decoded.split_once(':') else {
            bail!("auth does not decode to username:password");
        };
        return Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()));
    }
    match present(username) {
        Some(user) => Ok(RegistryAuth::Basic(
            user.to_string(),
            password.unwrap_or_default().to_string(),
        )),
        None => Ok(RegistryAuth::Anonymous),
    }
}

/// `http://host:port[/path]` → (`host:port`, plain HTTP); no scheme means HTTPS.
fn parse_endpoint(url: &str) -> Result<(String, bool)> {
    let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else {
        (false, url)
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        bail!("mirror endpoint {url:?} has no host");
    }
    Ok((host.to_string(), plain_http))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example:8443/v2"
  "*":
    endpoint: ["fallback.example"]
configs:
  "127.0.0.1:5000":
    auth:
      username: alice
      password: secret
  "mirror.example:8443":
    auth:
      auth: Ym9iOmh1bnRlcjI=
    tls:
      insecure_skip_verify: true
"#;

    #[test]
    fn mirrors_come_first_then_the_registry_itself() -> Result<()> {
        let r = Registries::parse(YAML)?;
        let hosts: Vec<(String, bool, bool)> = r
            .endpoints("docker.io")
            .into_iter()
            .map(|e| (e.host, e.plain_http, e.insecure_skip_verify))
            .collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1:5000".to_string(), true, false),
                ("mirror.example:8443".to_string(), false, true),
                ("docker.io".to_string(), false, false),
            ]
        );
        let others: Vec<String> = r.endpoints("quay.io").into_iter().map(|e| e.host).collect();
        assert_eq!(others, ["fallback.example", "quay.io"]);
        Ok(())
    }

    #[test]
    fn a_registry_listing_itself_is_reached_directly() -> Result<()> {
        let r = Registries::parse(
            "mirrors:\n  \"10.0.0.1:5000\":\n    endpoint: [\"http://10.0.0.1:5000\"]\n",
        )?;
        let endpoints = r.endpoints("10.0.0.1:5000");
        assert_eq!(endpoints.len(), 1);
        assert!(endpoints[0].plain_http && !endpoints[0].mirror);
        Ok(())
    }

    #[test]
    fn auth_from_fields_or_base64() -> Result<()> {
        let r = Registries::parse(YAML)?;
        assert_eq!(
            r.auth("127.0.0.1:5000")?,
            RegistryAuth::Basic("alice".into(), "secret".into())
        );
        assert_eq!(
            r.auth("mirror.example:8443")?,
            RegistryAuth::Basic("bob".into(), "hunter2".into())
        );
        assert_eq!(r.auth("docker.io")?, RegistryAuth::Anonymous);
        Ok(())
    }

    #[test]
    fn bad_files_are_refused_and_empty_ones_are_fine() {
        assert!(Registries::parse("mirrors: [1, 2]").is_err());
        assert!(Registries::parse("mirrors:\n  docker.io:\n    endpoint: ['http://']\n").is_err());
        assert!(Registries::parse("").is_ok());
    }
}
