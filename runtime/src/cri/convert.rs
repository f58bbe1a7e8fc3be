//! From the runtime's records to CRI messages, and CRI's filters.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::container::Container;
use crate::image::Image;
use crate::sandbox::{Sandbox, SandboxState};

pub fn sandbox_state(sb: &Sandbox) -> cri::PodSandboxState {
    match sb.state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

pub fn pod_sandbox(sb: &Sandbox) -> cri::PodSandbox {
    cri::PodSandbox {
        id: sb.id.clone(),
        metadata: sb.config.metadata.clone(),
        state: sandbox_state(sb) as i32,
        created_at: sb.created_at,
        labels: sb.config.labels.clone(),
        annotations: sb.config.annotations.clone(),
        runtime_handler: sb.runtime_handler.clone(),
    }
}

pub fn pod_sandbox_status(sb: &Sandbox) -> cri::PodSandboxStatus {
    let network = sb
        .ips
        .split_first()
        .map(|(ip, rest)| cri::PodSandboxNetworkStatus {
            ip: ip.clone(),
            additional_ips: rest
                .iter()
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        });
    let options = sb
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    cri::PodSandboxStatus {
        id: sb.id.clone(),
        metadata: sb.config.metadata.clone(),
        state: sandbox_state(sb) as i32,
        created_at: sb.created_at,
        network: Some(network.unwrap_or_default()),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options }),
        }),
        labels: sb.config.labels.clone(),
        annotations: sb.config.annotations.clone(),
        runtime_handler: sb.runtime_handler.clone(),
    }
}

pub fn container(c: &Container) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.sandbox_id.clone(),
        metadata: c.config.metadata.clone(),
        image: Some(cri::ImageSpec {
            image: c.image_id.clone(),
            ..Default::default()
        }),
        image_ref: c.image_id.clone(),
        state: c.state() as i32,
        created_at: c.created_at,
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        image_id: c.image_id.clone(),
    }
}

pub fn container_status(c: &Container, image: Option<&Image>) -> cri::ContainerStatus {
    let image_ref = image
        .and_then(|i| i.repo_digests.first().cloned())
        .unwrap_or_else(|| c.image_id.clone());
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: c.state() as i32,
        created_at: c.created_at,
        started_at: c.started_at.unwrap_or(0),
        finished_at: c.exit.as_ref().map_or(0, |e| e.finished_at),
        exit_code: c.exit.as_ref().map_or(0, |e| e.code),
        // The image's name (as containerd reports it), even when the
        // kubelet created the container by image id.
        image: Some(cri::ImageSpec {
            image: image
                .and_then(|i| i.repo_tags.first().cloned())
                .unwrap_or_else(|| c.image_name.clone()),
            ..c.config.image.clone().unwrap_or_default()
        }),
        image_ref,
        reason: c.reason().to_string(),
        message: c.message().to_string(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: c
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                windows: None,
            }),
        image_id: c.image_id.clone(),
        user: None,
    }
}

pub fn image(i: &Image) -> cri::Image {
    let user = i
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let name = user.split(':').next().unwrap_or_default().to_string();
    let (uid, username) = match name.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) if name.is_empty() => (None, String::new()),
        Err(_) => (None, name),
    };
    cri::Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: i.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// Whether `labels` has every pair of `selector`.
pub fn matches(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// CRI filters by id accept a prefix, as containerd does.
pub fn id_matches(id: &str, filter: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}
