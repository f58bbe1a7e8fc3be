//! Stopping: a container (preStop hook, then the stop signal and SIGKILL
//! after what is left of the grace period), the whole pod (containers in
//! parallel, then its sandboxes), and a pod's removal — its containers,
//! sandboxes, volumes and logs — ending with the final delete of a pod
//! deleted through the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};

use super::cgroups;
use super::probe::{self, Target};
use super::spec::{self, pod_spec};
use super::state::{Instance, PodState};
use super::volumes;
use super::worker::{Next, Worker, reference};
use crate::cri::is_not_found;
use crate::events::Kind;

/// Upstream's `minimumGracePeriodInSeconds`.
const MIN_GRACE: Duration = Duration::from_secs(2);

impl Worker {
    /// The grace period of the pod: its deletion's, else its spec's.
    pub(super) fn grace(&self, pod: &Pod) -> Duration {
        let seconds = pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod_spec(pod).termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64).max(MIN_GRACE)
    }

    /// Stops every running container (in parallel), then the sandboxes.
    pub(super) async fn kill_pod(
        &self,
        pod: Option<&Pod>,
        state: &PodState,
        grace: Duration,
    ) -> Result<()> {
        let stops = state
            .running()
            .map(|instance| self.stop_instance(pod, instance, grace, true));
        for result in futures::future::join_all(stops).await {
            result?;
        }
        for sandbox in state.sandboxes.iter().filter(|s| s.ready) {
            if let Err(e) = self.ctx.cri.stop_sandbox(&sandbox.id).await
                && !is_not_found(&e)
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The container's preStop hook, then StopContainer with the rest of
    /// the grace period.
    pub(super) async fn stop_instance(
        &self,
        pod: Option<&Pod>,
        instance: &Instance,
        grace: Duration,
        announce: bool,
    ) -> Result<()> {
        let started = Instant::now();
        if let Some(pod) = pod {
            let spec = pod_spec(pod);
            let found = spec
                .containers
                .iter()
                .map(|c| (c, false))
                .chain(spec.init_containers.iter().flatten().map(|c| (c, true)))
                .find(|(c, _)| c.name == instance.name);
            if let Some((c, init)) = found {
                let at = reference(pod, Some((&c.name, init)));
                if announce {
                    self.ctx.events.record(
                        at.clone(),
                        Kind::Normal,
                        "Killing",
                        format!("Stopping container {}", c.name),
                    );
                }
                if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                    let state = PodState::fetch(&self.ctx.cri, &self.uid)
                        .await
                        .unwrap_or_default();
                    let ip = state
                        .sandboxes
                        .first()
                        .and_then(|s| s.ips.first().cloned())
                        .unwrap_or_else(|| self.ctx.node_ip.to_string());
                    let target = Target {
                        cri: &self.ctx.cri,
                        container_id: &instance.id,
                        container: c,
                        pod_ip: &ip,
                    };
                    if let Err(message) = probe::hook(hook, &target, grace).await {
                        self.ctx.events.record(
                            at,
                            Kind::Warning,
                            "FailedPreStopHook",
                            format!("PreStopHook failed: {message}"),
                        );
                    }
                }
            }
        }
        let left = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
        match self.ctx.cri.stop_container(&instance.id, left).await {
            Err(e) if !is_not_found(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// A pod deleted through the API: stop it within its grace period,
    /// report the final status, remove everything, then delete the object.
    pub(super) async fn finish_deletion(
        &mut self,
        pod: &Arc<Pod>,
        state: PodState,
    ) -> Result<Next> {
        self.kill_pod(Some(pod), &state, self.grace(pod)).await?;
        let state = PodState::fetch(&self.ctx.cri, &self.uid).await?;
        self.report(pod, &state).await?;
        self.remove_everything(Some(pod)).await?;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), spec::namespace(pod));
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(spec::name(pod), &params).await {
            Ok(_) => {}
            // Gone already, or a new pod took the name.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e).context("deleting the pod"),
        }
        tracing::info!(
            pod = spec::name(pod),
            namespace = spec::namespace(pod),
            "pod deleted"
        );
        Ok(Next::Done)
    }

    /// Stops and removes every container and sandbox of the pod, its
    /// volumes and its logs.
    pub(super) async fn remove_everything(&mut self, pod: Option<&Pod>) -> Result<()> {
        let state = PodState::fetch(&self.ctx.cri, &self.uid).await?;
        let grace = pod.map_or(MIN_GRACE, |p| self.grace(p));
        self.kill_pod(pod, &state, grace).await?;
        for instance in &state.containers {
            if let Err(e) = self.ctx.cri.remove_container(&instance.id).await
                && !is_not_found(&e)
            {
                return Err(e);
            }
        }
        for sandbox in &state.sandboxes {
            if let Err(e) = self.ctx.cri.remove_sandbox(&sandbox.id).await
                && !is_not_found(&e)
            {
                return Err(e);
            }
        }
        self.probes.sync(std::iter::empty(), "", |_| false);
        cgroups::remove_pod(&self.ctx.cgroup_root, &self.uid)?;
        volumes::teardown(&self.pod_dir())?;
        self.remove_logs()
    }

    /// `<pod log dir>/<ns>_<name>_<uid>`, found by the uid.
    fn remove_logs(&self) -> Result<()> {
        let suffix = format!("_{}", self.uid);
        let Ok(entries) = std::fs::read_dir(&self.ctx.pod_log_dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(&suffix) {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
        Ok(())
    }
}
