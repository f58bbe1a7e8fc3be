//! The endpoints controllers: for every Service with a selector, the
//! EndpointSlices (what kube-proxy reads) and the core/v1 Endpoints (what
//! `kubectl describe` and older clients read) of the pods it selects.

mod desired;
mod slices;
mod subsets;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use super::informer::{Change, Informer};
use super::reconciler;
use super::selector::Labels;

pub struct Context {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    endpoints: Store<Endpoints>,
}

/// Runs both controllers (one reconcile writes a service's slices and its
/// Endpoints) until their watches end.
pub async fn run(
    client: Client,
    services: &Informer<Service>,
    pods: &Informer<Pod>,
    slices: &Informer<EndpointSlice>,
    endpoints: &Informer<Endpoints>,
    resync: Duration,
) -> Result<()> {
    services.ready().await?;
    pods.ready().await?;
    slices.ready().await?;
    endpoints.ready().await?;
    let (svc_store, slice_store) = (services.store(), slices.store());
    let triggers = vec![
        reconciler::on_changes(services),
        reconciler::on_related(pods, move |pod: &Pod| {
            services_of_pod(pod, &svc_store, &slice_store)
        }),
        reconciler::on_related(slices, |slice: &EndpointSlice| {
            let service = slice.labels().get(slices::SERVICE_NAME_LABEL)?;
            Some(ObjectRef::new(service).within(&slice.namespace().unwrap_or_default()))
        }),
        reconciler::on_related(endpoints, |ep: &Endpoints| {
            Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default()))
        }),
        reconciler::every(resync),
    ];
    let ctx = Arc::new(Context {
        client,
        services: services.store(),
        pods: pods.store(),
        slices: slices.store(),
        endpoints: endpoints.store(),
    });
    let sweeper = sweep_on_service_deletions(ctx.clone(), services.subscribe());
    let controller = reconciler::run("endpoints", services.store(), triggers, ctx, reconcile);
    tokio::join!(sweeper, controller);
    Ok(())
}

/// The services a pod change concerns: those selecting it now, and those
/// whose slices still list it (it left them).
fn services_of_pod(
    pod: &Pod,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let in_ns = |ns: Option<&str>| ns == Some(namespace.as_str());
    let mut names: BTreeSet<String> = services
        .state()
        .iter()
        .filter(|svc| in_ns(svc.metadata.namespace.as_deref()))
        .filter(|svc| {
            let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
            Labels::from_map(selector).matches(pod.metadata.labels.as_ref())
        })
        .map(|svc| svc.name_any())
        .collect();
    let uid = pod.metadata.uid.as_deref();
    for slice in slices.state() {
        let lists_pod = slice
            .endpoints
            .iter()
            .flatten()
            .any(|e| e.target_ref.as_ref().and_then(|t| t.uid.as_deref()) == uid);
        if in_ns(slice.metadata.namespace.as_deref())
            && lists_pod
            && let Some(service) = slice.labels().get(slices::SERVICE_NAME_LABEL)
        {
            names.insert(service.clone());
        }
    }
    names
        .into_iter()
        .map(|name| ObjectRef::new(&name).within(&namespace))
        .collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let Some(groups) = desired::groups(&svc, &ctx.pods.state()) else {
        return Ok(Action::await_change());
    };
    let existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|s| slices::is_managed_for(s, &name))
        .collect();
    let plan = slices::plan(&svc, &groups, &existing);
    let slice_api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    for slice in &plan.create {
        slice_api
            .create(&PostParams::default(), slice)
            .await
            .with_context(|| format!("creating an endpointslice for service {name}"))?;
    }
    for slice in &plan.update {
        let slice_name = slice.name_any();
        slice_api
            .replace(&slice_name, &PostParams::default(), slice)
            .await
            .with_context(|| format!("updating endpointslice {slice_name}"))?;
    }
    for slice_name in &plan.delete {
        match slice_api.delete(slice_name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e).context(format!("deleting endpointslice {slice_name}")),
        }
    }
    write_endpoints(&ctx, subsets::endpoints(&svc, &groups)).await?;
    Ok(Action::await_change())
}

async fn write_endpoints(ctx: &Context, mut wanted: Endpoints) -> Result<()> {
    let namespace = wanted.namespace().unwrap_or_default();
    let name = wanted.name_any();
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    match ctx.endpoints.get(&ObjectRef::new(&name).within(&namespace)) {
        None => {
            api.create(&PostParams::default(), &wanted)
                .await
                .with_context(|| format!("creating endpoints {name}"))?;
        }
        Some(current) => {
            if current.subsets == wanted.subsets
                && current.metadata.labels == wanted.metadata.labels
            {
                return Ok(());
            }
            let mut meta = current.metadata.clone();
            meta.labels = wanted.metadata.labels.take();
            wanted.metadata = meta;
            api.replace(&name, &PostParams::default(), &wanted)
                .await
                .with_context(|| format!("updating endpoints {name}"))?;
        }
    }
    Ok(())
}

/// Endpoints we wrote outlive their service (they carry no owner reference,
/// as upstream): delete them when the service goes, and on every relist.
async fn sweep_on_service_deletions(
    ctx: Arc<Context>,
    changes: impl futures::Stream<Item = Change<Service>>,
) {
    let mut changes = std::pin::pin!(changes);
    sweep(&ctx).await;
    while let Some(change) = changes.next().await {
        if matches!(change, Change::Deleted(_) | Change::Resynced) {
            sweep(&ctx).await;
        }
    }
}

async fn sweep(ctx: &Context) {
    for ep in ctx.endpoints.state() {
        let ours = ep
            .labels()
            .get(subsets::SKIP_MIRROR_LABEL)
            .map(String::as_str)
            == Some("true");
        let namespace = ep.namespace().unwrap_or_default();
        let service = ObjectRef::new(&ep.name_any()).within(&namespace);
        if !ours || ctx.services.get(&service).is_some() {
            continue;
        }
        let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
        if let Err(e) = api.delete(&ep.name_any(), &DeleteParams::default()).await {
            tracing::debug!(endpoints = %service, "deleting endpoints of a deleted service: {e}");
        }
    }
}
