//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets named `<deployment>-<pod-template-hash>` — RollingUpdate
//! within maxSurge/maxUnavailable, or Recreate — keeps revision annotations
//! (`kubectl rollout history|undo` read them) and `revisionHistoryLimit` old
//! ReplicaSets, shares resizes among ReplicaSets mid-rollout, and reports
//! status with the Available/Progressing conditions `kubectl rollout
//! status` waits on.

mod hash;
mod rollout;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use self::rollout::Size;
use super::events::Recorder;
use super::informer::Informer;
use super::owners;
use super::pods;
use super::reconciler;
use super::selector::Labels;

pub const COMPONENT: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub struct Context {
    client: Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the controller until its watches end.
pub async fn run(
    client: Client,
    deployments: &Informer<Deployment>,
    replicasets: &Informer<ReplicaSet>,
    pods: &Informer<Pod>,
    recorder: &Recorder,
    resync: Duration,
) -> Result<()> {
    deployments.ready().await?;
    replicasets.ready().await?;
    pods.ready().await?;
    let d_store = deployments.store();
    let recreating = deployments.store();
    let rs_store = replicasets.store();
    let triggers = vec![
        reconciler::on_changes(deployments),
        reconciler::on_related(replicasets, move |rs: &ReplicaSet| {
            owners::owners_to_trigger(rs, &d_store, |d: &Deployment| {
                Labels::from_selector(Some(&d.spec.selector))
            })
        }),
        // Recreate waits for the old pods to go.
        reconciler::on_related(pods, move |pod: &Pod| {
            recreating_owner(pod, &rs_store, &recreating)
        }),
        reconciler::every(resync),
    ];
    let ctx = Arc::new(Context {
        client,
        replicasets: replicasets.store(),
        pods: pods.store(),
        recorder: recorder.as_component(COMPONENT),
    });
    reconciler::run("deployment", deployments.store(), triggers, ctx, reconcile).await;
    Ok(())
}

/// The Recreate Deployment whose ReplicaSet controls `pod`, if any.
fn recreating_owner(
    pod: &Pod,
    replicasets: &Store<ReplicaSet>,
    deployments: &Store<Deployment>,
) -> Option<ObjectRef<Deployment>> {
    let namespace = pod.namespace().unwrap_or_default();
    let rs = owners::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&rs.name).within(&namespace))?;
    let d = owners::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    let d = ObjectRef::new(&d.name).within(&namespace);
    deployments.get(&d).filter(|d| is_recreate(d)).map(|_| d)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut sync = Sync::new(&d, &ctx).await?;
    let requeue = if d.spec.paused == Some(true) {
        sync.resize().await?;
        sync.write_status(false).await?
    } else if sync.is_scaling_event() {
        sync.resize().await?;
        sync.write_status(true).await?
    } else if is_recreate(&d) {
        sync.recreate().await?;
        sync.write_status(true).await?
    } else {
        sync.rolling_update().await?;
        sync.write_status(true).await?
    };
    Ok(match requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// One reconcile of one Deployment: its ReplicaSets (oldest first), kept up
/// to date with our own writes as the steps go.
struct Sync<'a> {
    ctx: &'a Context,
    /// The Deployment, its status conditions updated as steps go.
    d: Deployment,
    /// Its status as the API has it.
    stored_status: Option<DeploymentStatus>,
    api: Api<ReplicaSet>,
    rss: Vec<ReplicaSet>,
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
    now: Timestamp,
}

impl<'a> Sync<'a> {
    async fn new(d: &Deployment, ctx: &'a Context) -> Result<Sync<'a>> {
        let namespace = d.namespace().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let candidates = ctx
            .replicasets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .collect();
        let selector = Labels::from_selector(Some(&d.spec.selector));
        let owned = owners::claim(&api, d, &selector, candidates, |rs: &ReplicaSet| {
            rs.metadata.deletion_timestamp.is_none()
        })
        .await?;
        let mut rss: Vec<ReplicaSet> = owned.iter().map(|rs| (**rs).clone()).collect();
        rss.sort_by(|a, b| {
            let key = |rs: &ReplicaSet| {
                (
                    rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    rs.name_any(),
                )
            };
            key(a).cmp(&key(b))
        });
        let replicas = d.spec.replicas.unwrap_or(1);
        let (max_surge, max_unavailable) = if !is_recreate(d) {
            let params = d
                .spec
                .strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref());
            let (surge, unavailable) = rollout::fenceposts(
                params.and_then(|p| p.max_surge.as_ref()),
                params.and_then(|p| p.max_unavailable.as_ref()),
                replicas,
            )
            .map_err(anyhow::Error::msg)?;
            (surge, unavailable.min(replicas))
        } else {
            (0, 0)
        };
        Ok(Sync {
            ctx,
            d: d.clone(),
            stored_status: d.status.clone(),
            api,
            rss,
            replicas,
            max_surge,
            max_unavailable,
            now: Timestamp::now(),
        })
    }

    fn new_rs(&self) -> Option<usize> {
        let template = self.d.spec.template.clone();
        self.rss.iter().position(|rs| {
            rs.spec
                .template
                .as_ref()
                .is_some_and(|t| hash::same_template(t, &template))
        })
    }

    fn olds(&self) -> Vec<usize> {
        let new = self.new_rs();
        (0..self.rss.len()).filter(|&i| Some(i) != new).collect()
    }

    fn all_wanted(&self) -> i32 {
        self.rss.iter().map(wanted).sum()
    }

    /// A resize (`kubectl scale`) is under way when an active ReplicaSet was
    /// sized for another replica count.
    fn is_scaling_event(&self) -> bool {
        self.rss.iter().filter(|rs| wanted(rs) > 0).any(|rs| {
            annotation(rs, DESIRED_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|desired| desired != self.replicas)
        })
    }

    async fn rolling_update(&mut self) -> Result<()> {
        let initial = rollout::new_replicas(self.replicas, self.max_surge, self.all_wanted(), 0);
        let n = self.ensure_new(initial).await?;
        let new_wanted = wanted(&self.rss[n]);
        let target = if new_wanted > self.replicas {
            self.replicas
        } else {
            rollout::new_replicas(self.replicas, self.max_surge, self.all_wanted(), new_wanted)
        };
        if self.scale(n, target).await? {
            return Ok(());
        }
        let olds: Vec<usize> = self
            .olds()
            .into_iter()
            .filter(|&i| wanted(&self.rss[i]) > 0)
            .collect();
        let sizes = rollout::shrink_old(
            self.replicas,
            self.max_unavailable,
            size(&self.rss[n]),
            &olds.iter().map(|&i| size(&self.rss[i])).collect::<Vec<_>>(),
        );
        let mut scaled = false;
        for (&i, size) in olds.iter().zip(sizes) {
            scaled |= self.scale(i, size).await?;
        }
        if !scaled {
            self.cleanup_if_complete().await?;
        }
        Ok(())
    }

    async fn recreate(&mut self) -> Result<()> {
        let mut scaled = false;
        for i in self.olds() {
            scaled |= self.scale(i, 0).await?;
        }
        if scaled || self.old_pods_running() {
            return Ok(());
        }
        let n = self.ensure_new(self.replicas).await?;
        if !self.scale(n, self.replicas).await? {
            self.cleanup_if_complete().await?;
        }
        Ok(())
    }

    /// Pods of old ReplicaSets that are not finished (Recreate waits for them).
    fn old_pods_running(&self) -> bool {
        let olds: Vec<String> = self
            .olds()
            .iter()
            .filter_map(|&i| self.rss[i].uid())
            .collect();
        self.ctx.pods.state().iter().any(|pod| {
            owners::controller_of(&pod.metadata).is_some_and(|o| olds.contains(&o.uid))
                && !pods::is_terminal(pod)
        })
    }

    /// Resizes without rolling out (paused, or `kubectl scale` mid-rollout):
    /// one active ReplicaSet takes the new size; several share it.
    async fn resize(&mut self) -> Result<()> {
        let new = self.new_rs();
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|&i| wanted(&self.rss[i]) > 0)
            .collect();
        let single = match active.as_slice() {
            [] => new.or_else(|| self.rss.len().checked_sub(1)),
            [only] => Some(*only),
            _ => None,
        };
        if let Some(i) = single {
            self.scale(i, self.replicas).await?;
            return Ok(());
        }
        if let Some(n) = new
            && self.is_saturated(n)
        {
            for i in self.olds() {
                self.scale(i, 0).await?;
            }
            return Ok(());
        }
        // Newest first, as the sharing rule wants.
        let newest_first: Vec<usize> = active.into_iter().rev().collect();
        let sizes = rollout::proportional(
            self.replicas + self.max_surge,
            &newest_first
                .iter()
                .map(|&i| wanted(&self.rss[i]))
                .collect::<Vec<_>>(),
        );
        for (&i, size) in newest_first.iter().zip(sizes) {
            self.scale(i, size).await?;
        }
        Ok(())
    }

    fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.rss[i];
        let available = rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        wanted(rs) == self.replicas
            && annotation(rs, DESIRED_REPLICAS) == Some(&self.replicas.to_string())
            && available == self.replicas
    }

    /// The ReplicaSet of the current template, created with `initial`
    /// replicas if missing, with its revision brought up to date (a rollback
    /// makes an old ReplicaSet the newest revision again).
    async fn ensure_new(&mut self, initial: i32) -> Result<usize> {
        let max_old = self
            .olds()
            .iter()
            .filter_map(|&i| revision(&self.rss[i]))
            .max()
            .unwrap_or(0);
        let next = max_old + 1;
        let i = match self.new_rs() {
            Some(i) => {
                self.sync_revision(i, next).await?;
                if status::get(self.status_mut(), status::PROGRESSING).is_none() {
                    let msg = format!("Found new replica set {:?}", self.rss[i].name_any());
                    let cond = status::condition(
                        status::PROGRESSING,
                        "True",
                        "FoundNewReplicaSet",
                        &msg,
                        self.now,
                    );
                    status::set_condition(self.status_mut(), cond);
                }
                i
            }
            None => self.create_new(next, initial).await?,
        };
        let rev = next.max(revision(&self.rss[i]).unwrap_or(0)).to_string();
        if annotation(&self.d, REVISION) != Some(&rev) {
            let api: Api<Deployment> = Api::namespaced(
                self.ctx.client.clone(),
                &self.d.namespace().unwrap_or_default(),
            );
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            api.patch(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .context("updating the deployment's revision")?;
        }
        Ok(i)
    }

    fn status_mut(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_with(DeploymentStatus::default)
    }

    async fn create_new(&mut self, revision: i64, replicas: i32) -> Result<usize> {
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let template = self.d.spec.template.clone();
        let hash = hash::compute(&template, collisions);
        let name = format!("{}-{hash}", self.d.name_any());
        let mut template = template;
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(hash::LABEL.into(), hash.clone());
        let mut selector: LabelSelector = self.d.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(hash::LABEL.into(), hash.clone());
        let mut annotations = self.copied_annotations();
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), self.replicas.to_string());
        annotations.insert(
            MAX_REPLICAS.into(),
            (self.replicas + self.max_surge).to_string(),
        );
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![owners::controller_ref(&self.d)]),
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: self.d.spec.min_ready_seconds,
                selector,
                template: Some(template),
            },
            status: None,
        };
        let created = match self.api.create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self
                    .api
                    .get(&name)
                    .await
                    .context("reading a replicaset that exists")?;
                let ours =
                    owners::is_controlled_by(&existing.metadata, &self.d.uid().unwrap_or_default());
                let same = existing
                    .spec
                    .template
                    .as_ref()
                    .is_some_and(|t| hash::same_template(t, &self.d.spec.template));
                if ours && same {
                    // Our cache had not caught up with an earlier create.
                    self.rss.push(existing);
                    return Ok(self.rss.len() - 1);
                }
                // Another object took the name: hash again with a new count.
                let count = collisions.unwrap_or(0).saturating_add(1);
                let api: Api<Deployment> = Api::namespaced(
                    self.ctx.client.clone(),
                    &self.d.namespace().unwrap_or_default(),
                );
                let patch = json!({"status": {"collisionCount": count}});
                api.patch_status(
                    &self.d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .context("bumping the collision count")?;
                bail!(
                    "replicaset {name} exists with another template; collision count now {count}"
                );
            }
            Err(e) => return Err(e).context(format!("creating replicaset {name}")),
        };
        if replicas > 0 {
            self.ctx.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} to {replicas}"),
            );
        }
        let msg = format!("Created new replica set {name:?}");
        let cond = status::condition(
            status::PROGRESSING,
            "True",
            "NewReplicaSetCreated",
            &msg,
            self.now,
        );
        status::set_condition(self.status_mut(), cond);
        self.rss.push(created);
        Ok(self.rss.len() - 1)
    }

    /// The new ReplicaSet carries the Deployment's annotations and its next
    /// revision; a ReplicaSet revived by a rollback remembers its old
    /// revisions in `revision-history`.
    async fn sync_revision(&mut self, i: usize, next: i64) -> Result<()> {
        let rs = &self.rss[i];
        let mut annotations = rs.annotations().clone();
        for (k, v) in self.copied_annotations() {
            annotations.insert(k, v);
        }
        if let Some(old) = revision(rs)
            && old < next
        {
            let mut history: Vec<String> = annotations
                .get(REVISION_HISTORY)
                .map(|h| h.split(',').map(String::from).collect())
                .unwrap_or_default();
            history.push(old.to_string());
            annotations.insert(REVISION_HISTORY.into(), history.join(","));
        }
        if revision(rs).is_none_or(|old| old < next) {
            annotations.insert(REVISION.into(), next.to_string());
        }
        let min_ready = self.d.spec.min_ready_seconds;
        if &annotations == rs.annotations() && rs.spec.min_ready_seconds == min_ready {
            return Ok(());
        }
        let mut updated = rs.clone();
        updated.metadata.annotations = Some(annotations);
        updated.spec.min_ready_seconds = min_ready;
        self.rss[i] = self
            .api
            .replace(&rs.name_any(), &PostParams::default(), &updated)
            .await
            .with_context(|| format!("updating replicaset {}", rs.name_any()))?;
        Ok(())
    }

    fn copied_annotations(&self) -> BTreeMap<String, String> {
        self.d
            .annotations()
            .iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Sets ReplicaSet `i` to `size` (and its sizing annotations); records
    /// a ScalingReplicaSet event. Returns whether the size changed.
    async fn scale(&mut self, i: usize, size: i32) -> Result<bool> {
        let rs = &self.rss[i];
        let old = wanted(rs);
        let desired = self.replicas.to_string();
        let max = (self.replicas + self.max_surge).to_string();
        if old == size
            && annotation(rs, DESIRED_REPLICAS) == Some(&desired)
            && annotation(rs, MAX_REPLICAS) == Some(&max)
        {
            return Ok(false);
        }
        let mut updated = rs.clone();
        updated.spec.replicas = Some(size);
        let annotations = updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        annotations.insert(DESIRED_REPLICAS.into(), desired);
        annotations.insert(MAX_REPLICAS.into(), max);
        let name = rs.name_any();
        // A replace with the cached resourceVersion: a stale cache is a
        // conflict and a retry, never a decision on old numbers.
        self.rss[i] = self
            .api
            .replace(&name, &PostParams::default(), &updated)
            .await
            .with_context(|| format!("scaling replicaset {name}"))?;
        if old == size {
            return Ok(false);
        }
        let direction = if size > old { "up" } else { "down" };
        let message = if old == 0 {
            format!("Scaled {direction} replica set {name} to {size}")
        } else {
            format!("Scaled {direction} replica set {name} to {size} from {old}")
        };
        self.ctx
            .recorder
            .normal(&self.d, "ScalingReplicaSet", message);
        Ok(true)
    }

    /// Once the rollout is complete, deletes the oldest scaled-down
    /// ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup_if_complete(&mut self) -> Result<()> {
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new = self.new_rs().map(|i| &self.rss[i]);
        let counted = status::counts(&self.d, &all, new, self.max_unavailable, self.now);
        if !status::is_complete(&self.d, &counted) {
            return Ok(());
        }
        let limit = usize::try_from(self.d.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
        let mut cleanable: Vec<&ReplicaSet> = self
            .olds()
            .into_iter()
            .map(|i| &self.rss[i])
            .filter(|rs| {
                wanted(rs) == 0
                    && rs.metadata.deletion_timestamp.is_none()
                    && rs.status.as_ref().and_then(|s| s.observed_generation)
                        >= rs.metadata.generation
            })
            .collect();
        if cleanable.len() <= limit {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| revision(rs).unwrap_or(0));
        let excess = cleanable.len() - limit;
        for rs in &cleanable[..excess] {
            match self
                .api
                .delete(&rs.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e).context("deleting an old replicaset"),
            }
        }
        Ok(())
    }

    /// Writes the status; returns when to look again (progress deadline).
    async fn write_status(&mut self, rolling_out: bool) -> Result<Option<Duration>> {
        let now = self.now;
        let paused = self.d.spec.paused == Some(true);
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new = self.new_rs().map(|i| &self.rss[i]);
        let mut status = status::counts(&self.d, &all, new, self.max_unavailable, now);
        let paused_now = status::get(&status, status::PROGRESSING)
            .is_some_and(|c| c.reason.as_deref() == Some(status::PAUSED));
        let mut requeue = None;
        if paused && !paused_now {
            let cond = status::condition(
                status::PROGRESSING,
                "Unknown",
                status::PAUSED,
                "Deployment is paused",
                now,
            );
            status::set_condition(&mut status, cond);
        } else if !paused && paused_now {
            let cond = status::condition(
                status::PROGRESSING,
                "Unknown",
                status::RESUMED,
                "Deployment is resumed",
                now,
            );
            status::set_condition(&mut status, cond);
        } else if rolling_out && !paused {
            requeue = status::progress(&self.d, new, &mut status, now);
        }
        if self.stored_status.as_ref() != Some(&status) {
            let api: Api<Deployment> = Api::namespaced(
                self.ctx.client.clone(),
                &self.d.namespace().unwrap_or_default(),
            );
            let patch = json!({"status": without_zeros(serde_json::to_value(&status)?)});
            api.patch_status(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .context("updating deployment status")?;
        }
        Ok(requeue.map(|d| Duration::from_secs(u64::try_from(d.as_secs()).unwrap_or(1).max(1))))
    }
}

fn wanted(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn size(rs: &ReplicaSet) -> Size {
    Size {
        wanted: wanted(rs),
        available: rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    }
}

fn annotation<'a, K: ResourceExt>(obj: &'a K, key: &str) -> Option<&'a String> {
    obj.annotations().get(key)
}

pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    annotation(rs, REVISION).and_then(|v| v.parse().ok())
}

/// Upstream omits zero counts from status; in a merge patch that is `null`.
fn without_zeros(mut status: Value) -> Value {
    if let Some(fields) = status.as_object_mut() {
        for v in fields.values_mut() {
            if v.as_i64() == Some(0) {
                *v = Value::Null;
            }
        }
    }
    status
}
