//! Joining a server: the token pins the CA's hash, the CA fetched from
//! `/cacerts` must match it, and the token then buys the node's credentials
//! (a `system:node:<name>` client certificate and a kubelet serving
//! certificate), kept in `<agent dir>/tls/` for the next start.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A join token: `K10<hex sha256 of the server's CA PEM>::server:<secret>`.
#[derive(Clone)]
pub struct Token {
    ca_hash: String,
    full: String,
}

impl FromStr for Token {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Token> {
        let s = s.trim();
        let hash = s
            .strip_prefix("K10")
            .and_then(|rest| rest.split_once("::"))
            .filter(|(hash, secret)| {
                hash.len() == 64
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    && secret.split_once(':').is_some_and(|(_, s)| !s.is_empty())
            })
            .map(|(hash, _)| hash.to_ascii_lowercase());
        match hash {
            Some(ca_hash) => Ok(Token {
                ca_hash,
                full: s.to_string(),
            }),
            None => bail!(
                "the join token must be the whole token the server wrote to \
                 <data-dir>/server/token (K10<CA hash>::server:<secret>)"
            ),
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(K10{}::…)", self.ca_hash)
    }
}

/// The node's credentials on disk.
#[derive(Debug, Clone)]
pub struct Credentials {
    dir: PathBuf,
}

impl Credentials {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("serving.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("serving.key")
    }
}

/// Who the credentials were issued for: other values mean a new join.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
#[serde(rename_all = "camelCase")]
struct Issued {
    server: String,
    ca_hash: String,
    node_name: String,
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsResponse {
    ca: String,
    client_cert: String,
    client_key: String,
    serving_cert: String,
    serving_key: String,
}

/// Why a join attempt failed: worth retrying (the server is not up yet), or
/// not (it is the wrong server, or it refused the token).
enum Failure {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

/// What a join needs.
pub struct Join<'a> {
    pub server: &'a str,
    pub token: &'a Token,
    pub node_name: &'a str,
    pub addresses: Vec<String>,
    /// `<agent dir>/tls`.
    pub dir: &'a Path,
}

impl Join<'_> {
    /// The kept credentials if they were issued for this server, token and
    /// node; otherwise joins, retrying with backoff until the server answers.
    pub async fn credentials(&self) -> Result<Credentials> {
        let credentials = Credentials {
            dir: self.dir.to_path_buf(),
        };
        let issued = self.issued();
        if self.kept(&credentials).as_ref() == Some(&issued) {
            tracing::info!(dir = %self.dir.display(), "using the node credentials kept from an earlier join");
            return Ok(credentials);
        }
        let mut delay = Duration::from_secs(1);
        loop {
            match self.attempt(&credentials).await {
                Ok(()) => break,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    tracing::warn!(
                        server = self.server,
                        "waiting for the server to join it, retrying in {delay:?}: {e:#}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        write_file(
            &self.dir.join("issued.json"),
            &serde_json::to_vec_pretty(&issued)?,
            0o644,
        )?;
        tracing::info!(node = self.node_name, server = self.server, "joined");
        Ok(credentials)
    }

    fn issued(&self) -> Issued {
        Issued {
            server: self.server.to_string(),
            ca_hash: self.token.ca_hash.clone(),
            node_name: self.node_name.to_string(),
            addresses: self.addresses.clone(),
        }
    }

    fn kept(&self, credentials: &Credentials) -> Option<Issued> {
        let all_there = [
            credentials.ca(),
            credentials.client_cert(),
            credentials.client_key(),
            credentials.serving_cert(),
            credentials.serving_key(),
        ]
        .iter()
        .all(|f| f.exists());
        let issued = std::fs::read(self.dir.join("issued.json")).ok()?;
        all_there
            .then(|| serde_json::from_slice(&issued).ok())
            .flatten()
    }

    async fn attempt(&self, credentials: &Credentials) -> std::result::Result<(), Failure> {
        let ca = self.fetch_pinned_ca().await?;
        let response = self.request_credentials(&ca).await?;
        self.save(credentials, &response)
            .map_err(|e| Failure::Fatal(e.context("saving the node credentials")))
    }

    /// `GET /cacerts` without trusting anything yet; the token's hash decides.
    async fn fetch_pinned_ca(&self) -> std::result::Result<String, Failure> {
        let mut config = kube::Config::new(self.url().map_err(Failure::Fatal)?);
        config.accept_invalid_certs = true;
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(10));
        let client = kube::Client::try_from(config)
            .map_err(|e| Failure::Fatal(anyhow!(e).context("building an HTTPS client")))?;
        let request = http::Request::get("/cacerts")
            .body(Vec::new())
            .map_err(|e| Failure::Fatal(e.into()))?;
        let ca = client
            .request_text(request)
            .await
            .map_err(|e| Failure::Retry(anyhow!(e).context("fetching /cacerts")))?;
        let hash = hex::encode(Sha256::digest(ca.as_bytes()));
        if hash != self.token.ca_hash {
            return Err(Failure::Fatal(anyhow!(
                "couldn't validate the identity of the API Server at {}: its CA certificate \
                 hashes to {hash}, but the join token pins {}; is this the token of that server?",
                self.server,
                self.token.ca_hash
            )));
        }
        Ok(ca)
    }

    /// `POST /v1-paddock/node-credentials` over TLS pinned to `ca`.
    async fn request_credentials(
        &self,
        ca: &str,
    ) -> std::result::Result<CredentialsResponse, Failure> {
        let mut config = kube::Config::new(self.url().map_err(Failure::Fatal)?);
        config.root_cert = Some(pem_certs(ca).map_err(Failure::Fatal)?);
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(30));
        let client = kube::Client::try_from(config)
            .map_err(|e| Failure::Fatal(anyhow!(e).context("building an HTTPS client")))?;
        let body = serde_json::to_vec(&serde_json::json!({
            "nodeName": self.node_name,
            "addresses": self.addresses,
        }))
        .map_err(|e| Failure::Fatal(e.into()))?;
        let request = http::Request::post("/v1-paddock/node-credentials")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token.full),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| Failure::Fatal(e.into()))?;
        match client.request::<CredentialsResponse>(request).await {
            Ok(response) => Ok(response),
            Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => {
                Err(Failure::Fatal(anyhow!(
                    "the server at {} refused to join node {:?}: {} ({})",
                    self.server,
                    self.node_name,
                    status.message,
                    status.code
                )))
            }
            Err(e) => Err(Failure::Retry(
                anyhow!(e).context("requesting the node credentials"),
            )),
        }
    }

    fn save(&self, credentials: &Credentials, response: &CredentialsResponse) -> Result<()> {
        std::fs::create_dir_all(self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        write_file(&credentials.ca(), response.ca.as_bytes(), 0o644)?;
        write_file(
            &credentials.client_cert(),
            response.client_cert.as_bytes(),
            0o644,
        )?;
        write_file(
            &credentials.client_key(),
            response.client_key.as_bytes(),
            0o600,
        )?;
        write_file(
            &credentials.serving_cert(),
            response.serving_cert.as_bytes(),
            0o644,
        )?;
        write_file(
            &credentials.serving_key(),
            response.serving_key.as_bytes(),
            0o600,
        )?;
        Ok(())
    }

    fn url(&self) -> Result<http::Uri> {
        let url: http::Uri = self
            .server
            .parse()
            .with_context(|| format!("--server {:?} is not a URL", self.server))?;
        if url.scheme_str() != Some("https") {
            bail!("--server {:?} must be an https:// URL", self.server);
        }
        Ok(url)
    }
}

/// The DER certificates in a PEM bundle.
pub fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("parsing PEM certificates")?;
    if certs.is_empty() {
        bail!("no certificate in the PEM data");
    }
    Ok(certs)
}

/// Writes `path` atomically (a temporary file renamed) with `mode`.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A client with the node's identity.
pub fn client(server: &str, credentials: &Credentials) -> Result<kube::Client> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL"))?;
    let mut config = kube::Config::new(url);
    let ca = std::fs::read_to_string(credentials.ca())
        .with_context(|| format!("reading {}", credentials.ca().display()))?;
    config.root_cert = Some(pem_certs(&ca)?);
    config.auth_info.client_certificate = Some(credentials.client_cert().display().to_string());
    config.auth_info.client_key = Some(credentials.client_key().display().to_string());
    config.connect_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).context("building the node's API client")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_the_servers_token_shape() {
        let token: Token = format!("K10{HASH}::server:s3cret\n").parse().unwrap();
        assert_eq!(token.ca_hash, HASH);
        assert_eq!(token.full, format!("K10{HASH}::server:s3cret"));
    }

    #[test]
    fn refuses_tokens_that_pin_nothing() {
        for bad in [
            "s3cret".to_string(),
            format!("K10{}::server:x", &HASH[1..]),
            format!("K10{HASH}::server:"),
            format!("K10{}::server:x", HASH.replace('a', "g")),
        ] {
            let err = bad.parse::<Token>().unwrap_err().to_string();
            assert!(err.contains("whole token"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_token_is_not_printed_in_debug_output() {
        let token: Token = format!("K10{HASH}::server:s3cret").parse().unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
