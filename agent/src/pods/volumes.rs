//! The pod's volumes on the node, under `<pods dir>/<uid>/volumes/`:
//! emptyDir (a directory, or tmpfs for `medium: Memory`), hostPath (with
//! its type checks), and configMap, secret, downwardAPI and projected
//! volumes written as files (secrets and projections on tmpfs, as
//! upstream). Prepared before every start, so updates reach new containers;
//! torn down with the pod.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIVolumeFile, KeyToPath, Pod, SecretProjection, Volume,
};

use super::env::{self, Facts, Lookup};

const DEFAULT_MODE: u32 = 0o644;

/// A volume ready to be mounted.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub path: PathBuf,
    /// Whether the volume itself is read-only (configMap, secret…).
    pub read_only: bool,
}

/// Why a volume could not be set up (`FailedMount`).
#[derive(Debug)]
pub struct MountError {
    pub volume: String,
    pub message: String,
}

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MountVolume.SetUp failed for volume {:?} : {}",
            self.volume, self.message
        )
    }
}

/// Sets up every volume of `pod` under `pod_dir`.
pub async fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    facts: &Facts<'_>,
    lookup: &mut Lookup,
) -> Result<HashMap<String, Prepared>, MountError> {
    let mut prepared = HashMap::new();
    for volume in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let fail = |message: String| MountError {
            volume: volume.name.clone(),
            message,
        };
        let ready = prepare_one(pod, pod_dir, volume, facts, lookup)
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        prepared.insert(volume.name.clone(), ready);
    }
    Ok(prepared)
}

async fn prepare_one(
    pod: &Pod,
    pod_dir: &Path,
    volume: &Volume,
    facts: &Facts<'_>,
    lookup: &mut Lookup,
) -> Result<Prepared> {
    let dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&volume.name);
    let read_only = |path: PathBuf| Prepared {
        path,
        read_only: true,
    };
    if let Some(empty) = &volume.empty_dir {
        let path = dir("kubernetes.io~empty-dir");
        create_dir(&path, 0o777)?;
        if empty.medium.as_deref() == Some("Memory") {
            let size = empty.size_limit.as_ref().map(|q| q.0.as_str());
            mount_tmpfs(&path, size)?;
        }
        return Ok(Prepared {
            path,
            read_only: false,
        });
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        check_host_path(&path, host.type_.as_deref().unwrap_or(""))?;
        return Ok(Prepared {
            path,
            read_only: false,
        });
    }
    if let Some(source) = &volume.config_map {
        let path = dir("kubernetes.io~configmap");
        let projection = ConfigMapProjection {
            name: source.name.clone(),
            items: source.items.clone(),
            optional: source.optional,
        };
        let mode = mode(source.default_mode);
        let files = config_map_files(&projection, mode, lookup).await?;
        create_dir(&path, 0o755)?;
        write_payload(&path, &files)?;
        return Ok(read_only(path));
    }
    if let Some(source) = &volume.secret {
        let path = dir("kubernetes.io~secret");
        let projection = SecretProjection {
            name: source.secret_name.clone().unwrap_or_default(),
            items: source.items.clone(),
            optional: source.optional,
        };
        let files = secret_files(&projection, mode(source.default_mode), lookup).await?;
        create_dir(&path, 0o755)?;
        mount_tmpfs(&path, None)?;
        write_payload(&path, &files)?;
        return Ok(read_only(path));
    }
    if let Some(source) = &volume.downward_api {
        let path = dir("kubernetes.io~downward-api");
        let files = downward_files(
            pod,
            source.items.as_deref().unwrap_or(&[]),
            mode(source.default_mode),
            facts,
        )?;
        create_dir(&path, 0o755)?;
        write_payload(&path, &files)?;
        return Ok(read_only(path));
    }
    if let Some(projected) = &volume.projected {
        let path = dir("kubernetes.io~projected");
        let default = mode(projected.default_mode);
        let mut files = BTreeMap::new();
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                files.extend(config_map_files(cm, default, lookup).await?);
            }
            if let Some(secret) = &source.secret {
                files.extend(secret_files(secret, default, lookup).await?);
            }
            if let Some(downward) = &source.downward_api {
                files.extend(downward_files(
                    pod,
                    downward.items.as_deref().unwrap_or(&[]),
                    default,
                    facts,
                )?);
            }
            if source.service_account_token.is_some() || source.cluster_trust_bundle.is_some() {
                anyhow::bail!(
                    "serviceAccountToken and clusterTrustBundle projections are not served by this cluster"
                );
            }
        }
        create_dir(&path, 0o755)?;
        mount_tmpfs(&path, None)?;
        write_payload(&path, &files)?;
        return Ok(read_only(path));
    }
    anyhow::bail!("unsupported volume type")
}

fn mode(m: Option<i32>) -> u32 {
    m.map_or(DEFAULT_MODE, |m| m as u32 & 0o7777)
}

type Payload = BTreeMap<String, (Vec<u8>, u32)>;

async fn config_map_files(
    source: &ConfigMapProjection,
    default_mode: u32,
    lookup: &mut Lookup,
) -> Result<Payload> {
    let optional = source.optional == Some(true);
    match lookup
        .config_map(&source.name)
        .await
        .map_err(|e| anyhow::anyhow!(e.0))?
    {
        None if optional => Ok(Payload::new()),
        None => anyhow::bail!("configmap {:?} not found", source.name),
        Some(cm) => {
            let data: BTreeMap<String, Vec<u8>> = env::config_map_data(cm)
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            select(
                &data,
                source.items.as_deref(),
                default_mode,
                optional,
                "configmap",
            )
        }
    }
}

async fn secret_files(
    source: &SecretProjection,
    default_mode: u32,
    lookup: &mut Lookup,
) -> Result<Payload> {
    let optional = source.optional == Some(true);
    match lookup
        .secret(&source.name)
        .await
        .map_err(|e| anyhow::anyhow!(e.0))?
    {
        None if optional => Ok(Payload::new()),
        None => anyhow::bail!("secret {:?} not found", source.name),
        Some(secret) => {
            let data = env::secret_data(secret);
            select(
                &data,
                source.items.as_deref(),
                default_mode,
                optional,
                "secret",
            )
        }
    }
}

/// All keys, or just `items` (each at its path, with its mode).
fn select(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    kind: &str,
) -> Result<Payload> {
    let Some(items) = items else {
        return Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), (v.clone(), default_mode)))
            .collect());
    };
    let mut files = Payload::new();
    for item in items {
        match data.get(&item.key) {
            Some(v) => {
                let file_mode = item.mode.map_or(default_mode, |m| m as u32 & 0o7777);
                files.insert(item.path.clone(), (v.clone(), file_mode));
            }
            None if optional => {}
            None => anyhow::bail!("{kind} references non-existent config key: {}", item.key),
        }
    }
    Ok(files)
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    facts: &Facts<'_>,
) -> Result<Payload> {
    let mut files = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            env::field_ref(pod, &f.field_path, facts).map_err(|e| anyhow::anyhow!(e.0))?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let c = pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .find(|c| c.name == name)
                .with_context(|| format!("container {name:?} not found"))?;
            let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
            env::resource_field_ref(c, &r.resource, divisor, facts)
                .map_err(|e| anyhow::anyhow!(e.0))?
        } else {
            continue;
        };
        let file_mode = item.mode.map_or(default_mode, |m| m as u32 & 0o7777);
        files.insert(item.path.clone(), (value.into_bytes(), file_mode));
    }
    Ok(files)
}

/// Makes `dir` hold exactly `files` (relative paths), rewriting only what
/// changed, each file replaced atomically.
fn write_payload(dir: &Path, files: &Payload) -> Result<()> {
    for (relative, (content, mode)) in files {
        if relative.split('/').any(|part| part == "..") || relative.starts_with('/') {
            anyhow::bail!("invalid path {relative:?}: must be relative and must not contain '..'");
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let same = std::fs::read(&path).is_ok_and(|old| old == *content);
        if !same {
            let tmp = path.with_file_name(format!(
                ".{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
            ));
            std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    remove_stale(dir, dir, files)
}

fn remove_stale(root: &Path, dir: &Path, files: &Payload) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if entry.file_type()?.is_dir() {
            remove_stale(root, &path, files)?;
            if std::fs::read_dir(&path)?.next().is_none() {
                std::fs::remove_dir(&path)?;
            }
        } else if !files.contains_key(&relative) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn create_dir(path: &Path, mode: u32) -> Result<()> {
    if !path.is_dir() {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// hostPath's `type` checks, creating what `*OrCreate` asks for.
fn check_host_path(path: &Path, kind: &str) -> Result<()> {
    let meta = std::fs::metadata(path);
    let is = |check: fn(&std::fs::Metadata) -> bool| meta.as_ref().is_ok_and(check);
    let shown = path.display();
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(path).with_context(|| format!("creating {shown}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            Ok(())
        }
        "FileOrCreate" if meta.is_err() => {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("creating {shown}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
            Ok(())
        }
        "Directory" | "DirectoryOrCreate" if !is(|m| m.is_dir()) => {
            anyhow::bail!("hostPath type check failed: {shown} is not a directory")
        }
        "File" | "FileOrCreate" if !is(|m| m.is_file()) => {
            anyhow::bail!("hostPath type check failed: {shown} is not a file")
        }
        "Socket" if !is(|m| m.file_type().is_socket()) => {
            anyhow::bail!("hostPath type check failed: {shown} is not a socket file")
        }
        "CharDevice" if !is(|m| m.file_type().is_char_device()) => {
            anyhow::bail!("hostPath type check failed: {shown} is not a character device")
        }
        "BlockDevice" if !is(|m| m.file_type().is_block_device()) => {
            anyhow::bail!("hostPath type check failed: {shown} is not a block device")
        }
        "Directory" | "DirectoryOrCreate" | "File" | "FileOrCreate" | "Socket" | "CharDevice"
        | "BlockDevice" => Ok(()),
        other => anyhow::bail!("unknown hostPath type {other:?}"),
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts
}

fn mount_tmpfs(path: &Path, size: Option<&str>) -> Result<()> {
    if mounts_below(path).iter().any(|m| m == path) {
        return Ok(());
    }
    let mut options = "mode=0755".to_string();
    if let Some(size) = size {
        let bytes = crate::quantity::units(size)?;
        options.push_str(&format!(",size={bytes}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .with_context(|| format!("mounting tmpfs on {}", path.display()))
}

/// Unmounts what lies below `pod_dir` and removes it.
pub fn teardown(pod_dir: &Path) -> Result<()> {
    for mount in mounts_below(pod_dir) {
        nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", mount.display()))?;
    }
    match std::fs::remove_dir_all(pod_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", pod_dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str, u32)]) -> Payload {
        entries
            .iter()
            .map(|(p, c, m)| (p.to_string(), (c.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn a_payload_replaces_the_directory_content() {
        let dir = std::env::temp_dir().join(format!("paddock-payload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_payload(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        write_payload(&dir, &payload(&[("a", "changed", 0o644)])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
        assert!(!dir.join("sub").exists(), "keys that went are removed");
        assert!(write_payload(&dir, &payload(&[("../escape", "x", 0o644)])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn items_pick_keys_and_paths() {
        let data = BTreeMap::from([
            ("k".to_string(), b"v".to_vec()),
            ("other".to_string(), b"o".to_vec()),
        ]);
        let items = [KeyToPath {
            key: "k".into(),
            path: "dir/file".into(),
            mode: Some(0o400),
            ..Default::default()
        }];
        let files = select(&data, Some(&items), 0o644, false, "configmap").unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["dir/file"]);
        assert_eq!(files["dir/file"].1, 0o400);
        let missing = [KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            ..Default::default()
        }];
        let err = select(&data, Some(&missing), 0o644, false, "configmap").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configmap references non-existent config key: nope"
        );
        assert!(
            select(&data, Some(&missing), 0o644, true, "configmap")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = std::env::temp_dir().join(format!("paddock-hostpath-{}", std::process::id()));
        check_host_path(&dir, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        let err = check_host_path(&dir, "File").unwrap_err().to_string();
        assert!(err.contains("is not a file"), "{err}");
        let file = dir.join("f");
        check_host_path(&file, "FileOrCreate").unwrap();
        assert!(file.is_file());
        check_host_path(&file, "File").unwrap();
        assert!(check_host_path(&dir.join("none"), "Directory").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
