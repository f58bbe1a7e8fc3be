//! A pod as the runtime has it: its sandboxes and container instances,
//! read through CRI and found by the pod's uid label.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use k8s_cri::v1 as cri;

use super::labels;
use crate::cri::{Cri, is_not_found};

#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    /// The pod's IPs (empty for host-network pods or a sandbox being torn down).
    pub ips: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One instance (one restart) of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub restart_count: i32,
    pub state: State,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The image the runtime ran (its id or name) and its reference.
    pub image: String,
    pub image_ref: String,
    pub hash: String,
    pub log_path: String,
}

impl Instance {
    pub fn running(&self) -> bool {
        self.state == State::Running
    }

    pub fn exited(&self) -> bool {
        self.state == State::Exited
    }

    pub fn finished(&self) -> SystemTime {
        nanos(self.finished_at)
    }

    pub fn started(&self) -> SystemTime {
        nanos(self.started_at)
    }
}

/// A CRI timestamp (nanoseconds since the epoch).
pub fn nanos(t: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(t.max(0) as u64)
}

/// The pod's sandboxes and containers, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodState {
    pub sandboxes: Vec<Sandbox>,
    pub containers: Vec<Instance>,
}

impl PodState {
    pub async fn fetch(cri: &Cri, uid: &str) -> Result<PodState> {
        let mut sandboxes = Vec::new();
        let mut listed = cri.list_sandboxes(labels::of_pod(uid)).await?;
        listed.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        for (i, sb) in listed.into_iter().enumerate() {
            let ready = sb.state == cri::PodSandboxState::SandboxReady as i32;
            // Only the newest sandbox's addresses matter.
            let ips = if i == 0 && ready {
                match cri.sandbox_status(&sb.id).await {
                    Ok(status) => status
                        .network
                        .map(|n| {
                            std::iter::once(n.ip)
                                .chain(n.additional_ips.into_iter().map(|ip| ip.ip))
                                .filter(|ip| !ip.is_empty())
                                .collect()
                        })
                        .unwrap_or_default(),
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(e),
                }
            } else {
                Vec::new()
            };
            sandboxes.push(Sandbox {
                id: sb.id,
                attempt: sb.metadata.map_or(0, |m| m.attempt),
                ready,
                created_at: sb.created_at,
                ips,
            });
        }
        let mut containers = Vec::new();
        for c in cri.list_containers(labels::of_pod(uid)).await? {
            let status = match cri.container_status(&c.id).await {
                Ok(status) => status,
                // Removed meanwhile.
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            containers.push(instance(&c.pod_sandbox_id, status));
        }
        containers.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.restart_count)));
        Ok(PodState {
            sandboxes,
            containers,
        })
    }

    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.first().filter(|s| s.ready)
    }

    pub fn latest(&self, name: &str) -> Option<&Instance> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The instance before the latest one (what `--previous` shows).
    pub fn previous(&self, name: &str) -> Option<&Instance> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    pub fn running(&self) -> impl Iterator<Item = &Instance> {
        self.containers.iter().filter(|c| c.running())
    }
}

fn instance(sandbox_id: &str, s: cri::ContainerStatus) -> Instance {
    let state = match cri::ContainerState::try_from(s.state) {
        Ok(cri::ContainerState::ContainerCreated) => State::Created,
        Ok(cri::ContainerState::ContainerRunning) => State::Running,
        Ok(cri::ContainerState::ContainerExited) => State::Exited,
        _ => State::Unknown,
    };
    let metadata = s.metadata.unwrap_or_default();
    let annotation = |key: &str| s.annotations.get(key).cloned().unwrap_or_default();
    Instance {
        id: s.id,
        sandbox_id: sandbox_id.to_string(),
        name: s
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .unwrap_or(metadata.name),
        restart_count: annotation(labels::RESTART_COUNT)
            .parse()
            .unwrap_or(metadata.attempt as i32),
        state,
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
        exit_code: s.exit_code,
        reason: s.reason,
        message: s.message,
        image: s.image.map(|i| i.image).unwrap_or_default(),
        image_ref: s.image_ref,
        hash: annotation(labels::CONTAINER_HASH),
        log_path: s.log_path,
    }
}
