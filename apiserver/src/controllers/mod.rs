//! The controllers that make the apiserver a control plane. Each is a
//! level-triggered reconcile loop over shared watches, talking to the API
//! through a `kube::Client` like upstream's controllers — never to storage —
//! so a restart loses nothing and a missed event is healed by the next
//! resync.

pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod informer;
pub mod ipam;
pub mod loadbalancer;
pub mod nodelifecycle;
pub mod owners;
pub mod pods;
pub mod reconciler;
pub mod replicaset;
pub mod scheduler;
pub mod selector;

use std::time::Duration;

use anyhow::Result;
use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::task::JoinSet;

use self::events::Recorder;
use self::informer::Informer;
use self::loadbalancer::LbPool;
use self::nodelifecycle::NodeLifecycle;
use self::scheduler::Scheduler;

/// What `paddock server`'s flags set for the controllers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node podCIDRs come from here (`--cluster-cidr`).
    pub cluster_cidr: Ipv4Net,
    /// The size of each node's podCIDR.
    pub node_cidr_prefix: u8,
    /// LoadBalancer addresses (`--lb-pool`); the nodes' addresses if unset.
    pub lb_pool: Option<LbPool>,
    pub node_monitor_grace_period: Duration,
    pub node_monitor_period: Duration,
    /// Every controller looks at all its objects this often.
    pub resync_period: Duration,
    /// Run without the scheduler (`--disable-scheduler`).
    pub disable_scheduler: bool,
}

impl Config {
    /// Upstream's defaults.
    pub fn new(cluster_cidr: Ipv4Net) -> Config {
        Config {
            cluster_cidr,
            node_cidr_prefix: 24,
            lb_pool: None,
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            resync_period: Duration::from_secs(60),
            disable_scheduler: false,
        }
    }
}

/// Runs every controller over shared watches until one of them fails (or
/// the future is dropped, which stops them all).
pub async fn run(client: Client, config: Config) -> Result<()> {
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let all = watcher::Config::default();
    macro_rules! informer {
        ($kind:ty, $api:expr) => {{
            let (informer, watch) = Informer::<$kind>::new($api, all.clone());
            tasks.spawn(async move {
                watch.await;
                Ok(())
            });
            informer
        }};
    }
    let pods = informer!(Pod, Api::all(client.clone()));
    let nodes = informer!(Node, Api::all(client.clone()));
    let replicasets = informer!(ReplicaSet, Api::all(client.clone()));
    let deployments = informer!(Deployment, Api::all(client.clone()));
    let services = informer!(Service, Api::all(client.clone()));
    let slices = informer!(EndpointSlice, Api::all(client.clone()));
    let endpoints = informer!(Endpoints, Api::all(client.clone()));
    let leases = informer!(Lease, Api::all(client.clone()));
    let (recorder, write_events) = Recorder::new(client.clone());
    tasks.spawn(async move {
        write_events.await;
        Ok(())
    });
    let resync = config.resync_period;

    if !config.disable_scheduler {
        tasks.spawn(Scheduler::new(client.clone(), pods.clone(), nodes.clone(), &recorder).run());
    }
    {
        let (client, rs, pods, rec) = (
            client.clone(),
            replicasets.clone(),
            pods.clone(),
            recorder.clone(),
        );
        tasks.spawn(async move { replicaset::run(client, &rs, &pods, &rec, resync).await });
    }
    {
        let (client, d, rs, pods, rec) = (
            client.clone(),
            deployments.clone(),
            replicasets.clone(),
            pods.clone(),
            recorder.clone(),
        );
        tasks.spawn(async move { deployment::run(client, &d, &rs, &pods, &rec, resync).await });
    }
    {
        let (client, svc, pods, sl, ep) = (
            client.clone(),
            services.clone(),
            pods.clone(),
            slices.clone(),
            endpoints.clone(),
        );
        tasks.spawn(async move { endpoints::run(client, &svc, &pods, &sl, &ep, resync).await });
    }
    {
        let (client, nodes, rec) = (client.clone(), nodes.clone(), recorder.clone());
        let (cidr, prefix) = (config.cluster_cidr, config.node_cidr_prefix);
        tasks.spawn(async move { ipam::run(client, &nodes, cidr, prefix, &rec, resync).await });
    }
    {
        let (client, svc, nodes, rec, pool) = (
            client.clone(),
            services.clone(),
            nodes.clone(),
            recorder.clone(),
            config.lb_pool.clone(),
        );
        tasks.spawn(
            async move { loadbalancer::run(client, &svc, &nodes, pool, &rec, resync).await },
        );
    }
    let settings = nodelifecycle::Settings {
        grace_period: config.node_monitor_grace_period,
        monitor_period: config.node_monitor_period,
    };
    tasks.spawn(
        NodeLifecycle::new(client.clone(), &nodes, &leases, &pods, &recorder, settings).run(),
    );
    let sources = vec![
        gc::Source::of(&deployments),
        gc::Source::of(&replicasets),
        gc::Source::of(&pods),
        gc::Source::of(&services),
        gc::Source::of(&slices),
        gc::Source::of(&nodes),
        gc::Source::of(&leases),
    ];
    tasks.spawn(gc::run(client, sources));

    match tasks.join_next().await {
        Some(Ok(Ok(()))) | None => anyhow::bail!("a controller stopped"),
        Some(Ok(Err(e))) => Err(e.context("a controller failed")),
        Some(Err(e)) => anyhow::bail!("a controller panicked: {e}"),
    }
}
