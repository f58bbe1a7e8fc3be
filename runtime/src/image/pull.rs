//! Talking to registries with `oci-client`: the endpoints registries.yaml
//! gives for a reference, tried in order, with a client per endpoint.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::registries::{Endpoint, Registries};

/// A manifest and config resolved from one endpoint, and where to get the
/// layers from.
pub struct Resolved {
    pub manifest: OciImageManifest,
    /// The digest the reference resolved to (the index's for multi-platform
    /// images), for `repo_digests`.
    pub digest: String,
    pub config: String,
    pub source: Source,
}

/// An endpoint to fetch blobs from.
pub struct Source {
    client: Arc<Client>,
    reference: Reference,
    pub host: String,
}

impl Source {
    /// Downloads `layer` to `path`; oci-client verifies its digest.
    pub async fn fetch_blob(&self, layer: &OciDescriptor, path: &Path) -> Result<()> {
        let file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        self.client
            .pull_blob(&self.reference, layer, file)
            .await
            .with_context(|| format!("fetching {} from {}", layer.digest, self.host))
    }
}

pub struct Puller {
    registries: Registries,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl Puller {
    pub fn new(registries: Registries) -> Puller {
        Puller {
            registries,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `reference` on the first endpoint that serves it. `auth`
    /// (from the CRI request) is for the registry itself; mirrors use
    /// registries.yaml's credentials.
    pub async fn resolve(&self, reference: &Reference, auth: &RegistryAuth) -> Result<Resolved> {
        let mut failures = Vec::new();
        for endpoint in self.registries.endpoints(reference.registry()) {
            let mut target = reference.clone();
            if endpoint.mirror {
                target.set_mirror_registry(endpoint.host.clone());
            }
            // The request's credentials are for the registry itself;
            // registries.yaml's for whatever endpoint it configures.
            let auth = match (endpoint.mirror, auth) {
                (false, RegistryAuth::Basic(..) | RegistryAuth::Bearer(_)) => auth.clone(),
                _ => self.registries.auth(&endpoint.host)?,
            };
            let client = self.client(&endpoint, &auth)?;
            match client
                .pull_manifest_and_config_and_list_digest(&target, &auth)
                .await
            {
                Ok((manifest, digest, config, list_digest)) => {
                    return Ok(Resolved {
                        manifest,
                        digest: list_digest.unwrap_or(digest),
                        config,
                        source: Source {
                            client,
                            reference: target,
                            host: endpoint.host,
                        },
                    });
                }
                Err(e) => {
                    tracing::warn!(image = %reference, endpoint = %endpoint.host, "pull failed: {e}");
                    failures.push(format!("{}: {e}", endpoint.host));
                }
            }
        }
        Err(anyhow!(
            "pulling {reference}: no endpoint served it ({})",
            failures.join("; ")
        ))
    }

    /// A client per endpoint and credentials: oci-client keeps the first
    /// credentials (and tokens) it sees for a registry.
    fn client(&self, endpoint: &Endpoint, auth: &RegistryAuth) -> Result<Arc<Client>> {
        let key = format!("{}\0{}", endpoint.host, credentials_key(auth));
        let mut clients = self.clients.lock().expect("registry clients lock poisoned");
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut extra_root_certificates = Vec::new();
        if let Some(ca) = &endpoint.ca_file {
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
            });
        }
        let client = Arc::new(Client::new(ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: endpoint.insecure_skip_verify,
            extra_root_certificates,
            ..ClientConfig::default()
        }));
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Names credentials without keeping them in clear.
fn credentials_key(auth: &RegistryAuth) -> String {
    use sha2::{Digest, Sha256};
    let secret = match auth {
        RegistryAuth::Anonymous => return "anonymous".to_string(),
        RegistryAuth::Basic(user, password) => format!("basic\0{user}\0{password}"),
        RegistryAuth::Bearer(token) => format!("bearer\0{token}"),
    };
    hex::encode(Sha256::digest(secret.as_bytes()))
}
