//! One pod's worker: a loop that syncs the pod whenever it changes, its
//! containers change (the relist), a probe result changes, a back-off ends
//! or the resync period passes. A sync reads the pod's runtime state,
//! carries out the plan, and writes the status if it changed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, PodStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::Context;
use super::backoff::Backoff;
use super::plan::{self, Plan};
use super::probes::Probes;
use super::spec::{self, NodeSettings, pod_spec};
use super::state::PodState;
use super::status::{self, Waiting};
use crate::logs;

/// A pod is looked at at least this often.
const RESYNC: Duration = Duration::from_secs(10);
/// After a failed sync.
const RETRY: Duration = Duration::from_secs(2);

pub struct Worker {
    pub(super) ctx: Arc<Context>,
    pub(super) uid: String,
    pod: watch::Receiver<Option<Arc<Pod>>>,
    wake: Arc<Notify>,
    pub(super) probes: Probes,
    pub(super) crash_backoff: Backoff,
    pub(super) pull_backoff: Backoff,
    pub(super) pull_failures: HashMap<String, SystemTime>,
    /// Why containers wait, by name, from the last sync.
    pub(super) waiting: HashMap<String, Waiting>,
    /// Containers killed in this sync (restarted without back-off).
    pub(super) just_killed: HashSet<String>,
    /// Termination messages by instance id.
    messages: HashMap<String, String>,
    first_seen: Instant,
    start_observed: bool,
    written: Option<serde_json::Value>,
    next_wake: Option<Instant>,
}

pub(super) enum Next {
    Continue,
    /// The pod is gone and so is everything it had.
    Done,
}

impl Worker {
    pub fn new(
        ctx: Arc<Context>,
        uid: String,
        pod: watch::Receiver<Option<Arc<Pod>>>,
        wake: Arc<Notify>,
    ) -> Worker {
        let (initial, max) = (ctx.timing.backoff_initial, ctx.timing.backoff_max);
        Worker {
            probes: Probes::new(ctx.cri.clone(), ctx.events.clone(), wake.clone()),
            ctx,
            uid,
            pod,
            wake,
            crash_backoff: Backoff::new(initial, max),
            pull_backoff: Backoff::new(initial, max),
            pull_failures: HashMap::new(),
            waiting: HashMap::new(),
            just_killed: HashSet::new(),
            messages: HashMap::new(),
            first_seen: Instant::now(),
            start_observed: false,
            written: None,
            next_wake: None,
        }
    }

    pub async fn run(mut self) {
        loop {
            let pod = self.pod.borrow_and_update().clone();
            self.next_wake = None;
            let result = match &pod {
                Some(pod) => self.sync(pod).await,
                None => self.remove_everything(None).await.map(|()| Next::Done),
            };
            let retry = match result {
                Ok(Next::Done) => return,
                Ok(Next::Continue) => None,
                Err(e) => {
                    let name = pod.as_deref().map_or(self.uid.as_str(), spec::name);
                    tracing::warn!(pod = name, "syncing the pod: {e:#}");
                    Some(Instant::now() + RETRY)
                }
            };
            let deadline = [retry, self.next_wake, Some(Instant::now() + RESYNC)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(Instant::now);
            tokio::select! {
                changed = self.pod.changed() => {
                    if changed.is_err() {
                        // The agent is stopping; the pod keeps running.
                        return;
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    /// Asks for another sync at `at` (a back-off ending).
    pub(super) fn wake_at(&mut self, at: SystemTime) {
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        let at = Instant::now() + wait + Duration::from_millis(10);
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }

    async fn sync(&mut self, pod: &Arc<Pod>) -> Result<Next> {
        let state = PodState::fetch(&self.ctx.cri, &self.uid).await?;
        if pod.metadata.deletion_timestamp.is_some() {
            return self.finish_deletion(pod, state).await;
        }
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if terminal {
            // A finished pod never runs again; make sure nothing does.
            if state.running().next().is_some() || state.sandboxes.iter().any(|s| s.ready) {
                self.kill_pod(Some(pod), &state, self.grace(pod)).await?;
                let state = PodState::fetch(&self.ctx.cri, &self.uid).await?;
                self.report(pod, &state).await?;
            }
            return Ok(Next::Continue);
        }
        let spec = pod_spec(pod);
        let hashes: HashMap<String, String> = spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), spec::container_hash(c)))
            .collect();
        let unhealthy = self.probes.results().unhealthy;
        let plan = plan::plan(spec, &state, &hashes, &unhealthy);
        let state = if plan == Plan::default() {
            state
        } else {
            self.execute(pod, &state, plan).await?;
            PodState::fetch(&self.ctx.cri, &self.uid).await?
        };
        self.report(pod, &state).await?;
        Ok(Next::Continue)
    }

    /// Probes, termination messages and the status, for `state`.
    pub(super) async fn report(&mut self, pod: &Arc<Pod>, state: &PodState) -> Result<()> {
        self.read_termination_messages(pod, state);
        let pod_ip = state
            .ready_sandbox()
            .and_then(|s| s.ips.first().cloned())
            .unwrap_or_else(|| self.ctx.node_ip.to_string());
        let spec = pod_spec(pod);
        let runtime = self.ctx.runtime_name.clone();
        let containers: HashMap<&str, (&Container, bool)> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), (c, true)))
            .chain(
                spec.containers
                    .iter()
                    .map(|c| (c.name.as_str(), (c, false))),
            )
            .collect();
        let running = state.running().filter_map(|i| {
            let (c, init) = containers.get(i.name.as_str())?;
            Some((i, *c, reference(pod, Some((&c.name, *init)))))
        });
        self.probes
            .sync(running, &pod_ip, |id| status::was_ready(pod, id, &runtime));
        let status = self.compute_status(pod, state).await;
        if !self.start_observed && status.phase.as_deref() == Some("Running") {
            self.start_observed = true;
            self.ctx
                .metrics
                .pod_start
                .observe(self.first_seen.elapsed().as_secs_f64());
        }
        self.write_status(pod, &status).await
    }

    async fn compute_status(&self, pod: &Pod, state: &PodState) -> PodStatus {
        self.learn_image_names(state).await;
        let results = self.probes.results();
        let names = self
            .ctx
            .image_names
            .lock()
            .expect("image names lock")
            .clone();
        let node_ip = self.ctx.node_ip.to_string();
        let facts = status::Facts {
            waiting: &self.waiting,
            ready: &results.ready,
            started: &results.started,
            messages: &self.messages,
            image_names: &names,
            host_ip: &node_ip,
            runtime: &self.ctx.runtime_name,
            now: k8s_openapi::jiff::Timestamp::now(),
        };
        status::compute(pod, state, &facts)
    }

    /// Looks up the names of images the status will show.
    async fn learn_image_names(&self, state: &PodState) {
        let unknown: Vec<String> = {
            let names = self.ctx.image_names.lock().expect("image names lock");
            state
                .containers
                .iter()
                .filter(|i| !names.contains_key(&i.image_ref) && !names.contains_key(&i.image))
                .map(|i| i.image.clone())
                .collect()
        };
        for image in unknown {
            if let Ok(Some(found)) = self.ctx.cri.image_status(&image).await
                && let Some(tag) = found.repo_tags.first()
            {
                let mut names = self.ctx.image_names.lock().expect("image names lock");
                names.insert(image.clone(), tag.clone());
                names.insert(found.id.clone(), tag.clone());
                for digest in &found.repo_digests {
                    names.insert(digest.clone(), tag.clone());
                }
            }
        }
    }

    /// Patches the status unless the API already shows it.
    async fn write_status(&mut self, pod: &Pod, status: &PodStatus) -> Result<()> {
        let value = serde_json::to_value(status)?;
        let current = serde_json::to_value(&pod.status)?;
        if value == current || self.written.as_ref() == Some(&value) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), spec::namespace(pod));
        match api
            .patch_status(
                spec::name(pod),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": value})),
            )
            .await
        {
            Ok(_) => {
                self.written = Some(value);
                Ok(())
            }
            // Deleted meanwhile: the watch says so next.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).context("writing the pod status"),
        }
    }

    /// Termination messages of exited instances: the file the container
    /// wrote, or the tail of its log when asked to fall back to it.
    fn read_termination_messages(&mut self, pod: &Pod, state: &PodState) {
        let spec = pod_spec(pod);
        for instance in state.containers.iter().filter(|i| i.exited()) {
            if self.messages.contains_key(&instance.id) {
                continue;
            }
            let Some(c) = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == instance.name)
            else {
                continue;
            };
            let file = self.termination_log(&c.name, instance.restart_count);
            let mut message = std::fs::read(&file)
                .map(|m| String::from_utf8_lossy(&m[..m.len().min(4096)]).into_owned())
                .unwrap_or_default();
            let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
            if message.is_empty() && fallback && instance.exit_code != 0 {
                message = logs::tail(std::path::Path::new(&instance.log_path), 80, 2048)
                    .unwrap_or_default();
            }
            self.messages.insert(instance.id.clone(), message);
        }
        let live: HashSet<&str> = state.containers.iter().map(|i| i.id.as_str()).collect();
        self.messages.retain(|id, _| live.contains(id.as_str()));
    }

    pub(super) fn pod_dir(&self) -> PathBuf {
        self.ctx.pods_dir.join(&self.uid)
    }

    /// The file a container instance's termination message is written to.
    pub(super) fn termination_log(&self, name: &str, restart_count: i32) -> PathBuf {
        self.pod_dir()
            .join("containers")
            .join(name)
            .join(format!("{restart_count}.termination-log"))
    }

    pub(super) fn node_settings(&self) -> NodeSettings<'_> {
        NodeSettings {
            pod_log_dir: &self.ctx.pod_log_dir,
            cgroup_root: &self.ctx.cgroup_root,
            cluster_dns: self.ctx.cluster_dns,
            cluster_domain: &self.ctx.cluster_domain,
            host_resolv_conf: &self.ctx.host_resolv_conf,
        }
    }
}

/// The pod, or one of its containers, as events name them.
pub(super) fn reference(pod: &Pod, container: Option<(&str, bool)>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|(name, init)| {
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            }
        }),
    }
}
