//! Images: pulled from registries (registries.yaml mirrors and auth), kept
//! in a content-addressed store whose layers are unpacked once, by diff id,
//! and shared by every image and container that stacks them.
//!
//! On disk, under `<root>/images`: `index.json` (the images and layer
//! usage), `layers/<diff id hex>/` (unpacked layers) and `tmp/`.

mod pull;
pub mod registries;
mod unpack;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use futures::future::{BoxFuture, FutureExt, Shared};
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state;
use pull::Puller;
pub use registries::Registries;
use unpack::LayerUsage;

/// An image in the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of its config, as containerd names images.
    pub id: String,
    /// `docker.io/library/nginx:latest`.
    pub repo_tags: Vec<String>,
    /// `docker.io/library/nginx@sha256:...`.
    pub repo_digests: Vec<String>,
    /// Diff ids, bottom layer first.
    pub layers: Vec<String>,
    /// Compressed size, as registries and `crictl images` report it.
    pub size: u64,
    pub config: ImageConfiguration,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    images: Vec<Image>,
    layers: BTreeMap<String, LayerUsage>,
}

type PullResult = std::result::Result<String, Arc<Error>>;

pub struct ImageStore {
    dir: PathBuf,
    index: Mutex<Index>,
    puller: Puller,
    /// Pulls in progress by reference, so concurrent pulls of one image
    /// are done once.
    pulls: Mutex<HashMap<String, Shared<BoxFuture<'static, PullResult>>>>,
    /// One unpack per layer at a time, across images.
    layer_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageStore {
    pub fn open(dir: &Path, registries: Registries) -> anyhow::Result<ImageStore> {
        for sub in ["layers", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        // Leftovers of interrupted pulls.
        for entry in std::fs::read_dir(dir.join("tmp"))? {
            let path = entry?.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
        let index: Index = state::read_json(&dir.join("index.json"))?.unwrap_or_default();
        Ok(ImageStore {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            puller: Puller::new(registries),
            pulls: Mutex::new(HashMap::new()),
            layer_locks: Mutex::new(HashMap::new()),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("image index lock poisoned")
    }

    fn save(&self, index: &Index) -> anyhow::Result<()> {
        state::write_json(&self.dir.join("index.json"), index)
    }

    /// The image `name` names: an id (`sha256:<hex>`, or a unique prefix of
    /// at least 12 hex digits), a tag or a digest reference.
    pub fn resolve(&self, name: &str) -> Option<Image> {
        let index = self.index();
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut matches = index
                .images
                .iter()
                .filter(|i| i.id.trim_start_matches("sha256:").starts_with(hex));
            if let (Some(image), None) = (matches.next(), matches.next()) {
                return Some(image.clone());
            }
        }
        let whole = normalize(name).ok()?.whole();
        index
            .images
            .iter()
            .find(|i| i.repo_tags.contains(&whole) || i.repo_digests.contains(&whole))
            .cloned()
    }

    pub fn list(&self) -> Vec<Image> {
        self.index().images.clone()
    }

    /// The unpacked layer directories of `image`, bottom first.
    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image.layers.iter().map(|d| self.layer_dir(d)).collect()
    }

    fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.dir
            .join("layers")
            .join(diff_id.trim_start_matches("sha256:"))
    }

    /// Bytes and inodes the unpacked layers take.
    pub fn usage(&self) -> (u64, u64) {
        let index = self.index();
        index
            .layers
            .values()
            .fold((0, 0), |(b, i), u| (b + u.bytes, i + u.inodes))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Forgets `name` (every tag and digest of the image it resolves to),
    /// then deletes the layers no image and no container in `in_use` needs.
    pub fn remove(&self, name: &str, in_use: &HashSet<String>) -> Result<()> {
        let Some(image) = self.resolve(name) else {
            return Ok(()); // removing an absent image succeeds, as in containerd
        };
        {
            let mut index = self.index();
            index.images.retain(|i| i.id != image.id);
            self.save(&index)?;
        }
        self.collect_layers(in_use)
    }

    /// Deletes layers that no image in the store nor any id in `in_use` stacks.
    pub fn collect_layers(&self, in_use: &HashSet<String>) -> Result<()> {
        let mut index = self.index();
        let needed: HashSet<String> = index
            .images
            .iter()
            .flat_map(|i| i.layers.iter().cloned())
            .chain(in_use.iter().cloned())
            .collect();
        let unneeded: Vec<String> = index
            .layers
            .keys()
            .filter(|d| !needed.contains(*d))
            .cloned()
            .collect();
        for diff_id in unneeded {
            let dir = self.layer_dir(&diff_id);
            std::fs::remove_dir_all(&dir)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .with_context(|| format!("removing {}", dir.display()))?;
            index.layers.remove(&diff_id);
        }
        self.save(&index)?;
        Ok(())
    }

    /// Pulls `name` unless a pull of it is in progress, in which case it
    /// waits for that one. Returns the image id.
    pub async fn pull(self: &Arc<Self>, name: &str, auth: RegistryAuth) -> Result<String> {
        let reference = normalize(name)?;
        let key = reference.whole();
        let pull = {
            let mut pulls = self.pulls.lock().expect("pulls lock poisoned");
            pulls
                .entry(key.clone())
                .or_insert_with(|| {
                    let store = self.clone();
                    async move { store.pull_once(reference, auth).await.map_err(Arc::new) }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let result = pull.await;
        self.pulls.lock().expect("pulls lock poisoned").remove(&key);
        result.map_err(|e| match &*e {
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            other => Error::Internal(anyhow!("{other}")),
        })
    }

    async fn pull_once(
        self: Arc<Self>,
        reference: Reference,
        auth: RegistryAuth,
    ) -> Result<String> {
        let started = std::time::Instant::now();
        tracing::info!(image = %reference, "pulling");
        let resolved = self.puller.resolve(&reference, &auth).await?;
        let config: ImageConfiguration = serde_json::from_str(&resolved.config)
            .map_err(|e| Error::invalid(format!("{reference}: bad image config: {e}")))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != resolved.manifest.layers.len() {
            return Err(Error::invalid(format!(
                "{reference}: {} layers but {} diff ids",
                resolved.manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let fetches = resolved
            .manifest
            .layers
            .iter()
            .zip(&diff_ids)
            .map(|(layer, diff_id)| self.fetch_layer(&resolved.source, layer, diff_id));
        futures::future::try_join_all(fetches).await?;

        let id = resolved.manifest.config.digest.clone();
        let repo = format!("{}/{}", reference.registry(), reference.repository());
        let image = Image {
            id: id.clone(),
            repo_tags: reference
                .tag()
                .map(|_| vec![reference.whole()])
                .unwrap_or_default(),
            repo_digests: vec![format!("{repo}@{}", resolved.digest)],
            layers: diff_ids,
            size: resolved.manifest.config.size.max(0) as u64
                + resolved
                    .manifest
                    .layers
                    .iter()
                    .map(|l| l.size.max(0) as u64)
                    .sum::<u64>(),
            config,
        };
        self.record(image)?;
        tracing::info!(image = %reference, %id, from = %resolved.source.host,
            elapsed_ms = started.elapsed().as_millis() as u64, "pulled");
        Ok(id)
    }

    async fn fetch_layer(
        &self,
        source: &pull::Source,
        layer: &oci_client::manifest::OciDescriptor,
        diff_id: &str,
    ) -> Result<()> {
        let dest = self.layer_dir(diff_id);
        let lock = self
            .layer_locks
            .lock()
            .expect("layer locks poisoned")
            .entry(diff_id.to_string())
            .or_default()
            .clone();
        let _unpacking = lock.lock().await;
        if self.index().layers.contains_key(diff_id) && dest.exists() {
            tracing::info!(layer = %layer.digest, "layer already present");
            return Ok(());
        }
        let tmp = self.dir.join("tmp").join(state::new_id());
        let blob = tmp.with_extension("blob");
        let result = async {
            source.fetch_blob(layer, &blob).await?;
            tracing::info!(layer = %layer.digest, bytes = layer.size, "layer downloaded");
            let (blob, unpacked, diff) = (blob.clone(), tmp.clone(), diff_id.to_string());
            let usage =
                tokio::task::spawn_blocking(move || unpack::unpack(&blob, &diff, &unpacked))
                    .await
                    .context("unpack task")??;
            if dest.exists() {
                std::fs::remove_dir_all(&dest)?;
            }
            std::fs::rename(&tmp, &dest)
                .with_context(|| format!("moving the layer to {}", dest.display()))?;
            anyhow::Ok(usage)
        }
        .await;
        let _ = std::fs::remove_file(&blob);
        let usage = match result {
            Ok(usage) => usage,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e.context(format!("layer {}", layer.digest)).into());
            }
        };
        let mut index = self.index();
        index.layers.insert(diff_id.to_string(), usage);
        self.save(&index)?;
        Ok(())
    }

    /// Adds `image`, or merges its names into the image with its id; a tag
    /// moves from the image it named before.
    fn record(&self, image: Image) -> Result<()> {
        let mut index = self.index();
        for other in index.images.iter_mut().filter(|i| i.id != image.id) {
            other.repo_tags.retain(|t| !image.repo_tags.contains(t));
        }
        match index.images.iter_mut().find(|i| i.id == image.id) {
            Some(existing) => {
                for tag in image.repo_tags {
                    if !existing.repo_tags.contains(&tag) {
                        existing.repo_tags.push(tag);
                    }
                }
                for digest in image.repo_digests {
                    if !existing.repo_digests.contains(&digest) {
                        existing.repo_digests.push(digest);
                    }
                }
            }
            None => index.images.push(image),
        }
        self.save(&index)?;
        Ok(())
    }
}

/// `nginx` → `docker.io/library/nginx:latest`.
pub fn normalize(name: &str) -> Result<Reference> {
    name.parse::<Reference>()
        .map_err(|e| Error::invalid(format!("invalid image reference {name:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_docker_hub_library_images() -> Result<()> {
        assert_eq!(
            normalize("nginx")?.whole(),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            normalize("registry.k8s.io/pause:3.6")?.whole(),
            "registry.k8s.io/pause:3.6"
        );
        assert!(normalize("no spaces allowed").is_err());
        Ok(())
    }
}
