//! The pods bound to this node: a watch of them, one worker each (sandbox,
//! init containers, containers, probes, termination, status), a relist of
//! the runtime that wakes the workers whose containers changed, and
//! cleanup of whatever the runtime runs for pods no longer bound here.

mod backoff;
mod cgroups;
mod env;
mod images;
pub mod labels;
mod plan;
mod pleg;
mod probe;
mod probes;
mod spec;
mod start;
pub mod state;
mod status;
mod stop;
mod volumes;
mod worker;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Timing;
use crate::cri::Cri;
use crate::events::Recorder;
use crate::metrics::Metrics;

/// What every pod worker shares.
pub struct Context {
    pub client: kube::Client,
    pub cri: Cri,
    pub events: Recorder,
    pub metrics: Metrics,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// The runtime's name (`containerID`s are `<name>://<id>`).
    pub runtime_name: String,
    pub pods_dir: PathBuf,
    pub pod_log_dir: PathBuf,
    pub cgroup_root: String,
    pub cluster_dns: Option<IpAddr>,
    pub cluster_domain: String,
    /// The node's resolv.conf, read at start.
    pub host_resolv_conf: String,
    pub node_cpu_millis: i64,
    pub node_memory: i64,
    pub timing: Timing,
    /// Image names to report, by image reference.
    pub image_names: Mutex<HashMap<String, String>>,
    /// The pods the workers run, by namespace and name (for the kubelet API).
    pub pods: Mutex<HashMap<(String, String), Arc<Pod>>>,
}

/// Why a container's config could not be made
/// (`CreateContainerConfigError`).
#[derive(Debug)]
pub struct ConfigError(pub String);

struct Handle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// Watches the node's pods and keeps a worker per pod until it is gone.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    cgroups::ensure_qos(&ctx.cgroup_root)?;
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.node_name);
    let mut events = watcher::watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let (relists_tx, mut relists) = mpsc::channel(4);
    tokio::spawn(pleg::run(
        ctx.cri.clone(),
        ctx.timing.relist,
        ctx.metrics.clone(),
        relists_tx,
    ));
    let mut workers: HashMap<String, Handle> = HashMap::new();
    let mut listing: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut listed = false;
    let mut in_runtime: HashSet<String> = HashSet::new();
    let mut reap = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Apply(pod))) => dispatch(&ctx, &mut workers, Arc::new(pod)),
                Some(Ok(Event::Delete(pod))) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    forget(&ctx, &pod);
                    if let Some(worker) = workers.get(&uid) {
                        worker.pod.send_replace(None);
                    }
                }
                Some(Ok(Event::Init)) => listing.clear(),
                Some(Ok(Event::InitApply(pod))) => {
                    listing.insert(pod.metadata.uid.clone().unwrap_or_default(), Arc::new(pod));
                }
                Some(Ok(Event::InitDone)) => {
                    for (uid, worker) in &workers {
                        if !listing.contains_key(uid) {
                            worker.pod.send_replace(None);
                        }
                    }
                    for pod in std::mem::take(&mut listing).into_values() {
                        dispatch(&ctx, &mut workers, pod);
                    }
                    listed = true;
                    clean_orphans(&ctx, &mut workers, &in_runtime);
                }
                Some(Err(e)) => tracing::warn!("watching pods: {e}"),
                None => anyhow::bail!("the pod watch ended"),
            },
            Some(relist) = relists.recv() => {
                for uid in &relist.changed {
                    if let Some(worker) = workers.get(uid) {
                        worker.wake.notify_one();
                    }
                }
                in_runtime = relist.all;
                if listed {
                    clean_orphans(&ctx, &mut workers, &in_runtime);
                }
            }
            _ = reap.tick() => workers.retain(|_, w| !w.task.is_finished()),
        }
    }
}

/// Hands `pod` to its worker, starting one if needed.
fn dispatch(ctx: &Arc<Context>, workers: &mut HashMap<String, Handle>, pod: Arc<Pod>) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    remember(ctx, &pod);
    if let Some(worker) = workers.get(&uid)
        && !worker.task.is_finished()
    {
        worker.pod.send_replace(Some(pod));
        return;
    }
    workers.insert(uid.clone(), spawn(ctx, uid, Some(pod)));
}

/// Workers that remove what the runtime runs for pods not bound here.
fn clean_orphans(
    ctx: &Arc<Context>,
    workers: &mut HashMap<String, Handle>,
    in_runtime: &HashSet<String>,
) {
    for uid in in_runtime {
        if !workers.contains_key(uid) {
            tracing::info!(
                uid,
                "removing the containers of a pod no longer bound to this node"
            );
            workers.insert(uid.clone(), spawn(ctx, uid.clone(), None));
        }
    }
}

fn spawn(ctx: &Arc<Context>, uid: String, pod: Option<Arc<Pod>>) -> Handle {
    let (tx, rx) = watch::channel(pod);
    let wake = Arc::new(Notify::new());
    let worker = worker::Worker::new(ctx.clone(), uid, rx, wake.clone());
    Handle {
        pod: tx,
        wake,
        task: tokio::spawn(worker.run()),
    }
}

fn key(pod: &Pod) -> (String, String) {
    (
        spec::namespace(pod).to_string(),
        spec::name(pod).to_string(),
    )
}

fn remember(ctx: &Context, pod: &Arc<Pod>) {
    ctx.pods
        .lock()
        .expect("pods lock")
        .insert(key(pod), pod.clone());
}

fn forget(ctx: &Context, pod: &Pod) {
    let mut pods = ctx.pods.lock().expect("pods lock");
    if pods
        .get(&key(pod))
        .is_some_and(|p| p.metadata.uid == pod.metadata.uid)
    {
        pods.remove(&key(pod));
    }
}
