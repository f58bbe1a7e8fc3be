//! Pod volumes: unique DNS-label names and exactly one well-formed source.

use std::collections::HashSet;

use serde_json::Value;

use super::field::{Errors, Path, str_at};
use super::names;

/// The volume sources upstream knows.
pub const SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

/// Checks the volumes and returns their names.
pub fn volumes<'a>(list: &'a [Value], path: &Path, errs: &mut Errors) -> HashSet<&'a str> {
    let mut names_seen = HashSet::new();
    for (i, volume) in list.iter().enumerate() {
        let p = path.index(i);
        let name = str_at(volume, "name");
        if name.is_empty() {
            errs.required(&p.child("name"), "");
        } else {
            errs.invalid_each(&p.child("name"), name, names::dns1123_label(name));
            if !names_seen.insert(name) {
                errs.duplicate(&p.child("name"), &Value::String(name.to_owned()));
            }
        }
        let sources: Vec<&str> = SOURCES
            .iter()
            .copied()
            .filter(|s| volume.get(*s).is_some_and(|v| !v.is_null()))
            .collect();
        match sources.as_slice() {
            [] => errs.required(&p, "must specify a volume type"),
            [source] => self::source(source, &volume[*source], &p.child(source), errs),
            [_, extra, ..] => {
                errs.forbidden(&p.child(extra), "may not specify more than 1 volume type")
            }
        }
    }
    names_seen
}

fn source(kind: &str, source: &Value, path: &Path, errs: &mut Errors) {
    let required = |errs: &mut Errors, key: &str| {
        if str_at(source, key).is_empty() {
            errs.required(&path.child(key), "");
        }
    };
    match kind {
        "hostPath" => {
            required(errs, "path");
            let type_ = str_at(source, "type");
            if !HOST_PATH_TYPES.contains(&type_) {
                errs.not_supported(
                    &path.child("type"),
                    &Value::String(type_.to_owned()),
                    &HOST_PATH_TYPES[1..],
                );
            }
        }
        "configMap" => required(errs, "name"),
        "secret" => required(errs, "secretName"),
        "persistentVolumeClaim" => required(errs, "claimName"),
        "nfs" => {
            required(errs, "server");
            required(errs, "path");
        }
        _ => {}
    }
    if let Some(mode) = source.get("defaultMode").and_then(Value::as_i64)
        && !(0..=0o777).contains(&mode)
    {
        errs.invalid(
            &path.child("defaultMode"),
            &Value::from(mode),
            "must be a number between 0 and 0777 (octal), both inclusive",
        );
    }
    for (i, item) in source
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let item_path = path.child("items").index(i);
        if matches!(kind, "configMap" | "secret") && str_at(item, "key").is_empty() {
            errs.required(&item_path.child("key"), "");
        }
        let target = str_at(item, "path");
        if target.is_empty() {
            errs.required(&item_path.child("path"), "");
        } else if target.starts_with('/') {
            errs.invalid_str(&item_path.child("path"), target, "must be a relative path");
        } else if target.split('/').any(|part| part == "..") {
            errs.invalid_str(&item_path.child("path"), target, "must not contain '..'");
        }
    }
}
