//! Carrying out a plan's starts: volumes, the sandbox, and each container
//! — back-off, image, environment, mounts, CreateContainer,
//! StartContainer, postStart — with upstream's events and waiting reasons.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, Service};
use kube::Api;

use super::ConfigError;
use super::backoff::go_duration;
use super::env::{self, Facts, Lookup};
use super::images::Puller;
use super::plan::{KillReason, Plan, Start};
use super::probe::{self, Target};
use super::spec::{self, ContainerInputs, pod_spec};
use super::state::PodState;
use super::status::Waiting;
use super::volumes::{self, Prepared};
use super::worker::{Worker, reference};
use crate::cri::is_not_found;
use crate::events::Kind;

/// What the containers started in one sync share.
struct Started {
    sandbox_id: String,
    sandbox_config: cri::PodSandboxConfig,
    ips: Vec<String>,
    volumes: HashMap<String, Prepared>,
    services: Vec<Service>,
}

impl Worker {
    pub(super) async fn execute(
        &mut self,
        pod: &Arc<Pod>,
        state: &PodState,
        plan: Plan,
    ) -> Result<()> {
        self.just_killed.clear();
        for id in &plan.remove {
            if let Err(e) = self.ctx.cri.remove_container(id).await
                && !is_not_found(&e)
            {
                return Err(e);
            }
        }
        if plan.kill_pod {
            self.kill_pod(Some(pod), state, self.grace(pod)).await?;
        }
        for kill in &plan.kill {
            let message = match kill.reason {
                KillReason::LivenessFailed => format!(
                    "Container {} failed liveness probe, will be restarted",
                    kill.name
                ),
                KillReason::StartupFailed => format!(
                    "Container {} failed startup probe, will be restarted",
                    kill.name
                ),
                KillReason::SpecChanged => format!(
                    "Container {} definition changed, will be restarted",
                    kill.name
                ),
            };
            self.ctx.events.record(
                reference(pod, Some((&kill.name, false))),
                Kind::Normal,
                "Killing",
                message,
            );
            if let Some(instance) = state.containers.iter().find(|i| i.id == kill.id) {
                self.stop_instance(Some(pod), instance, self.grace(pod), false)
                    .await?;
            }
            self.just_killed.insert(kill.name.clone());
        }
        if plan.start.is_empty() && plan.create_sandbox.is_none() {
            return Ok(());
        }
        let mut lookup = Lookup::new(self.ctx.client.clone(), spec::namespace(pod));
        let Some(mut started) = self
            .prepare(pod, state, plan.create_sandbox, &mut lookup)
            .await?
        else {
            return Ok(());
        };
        // The state before this sync's kills, for restart counts and back-off.
        for start in &plan.start {
            self.start_container(pod, state, start, &mut started, &mut lookup)
                .await?;
        }
        Ok(())
    }

    /// Volumes, then the sandbox (a new one if the plan says so); `None`
    /// if the pod cannot start yet (the reason is recorded).
    async fn prepare(
        &mut self,
        pod: &Arc<Pod>,
        state: &PodState,
        create: Option<u32>,
        lookup: &mut Lookup,
    ) -> Result<Option<Started>> {
        let existing_ips = state
            .ready_sandbox()
            .map(|s| s.ips.clone())
            .unwrap_or_default();
        let node_ip = self.ctx.node_ip.to_string();
        let facts = self.facts(&node_ip, &existing_ips);
        let volumes = match volumes::prepare(pod, &self.pod_dir(), &facts, lookup).await {
            Ok(volumes) => volumes,
            Err(e) => {
                self.ctx.events.record(
                    reference(pod, None),
                    Kind::Warning,
                    "FailedMount",
                    e.to_string(),
                );
                self.wake_at(SystemTime::now() + Duration::from_secs(2));
                return Ok(None);
            }
        };
        let (sandbox_id, attempt) = match (create, state.ready_sandbox()) {
            (None, Some(sandbox)) => (sandbox.id.clone(), sandbox.attempt),
            (Some(attempt), _) => {
                let config = spec::sandbox_config(pod, attempt, &self.node_settings());
                match self.ctx.cri.run_sandbox(config).await {
                    Ok(id) => (id, attempt),
                    Err(e) => {
                        self.ctx.events.record(
                            reference(pod, None),
                            Kind::Warning,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {}", crate::cri::message(&e)),
                        );
                        self.wake_at(SystemTime::now() + Duration::from_secs(2));
                        return Ok(None);
                    }
                }
            }
            (None, None) => return Ok(None),
        };
        let ips = match self.ctx.cri.sandbox_status(&sandbox_id).await?.network {
            Some(network) => std::iter::once(network.ip)
                .chain(network.additional_ips.into_iter().map(|ip| ip.ip))
                .filter(|ip| !ip.is_empty())
                .collect(),
            None => Vec::new(),
        };
        let hosts = spec::hosts_file(pod, &ips, &self.ctx.cluster_domain);
        std::fs::create_dir_all(self.pod_dir())?;
        std::fs::write(self.pod_dir().join("etc-hosts"), hosts)?;
        Ok(Some(Started {
            sandbox_id,
            sandbox_config: spec::sandbox_config(pod, attempt, &self.node_settings()),
            ips,
            volumes,
            services: self.services(pod).await?,
        }))
    }

    /// Services whose variables containers get.
    async fn services(&self, pod: &Pod) -> Result<Vec<Service>> {
        let mut services = Vec::new();
        let links = pod_spec(pod).enable_service_links.unwrap_or(true);
        let namespace = spec::namespace(pod);
        if links {
            let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), namespace);
            services.extend(api.list(&Default::default()).await?.items);
        }
        if namespace != "default" || !links {
            let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), "default");
            services.extend(api.get_opt("kubernetes").await?);
        }
        Ok(services)
    }

    fn facts<'a>(&self, node_ip: &'a str, ips: &'a [String]) -> Facts<'a> {
        Facts {
            host_ip: node_ip,
            pod_ips: ips,
            node_cpu_millis: self.ctx.node_cpu_millis,
            node_memory: self.ctx.node_memory,
        }
    }

    async fn start_container(
        &mut self,
        pod: &Arc<Pod>,
        state: &PodState,
        start: &Start,
        started: &mut Started,
        lookup: &mut Lookup,
    ) -> Result<()> {
        let spec = pod_spec(pod);
        let list = if start.init {
            spec.init_containers.as_deref().unwrap_or(&[])
        } else {
            &spec.containers
        };
        let Some(c) = list.iter().find(|c| c.name == start.name) else {
            return Ok(());
        };
        let at = reference(pod, Some((&c.name, start.init)));
        let latest = state.latest(&c.name);
        let restart_count = latest.map_or(0, |l| l.restart_count + 1);

        if let Some(latest) = latest.filter(|l| l.exited())
            && !self.just_killed.contains(&c.name)
        {
            let key = format!("{}_{}", c.name, spec::container_hash(c));
            let now = SystemTime::now();
            if let Some((delay, until)) =
                self.crash_backoff.in_backoff(&key, latest.finished(), now)
            {
                let pod_name = format!(
                    "{}_{}({})",
                    spec::name(pod),
                    spec::namespace(pod),
                    spec::uid(pod)
                );
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={pod_name}",
                            go_duration(delay),
                            c.name
                        ),
                    },
                );
                self.ctx.events.record(
                    at,
                    Kind::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {pod_name}",
                        c.name
                    ),
                );
                self.wake_at(until);
                return Ok(());
            }
            self.crash_backoff.next(&key, now);
        }

        let mut puller = Puller {
            cri: &self.ctx.cri,
            events: &self.ctx.events,
            backoff: &mut self.pull_backoff,
            failures: &mut self.pull_failures,
            names: &self.ctx.image_names,
        };
        let image = match puller.ensure(c, &at, &started.sandbox_config).await {
            Ok(image) => image,
            Err(waiting) => {
                if let Some(retry) = self.pull_retry_at(c) {
                    self.wake_at(retry);
                }
                self.waiting.insert(c.name.clone(), waiting);
                return Ok(());
            }
        };

        let node_ip = self.ctx.node_ip.to_string();
        let ips = started.ips.clone();
        let facts = self.facts(&node_ip, &ips);
        let config = async {
            spec::verify_non_root(spec, c, image.uid, &image.username).map_err(ConfigError)?;
            let env = env::environment(pod, c, &started.services, &facts, lookup).await?;
            let mounts = self.mounts(pod, c, restart_count, &started.volumes, &env)?;
            Ok::<_, ConfigError>(spec::container_config(
                pod,
                ContainerInputs {
                    container: c,
                    restart_count,
                    image_ref: &image.reference,
                    env: &env,
                    mounts,
                },
            ))
        }
        .await;
        let config = match config {
            Ok(config) => config,
            Err(ConfigError(message)) => {
                self.fail(&at, c, "CreateContainerConfigError", message);
                self.wake_at(SystemTime::now() + Duration::from_secs(5));
                return Ok(());
            }
        };
        let id = match self
            .ctx
            .cri
            .create_container(&started.sandbox_id, config, started.sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.fail(&at, c, "CreateContainerError", crate::cri::message(&e));
                return Ok(());
            }
        };
        self.ctx.events.record(
            at.clone(),
            Kind::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        if let Err(e) = self.ctx.cri.start_container(&id).await {
            self.fail(&at, c, "RunContainerError", crate::cri::message(&e));
            return Ok(());
        }
        self.ctx.events.record(
            at.clone(),
            Kind::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        self.waiting.remove(&c.name);
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let ip = started
                .ips
                .first()
                .cloned()
                .unwrap_or_else(|| node_ip.clone());
            let target = Target {
                cri: &self.ctx.cri,
                container_id: &id,
                container: c,
                pod_ip: &ip,
            };
            if let Err(message) = probe::hook(hook, &target, self.grace(pod)).await {
                self.ctx.events.record(
                    at.clone(),
                    Kind::Warning,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {message}"),
                );
                self.ctx.events.record(
                    at,
                    Kind::Normal,
                    "Killing",
                    format!(
                        "FailedPostStartHook: container {} will be restarted",
                        c.name
                    ),
                );
                self.ctx.cri.stop_container(&id, self.grace(pod)).await?;
            }
        }
        Ok(())
    }

    /// When a failed pull of `c`'s image may be retried.
    fn pull_retry_at(&self, c: &Container) -> Option<SystemTime> {
        let image = c.image.as_deref()?;
        let failed = self.pull_failures.get(image)?;
        self.pull_backoff
            .in_backoff(image, *failed, SystemTime::now())
            .map(|(_, until)| until)
    }

    /// Records why `c` did not start: its waiting reason and a Failed event.
    fn fail(
        &mut self,
        at: &k8s_openapi::api::core::v1::ObjectReference,
        c: &Container,
        reason: &str,
        message: String,
    ) {
        self.ctx.events.record(
            at.clone(),
            Kind::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        self.waiting.insert(
            c.name.clone(),
            Waiting {
                reason: reason.into(),
                message,
            },
        );
    }

    /// Volume mounts, the managed /etc/hosts and the termination log.
    fn mounts(
        &self,
        pod: &Pod,
        c: &Container,
        restart_count: i32,
        volumes: &HashMap<String, Prepared>,
        env: &[(String, String)],
    ) -> Result<Vec<cri::Mount>, ConfigError> {
        let defined: HashMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let volume = volumes.get(&m.name).ok_or_else(|| {
                ConfigError(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    m.name, c.name
                ))
            })?;
            let sub_path = match (&m.sub_path, &m.sub_path_expr) {
                (Some(p), _) if !p.is_empty() => p.clone(),
                (_, Some(e)) if !e.is_empty() => env::expand(e, &defined),
                _ => String::new(),
            };
            if sub_path.split('/').any(|part| part == "..") || sub_path.starts_with('/') {
                return Err(ConfigError(format!(
                    "subPath {sub_path:?} must be a relative path without '..'"
                )));
            }
            let host_path = if sub_path.is_empty() {
                volume.path.clone()
            } else {
                volume.path.join(&sub_path)
            };
            let propagation = match m.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
                _ => cri::MountPropagation::PropagationPrivate,
            };
            mounts.push(cri::Mount {
                container_path: m.mount_path.clone(),
                host_path: host_path.display().to_string(),
                readonly: m.read_only.unwrap_or(false) || volume.read_only,
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        let io = |e: std::io::Error| ConfigError(format!("preparing the container's files: {e}"));
        let explicit = |path: &str| mounts.iter().any(|m: &cri::Mount| m.container_path == path);
        if pod_spec(pod).host_network != Some(true) && !explicit("/etc/hosts") {
            mounts.push(cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: self.pod_dir().join("etc-hosts").display().to_string(),
                ..Default::default()
            });
        }
        let log = self.termination_log(&c.name, restart_count);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&log, b"").map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).map_err(io)?;
        mounts.push(cri::Mount {
            container_path: spec::termination_message_path(c).to_string(),
            host_path: log.display().to_string(),
            ..Default::default()
        });
        Ok(mounts)
    }
}
