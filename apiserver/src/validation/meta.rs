//! `ObjectMeta`: names (the rule depends on the kind), namespace, labels,
//! annotations, owner references, finalizers; and what may not change on
//! update.

use serde_json::{Map, Value};

use super::field::{Errors, Path};
use super::names;
use crate::resources::Resource;

/// Total size of all annotations of an object.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Which syntax an object's name must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

impl NameRule {
    pub fn of(res: &Resource) -> NameRule {
        match (res.group, res.kind) {
            ("", "Namespace") => NameRule::Dns1123Label,
            ("", "Service") => NameRule::Dns1035Label,
            _ => NameRule::Dns1123Subdomain,
        }
    }

    /// Upstream's `NameIsDNSSubdomain`/`…Label`/`…1035Label`; `prefix` for
    /// `generateName`, which may end in `-`.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let name = if prefix {
            names::mask_trailing_dash(name)
        } else {
            name.to_owned()
        };
        match self {
            NameRule::Dns1123Subdomain => names::dns1123_subdomain(&name),
            NameRule::Dns1123Label => names::dns1123_label(&name),
            NameRule::Dns1035Label => names::dns1035_label(&name),
        }
    }
}

fn str_field<'a>(meta: &'a Value, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn object_meta(res: &Resource, obj: &Value, errs: &mut Errors) {
    let empty = Value::Object(Map::new());
    let meta = obj.get("metadata").unwrap_or(&empty);
    let path = Path::new("metadata");
    let rule = NameRule::of(res);

    let generate_name = str_field(meta, "generateName");
    if !generate_name.is_empty() {
        errs.invalid_each(
            &path.child("generateName"),
            generate_name,
            rule.check(generate_name, true),
        );
    }
    let name = str_field(meta, "name");
    if name.is_empty() {
        errs.required(&path.child("name"), "name or generateName is required");
    } else {
        errs.invalid_each(&path.child("name"), name, rule.check(name, false));
    }

    let namespace = str_field(meta, "namespace");
    if res.namespaced {
        if namespace.is_empty() {
            errs.required(&path.child("namespace"), "");
        } else {
            errs.invalid_each(
                &path.child("namespace"),
                namespace,
                names::dns1123_label(namespace),
            );
        }
    } else if !namespace.is_empty() {
        errs.forbidden(&path.child("namespace"), "not allowed on this type");
    }

    labels(meta.get("labels"), &path.child("labels"), errs);
    annotations(meta.get("annotations"), &path.child("annotations"), errs);
    owner_references(
        meta.get("ownerReferences"),
        &path.child("ownerReferences"),
        errs,
    );
    for (i, finalizer) in meta
        .get("finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let finalizer = finalizer.as_str().unwrap_or("");
        errs.invalid_each(
            &path.child("finalizers").index(i),
            finalizer,
            names::qualified_name(finalizer),
        );
    }
}

/// `ValidateLabels`: keys are qualified names, values label values; errors
/// name the map, not the key.
pub fn labels(labels: Option<&Value>, path: &Path, errs: &mut Errors) {
    for (key, value) in labels.and_then(Value::as_object).into_iter().flatten() {
        errs.invalid_each(path, key, names::qualified_name(key));
        match value.as_str() {
            Some(value) => errs.invalid_each(path, value, names::label_value(value)),
            None => errs.invalid(path, value, "label values must be strings"),
        }
    }
}

pub fn annotations(annotations: Option<&Value>, path: &Path, errs: &mut Errors) {
    let Some(annotations) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (key, value) in annotations {
        errs.invalid_each(path, key, names::qualified_name(&key.to_lowercase()));
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.too_long(path, ANNOTATIONS_MAX_BYTES);
    }
}

fn owner_references(refs: Option<&Value>, path: &Path, errs: &mut Errors) {
    let refs = refs
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut controllers = Vec::new();
    for (i, owner) in refs.iter().enumerate() {
        let item = path.index(i);
        for (key, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            if str_field(owner, key).is_empty() {
                errs.invalid_str(&item.child(key), "", &format!("{what} must not be empty"));
            }
        }
        if owner.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers.push(format!(
                "{}/{}",
                str_field(owner, "kind"),
                str_field(owner, "name")
            ));
        }
    }
    if controllers.len() > 1 {
        errs.invalid(
            path,
            &Value::Array(refs.to_vec()),
            &format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        );
    }
}

/// What may not change between `old` and `obj`.
pub fn object_meta_update(obj: &Value, old: &Value, errs: &mut Errors) {
    let path = Path::new("metadata");
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        let new = obj.pointer(&format!("/metadata/{key}"));
        let before = old.pointer(&format!("/metadata/{key}"));
        if before.is_some_and(|b| !b.is_null())
            && new.is_some_and(|n| !n.is_null())
            && new != before
        {
            errs.invalid(
                &path.child(key),
                new.unwrap_or(&Value::Null),
                "field is immutable",
            );
        }
    }
}

/// `field is immutable` when `field` changed.
pub fn immutable(new: Option<&Value>, old: Option<&Value>, path: &Path, errs: &mut Errors) {
    let new = new.unwrap_or(&Value::Null);
    if new != old.unwrap_or(&Value::Null) {
        errs.invalid(path, new, "field is immutable");
    }
}
