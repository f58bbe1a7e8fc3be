//! Containers (regular, init, ephemeral): names, images, policies, ports,
//! environment, volume mounts, resources, probes and lifecycle hooks.

use std::collections::HashSet;

use serde_json::Value;

use super::field::{Errors, Path, str_at};
use super::names;
use super::quantity::{QUANTITY_REGEX, Quantity};

/// What the containers of one pod spec share while being checked.
pub struct PodContext<'a> {
    /// Volume names of the pod, for `volumeMounts[*].name`.
    pub volumes: HashSet<&'a str>,
    /// Container names seen so far, across all container lists.
    pub names: HashSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Regular,
    Init,
    Ephemeral,
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

pub fn containers(
    list: &[Value],
    path: &Path,
    kind: ContainerKind,
    ctx: &mut PodContext<'_>,
    errs: &mut Errors,
) {
    for (i, container) in list.iter().enumerate() {
        self::container(container, &path.index(i), kind, ctx, errs);
    }
}

fn container(
    c: &Value,
    path: &Path,
    kind: ContainerKind,
    ctx: &mut PodContext<'_>,
    errs: &mut Errors,
) {
    let name = str_at(c, "name");
    if name.is_empty() {
        errs.required(&path.child("name"), "");
    } else {
        errs.invalid_each(&path.child("name"), name, names::dns1123_label(name));
        if !ctx.names.insert(name.to_owned()) {
            errs.duplicate(&path.child("name"), &Value::String(name.to_owned()));
        }
    }
    let image = str_at(c, "image");
    if image.is_empty() {
        errs.required(&path.child("image"), "");
    } else if image != image.trim() {
        errs.invalid_str(
            &path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        );
    }
    match str_at(c, "imagePullPolicy") {
        "" => errs.required(&path.child("imagePullPolicy"), ""),
        "Always" | "IfNotPresent" | "Never" => {}
        other => errs.not_supported(
            &path.child("imagePullPolicy"),
            &Value::String(other.to_owned()),
            &["Always", "IfNotPresent", "Never"],
        ),
    }
    match str_at(c, "terminationMessagePolicy") {
        "" => errs.required(
            &path.child("terminationMessagePolicy"),
            "must be 'File' or 'FallbackToLogsOnError'",
        ),
        "File" | "FallbackToLogsOnError" => {}
        other => errs.not_supported(
            &path.child("terminationMessagePolicy"),
            &Value::String(other.to_owned()),
            &["File", "FallbackToLogsOnError"],
        ),
    }
    match (kind, str_at(c, "restartPolicy")) {
        (_, "") => {}
        (ContainerKind::Init, "Always") => {}
        (ContainerKind::Init, other) => {
            errs.not_supported(
                &path.child("restartPolicy"),
                &Value::String(other.to_owned()),
                &["Always"],
            );
        }
        _ => errs.forbidden(
            &path.child("restartPolicy"),
            "may not be set for non-init containers",
        ),
    }
    ports(c, &path.child("ports"), errs);
    env(c, path, errs);
    volume_mounts(c, &path.child("volumeMounts"), ctx, errs);
    if let Some(resources) = c.get("resources") {
        self::resources(resources, &path.child("resources"), errs);
    }
    for probe_key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get(probe_key).filter(|p| !p.is_null()) {
            let probe_path = path.child(probe_key);
            if kind != ContainerKind::Regular
                && !(kind == ContainerKind::Init && str_at(c, "restartPolicy") == "Always")
            {
                errs.forbidden(
                    &probe_path,
                    "may not be set for init containers without restartPolicy=Always",
                );
                continue;
            }
            probe(p, &probe_path, probe_key != "readinessProbe", errs);
        }
    }
    if let Some(lifecycle) = c.get("lifecycle").filter(|l| l.is_object()) {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = lifecycle.get(hook).filter(|h| !h.is_null()) {
                self::handler(
                    handler,
                    &path.child("lifecycle").child(hook),
                    &["exec", "httpGet", "tcpSocket", "sleep"],
                    errs,
                );
            }
        }
    }
}

fn ports(c: &Value, path: &Path, errs: &mut Errors) {
    let mut seen_names = HashSet::new();
    for (i, port) in items(c, "ports") {
        let p = path.index(i);
        let name = str_at(port, "name");
        if !name.is_empty() {
            let msgs = names::port_name(name);
            if !msgs.is_empty() {
                errs.invalid_each(&p.child("name"), name, msgs);
            } else if !seen_names.insert(name) {
                errs.duplicate(&p.child("name"), &Value::String(name.to_owned()));
            }
        }
        match port.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => errs.required(&p.child("containerPort"), ""),
            Some(n) => {
                for msg in names::port_number(n) {
                    errs.invalid(&p.child("containerPort"), &Value::from(n), &msg);
                }
            }
        }
        if let Some(host_port) = port
            .get("hostPort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            for msg in names::port_number(host_port) {
                errs.invalid(&p.child("hostPort"), &Value::from(host_port), &msg);
            }
        }
        protocol(port, &p.child("protocol"), errs);
    }
}

/// A port protocol: required, one of SCTP, TCP, UDP.
pub fn protocol(port: &Value, path: &Path, errs: &mut Errors) {
    match str_at(port, "protocol") {
        "" => errs.required(path, ""),
        "TCP" | "UDP" | "SCTP" => {}
        other => errs.not_supported(
            path,
            &Value::String(other.to_owned()),
            &["SCTP", "TCP", "UDP"],
        ),
    }
}

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn env(c: &Value, path: &Path, errs: &mut Errors) {
    for (i, var) in items(c, "env") {
        let p = path.child("env").index(i);
        let name = str_at(var, "name");
        if name.is_empty() {
            errs.required(&p.child("name"), "");
        } else {
            errs.invalid_each(&p.child("name"), name, names::env_var_name(name));
        }
        let Some(from) = var.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let from_path = p.child("valueFrom");
        if !str_at(var, "value").is_empty() {
            errs.invalid_str(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            );
        }
        let sources: Vec<&str> = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
            "fileKeyRef",
        ]
        .into_iter()
        .filter(|k| from.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
        match sources.as_slice() {
            [] => errs.invalid_str(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ),
            [source] => {
                let source_path = from_path.child(source);
                let value = &from[*source];
                match *source {
                    "fieldRef" => {
                        let field_path = str_at(value, "fieldPath");
                        let labelled = field_path.starts_with("metadata.labels[")
                            || field_path.starts_with("metadata.annotations[");
                        if field_path.is_empty() {
                            errs.required(&source_path.child("fieldPath"), "");
                        } else if !labelled && !ENV_FIELD_PATHS.contains(&field_path) {
                            let mut supported = ENV_FIELD_PATHS.to_vec();
                            supported.extend(["metadata.annotations", "metadata.labels"]);
                            supported.sort_unstable();
                            errs.not_supported(&source_path.child("fieldPath"), &Value::String(field_path.to_owned()), &supported);
                        }
                    }
                    "resourceFieldRef" => {
                        if str_at(value, "resource").is_empty() {
                            errs.required(&source_path.child("resource"), "");
                        }
                    }
                    _ => {
                        for key in ["key", "name"] {
                            if *source != "fileKeyRef" && str_at(value, key).is_empty() {
                                errs.required(&source_path.child(key), "");
                            }
                        }
                    }
                }
            }
            _ => errs.invalid_str(&from_path, "", "may not have more than one field specified at a time"),
        }
    }
    for (i, from) in items(c, "envFrom") {
        let p = path.child("envFrom").index(i);
        let prefix = str_at(from, "prefix");
        if !prefix.is_empty() {
            errs.invalid_each(&p.child("prefix"), prefix, names::env_var_name(prefix));
        }
        let refs: Vec<&str> = ["configMapRef", "secretRef"]
            .into_iter()
            .filter(|k| from.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        match refs.as_slice() {
            [] => errs.invalid_str(&p, "", "must specify one of: `configMapRef` or `secretRef`"),
            [r] => {
                let name = str_at(&from[*r], "name");
                if name.is_empty() {
                    errs.required(&p.child(r).child("name"), "");
                }
            }
            _ => errs.invalid_str(
                &p,
                "",
                "may not have more than one field specified at a time",
            ),
        }
    }
}

fn volume_mounts(c: &Value, path: &Path, ctx: &PodContext<'_>, errs: &mut Errors) {
    let mut mount_paths = HashSet::new();
    for (i, mount) in items(c, "volumeMounts") {
        let p = path.index(i);
        let name = str_at(mount, "name");
        if name.is_empty() {
            errs.required(&p.child("name"), "");
        } else if !ctx.volumes.contains(name) {
            errs.not_found(&p.child("name"), &Value::String(name.to_owned()));
        }
        let mount_path = str_at(mount, "mountPath");
        if mount_path.is_empty() {
            errs.required(&p.child("mountPath"), "");
        } else if !mount_paths.insert(mount_path) {
            errs.invalid_str(&p.child("mountPath"), mount_path, "must be unique");
        }
        let sub_path = str_at(mount, "subPath");
        if sub_path.starts_with('/') {
            errs.invalid_str(&p.child("subPath"), sub_path, "must be a relative path");
        } else if sub_path.split('/').any(|part| part == "..") {
            errs.invalid_str(&p.child("subPath"), sub_path, "must not contain '..'");
        }
    }
}

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Requests and limits: known names, well-formed non-negative quantities,
/// requests no larger than limits.
pub fn resources(resources: &Value, path: &Path, errs: &mut Errors) {
    let mut parsed = [Vec::new(), Vec::new()];
    for (slot, kind) in ["limits", "requests"].into_iter().enumerate() {
        for (name, value) in resources
            .get(kind)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let p = path.child(kind).key(name);
            let standard = STANDARD_CONTAINER_RESOURCES.contains(&name.as_str())
                || name.starts_with("hugepages-");
            if !standard {
                if name.contains('/') {
                    errs.invalid_each(&p, name, names::qualified_name(name));
                } else {
                    errs.invalid_str(&p, name, "must be a standard resource for containers");
                }
            }
            match Quantity::from_json(value) {
                None => errs.invalid(
                    &p,
                    value,
                    &format!("quantities must match the regular expression '{QUANTITY_REGEX}'"),
                ),
                Some(q) if q.is_negative() => {
                    errs.invalid(&p, value, "must be greater than or equal to 0")
                }
                Some(q) => parsed[slot].push((name.clone(), q, value.clone())),
            }
        }
    }
    let [limits, requests] = parsed;
    for (name, request, text) in &requests {
        if let Some((_, limit, limit_text)) = limits.iter().find(|(n, ..)| n == name)
            && request > limit
        {
            let limit_text = limit_text
                .as_str()
                .map_or_else(|| limit_text.to_string(), str::to_owned);
            errs.invalid(
                &path.child("requests").key(name),
                text,
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            );
        }
    }
}

fn probe(p: &Value, path: &Path, success_must_be_one: bool, errs: &mut Errors) {
    handler(p, path, &["exec", "httpGet", "tcpSocket", "grpc"], errs);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(n) = p.get(key).and_then(Value::as_i64)
            && n < 0
        {
            errs.invalid(
                &path.child(key),
                &Value::from(n),
                "must be greater than or equal to 0",
            );
        }
    }
    if success_must_be_one
        && let Some(n) = p.get("successThreshold").and_then(Value::as_i64)
        && n != 1
    {
        errs.invalid(
            &path.child("successThreshold"),
            &Value::from(n),
            "must be 1",
        );
    }
}

/// Exactly one handler of `kinds`, and each well-formed.
fn handler(h: &Value, path: &Path, kinds: &[&str], errs: &mut Errors) {
    let set: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| h.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match set.as_slice() {
        [] => errs.required(path, "must specify a handler type"),
        [_, extra, ..] => errs.forbidden(
            &path.child(extra),
            "may not specify more than 1 handler type",
        ),
        [_] => {}
    }
    if let Some(exec) = h.get("exec").filter(|v| v.is_object())
        && exec
            .get("command")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        errs.required(&path.child("exec").child("command"), "");
    }
    for kind in ["httpGet", "tcpSocket", "grpc"] {
        if let Some(action) = h.get(kind).filter(|v| v.is_object()) {
            port_ref(action.get("port"), &path.child(kind).child("port"), errs);
        }
    }
    if let Some(scheme) = h.pointer("/httpGet/scheme").and_then(Value::as_str)
        && !matches!(scheme, "HTTP" | "HTTPS")
    {
        errs.not_supported(
            &path.child("httpGet").child("scheme"),
            &Value::String(scheme.to_owned()),
            &["HTTP", "HTTPS"],
        );
    }
}

/// A port given by number or by name (int-or-string).
pub fn port_ref(port: Option<&Value>, path: &Path, errs: &mut Errors) {
    match port {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            for msg in names::port_number(n) {
                errs.invalid(path, &Value::from(n), &msg);
            }
        }
        Some(Value::String(name)) => errs.invalid_each(path, name, names::port_name(name)),
        _ => errs.required(path, ""),
    }
}
