//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the
//! selector — adopting orphans that match, releasing pods that no longer do,
//! creating from the template (`generateName: <rs>-`, controller owner
//! reference) and deleting the least valuable extras — and reports status.

mod expectations;
mod rank;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::future;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use self::expectations::Expectations;
use super::events::Recorder;
use super::informer::Informer;
use super::owners;
use super::pods;
use super::reconciler::{self, Trigger};
use super::selector::Labels;

pub const COMPONENT: &str = "replicaset-controller";
/// At most this many pods are created or deleted in one reconcile.
const BURST: usize = 500;

pub struct Context {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Runs the controller until its watches end.
pub async fn run(
    client: Client,
    replicasets: &Informer<ReplicaSet>,
    pods: &Informer<Pod>,
    recorder: &Recorder,
    resync: Duration,
) -> Result<()> {
    replicasets.ready().await?;
    pods.ready().await?;
    let rs_store = replicasets.store();
    let triggers = vec![
        reconciler::on_changes(replicasets),
        reconciler::on_related(pods, move |pod: &Pod| {
            owners::owners_to_trigger(pod, &rs_store, selector_of)
        }),
        reconciler::every(resync),
    ];
    let ctx = Arc::new(Context {
        client,
        pods: pods.store(),
        recorder: recorder.as_component(COMPONENT),
        expectations: Expectations::default(),
    });
    reconciler::run("replicaset", replicasets.store(), triggers, ctx, reconcile).await;
    Ok(())
}

fn selector_of(rs: &ReplicaSet) -> Labels {
    Labels::from_selector(Some(&rs.spec.selector))
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action> {
    let uid = rs.uid().unwrap_or_default();
    if rs.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let namespace = rs.namespace().unwrap_or_default();
    let owned = claim_pods(&rs, &ctx, &namespace).await?;
    let outstanding = ctx
        .expectations
        .outstanding(&uid, owned.iter().map(|p| &**p));
    let mut active: Vec<Arc<Pod>> = owned
        .iter()
        .filter(|p| pods::is_active(p))
        .filter(|p| {
            !outstanding
                .deletes
                .iter()
                .any(|uid| p.metadata.uid.as_ref() == Some(uid))
        })
        .cloned()
        .collect();
    let wanted = usize::try_from(rs.spec.replicas.unwrap_or(1)).unwrap_or(0);
    let have = active.len() + outstanding.creates;
    let managed = if have < wanted {
        create_pods(&rs, &ctx, (wanted - have).min(BURST)).await
    } else if have > wanted {
        rank::sort_for_deletion(&mut active);
        let extra = (have - wanted).min(active.len()).min(BURST);
        delete_pods(&rs, &ctx, &active[..extra]).await
    } else {
        Ok(())
    };
    let requeue = update_status(&rs, &ctx, &owned).await?;
    managed?;
    Ok(match requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// The pods this ReplicaSet controls after adopting matching orphans and
/// releasing controlled pods that no longer match.
async fn claim_pods(rs: &ReplicaSet, ctx: &Context, namespace: &str) -> Result<Vec<Arc<Pod>>> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let candidates = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .collect();
    owners::claim(&api, rs, &selector_of(rs), candidates, pods::is_active).await
}

/// Creates `count` pods in slow-start batches (1, 2, 4, …), stopping at the
/// first failure, as upstream does.
async fn create_pods(rs: &ReplicaSet, ctx: &Context, count: usize) -> Result<()> {
    let namespace = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pod = pod_from_template(rs)?;
    let uid = rs.uid().unwrap_or_default();
    let mut left = count;
    let mut batch = 1;
    while left > 0 {
        let n = batch.min(left);
        let params = PostParams::default();
        let results = future::join_all((0..n).map(|_| api.create(&params, &pod))).await;
        let mut failure = None;
        for result in results {
            match result {
                Ok(created) => {
                    let name = created.name_any();
                    ctx.expectations.created(&uid, &name);
                    ctx.recorder
                        .normal(rs, "SuccessfulCreate", format!("Created pod: {name}"));
                }
                Err(e) => {
                    ctx.recorder
                        .warning(rs, "FailedCreate", format!("Error creating: {e}"));
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e).context("creating pods");
        }
        left -= n;
        batch *= 2;
    }
    Ok(())
}

/// A pod for `rs`: its template, named `<rs>-<random>`, controlled by it.
fn pod_from_template(rs: &ReplicaSet) -> Result<Pod> {
    let template = rs
        .spec
        .template
        .clone()
        .context("replicaset has no pod template")?;
    let meta = template.metadata.unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owners::controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

async fn delete_pods(rs: &ReplicaSet, ctx: &Context, victims: &[Arc<Pod>]) -> Result<()> {
    let namespace = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owner = rs.uid().unwrap_or_default();
    let deletes = victims.iter().map(|pod| {
        let api = api.clone();
        async move {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            (pod, api.delete(&pod.name_any(), &params).await)
        }
    });
    let mut failure = None;
    for (pod, result) in future::join_all(deletes).await {
        match result {
            Ok(_) => {
                ctx.expectations
                    .deleted(&owner, &pod.uid().unwrap_or_default());
                ctx.recorder.normal(
                    rs,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                );
            }
            // Already gone: what we wanted.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                ctx.recorder
                    .warning(rs, "FailedDelete", format!("Error deleting: {e}"));
                failure = Some(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e).context("deleting pods"),
        None => Ok(()),
    }
}

/// Writes status from the pods in the cache; returns when to look again for
/// pods that become available after `minReadySeconds`.
async fn update_status(
    rs: &ReplicaSet,
    ctx: &Context,
    owned: &[Arc<Pod>],
) -> Result<Option<Duration>> {
    let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
    let template_labels: BTreeMap<String, String> = rs
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let now = Timestamp::now();
    let active: Vec<&Pod> = owned
        .iter()
        .map(|p| &**p)
        .filter(|p| pods::is_active(p))
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(count(&|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })),
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    let requeue = (min_ready > 0 && status.ready_replicas != status.available_replicas)
        .then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(1)));
    if !status_differs(rs.status.as_ref(), &status) {
        return Ok(requeue);
    }
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let patch = json!({"status": {
        "replicas": status.replicas,
        "fullyLabeledReplicas": omit_zero(status.fully_labeled_replicas),
        "readyReplicas": omit_zero(status.ready_replicas),
        "availableReplicas": omit_zero(status.available_replicas),
        "observedGeneration": status.observed_generation,
    }});
    api.patch_status(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .context("updating replicaset status")?;
    Ok(requeue)
}

fn status_differs(old: Option<&ReplicaSetStatus>, new: &ReplicaSetStatus) -> bool {
    let Some(old) = old else {
        return true;
    };
    let n = |v: Option<i32>| v.unwrap_or(0);
    old.replicas != new.replicas
        || n(old.fully_labeled_replicas) != n(new.fully_labeled_replicas)
        || n(old.ready_replicas) != n(new.ready_replicas)
        || n(old.available_replicas) != n(new.available_replicas)
        || old.observed_generation != new.observed_generation
}

/// Upstream omits zero counts from status; in a merge patch that is `null`.
pub fn omit_zero(v: Option<i32>) -> Value {
    match v {
        Some(n) if n != 0 => n.into(),
        _ => Value::Null,
    }
}

/// For triggers from other controllers.
pub fn trigger_for(namespace: &str, name: &str) -> Trigger<ReplicaSet> {
    Trigger::One(ObjectRef::new(name).within(namespace))
}
